//! The workloads of BENCHMARKS.md, run on one engine at a time. Every request stream is
//! drawn before timing starts, from fixed seeds, so every engine gets the same requests
//! in the same order; every read checks the bytes it got.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use alexstorage_keygen::SplitMix64;
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::data::{check_value, fill_value, DataSet, Zipfian};
use crate::engines::{Class, EngineKind, Feature, Latest, Reader, Store};
use crate::results::{percentiles, Results, Sample, Unit};
use crate::sys;

/// The workloads a variant of an engine ([`EngineKind::variant_of`]: AlexStorage
/// with compression) runs: those its setting changes.
pub const VARIANT_WORKLOADS: [Workload; 4] = [Workload::Load, Workload::Get, Workload::Scan, Workload::Space];

/// Batch sizes of the `multi-get` workload.
pub const MULTI_GET_BATCHES: [usize; 4] = [8, 16, 64, 256];

/// The `multi-get` variant of batches of `batch` keys.
pub fn batch_label(batch: usize) -> String {
    format!("batches of {batch}")
}

/// Every `SAMPLE_EVERY`-th operation is timed on its own for the percentiles.
pub const SAMPLE_EVERY: usize = 64;

/// The workloads, in the order they run on a loaded store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Workload {
    /// N inserts in random order.
    Load,
    /// N uniform random gets of existing keys.
    Get,
    /// N gets of absent keys.
    GetMiss,
    /// The get workload's keys read in batches of 8, 16, 64 and 256 (each engine's
    /// batched read where it has one).
    MultiGet,
    /// Scans of 100 consecutive keys from random starts.
    Scan,
    /// Gets from several threads; and one reader beside one writer.
    ReadThreads,
    /// 80% get / 20% put (half overwrite, half new key).
    Mixed,
    /// YCSB core workloads.
    YcsbA,
    /// 95% read / 5% update.
    YcsbB,
    /// 100% read.
    YcsbC,
    /// 95% read latest / 5% insert.
    YcsbD,
    /// 95% short scans / 5% insert.
    YcsbE,
    /// 50% read / 50% read-modify-write.
    YcsbF,
    /// Close and reopen until the first get returns.
    Reopen,
    /// Bytes on disk after load and after overwrites + compaction; write amplification.
    Space,
    /// Durable writes from 1 and 8 threads, on a fresh store.
    SyncWrite,
    /// Read-modify-write transactions (read 2 keys, write both), zipfian, from 1 and
    /// 4 threads, on a fresh store of each engine's transactional kind.
    Transactions,
    /// Peak RSS growth during load, in a child process per engine.
    Memory,
}

impl Workload {
    /// Every workload, in run order.
    pub const ALL: [Workload; 18] = [
        Workload::Load,
        Workload::Get,
        Workload::GetMiss,
        Workload::MultiGet,
        Workload::Scan,
        Workload::ReadThreads,
        Workload::Mixed,
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbC,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
        Workload::Reopen,
        Workload::Space,
        Workload::SyncWrite,
        Workload::Transactions,
        Workload::Memory,
    ];

    /// The id used by `--workloads` and the reports.
    pub fn id(self) -> &'static str {
        match self {
            Workload::Load => "load",
            Workload::Get => "get",
            Workload::GetMiss => "get-miss",
            Workload::MultiGet => "multi-get",
            Workload::Scan => "scan",
            Workload::ReadThreads => "read-threads",
            Workload::Mixed => "mixed",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
            Workload::Reopen => "reopen",
            Workload::Space => "space",
            Workload::SyncWrite => "sync-write",
            Workload::Transactions => "txn",
            Workload::Memory => "memory",
        }
    }

    /// The workload called `id`.
    pub fn from_id(id: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|workload| workload.id() == id)
    }
}

/// Sizes of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Workloads to report.
    pub workloads: Vec<Workload>,
    /// Thread counts of `read-threads`.
    pub read_threads: Vec<usize>,
    /// Thread counts of `sync-write`.
    pub sync_threads: Vec<usize>,
    /// Durable writes per `sync-write` variant (all threads together).
    pub sync_writes: usize,
    /// Scans in `scan`.
    pub scans: usize,
    /// Keys per scan in `scan`.
    pub scan_length: usize,
    /// Operations per YCSB workload.
    pub ycsb_ops: usize,
    /// Overwrite passes of `space`.
    pub overwrite_passes: u32,
    /// Thread counts of `txn`.
    pub txn_threads: Vec<usize>,
    /// Committed transactions per `txn` variant (all threads together).
    pub txn_commits: usize,
    /// Keys the `txn` store holds (the zipfian draws among them).
    pub txn_keys: usize,
}

/// One request of a YCSB or mixed stream.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Read key number `usize` (an index into the loaded keys).
    Read(u32),
    /// Read the key inserted `u32` inserts before the latest one (YCSB D).
    ReadLatest(u32),
    /// Overwrite a loaded key.
    Update(u32),
    /// Insert the next fresh key.
    Insert,
    /// Scan from a loaded key.
    Scan(u32, u8),
    /// Read a loaded key, then write it back with the next generation.
    ReadModifyWrite(u32),
}

