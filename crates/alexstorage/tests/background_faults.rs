//! I/O faults inside the background threads: the periodic syncer of
//! `Durability::Periodic`, the compactor, and the checkpointer. A writer fills a store
//! of small segments (so that roll-overs, checkpoints and compactions run all along)
//! while a fault is armed on the `n`-th I/O operation in the store's directory (every
//! `n` of the first few, then `n` growing by a quarter each time, to past the last),
//! counting operations of any kind and then syncs only. Wherever it
//! fires, the error must reach a caller or leave the store consistent: every write
//! acknowledged before the process then dies is there after reopening, a write that
//! failed is there whole or not at all, and the reopened store works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use alexstorage::testing::faults::{arm, disarm_in, fired_in, fired_on_thread_in, Fault, Op, Plan};
use alexstorage::{Durability, Error, Options};

const WRITES: u64 = 1_000;

fn options() -> Options {
    Options::new()
        .durability(Durability::Periodic(Duration::from_millis(1)))
        .segment_size(16 << 10)
        .compaction_threshold(0.2)
}

fn value(write: u64) -> Vec<u8> {
    vec![write as u8; 40 + (write % 200) as usize]
}

/// What one run left: the writes acknowledged, the one that failed, and where the
/// fault fired.
struct Run {
    acknowledged: BTreeMap<i64, Vec<u8>>,
    /// Keys whose last write failed: the value before it, and the one it wrote.
    failed: BTreeMap<i64, (Option<Vec<u8>>, Vec<u8>)>,
    /// Writes refused.
    refused: usize,
    fired: Option<(Op, String)>,
}

fn run(dir: &Path, plan: Plan) -> Run {
    let db = options().open(dir).unwrap();
    arm(plan.in_dir(dir));
    let mut acknowledged = BTreeMap::new();
    let mut failed = BTreeMap::new();
    let mut refused = 0;
    for write in 0..WRITES {
        let key = (write * 7 % 97) as i64;
        let value = value(write);
        match db.put(key, &value) {
            Ok(()) => {
                failed.remove(&key);
                acknowledged.insert(key, value);
            }
            Err(Error::Io(_)) | Err(Error::Poisoned(_)) => {
                refused += 1;
                // A key that failed before and again: either failed write may be there.
                let before = acknowledged.get(&key).cloned();
                failed
                    .entry(key)
                    .and_modify(|entry: &mut (Option<Vec<u8>>, Vec<u8>)| entry.1 = value.clone())
                    .or_insert((before, value));
            }
            Err(error) => panic!("write {write} failed with {error}, not an I/O error"),
        }
        if write % 100 == 0 {
            // Let the syncer and the compactor run between bursts.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let fired = fired_in(Some(dir)).map(|(op, _)| (op, fired_on_thread_in(Some(dir)).unwrap_or_default()));
    disarm_in(Some(dir));
    db.simulate_crash();
    Run { acknowledged, failed, refused, fired }
}

fn check(dir: &Path, run: &Run, context: &str) {
    let db = options().open(dir).unwrap_or_else(|error| panic!("{context}: reopen failed: {error}"));
    let mut found: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for entry in db.iter() {
        let (key, value) = entry.unwrap_or_else(|error| panic!("{context}: reading failed: {error}"));
        found.insert(key, value.to_vec());
    }
    let mut expected = run.acknowledged.clone();
    for (key, (before, after)) in &run.failed {
        // A failed write: there whole, or the key as it was. (A store that refused
        // one write refuses the rest until reopened, so a key's failed write is its
        // last one, or an earlier failure that left nothing.)
        match found.get(key) {
            Some(value) if value == after => {
                expected.insert(*key, after.clone());
            }
            value => assert_eq!(value, before.as_ref(), "{context}: the failed write of key {key} is half there"),
        }
    }
    assert!(found == expected, "{context}: {} keys found, {} expected", found.len(), expected.len());
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
    db.put(-1, b"after").unwrap();
    db.flush().unwrap();
    drop(db);
    let db = options().open(dir).unwrap();
    assert_eq!(db.get(-1).unwrap().as_deref(), Some(&b"after"[..]), "{context}: a write after recovery is kept");
}

#[test]
fn faults_in_background_work_lose_nothing_acknowledged() {
    let mut threads: BTreeSet<String> = BTreeSet::new();
    let mut fired = 0;
    let mut refused = 0;
    for kinds in [Vec::new(), vec![Op::Sync]] {
        for fault in [Fault::Io, Fault::NoSpace] {
            let mut fail_at = 0;
            loop {
                let dir = tempfile::tempdir().unwrap();
                let plan = Plan { ops: kinds.clone(), ..Plan::at(fail_at, fault) };
                let outcome = run(dir.path(), plan);
                let context = format!("{fault:?} at operation {fail_at} of {kinds:?} ({:?})", outcome.fired);
                check(dir.path(), &outcome, &context);
                let Some((_, thread)) = &outcome.fired else { break };
                fired += 1;
                refused += usize::from(outcome.refused > 0);
                threads.insert(thread.clone());
                // Every one of the first operations, then steps growing by a quarter.
                fail_at += 1 + fail_at / 4;
            }
        }
    }
    println!("{fired} faults fired, {refused} runs refused writes after one, on threads {threads:?}");
    for thread in ["alexstorage-sync", "alexstorage-compaction", "alexstorage-checkpoint"] {
        assert!(threads.contains(thread), "no fault fired on {thread}: {threads:?}");
    }
    assert!(refused > 0, "no fault made a write fail");
}
