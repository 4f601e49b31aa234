//! I/O faults inside the background threads: the periodic syncer of
//! `Durability::Periodic`, the compactor, and the checkpointer. A writer fills a store
//! of small segments (so that roll-overs, checkpoints and compactions run all along)
//! while a fault is armed on the `n`-th I/O operation in the store's directory (every
//! `n` of the first few, then `n` growing by a quarter each time, to past the last),
//! counting operations of any kind and then syncs only; then with faults aimed at each
//! background thread in turn, the writer going on until the fault fires there (so that
//! every thread is hit however the threads are scheduled). Wherever it
//! fires, the error must reach a caller or leave the store consistent: after the
//! process dies, every acknowledged write is there (after a power cut of the simulated
//! disk, every write a `flush()` acknowledged), a write that failed with an I/O error
//! is there whole or not at all, one a poisoned store refused is not there, a flush
//! after the periodic syncer's failed sync fails, and the reopened store works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alexstorage::testing::disk::watch;
use alexstorage::testing::faults::{arm, disarm_in, fired_in, fired_on_thread_in, Fault, Op, Plan};
use alexstorage::{Durability, Error, Options};

const WRITES: usize = 1_000;
/// How far a run aimed at one thread writes waiting for its fault to fire.
const MAX_WRITES: usize = 50_000;

fn options() -> Options {
    Options::new()
        .durability(Durability::Periodic(Duration::from_millis(1)))
        .segment_size(16 << 10)
        .compaction_threshold(0.2)
}

fn value(write: usize) -> Vec<u8> {
    vec![write as u8; 40 + write % 200]
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Acknowledged,
    /// Failed with an I/O error: there whole after recovery, or not at all.
    Failed,
    /// Refused by a store poisoned by an earlier failure: never there.
    Refused,
}

/// What one run left.
struct Run {
    /// Every write: key, value, how it ended.
    writes: Vec<(i64, Vec<u8>, Status)>,
    /// How many writes came before the last `flush()` that succeeded.
    durable: usize,
    /// The fault: the operation, its file, and the thread it fired on.
    fired: Option<(Op, PathBuf, String)>,
    /// Whether the `flush()` after the writes succeeded.
    final_flush: bool,
}

