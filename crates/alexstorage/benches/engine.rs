//! The storage engine benchmark (until the comparative benchmark exists): `Db` against
//! in-memory `HashMap<i64, Vec<u8>>` gets and `BTreeMap<i64, Vec<u8>>` inserts, plus
//! reopen time and index heap bytes per key, in one run.
//!
//! ```text
//! cargo bench -p alexstorage --bench engine -- [--keys 1000000] [--value-size 100] [--repeats 3] [--markdown FILE]
//! ```
//!
//! Every get checks its value; a wrong or missing value aborts the run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::Instant;

use alexstorage::{Db, Durability, Options};
use alexstorage_keygen::{generate, KeyPattern, SplitMix64};

fn value_of(key: i64, size: usize) -> Vec<u8> {
    (0..size).map(|index| byte_of(key, index)).collect()
}

#[inline]
fn byte_of(key: i64, index: usize) -> u8 {
    let seed = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (seed >> ((index % 8) * 8)) as u8 ^ index as u8
}

/// Checks a value without allocating: its length, first and last bytes.
#[inline]
fn check(key: i64, value: &[u8], size: usize) {
    let ok = value.len() == size
        && value.first().is_none_or(|&byte| byte == byte_of(key, 0))
        && value.last().is_none_or(|&byte| byte == byte_of(key, size - 1));
    assert!(ok, "wrong value for key {key}");
}