/// Request streams shared by every engine and repeat.
pub struct Streams {
    get: Vec<u32>,
    mixed: Vec<Op>,
    ycsb: Vec<(Workload, Vec<Op>)>,
    scans: Vec<u32>,
}

impl Streams {
    /// Draws every stream of `plan` over `data`.
    pub fn new(data: &DataSet, plan: &Plan) -> Streams {
        let n = data.keys.len();
        let get = data.uniform_indices(n, 0x6E7);
        let mut random = SplitMix64::new(0x313ED);
        let mixed = (0..n)
            .map(|_| {
                let key = random.below(n as u64) as u32;
                match random.below(10) {
                    0 => Op::Update(key),
                    1 => Op::Insert,
                    _ => Op::Read(key),
                }
            })
            .collect();
        let zipf = Zipfian::new(n as u64);
        let ycsb =
            [Workload::YcsbA, Workload::YcsbB, Workload::YcsbC, Workload::YcsbD, Workload::YcsbE, Workload::YcsbF]
                .into_iter()
                .filter(|workload| plan.workloads.contains(workload))
                .map(|workload| {
                    let mut random = SplitMix64::new(0x7C5B ^ workload.id().len() as u64 ^ ((workload as u64) << 8));
                    let ops = (0..plan.ycsb_ops)
                        .map(|_| {
                            let key = zipf.next_scrambled(&mut random) as u32;
                            let roll = random.below(100);
                            match workload {
                                Workload::YcsbA if roll < 50 => Op::Update(key),
                                Workload::YcsbB if roll < 5 => Op::Update(key),
                                Workload::YcsbD if roll < 5 => Op::Insert,
                                Workload::YcsbD => Op::ReadLatest(zipf.next_rank(&mut random) as u32),
                                Workload::YcsbE if roll < 5 => Op::Insert,
                                Workload::YcsbE => Op::Scan(key, 1 + random.below(100) as u8),
                                Workload::YcsbF if roll < 50 => Op::ReadModifyWrite(key),
                                _ => Op::Read(key),
                            }
                        })
                        .collect();
                    (workload, ops)
                })
                .collect();
        let scans = data.uniform_indices(plan.scans, 0x5CA);
        Streams { get, mixed, ycsb, scans }
    }
}

/// Runs the workloads of a plan on one engine, recording into `results`.
pub struct Bench<'a> {
    /// The data.
    pub data: &'a DataSet,
    /// The streams.
    pub streams: &'a Streams,
    /// The plan.
    pub plan: &'a Plan,
    /// Where engines get their directories.
    pub scratch: &'a Path,
    /// Called with the name of each step as it starts.
    pub step: &'a (dyn Fn(&str) + Sync),
}

/// Sampled latencies (ns) and total seconds of a timed run.
struct Timed {
    seconds: f64,
    timings: Vec<u64>,
    count: usize,
}

impl Timed {
    fn sample(self) -> Sample {
        let (p50_ns, p99_ns) = percentiles(self.timings);
        let ops_per_s = self.count as f64 / self.seconds;
        Sample { value: self.seconds * 1e9 / self.count as f64, ops_per_s: Some(ops_per_s), p50_ns, p99_ns }
    }
}

/// Times `count` operations: total time gives ns/op and ops/s, every
/// [`SAMPLE_EVERY`]-th operation timed alone gives the percentiles.
fn time_run(count: usize, mut op: impl FnMut(usize) -> Result<()>) -> Result<Timed> {
    let mut timings = Vec::with_capacity(count / SAMPLE_EVERY + 1);
    let start = Instant::now();
    for index in 0..count {
        if index % SAMPLE_EVERY == 0 {
            let at = Instant::now();
            op(index)?;
            timings.push(at.elapsed().as_nanos() as u64);
        } else {
            op(index)?;
        }
    }
    Ok(Timed { seconds: start.elapsed().as_secs_f64(), timings, count: count.max(1) })
}

/// [`time_run`], summarised.
fn time_ops(count: usize, op: impl FnMut(usize) -> Result<()>) -> Result<Sample> {
    time_run(count, op).map(Timed::sample)
}

fn throughput(sample: Sample) -> Sample {
    Sample { value: sample.ops_per_s.unwrap_or(0.0), ..sample }
}

/// Reads `key` and checks its value; a missing key is an error.
fn expect_present(store: &dyn Store, key: i64, size: usize) -> Result<()> {
    let found = store.get(key, &mut |bytes| check_value(key, bytes, size))?;
    ensure!(found, "key {key} is missing");
    Ok(())
}