/// Writes [`WRITES`] values with `plan` armed (and, if `until_fired`, goes on until it
/// fires, to at most [`MAX_WRITES`]), flushing after every hundred, then crashes.
fn run(dir: &Path, plan: Plan, until_fired: bool) -> Run {
    let db = options().open(dir).unwrap();
    arm(plan.in_dir(dir));
    let mut writes = Vec::with_capacity(WRITES);
    let mut durable = 0;
    for write in 0..MAX_WRITES {
        if write >= WRITES && (!until_fired || fired_in(Some(dir)).is_some()) {
            break;
        }
        let key = (write * 7 % 97) as i64;
        let value = value(write);
        let status = match db.put(key, &value) {
            Ok(()) => Status::Acknowledged,
            Err(Error::Io(_)) => Status::Failed,
            Err(Error::Poisoned(_)) => Status::Refused,
            Err(error) => panic!("write {write} failed with {error}, not an I/O error"),
        };
        writes.push((key, value, status));
        if write % 100 == 99 {
            if db.flush().is_ok() {
                durable = writes.len();
            }
            // Let the syncer and the compactor run between bursts.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let final_flush = db.flush().is_ok();
    let fired = fired_in(Some(dir)).map(|(op, path)| (op, path, fired_on_thread_in(Some(dir)).unwrap_or_default()));
    disarm_in(Some(dir));
    db.simulate_crash();
    Run { writes, durable, fired, final_flush }
}

/// The values key `key` may have after recovery, if the writes before `durable` are
/// all sure to be there (and the later ones may be): the last acknowledged one before
/// `durable` (or none), or any later one that was acknowledged or failed (not refused).
fn allowed(run: &Run, key: i64, durable: usize) -> Vec<Option<Vec<u8>>> {
    let base = run.writes[..durable]
        .iter()
        .rposition(|(written, _, status)| *written == key && *status == Status::Acknowledged);
    let mut allowed = vec![base.map(|at| run.writes[at].1.clone())];
    for (written, value, status) in &run.writes[base.map_or(0, |at| at + 1)..] {
        if *written == key && *status != Status::Refused {
            allowed.push(Some(value.clone()));
        }
    }
    allowed
}

/// Reopens and checks every key against [`allowed`] for a store whose writes before
/// `durable` must all be there; then checks that the store works.
fn check(dir: &Path, run: &Run, durable: usize, context: &str) {
    let db = options().open(dir).unwrap_or_else(|error| panic!("{context}: reopen failed: {error}"));
    let mut found: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for entry in db.iter() {
        let (key, value) = entry.unwrap_or_else(|error| panic!("{context}: reading failed: {error}"));
        found.insert(key, value.to_vec());
    }
    let keys: BTreeSet<i64> = run.writes.iter().map(|(key, _, _)| *key).chain(found.keys().copied()).collect();
    for key in keys {
        let value = found.get(&key).cloned();
        assert!(
            allowed(run, key, durable).contains(&value),
            "{context}: key {key} reads as {:?}, which no write allowed there",
            value.map(|value| (value.len(), value.first().copied()))
        );
    }
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
    db.put(-1, b"after").unwrap();
    db.flush().unwrap();
    drop(db);
    let db = options().open(dir).unwrap();
    assert_eq!(db.get(-1).unwrap().as_deref(), Some(&b"after"[..]), "{context}: a write after recovery is kept");
}

/// What the runs so far saw.
#[derive(Default)]
struct Tally {
    threads: BTreeSet<String>,
    fired: usize,
    refused: usize,
    cuts: usize,
    syncer_failures: usize,
}

/// One run of `plan` in a new store, ended by a process crash or (if `power_cut`) a
/// power cut, then checked; returns the thread the fault fired on, if it did.
fn one(plan: Plan, power_cut: bool, until_fired: bool, tally: &mut Tally) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let disk = watch(dir.path()).unwrap();
    let context = format!("{plan:?}, power cut {power_cut}");
    let outcome = run(dir.path(), plan, until_fired);
    let context = format!("{context} ({:?})", outcome.fired);
    if let Some((Op::Sync, path, thread)) = &outcome.fired {
        if thread == "alexstorage-sync" && path.extension().is_some_and(|ext| ext == "seg") {
            // The periodic syncer's failure poisons the store: nothing after it may be
            // acknowledged as durable.
            assert!(!outcome.final_flush, "{context}: a flush succeeded after the syncer's sync failed");
            tally.syncer_failures += 1;
        }
    }
    let durable = if power_cut {
        // A power cut loses every unsynced page and directory entry: then only what a
        // `flush()` acknowledged is sure.
        disk.cut(&mut std::iter::once(0).chain(std::iter::repeat(1))).unwrap();
        tally.cuts += 1;
        if outcome.final_flush {
            outcome.writes.len()
        } else {
            outcome.durable
        }
    } else {
        // A process crash: every acknowledged write is still in the page cache.
        outcome.writes.len()
    };
    check(dir.path(), &outcome, durable, &context);
    drop(disk);
    let (_, _, thread) = outcome.fired?;
    tally.fired += 1;
    tally.refused += usize::from(outcome.writes.iter().any(|(_, _, status)| *status != Status::Acknowledged));
    tally.threads.insert(thread.clone());
    Some(thread)
}

/// Faults on the `n`-th operation of any thread, `n` swept from 0 to past the last.
#[test]
fn faults_in_background_work_lose_nothing_acknowledged() {
    let mut tally = Tally::default();
    for kinds in [Vec::new(), vec![Op::Sync]] {
        for fault in [Fault::Io, Fault::NoSpace] {
            let mut fail_at = 0;
            loop {
                let plan = Plan { ops: kinds.clone(), ..Plan::at(fail_at, fault) };
                if one(plan, fail_at % 2 == 1, false, &mut tally).is_none() {
                    break;
                }
                // Every one of the first operations, then steps growing by a quarter.
                fail_at += 1 + fail_at / 4;
            }
        }
    }
    println!(
        "{} faults fired ({} in the periodic syncer's segment syncs), {} runs refused writes after one, {} power \
         cuts, on threads {:?}",
        tally.fired, tally.syncer_failures, tally.refused, tally.cuts, tally.threads
    );
    // Which threads the sweep reaches depends on scheduling; the test below aims at each.
    assert!(tally.refused > 0, "no fault made a write fail");
}

/// Faults aimed at each background thread in turn, whatever the scheduling: the
/// writer goes on until the fault fires there.
#[test]
fn faults_aimed_at_each_background_thread_lose_nothing_acknowledged() {
    let mut tally = Tally::default();
    for thread in ["alexstorage-sync", "alexstorage-compaction", "alexstorage-checkpoint"] {
        for (run, (kinds, fault, fail_at)) in [
            (Vec::new(), Fault::Io, 0),
            (vec![Op::Sync], Fault::NoSpace, 0),
            (Vec::new(), Fault::NoSpace, 3),
            (vec![Op::Sync], Fault::Io, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let plan = Plan { ops: kinds, ..Plan::at(fail_at, fault) }.on_thread(thread);
            let fired = one(plan, run % 2 == 1, true, &mut tally);
            assert_eq!(fired.as_deref(), Some(thread), "a fault aimed at {thread} fired there");
        }
    }
    println!(
        "{} faults fired ({} in the periodic syncer's segment syncs), {} runs refused writes after one, {} power cuts",
        tally.fired, tally.syncer_failures, tally.refused, tally.cuts
    );
    assert!(tally.syncer_failures > 0, "no fault failed the syncer's segment sync");
    assert!(tally.refused > 0, "no fault made a write fail");
}