/// Batch sizes of the `multi_get` rows.
const MULTI_GET_BATCHES: [usize; 4] = [8, 16, 64, 256];

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Read-modify-write transactions from `threads` threads (each its own part of
/// `probe`, `transactions` in all), retried until they commit: commits per second.
fn read_modify_write_threads(db: &Db, probe: &[i64], transactions: usize, threads: usize) -> f64 {
    let per_thread = transactions / threads;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for part in probe.chunks(per_thread * 2).take(threads) {
            scope.spawn(move || {
                for pair in part.chunks(2) {
                    db.transact(|tx| {
                        for &key in pair {
                            let value = tx.get(key)?.expect("missing key").to_vec();
                            tx.put(key, value);
                        }
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    (per_thread * threads) as f64 / start.elapsed().as_secs_f64()
}

/// What the column-family run measured.
struct Families {
    count: usize,
    get_ns: f64,
    reopen_ms: f64,
}

/// The keys spread over many column families (key `i` of the list into family
/// `i % count`): gets through the families' handles in random order, and a reopen from
/// the checkpoint a clean close writes.
fn families(key_list: &[i64], values: &[Vec<u8>], size: usize) -> Families {
    let count = key_list.len().clamp(1, 1000);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..count).map(|index| db.column_family(&format!("family-{index}")).unwrap()).collect();
    for (index, (&key, value)) in key_list.iter().zip(values).enumerate() {
        handles[index % count].put(key, value).unwrap();
    }
    let mut order: Vec<usize> = (0..key_list.len()).collect();
    SplitMix64::new(11).shuffle(&mut order);
    let start = Instant::now();
    for &index in &order {
        let key = key_list[index];
        let value = handles[index % count].get(key).unwrap().unwrap();
        check(key, &value, size);
    }
    let get_ns = start.elapsed().as_nanos() as f64 / key_list.len() as f64;
    drop(handles);
    drop(db);
    let start = Instant::now();
    let db = Db::open(dir.path()).unwrap();
    let last = db.column_family(&format!("family-{}", count - 1)).unwrap();
    assert!(!last.is_empty() || key_list.len() < count);
    let reopen_ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(db.stats().opened_from_checkpoint);
    assert_eq!(db.column_families().len(), count);
    Families { count, get_ns, reopen_ms }
}

/// One run of the seal-stall measure (times in ns).
struct SealRun {
    mean: f64,
    p99: f64,
    /// Puts during which the log rolled over to a new segment (sealing the old one).
    seals: usize,
    seal_mean: f64,
    seal_max: f64,
}

/// 3M puts of `size` bytes into 64 MiB segments with `writeback_step(step)`.
fn seal_run(step: u64, size: usize) -> SealRun {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new()
        .segment_size(64 << 20)
        .background_compaction(false)
        .writeback_step(step)
        .open(dir.path())
        .unwrap();
    let count = 3_000_000u64;
    let value = vec![7u8; size];
    let mut times = Vec::with_capacity(count as usize);
    let mut seal_times = Vec::new();
    let mut segments = db.stats().segments;
    let start = Instant::now();
    for index in 0..count {
        let key = (index as i64).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as i64);
        let put = Instant::now();
        db.put(key, &value).unwrap();
        let took = put.elapsed().as_nanos() as f64;
        times.push(took);
        // Only a slow put may have rolled over (a roll-over syncs): look then.
        if took > 200_000.0 {
            let now = db.stats().segments;
            if now != segments {
                seal_times.push(took);
                segments = now;
            }
        }
    }
    let mean = start.elapsed().as_nanos() as f64 / count as f64;
    times.sort_by(f64::total_cmp);
    let seals = seal_times.len();
    SealRun {
        mean,
        p99: times[times.len() * 99 / 100],
        seals,
        seal_mean: seal_times.iter().sum::<f64>() / seals.max(1) as f64,
        seal_max: seal_times.iter().copied().fold(0.0, f64::max),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1)).cloned();
    let keys: usize = arg("--keys").and_then(|value| value.replace('_', "").parse().ok()).unwrap_or(1_000_000);
    let size: usize = arg("--value-size").and_then(|value| value.parse().ok()).unwrap_or(100);
    let repeats: usize = arg("--repeats").and_then(|value| value.parse().ok()).unwrap_or(3).max(1);
    let markdown = arg("--markdown");

    let key_list = generate(KeyPattern::Uniform, keys, 42);
    let mut probe = key_list.clone();
    SplitMix64::new(7).shuffle(&mut probe);
    let values: Vec<Vec<u8>> = key_list.iter().map(|&key| value_of(key, size)).collect();

    let mut put_ns = Vec::new();
    let mut btree_ns = Vec::new();
    let mut get_ns = Vec::new();
    let mut multi_ns: Vec<Vec<f64>> = vec![Vec::new(); MULTI_GET_BATCHES.len()];
    let mut interleaved_get_ns = Vec::new();
    let mut hash_ns = Vec::new();
    let mut tx_get_ns = Vec::new();
    let mut rmw_rate = Vec::new();
    let mut rmw4_rate = Vec::new();
    let mut scan_ns = Vec::new();
    let mut compact_ms = Vec::new();
    let mut compacted_scan_ns = Vec::new();
    let mut backup_ms = Vec::new();
    let mut cp_ms = Vec::new();
    let mut backup_stats = String::new();
    let mut reopen_ms = Vec::new();
    let mut crash_ms = Vec::new();
    let mut replay_ms = Vec::new();
    let mut index_bytes = 0usize;
    let mut log_bytes = 0u64;
    for repeat in 0..repeats {
        eprintln!("engine bench: {keys} keys x {size} B, repeat {}/{repeats}", repeat + 1);
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let start = Instant::now();
        for (key, value) in key_list.iter().zip(&values) {
            db.put(*key, value).unwrap();
        }
        put_ns.push(start.elapsed().as_nanos() as f64 / keys as f64);

        let mut btree = BTreeMap::new();
        let start = Instant::now();
        for (key, value) in key_list.iter().zip(&values) {
            btree.insert(*key, value.clone());
        }
        btree_ns.push(start.elapsed().as_nanos() as f64 / keys as f64);
        drop(btree);

        let start = Instant::now();
        for &key in &probe {
            let value = db.get(black_box(key)).unwrap().expect("missing key");
            check(key, &value, size);
        }
        get_ns.push(start.elapsed().as_nanos() as f64 / keys as f64);

        // The same keys through multi_get in batches of each size, against gets one at
        // a time: interleaved over 16 slices of the keys, the order rotating from slice
        // to slice, each method's figure the median of its slices. A single stall of
        // the machine (one of about 170 ms showed up once in every run here, in
        // whichever method ran then) then moves no figure.
        let mut per_slice: Vec<Vec<f64>> = vec![Vec::new(); 1 + MULTI_GET_BATCHES.len()];
        for (index, slice) in probe.chunks(probe.len().div_ceil(16).max(1)).enumerate() {
            let methods = per_slice.len();
            for turn in 0..methods {
                let method = (index + turn) % methods;
                let start = Instant::now();
                match method.checked_sub(1).map(|batch| MULTI_GET_BATCHES[batch]) {
                    None => {
                        for &key in slice {
                            let value = db.get(black_box(key)).unwrap().expect("missing key");
                            check(key, &value, size);
                        }
                    }
                    Some(batch) => {
                        for chunk in slice.chunks(batch) {
                            let values = db.multi_get(black_box(chunk)).unwrap();
                            for (&key, value) in chunk.iter().zip(&values) {
                                check(key, value.as_deref().expect("missing key"), size);
                            }
                        }
                    }
                }
                if let Some(times) = per_slice.get_mut(method) {
                    times.push(start.elapsed().as_nanos() as f64 / slice.len() as f64);
                }
            }
        }
        let mut per_slice = per_slice.into_iter().map(median);
        interleaved_get_ns.extend(per_slice.next());
        for (runs, slices) in multi_ns.iter_mut().zip(per_slice) {
            runs.push(slices);
        }

        // The same gets inside transactions of 16 reads each (begin included).
        let start = Instant::now();
        for chunk in probe.chunks(16) {
            let tx = db.transaction();
            for &key in chunk {
                let value = tx.get(black_box(key)).unwrap().expect("missing key");
                check(key, &value, size);
            }
            tx.rollback();
        }
        tx_get_ns.push(start.elapsed().as_nanos() as f64 / keys as f64);

        // Read-modify-write transactions: read 2 keys, write both back, commit
        // (Buffered). The bytes written are the ones read: the checks below expect them.
        let transactions = 20_000.min(keys / 2);
        let start = Instant::now();
        for pair in probe.chunks(2).take(transactions) {
            let mut tx = db.transaction();
            for &key in pair {
                let value = tx.get(key).unwrap().expect("missing key").to_vec();
                tx.put(key, value);
            }
            tx.commit().unwrap();
        }
        rmw_rate.push(transactions as f64 / start.elapsed().as_secs_f64());
        rmw4_rate.push(read_modify_write_threads(&db, &probe, transactions, 4));

        let map: HashMap<i64, Vec<u8>> = key_list.iter().copied().zip(values.iter().cloned()).collect();
        let start = Instant::now();
        for &key in &probe {
            let value = map.get(&black_box(key)).expect("missing key");
            check(key, value, size);
        }
        hash_ns.push(start.elapsed().as_nanos() as f64 / keys as f64);
        drop(map);

        // 10,000 scans of 100 keys from random start keys: as loaded (records in
        // insertion order), then after a compaction (records in key order).
        let starts: Vec<i64> = probe.iter().take(10_000).copied().collect();
        let scan = |db: &Db| {
            let start = Instant::now();
            let mut returned = 0usize;
            for &from in &starts {
                for entry in db.range(from..).take(100) {
                    let (key, value) = entry.unwrap();
                    check(key, &value, size);
                    returned += 1;
                }
            }
            start.elapsed().as_nanos() as f64 / returned as f64
        };
        scan_ns.push(scan(&db));
        let start = Instant::now();
        db.compact().unwrap();
        compact_ms.push(start.elapsed().as_secs_f64() * 1e3);
        compacted_scan_ns.push(scan(&db));

        // An online backup of the compacted store against a plain `cp -r` of it.
        let backups = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let backup = db.backup_with_stats(&backups.path().join("backup")).unwrap();
        backup_ms.push(start.elapsed().as_secs_f64() * 1e3);
        backup_stats = format!("{} segments linked, {} copied", backup.segments_linked, backup.segments_copied);
        let start = Instant::now();
        let copied = std::process::Command::new("cp").arg("-r").arg(dir.path()).arg(backups.path().join("cp")).status();
        assert!(copied.unwrap().success(), "cp -r failed");
        cp_ms.push(start.elapsed().as_secs_f64() * 1e3);
        drop(backups);

        let stats = db.stats();
        index_bytes = stats.index_bytes;
        log_bytes = stats.log_bytes;
        // A crash (no close, so no checkpoint at close) after a sixth of the keys
        // were written again since the compaction's checkpoint: the open loads that
        // checkpoint and replays the log after it.
        for &key in &key_list[..keys / 6] {
            db.put(key, value_of(key, size)).unwrap();
        }
        db.simulate_crash();
        let start = Instant::now();
        let db = Db::open(dir.path()).unwrap();
        assert!(db.get(key_list[0]).unwrap().is_some());
        crash_ms.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(db.len(), keys);
        assert!(db.stats().replayed_keys >= keys / 6, "{:?}", db.stats());
        drop(db); // clean close: syncs and writes the index checkpoint (it replayed)

        let start = Instant::now();
        let db = Db::open(dir.path()).unwrap();
        assert!(db.get(key_list[0]).unwrap().is_some());
        reopen_ms.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(db.stats().opened_from_checkpoint);
        drop(db);

        std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
        let start = Instant::now();
        let db = Db::open(dir.path()).unwrap();
        assert!(db.get(key_list[0]).unwrap().is_some());
        replay_ms.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(db.len(), keys);
    }
    // Durable writes: Durability::Sync, 1 thread, then 8 threads sharing syncs.
    let sync_rates: Vec<(usize, f64, u64)> = [1usize, 8]
        .iter()
        .map(|&threads| {
            let dir = tempfile::tempdir().unwrap();
            let db = Options::new().durability(Durability::Sync).open(dir.path()).unwrap();
            let per_thread = 2000 / threads;
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|thread| {
                    let db = db.clone();
                    let value = vec![7u8; size];
                    std::thread::spawn(move || {
                        for index in 0..per_thread {
                            db.put((thread * per_thread + index) as i64, &value).unwrap();
                        }
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap();
            }
            let rate = (threads * per_thread) as f64 / start.elapsed().as_secs_f64();
            (threads, rate, db.stats().syncs)
        })
        .collect();
    // Seal stalls: 3M puts into 64 MiB segments (a roll-over, and its seal's sync,
    // every ~500,000 puts of 100 bytes), without and with early writeback, by turns
    // (off, on, off, on), each setting's figures the median of its two runs: per put the
    // mean and p99, and the puts that rolled over (the segment count moved), counted
    // with the mean and the longest of them.
    let seal_runs: Vec<(u64, SealRun)> =
        [0u64, 8 << 20, 0, 8 << 20].iter().map(|&step| (step, seal_run(step, size))).collect();
    let seal_rows: Vec<(u64, SealRun)> = [0u64, 8 << 20]
        .iter()
        .map(|&step| {
            let runs: Vec<&SealRun> = seal_runs.iter().filter(|(of, _)| *of == step).map(|(_, run)| run).collect();
            let figure = |pick: fn(&SealRun) -> f64| median(runs.iter().map(|run| pick(run)).collect());
            let row = SealRun {
                mean: figure(|run| run.mean),
                p99: figure(|run| run.p99),
                seals: runs.iter().map(|run| run.seals).max().unwrap_or(0),
                seal_mean: figure(|run| run.seal_mean),
                seal_max: figure(|run| run.seal_max),
            };
            (step, row)
        })
        .collect();
    let families = families(&key_list, &values, size);
    let (put, btree, get, hash) = (median(put_ns), median(btree_ns), median(get_ns), median(hash_ns));
    let (tx_get, rmw, rmw4) = (median(tx_get_ns), median(rmw_rate), median(rmw4_rate));
    let (reopen, crash, replay) = (median(reopen_ms), median(crash_ms), median(replay_ms));
    let (scan, compact, compacted_scan) = (median(scan_ns), median(compact_ms), median(compacted_scan_ns));
    let (backup, cp) = (median(backup_ms), median(cp_ms));
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let raw = keys as f64 * (8 + size) as f64;
    let table = format!(
        "| measure ({keys} keys x {size} B, uniform keys, Buffered) | AlexStorage | reference | ratio | goal |\n\
         |---|---|---|---|---|\n\
         | get, ns/op | {get:.0} | HashMap<i64, Vec<u8>>: {hash:.0} | {:.2}x | within 2x: {} |\n\
         | get in a transaction (16 a transaction, begin included), ns/op | {tx_get:.0} | get: {get:.0} | {:.2}x | within 1.5x: {} |\n\
         | read-modify-write transactions (read 2, write 2, commit), 1 thread, per s | {rmw:.0} | | | |\n\
         | the same, 4 threads (retried on conflict), commits per s | {rmw4:.0} | 1 thread: {rmw:.0} | {:.2}x | |\n\
         | put, ns/op | {put:.0} | BTreeMap<i64, Vec<u8>> insert: {btree:.0} | {:.2}x | within 3x: {} |\n\
         | scan of 100 keys, ns per key, as loaded | {scan:.0} | | | |\n\
         | compact(), ms | {compact:.0} | | | |\n\
         | scan of 100 keys, ns per key, after compact() | {compacted_scan:.0} | | | |\n\
         | backup_to() of the compacted store while open ({backup_stats}), ms | {backup:.1} | cp -r of its directory: {cp:.1} | {:.3}x | |\n\
         | reopen after clean close (checkpoint), ms | {reopen:.0} | | | < 1000: {} |\n\
         | reopen after a crash, a sixth of the keys written since the last checkpoint, ms | {crash:.0} | | | |\n\
         | reopen replaying the whole log, ms | {replay:.0} | | | |\n\
         | index heap, bytes per key | {:.1} | | | |\n\
         | log bytes / raw bytes (key + value) | {:.3} | | | |\n\
         | Sync puts/s, 1 thread ({} syncs for 2000 puts) | {:.0} | | | |\n\
         | Sync puts/s, 8 threads ({} syncs for 2000 puts) | {:.0} | | {:.2}x the 1-thread rate | |\n\
         | the same keys over {} column families: get through a handle, ns/op | {:.0} | get: {get:.0} | {:.2}x | |\n\
         | reopen with {} column families (checkpoint), ms | {:.0} | one family: {reopen:.0} | {:.2}x | |\n",
        get / hash,
        verdict(get <= 2.0 * hash),
        tx_get / get,
        verdict(tx_get <= 1.5 * get),
        rmw4 / rmw,
        put / btree,
        verdict(put <= 3.0 * btree),
        backup / cp,
        verdict(reopen < 1000.0),
        index_bytes as f64 / keys as f64,
        log_bytes as f64 / raw,
        sync_rates[0].2,
        sync_rates[0].1,
        sync_rates[1].2,
        sync_rates[1].1,
        sync_rates[1].1 / sync_rates[0].1,
        families.count,
        families.get_ns,
        families.get_ns / get,
        families.count,
        families.reopen_ms,
        families.reopen_ms / reopen,
    );
    let mut table = table;
    let single = median(interleaved_get_ns);
    for (batch, runs) in MULTI_GET_BATCHES.iter().zip(multi_ns) {
        let multi = median(runs);
        table.push_str(&format!(
            "| multi_get in batches of {batch}, ns per key | {multi:.0} | get, interleaved with it: {single:.0} | {:.2}x faster than get; HashMap get / this: {:.2} | batch 64: >= 3x get: {}; faster than HashMap: {} |\n",
            single / multi,
            hash / multi,
            if *batch == 64 { verdict(single >= 3.0 * multi) } else { "" },
            if *batch == 64 { verdict(hash >= multi) } else { "" },
        ));
    }
    for (step, run) in &seal_rows {
        table.push_str(&format!(
            "| 3M puts into 64 MiB segments, writeback_step {}: ns/put (p99) | {:.0} ({:.0}) | puts that sealed a segment: {}, mean {:.1} ms, longest {:.1} ms | | |\n",
            if *step == 0 { "0 (off)".to_owned() } else { format!("{} MiB", step >> 20) },
            run.mean,
            run.p99,
            run.seals,
            run.seal_mean / 1e6,
            run.seal_max / 1e6,
        ));
    }
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(path, &table).unwrap();
    }
}