impl Bench<'_> {
    fn wants(&self, workload: Workload) -> bool {
        self.plan.workloads.contains(&workload)
    }

    fn dir(&self, engine: &dyn EngineKind, repeat: usize, what: &str) -> PathBuf {
        self.scratch.join(format!("{}-{repeat}-{what}", engine.name()))
    }

    /// One repeat of every selected workload on `engine`.
    pub fn run(&self, engine: &dyn EngineKind, repeat: usize, results: &mut Results) -> Result<()> {
        let name = engine.name();
        let wants = |workload: Workload| {
            self.wants(workload) && (engine.variant_of().is_none() || VARIANT_WORKLOADS.contains(&workload))
        };
        let dir = self.dir(engine, repeat, "main");
        let mut store = engine.open(&dir, Class::Buffered).with_context(|| format!("opening {name}"))?;
        let size = self.data.value_size;
        let written_before = sys::disk_write_bytes();

        (self.step)("load");
        let mut value = vec![0u8; size];
        let keys = &self.data.keys;
        let load = time_ops(keys.len(), |index| {
            fill_value(&mut value, keys[index], 0);
            store.put(keys[index], &value)
        })
        .with_context(|| format!("{name}: load"))?;
        if wants(Workload::Load) {
            results.record("load", "", name, Unit::NsPerOp, Class::Buffered, load);
        }

        // Sizes and bytes written do not vary like timings: measured in the first
        // repeat only (the overwrite passes are the slowest part of a repeat).
        let measure_space = wants(Workload::Space) && repeat == 0;
        // Every repeat starts its reads from the same state: the load handed to the
        // engine's files (untimed; e.g. RocksDB's memtable flushed).
        if !measure_space {
            store.flush().with_context(|| format!("{name}: flush after load"))?;
        }
        if measure_space {
            self.space_after_load(engine, &*store, &dir, written_before, results)?;
        }
        if wants(Workload::Get) {
            (self.step)("get");
            let sample = self.gets(&*store).with_context(|| format!("{name}: get"))?;
            results.record("get", "", name, Unit::NsPerOp, Class::Buffered, sample);
        }
        if wants(Workload::MultiGet) {
            for batch in MULTI_GET_BATCHES {
                (self.step)(&format!("multi-get, batches of {batch}"));
                let sample = self.multi_gets(&*store, batch).with_context(|| format!("{name}: multi-get"))?;
                results.record("multi-get", &batch_label(batch), name, Unit::NsPerKey, Class::Buffered, sample);
            }
        }
        if wants(Workload::GetMiss) {
            (self.step)("get-miss");
            let sample = self.misses(&*store).with_context(|| format!("{name}: get-miss"))?;
            results.record("get-miss", "", name, Unit::NsPerOp, Class::Buffered, sample);
        }
        if wants(Workload::Scan) {
            (self.step)("scan");
            match engine.lacks(Feature::Scan) {
                Some(why) => results.not_available("scan", "", name, Unit::NsPerKey, Class::Buffered, why),
                None => {
                    let sample = self.scans(&*store, &self.data.sorted).with_context(|| format!("{name}: scan"))?;
                    results.record("scan", "", name, Unit::NsPerKey, Class::Buffered, sample);
                }
            }
        }
        if wants(Workload::ReadThreads) {
            (self.step)("read-threads");
            self.read_threads(name, &*store, results).with_context(|| format!("{name}: read-threads"))?;
        }
        let mut fresh_used = 0;
        if wants(Workload::Mixed) {
            (self.step)("mixed");
            let sample = self
                .stream(&*store, &self.streams.mixed, &mut fresh_used, true)
                .with_context(|| format!("{name}: mixed"))?;
            results.record("mixed", "", name, Unit::NsPerOp, Class::Buffered, sample);
        }
        for (workload, ops) in &self.streams.ycsb {
            if !wants(*workload) {
                continue;
            }
            let id = workload.id();
            (self.step)(id);
            if *workload == Workload::YcsbE {
                if let Some(why) = engine.lacks(Feature::Scan) {
                    results.not_available(id, "", name, Unit::OpsPerSec, Class::Buffered, why);
                    continue;
                }
            }
            let read_only = *workload == Workload::YcsbC;
            let sample =
                self.stream(&*store, ops, &mut fresh_used, !read_only).with_context(|| format!("{name}: {id}"))?;
            results.record(id, "", name, Unit::OpsPerSec, Class::Buffered, throughput(sample));
        }
        if wants(Workload::Reopen) {
            (self.step)("reopen");
            match engine.lacks(Feature::Persistence) {
                Some(why) => results.not_available("reopen", "", name, Unit::Ms, Class::Buffered, why),
                None => {
                    // Close (whatever work an engine does there: syncs, checkpoints,
                    // memtable flushes), open, and the first get.
                    let start = Instant::now();
                    drop(store);
                    store = engine.open(&dir, Class::Buffered).with_context(|| format!("{name}: reopen"))?;
                    expect_present(&*store, keys[0], size)
                        .with_context(|| format!("{name}: first get after reopen"))?;
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    results.record(
                        "reopen",
                        "",
                        name,
                        Unit::Ms,
                        Class::Buffered,
                        Sample { value: ms, ..Sample::default() },
                    );
                }
            }
        }
        // Scans again after a full compaction (untimed), where the engine has one
        // (AlexStorage's puts the records in key order). Last, so that no other
        // workload runs on a store compacted for it (redb, for one, serves writes far
        // slower after its compaction).
        if wants(Workload::Scan) {
            match engine.lacks(Feature::Scan).or(engine.lacks(Feature::Compaction)) {
                Some(why) => {
                    results.not_available("scan", AFTER_COMPACTION, name, Unit::NsPerKey, Class::Buffered, why)
                }
                None => {
                    (self.step)("scan after compaction");
                    store.compact().with_context(|| format!("{name}: compaction before scan"))?;
                    // The loaded keys and those the mixed and YCSB workloads inserted.
                    let mut present: Vec<i64> =
                        self.data.sorted.iter().chain(&self.data.fresh[..fresh_used]).copied().collect();
                    present.sort_unstable();
                    let sample =
                        self.scans(&*store, &present).with_context(|| format!("{name}: scan after compaction"))?;
                    results.record("scan", AFTER_COMPACTION, name, Unit::NsPerKey, Class::Buffered, sample);
                }
            }
        }
        if measure_space {
            self.space_after_overwrites(engine, &mut *store, &dir, fresh_used, results)?;
        }
        drop(store);
        remove_dir(&dir)?;

        if wants(Workload::SyncWrite) {
            (self.step)("sync-write");
            match engine.lacks(Feature::Persistence) {
                Some(why) => {
                    for threads in &self.plan.sync_threads {
                        results.not_available(
                            "sync-write",
                            &threads_label(*threads),
                            name,
                            Unit::OpsPerSec,
                            Class::Sync,
                            why,
                        );
                    }
                }
                None => self.sync_writes(engine, repeat, results).with_context(|| format!("{name}: sync-write"))?,
            }
        }

        if wants(Workload::Transactions) {
            (self.step)("txn");
            match engine.lacks(Feature::Transactions) {
                Some(why) => {
                    for threads in &self.plan.txn_threads {
                        let label = threads_label(*threads);
                        results.not_available("txn", &label, name, Unit::OpsPerSec, Class::Buffered, why);
                        results.not_available("txn-conflicts", &label, name, Unit::Share, Class::Buffered, why);
                    }
                }
                None => self.transactions(engine, repeat, results).with_context(|| format!("{name}: txn"))?,
            }
        }
        Ok(())
    }

    /// `txn`: each thread runs read-modify-write transactions over two zipfian keys
    /// (read both, write both back with a counter in the value bumped), retrying a
    /// conflicting one until it commits. Reports commits per second and the share of
    /// commit attempts that conflicted; then checks that the counters add up to the
    /// commits (no lost update).
    fn transactions(&self, engine: &dyn EngineKind, repeat: usize, results: &mut Results) -> Result<()> {
        let name = engine.name();
        let size = self.data.value_size.max(8);
        for &threads in &self.plan.txn_threads {
            let threads = threads.max(1);
            let dir = self.dir(engine, repeat, &format!("txn{threads}"));
            let opened = engine.open_transactional(&dir, Class::Buffered)?;
            let store = &*opened;
            let keys = self.plan.txn_keys.max(2);
            let value = vec![0u8; size];
            for key in 0..keys as i64 {
                store.put(key, &value)?;
            }
            let per_thread = (self.plan.txn_commits / threads).max(1);
            let zipfian = Zipfian::new(keys as u64);
            let mut random = SplitMix64::new(0x7A2 + repeat as u64 * 31 + threads as u64);
            let pairs: Vec<[i64; 2]> = (0..per_thread * threads)
                .map(|_| {
                    let first = zipfian.next_scrambled(&mut random) as i64;
                    let mut second = zipfian.next_scrambled(&mut random) as i64;
                    if second == first {
                        second = (first + 1) % keys as i64;
                    }
                    [first, second]
                })
                .collect();
            let barrier = Barrier::new(threads + 1);
            let (elapsed, timings, conflicts) = std::thread::scope(|scope| -> Result<(f64, Vec<u64>, u64)> {
                let workers: Vec<_> = pairs
                    .chunks(per_thread)
                    .map(|chunk| {
                        let barrier = &barrier;
                        scope.spawn(move || -> Result<(Vec<u64>, u64)> {
                            let mut conflicts = 0u64;
                            let mut bump = |_: i64, current: Option<&[u8]>| -> Result<Vec<u8>> {
                                let mut value = current.context("a transaction's key is missing")?.to_vec();
                                let count = u64::from_le_bytes(value[..8].try_into()?) + 1;
                                value[..8].copy_from_slice(&count.to_le_bytes());
                                Ok(value)
                            };
                            barrier.wait();
                            let timed = time_run(chunk.len(), |index| {
                                while !store.read_modify_write(&chunk[index], &mut bump)? {
                                    conflicts += 1;
                                }
                                Ok(())
                            })?;
                            Ok((timed.timings, conflicts))
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                let (mut timings, mut conflicts) = (Vec::new(), 0);
                for worker in workers {
                    match worker.join() {
                        Ok(result) => {
                            let (times, conflicted) = result?;
                            timings.extend(times);
                            conflicts += conflicted;
                        }
                        Err(_) => bail!("a transaction thread panicked"),
                    }
                }
                Ok((start.elapsed().as_secs_f64(), timings, conflicts))
            })?;
            // Every commit bumped two counters: they must add up.
            let mut total = 0u64;
            for key in 0..keys as i64 {
                store.get(key, &mut |value| {
                    total += u64::from_le_bytes(value[..8].try_into()?);
                    Ok(())
                })?;
            }
            ensure!(total == 2 * pairs.len() as u64, "{name}: counters add up to {total}, not {}", 2 * pairs.len());
            let commits_per_s = pairs.len() as f64 / elapsed;
            let (p50_ns, p99_ns) = percentiles(timings);
            let label = threads_label(threads);
            let sample = Sample { value: commits_per_s, ops_per_s: Some(commits_per_s), p50_ns, p99_ns };
            results.record("txn", &label, name, Unit::OpsPerSec, Class::Buffered, sample);
            let rate = conflicts as f64 / (conflicts as f64 + pairs.len() as f64);
            let sample = Sample { value: rate, ops_per_s: None, p50_ns: None, p99_ns: None };
            results.record("txn-conflicts", &label, name, Unit::Share, Class::Buffered, sample);
            drop(opened);
            remove_dir(&dir)?;
        }
        Ok(())
    }

    fn gets(&self, store: &dyn Store) -> Result<Sample> {
        let keys = &self.data.keys;
        let size = self.data.value_size;
        let mut reader = store.reader()?;
        time_ops(self.streams.get.len(), |index| {
            let key = keys[self.streams.get[index] as usize];
            let found = reader.get(key, &mut |bytes| check_value(key, bytes, size))?;
            ensure!(found, "key {key} is missing");
            Ok(())
        })
    }

    /// The get workload's keys in batches of `batch`, each read with the engine's
    /// batched read and every value checked: ns per key.
    fn multi_gets(&self, store: &dyn Store, batch: usize) -> Result<Sample> {
        let keys = &self.data.keys;
        let size = self.data.value_size;
        let batches: Vec<Vec<i64>> = self
            .streams
            .get
            .chunks(batch)
            .map(|chunk| chunk.iter().map(|&index| keys[index as usize]).collect())
            .collect();
        let timed = time_run(batches.len(), |index| {
            let wanted = &batches[index];
            let mut seen = 0;
            store.multi_get(wanted, &mut |at, value| {
                let key = wanted[at];
                let value = value.with_context(|| format!("key {key} is missing"))?;
                seen += 1;
                check_value(key, value, size)
            })?;
            ensure!(seen == wanted.len(), "{seen} of {} keys read", wanted.len());
            Ok(())
        })?;
        let per_key = batch as f64;
        let sample = timed.sample();
        let keys_read = self.streams.get.len() as f64;
        Ok(Sample {
            value: sample.value * batches.len() as f64 / keys_read,
            ops_per_s: sample.ops_per_s.map(|batches_per_s| batches_per_s * per_key),
            p50_ns: sample.p50_ns.map(|ns| ns / per_key),
            p99_ns: sample.p99_ns.map(|ns| ns / per_key),
        })
    }

    fn misses(&self, store: &dyn Store) -> Result<Sample> {
        let fresh = &self.data.fresh;
        let mut reader = store.reader()?;
        time_ops(fresh.len(), |index| {
            let key = fresh[index];
            let found = reader.get(key, &mut |_| Ok(()))?;
            ensure!(!found, "absent key {key} was found");
            Ok(())
        })
    }

    /// The scan workload; `sorted` is every key the store holds, ascending.
    fn scans(&self, store: &dyn Store, sorted: &[i64]) -> Result<Sample> {
        let keys = &self.data.keys;
        let size = self.data.value_size;
        let length = self.plan.scan_length;
        let mut returned = 0usize;
        let sample = time_ops(self.streams.scans.len(), |index| {
            let start = keys[self.streams.scans[index] as usize];
            let from = sorted.partition_point(|&key| key < start);
            let expected = &sorted[from..(from + length).min(sorted.len())];
            let mut at = 0;
            let visited = store.scan(start, length, &mut |key, bytes| {
                ensure!(
                    expected.get(at) == Some(&key),
                    "scan from {start}: entry {at} is key {key}, expected {:?}",
                    expected.get(at)
                );
                at += 1;
                check_value(key, bytes, size)
            })?;
            ensure!(
                visited == expected.len(),
                "scan from {start} returned {visited} keys, expected {}",
                expected.len()
            );
            returned += visited;
            Ok(())
        })?;
        // Per key returned, like the figure (the timed unit is a whole scan).
        let keys_per_scan = returned.max(1) as f64 / self.streams.scans.len() as f64;
        let per_key = |ns: f64| ns / keys_per_scan;
        Ok(Sample {
            value: per_key(sample.value),
            ops_per_s: sample.ops_per_s,
            p50_ns: sample.p50_ns.map(per_key),
            p99_ns: sample.p99_ns.map(per_key),
        })
    }

    fn read_threads(&self, name: &str, store: &dyn Store, results: &mut Results) -> Result<()> {
        for &threads in &self.plan.read_threads {
            let sample = self.parallel_gets(store, threads, false)?;
            results.record("read-threads", &threads_label(threads), name, Unit::OpsPerSec, Class::Buffered, sample);
        }
        let sample = self.parallel_gets(store, 1, true)?;
        results.record("read-threads", WITH_WRITER, name, Unit::OpsPerSec, Class::Buffered, sample);
        Ok(())
    }

    /// `threads` readers, each doing N gets from its own place in the get stream;
    /// with `writer`, one more thread overwrites keys at full speed until they finish.
    fn parallel_gets(&self, store: &dyn Store, threads: usize, writer: bool) -> Result<Sample> {
        let keys = &self.data.keys;
        let size = self.data.value_size;
        let probes = &self.streams.get;
        let done = AtomicBool::new(false);
        let barrier = Barrier::new(threads + 1 + usize::from(writer));
        let outcome = std::thread::scope(|scope| -> Result<(f64, Vec<u64>)> {
            let readers: Vec<_> = (0..threads)
                .map(|thread| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<Vec<u64>> {
                        // Beside a writer, every get reads the latest state (a read
                        // transaction per get for LMDB and redb), as in other workloads
                        // that write.
                        let mut reader: Box<dyn Reader + '_> =
                            if writer { Box::new(Latest(store)) } else { store.reader()? };
                        let offset = thread * probes.len() / threads.max(1);
                        barrier.wait();
                        let timed = time_run(probes.len(), |index| {
                            let key = keys[probes[(offset + index) % probes.len()] as usize];
                            let found = reader.get(key, &mut |bytes| check_value(key, bytes, size))?;
                            ensure!(found, "key {key} is missing");
                            Ok(())
                        })?;
                        Ok(timed.timings)
                    })
                })
                .collect();
            let writer_thread = writer.then(|| {
                let (barrier, done) = (&barrier, &done);
                scope.spawn(move || -> Result<u64> {
                    let mut value = vec![0u8; size];
                    let mut random = SplitMix64::new(0x3217E);
                    let mut writes = 0u64;
                    barrier.wait();
                    while !done.load(Ordering::Relaxed) {
                        let key = keys[random.below(keys.len() as u64) as usize];
                        fill_value(&mut value, key, 7);
                        store.put(key, &value)?;
                        writes += 1;
                    }
                    Ok(writes)
                })
            });
            barrier.wait();
            let start = Instant::now();
            let mut timings = Vec::new();
            let mut first_error = None;
            for reader in readers {
                match reader.join() {
                    Ok(Ok(thread_timings)) => timings.extend(thread_timings),
                    Ok(Err(error)) => first_error = first_error.or(Some(error)),
                    Err(_) => first_error = first_error.or(Some(anyhow::anyhow!("a reader thread panicked"))),
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            done.store(true, Ordering::Relaxed);
            if let Some(writer) = writer_thread {
                match writer.join() {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => first_error = first_error.or(Some(error)),
                    Err(_) => first_error = first_error.or(Some(anyhow::anyhow!("the writer thread panicked"))),
                }
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(((threads * probes.len()) as f64 / elapsed, timings)),
            }
        })?;
        let (ops_per_s, timings) = outcome;
        let (p50_ns, p99_ns) = percentiles(timings);
        Ok(Sample { value: ops_per_s, ops_per_s: Some(ops_per_s), p50_ns, p99_ns })
    }

    /// Runs a request stream. Reads go through a long-lived reader only when the
    /// stream writes nothing (`fresh_reads` false), so that they always see the latest
    /// writes otherwise.
    fn stream(&self, store: &dyn Store, ops: &[Op], fresh_used: &mut usize, fresh_reads: bool) -> Result<Sample> {
        let keys = &self.data.keys;
        let fresh = &self.data.fresh;
        let size = self.data.value_size;
        let first_insert = *fresh_used;
        let mut value = vec![0u8; size];
        let mut reader = if fresh_reads { None } else { Some(store.reader()?) };
        // For streams with scans: every key the store holds, so that each scan is
        // checked for its exact keys (built before timing; inserts keep it current).
        let mut present: Option<std::collections::BTreeSet<i64>> = ops
            .iter()
            .any(|op| matches!(op, Op::Scan(..)))
            .then(|| self.data.sorted.iter().copied().chain(fresh[..*fresh_used].iter().copied()).collect());
        let mut read = |key: i64| -> Result<()> {
            let check = &mut |bytes: &[u8]| check_value(key, bytes, size);
            let found = match &mut reader {
                Some(reader) => reader.get(key, check)?,
                None => store.get(key, check)?,
            };
            ensure!(found, "key {key} is missing");
            Ok(())
        };
        time_ops(ops.len(), |index| match ops[index] {
            Op::Read(at) => read(keys[at as usize]),
            Op::ReadLatest(back) => {
                let inserted = *fresh_used - first_insert;
                match inserted.checked_sub(1 + back as usize) {
                    Some(at) => read(fresh[first_insert + at]),
                    None => read(keys[keys.len() - 1 - (back as usize - inserted).min(keys.len() - 1)]),
                }
            }
            Op::Update(at) => {
                let key = keys[at as usize];
                fill_value(&mut value, key, 1 + index as u32);
                store.put(key, &value)
            }
            Op::Insert => {
                let Some(&key) = fresh.get(*fresh_used) else { bail!("out of fresh keys") };
                *fresh_used += 1;
                if let Some(present) = &mut present {
                    present.insert(key);
                }
                fill_value(&mut value, key, 0);
                store.put(key, &value)
            }
            Op::Scan(at, length) => {
                let start = keys[at as usize];
                let mut last = None;
                let visited = store.scan(start, usize::from(length), &mut |key, bytes| {
                    ensure!(
                        key >= start && last.is_none_or(|last| key > last),
                        "scan from {start}: key {key} out of order"
                    );
                    last = Some(key);
                    check_value(key, bytes, size)
                })?;
                ensure!(visited >= 1, "scan from existing key {start} returned nothing");
                Ok(())
            }
            Op::ReadModifyWrite(at) => {
                let key = keys[at as usize];
                read(key)?;
                fill_value(&mut value, key, 1 + index as u32);
                store.put(key, &value)
            }
        })
    }

    fn space_after_load(
        &self,
        engine: &dyn EngineKind,
        store: &dyn Store,
        dir: &Path,
        written_before: Option<u64>,
        results: &mut Results,
    ) -> Result<()> {
        let name = engine.name();
        if let Some(why) = engine.lacks(Feature::Persistence) {
            for variant in [AFTER_LOAD, AFTER_OVERWRITES, WRITE_AMP_LOAD, WRITE_AMP_OVERWRITES] {
                results.not_available("space", variant, name, Unit::Ratio, Class::Buffered, why);
            }
            return Ok(());
        }
        store.flush()?;
        let raw = self.raw_bytes(1);
        let bytes = sys::disk_usage(dir)? as f64;
        results.record("space", AFTER_LOAD, name, Unit::Ratio, Class::Buffered, ratio(bytes / raw));
        if let (Some(before), Some(after)) = (written_before, sys::disk_write_bytes()) {
            let amplification = after.saturating_sub(before) as f64 / raw;
            results.record("space", WRITE_AMP_LOAD, name, Unit::Ratio, Class::Buffered, ratio(amplification));
        }
        Ok(())
    }

    fn space_after_overwrites(
        &self,
        engine: &dyn EngineKind,
        store: &mut dyn Store,
        dir: &Path,
        inserted: usize,
        results: &mut Results,
    ) -> Result<()> {
        let name = engine.name();
        if engine.lacks(Feature::Persistence).is_some() {
            return Ok(());
        }
        (self.step)("space: overwrites");
        let keys = &self.data.keys;
        let size = self.data.value_size;
        let mut value = vec![0u8; size];
        let written_before = sys::disk_write_bytes();
        for pass in 1..=self.plan.overwrite_passes {
            for &key in keys {
                fill_value(&mut value, key, 1000 + pass);
                store.put(key, &value)?;
            }
        }
        if engine.lacks(Feature::Compaction).is_none() {
            (self.step)("space: compaction");
            store.compact().with_context(|| format!("{name}: compaction"))?;
        }
        store.flush()?;
        // The live data: the loaded keys plus those the mixed and YCSB workloads inserted.
        let raw = ((self.data.keys.len() + inserted) * (8 + size)) as f64;
        let bytes = sys::disk_usage(dir)? as f64;
        results.record("space", AFTER_OVERWRITES, name, Unit::Ratio, Class::Buffered, ratio(bytes / raw));
        if let (Some(before), Some(after)) = (written_before, sys::disk_write_bytes()) {
            let user = self.raw_bytes(self.plan.overwrite_passes as usize);
            let amplification = after.saturating_sub(before) as f64 / user;
            results.record("space", WRITE_AMP_OVERWRITES, name, Unit::Ratio, Class::Buffered, ratio(amplification));
        }
        // Every key still reads its last value.
        let mut random = SplitMix64::new(0xC4EC);
        for _ in 0..keys.len().min(10_000) {
            let key = keys[random.below(keys.len() as u64) as usize];
            expect_present(store, key, size).with_context(|| format!("{name}: read after overwrites"))?;
        }
        Ok(())
    }

    /// Bytes of user data in `passes` writes of every key: key (8 bytes) plus value.
    fn raw_bytes(&self, passes: usize) -> f64 {
        (passes * self.data.keys.len() * (8 + self.data.value_size)) as f64
    }

    fn sync_writes(&self, engine: &dyn EngineKind, repeat: usize, results: &mut Results) -> Result<()> {
        let name = engine.name();
        let dir = self.dir(engine, repeat, "sync");
        let store = engine.open(&dir, Class::Sync)?;
        let size = self.data.value_size;
        let mut random = SplitMix64::new(0x5EC0 + repeat as u64);
        for &threads in &self.plan.sync_threads {
            let threads = threads.max(1);
            let per_thread = (self.plan.sync_writes / threads).max(1);
            let keys: Vec<i64> = (0..per_thread * threads).map(|_| random.next_u64() as i64).collect();
            let barrier = Barrier::new(threads + 1);
            let store = &*store;
            let (elapsed, timings) = std::thread::scope(|scope| -> Result<(f64, Vec<u64>)> {
                let workers: Vec<_> = keys
                    .chunks(per_thread)
                    .map(|chunk| {
                        let barrier = &barrier;
                        scope.spawn(move || -> Result<Vec<u64>> {
                            let mut value = vec![0u8; size];
                            barrier.wait();
                            let timed = time_run(chunk.len(), |index| {
                                fill_value(&mut value, chunk[index], 0);
                                store.put(chunk[index], &value)
                            })?;
                            Ok(timed.timings)
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                let mut timings = Vec::new();
                for worker in workers {
                    match worker.join() {
                        Ok(result) => timings.extend(result?),
                        Err(_) => bail!("a writer thread panicked"),
                    }
                }
                Ok((start.elapsed().as_secs_f64(), timings))
            })?;
            for &key in &keys {
                expect_present(store, key, size).context("reading back a durable write")?;
            }
            let writes_per_s = keys.len() as f64 / elapsed;
            let (p50_ns, p99_ns) = percentiles(timings);
            let sample = Sample { value: writes_per_s, ops_per_s: Some(writes_per_s), p50_ns, p99_ns };
            results.record("sync-write", &threads_label(threads), name, Unit::OpsPerSec, Class::Sync, sample);
        }
        drop(store);
        remove_dir(&dir)
    }
}

fn ratio(value: f64) -> Sample {
    Sample { value, ..Sample::default() }
}

/// The variant label of a thread count.
pub fn threads_label(threads: usize) -> String {
    if threads == 1 {
        "1 thread".into()
    } else {
        format!("{threads} threads")
    }
}

/// `read-threads` variant: one reader while one writer overwrites at full speed.
pub const WITH_WRITER: &str = "1 reader + 1 writer";
/// `scan` variant: scans after a full compaction.
pub const AFTER_COMPACTION: &str = "after compaction";
/// `space` variant: on-disk bytes / raw bytes after load.
pub const AFTER_LOAD: &str = "disk after load";
/// `space` variant: on-disk bytes / raw bytes after overwrites and compaction.
pub const AFTER_OVERWRITES: &str = "disk after overwrites + compaction";
/// `space` variant: bytes written to disk / user bytes during load.
pub const WRITE_AMP_LOAD: &str = "write amplification, load";
/// `space` variant: bytes written to disk / user bytes during overwrites and compaction.
pub const WRITE_AMP_OVERWRITES: &str = "write amplification, overwrites + compaction";

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines;

    fn plan() -> Plan {
        Plan {
            workloads: Workload::ALL.to_vec(),
            read_threads: vec![1, 2],
            sync_threads: vec![1, 2],
            sync_writes: 20,
            scans: 20,
            scan_length: 10,
            ycsb_ops: 300,
            overwrite_passes: 1,
            txn_threads: vec![1, 2],
            txn_commits: 200,
            txn_keys: 100,
        }
    }

    /// Every engine runs every workload on a small store, and a wrong value planted
    /// under a key makes the get workload fail for every engine.
    #[test]
    fn every_engine_runs_and_wrong_values_abort() {
        let data = DataSet::new(alexstorage_keygen::KeyPattern::Uniform, 300, 32, 1).unwrap();
        let plan = plan();
        let streams = Streams::new(&data, &plan);
        let scratch = tempfile::tempdir().unwrap();
        let step = |_: &str| {};
        let bench = Bench { data: &data, streams: &streams, plan: &plan, scratch: scratch.path(), step: &step };
        let mut results = Results::default();
        for engine in engines::all() {
            bench.run(engine, 0, &mut results).unwrap();
            let get = results.median("get", "", engine.name()).unwrap();
            assert!(get.value > 0.0 && get.p99_ns.is_some(), "{}", engine.name());

            let dir = scratch.path().join(format!("{}-wrong", engine.name()));
            let store = engine.open(&dir, Class::Buffered).unwrap();
            let mut value = vec![0u8; data.value_size];
            for &key in &data.keys {
                fill_value(&mut value, key, 0);
                store.put(key, &value).unwrap();
            }
            assert!(bench.gets(&*store).is_ok());
            // The value of another key under this key.
            let (victim, other) = (data.keys[17], data.keys[18]);
            fill_value(&mut value, other, 0);
            store.put(victim, &value).unwrap();
            let error = bench.gets(&*store).unwrap_err().to_string();
            assert!(error.contains(&victim.to_string()), "{}: {error}", engine.name());
            for batch in [1, 16] {
                let error = format!("{:#}", bench.multi_gets(&*store, batch).unwrap_err());
                assert!(error.contains(&victim.to_string()), "{} multi-get: {error}", engine.name());
            }
        }
        let measured = |variant: &str| {
            results
                .rows
                .iter()
                .filter(|row| row.workload == "scan" && row.variant == variant && !row.samples.is_empty())
                .count()
        };
        let scanning = engines::all().iter().filter(|engine| engine.lacks(Feature::Scan).is_none()).count();
        assert!(scanning >= 6);
        assert_eq!(measured(""), scanning, "every engine with ordered scans measured them");
        // Variants run only their workloads: load, get, scan and space, nothing else.
        for variant in engines::all().iter().filter(|engine| engine.variant_of().is_some()) {
            let ran: std::collections::BTreeSet<&str> = results
                .rows
                .iter()
                .filter(|row| row.engine == variant.name() && !row.samples.is_empty())
                .map(|row| row.workload.as_str())
                .collect();
            assert_eq!(ran, ["get", "load", "scan", "space"].into_iter().collect(), "{}", variant.name());
        }
        let compacting = engines::all()
            .iter()
            .filter(|engine| engine.lacks(Feature::Compaction).is_none() && engine.lacks(Feature::Scan).is_none())
            .count();
        assert!(compacting >= 2);
        assert_eq!(measured(AFTER_COMPACTION), compacting, "every engine that compacts scanned again after it");
    }
}
