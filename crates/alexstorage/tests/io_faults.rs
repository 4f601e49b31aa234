//! I/O faults on cue: a scripted workload (open, puts that roll segments over and
//! start background checkpoints, a batch, deletes, flushes, a compaction, more puts,
//! a clean close) is run once per I/O operation it makes, with that operation failing
//! (`EIO`, then `ENOSPC`): every sync, allocation, file creation, write, rename,
//! removal and read (`log/io.rs`). Each time:
//! - the error reaches the caller, or (for the background checkpoint, the close) the
//!   store carries on without it;
//! - no write is acknowledged after a failed sync (the store refuses writes until
//!   reopened rather than retrying the sync as if it had worked);
//! - after a reopen without faults, every acknowledged write is there, a failed write
//!   is there whole or not at all, and nothing else changed.
//!
//! One test in this file: the armed fault is global to the process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use alexstorage::testing::faults::{arm, disarm, fired, Fault, Op, Plan};
use alexstorage::{Durability, Error, Options, WriteBatch};

/// One step of the workload.
#[derive(Clone, Debug)]
enum Step {
    Put(i64),
    Delete(i64),
    Batch(Vec<(i64, bool)>),
    Flush,
    Compact,
}

fn script() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..40).map(Step::Put).collect();
    steps.push(Step::Batch(vec![(40, true), (41, true), (3, false), (42, true)]));
    steps.push(Step::Flush);
    steps.extend([Step::Delete(5), Step::Put(6), Step::Put(7), Step::Compact]);
    steps.extend((50..60).map(Step::Put));
    steps.push(Step::Flush);
    steps
}

/// The value step `step` writes for `key`.
fn value(step: usize, key: i64) -> Vec<u8> {
    let mut bytes = vec![(step as u8) ^ (key as u8); 300];
    bytes[..8].copy_from_slice(&(step as u64).to_le_bytes());
    bytes
}

fn options(durability: Durability) -> Options {
    Options::new().segment_size(16 << 10).background_compaction(false).durability(durability)
}

/// A key's state: its value, or absent.
type KeyState = Option<Vec<u8>>;

/// What a key may hold after the run: its last acknowledged state, or the state a
/// failed step after it would have left.
#[derive(Default)]
struct Expected {
    /// key -> (acknowledged state, states failed steps after it may have left).
    keys: BTreeMap<i64, (KeyState, Vec<KeyState>)>,
    /// Failed batches: their writes, all or none of which may show.
    failed_batches: Vec<Vec<(i64, Option<Vec<u8>>)>>,
}

impl Expected {
    fn acknowledge(&mut self, key: i64, state: Option<Vec<u8>>) {
        self.keys.insert(key, (state, Vec::new()));
        // A later acknowledged write of a key decides it, batch or not.
        for batch in &mut self.failed_batches {
            batch.retain(|(other, _)| *other != key);
        }
    }

    fn fail(&mut self, key: i64, state: Option<Vec<u8>>) {
        self.keys.entry(key).or_default().1.push(state);
    }
}

/// Runs the workload; returns what the store may hold, or `None` if the open failed.
fn run(dir: &Path, durability: Durability) -> Option<Expected> {
    let db = options(durability).open(dir).ok()?;
    let mut expected = Expected::default();
    let mut sync_failed = false;
    for (index, step) in script().into_iter().enumerate() {
        let outcome = match &step {
            Step::Put(key) => db.put(*key, value(index, *key)),
            Step::Delete(key) => db.delete(*key),
            Step::Batch(writes) => {
                let mut batch = WriteBatch::new();
                for &(key, put) in writes {
                    if put {
                        batch.put(key, value(index, key));
                    } else {
                        batch.delete(key);
                    }
                }
                db.write(batch)
            }
            Step::Flush => db.flush(),
            Step::Compact => db.compact().map(|_| ()),
        };
        let ok = outcome.is_ok();
        // Refused before it wrote anything: it can have left no trace.
        if matches!(outcome, Err(Error::Poisoned(_))) {
            continue;
        }
        if ok {
            assert!(!sync_failed, "step {index} ({step:?}) was acknowledged after a failed sync ({:?})", fired());
        }
        // A failed sync of a segment's records (a flush's, a `Sync` write's, a
        // compaction's) leaves the store refusing writes until reopened. (A segment
        // whose creation failed at its first sync is deleted again: nothing of it was
        // acknowledged, and the store stays usable.)
        let segment_sync_failed = fired().is_some_and(|(op, path)| {
            op == Op::Sync && path.extension().is_some_and(|ext| ext == "seg") && path.exists()
        });
        if matches!(outcome, Err(Error::Io(_))) && segment_sync_failed {
            sync_failed = true;
        }
        match step {
            Step::Put(key) if ok => expected.acknowledge(key, Some(value(index, key))),
            Step::Put(key) => expected.fail(key, Some(value(index, key))),
            Step::Delete(key) if ok => expected.acknowledge(key, None),
            Step::Delete(key) => expected.fail(key, None),
            Step::Batch(writes) => {
                let states: Vec<(i64, Option<Vec<u8>>)> =
                    writes.iter().map(|&(key, put)| (key, put.then(|| value(index, key)))).collect();
                for (key, state) in &states {
                    if ok {
                        expected.acknowledge(*key, state.clone());
                    } else {
                        expected.fail(*key, state.clone());
                    }
                }
                if !ok {
                    expected.failed_batches.push(states);
                }
            }
            Step::Flush | Step::Compact => {}
        }
    }
    drop(db);
    Some(expected)
}

/// Reopens without faults and checks the store against `expected`.
fn check(dir: &Path, expected: Option<Expected>, context: &str) {
    let db =
        options(Durability::Buffered).open(dir).unwrap_or_else(|error| panic!("{context}: reopen failed: {error}"));
    let Some(expected) = expected else {
        // The first open failed: whatever it left, the store opens and is empty.
        assert!(db.is_empty(), "{context}");
        return;
    };
    let read = |key: i64| {
        db.get(key).unwrap_or_else(|error| panic!("{context}: key {key}: {error}")).map(|value| value.to_vec())
    };
    for (key, (acknowledged, maybe)) in &expected.keys {
        let found = read(*key);
        assert!(
            found == *acknowledged || maybe.contains(&found),
            "{context}: key {key} holds {:?}, acknowledged {:?}",
            found.as_ref().map(|bytes| bytes[0]),
            acknowledged.as_ref().map(|bytes| bytes[0])
        );
    }
    for batch in &expected.failed_batches {
        // Its puts' values exist nowhere else: they tell whether it landed.
        let puts: Vec<&(i64, Option<Vec<u8>>)> = batch.iter().filter(|(_, state)| state.is_some()).collect();
        let shown = puts.iter().filter(|(key, state)| read(*key) == *state).count();
        assert!(shown == 0 || shown == puts.len(), "{context}: half a failed batch shows ({shown} of {})", puts.len());
        if shown > 0 {
            for (key, state) in batch.iter().filter(|(_, state)| state.is_none()) {
                assert_eq!(read(*key), *state, "{context}: a failed batch landed without its delete of {key}");
            }
        }
    }
    let known = expected.keys.keys().filter(|key| read(**key).is_some()).count();
    assert_eq!(db.len(), known, "{context}: keys nobody wrote");
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
}

#[test]
fn a_fault_at_every_io_operation_loses_nothing_acknowledged() {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut injected = 0;
    for durability in [Durability::Buffered, Durability::Sync] {
        // Count the operations of a run without faults.
        let dir = tempfile::tempdir().unwrap();
        arm(Plan::at(u64::MAX, Fault::Io));
        let clean = run(dir.path(), durability);
        let (operations, failed) = disarm();
        assert!(failed.is_none());
        check(dir.path(), clean, "no fault");
        assert!(operations > 30, "{durability:?}: only {operations} I/O operations");
        for fault in [Fault::Io, Fault::NoSpace] {
            for fail_at in 0..operations + 5 {
                let dir = tempfile::tempdir().unwrap();
                arm(Plan::at(fail_at, fault));
                let expected = run(dir.path(), durability);
                let (_, failed) = disarm();
                let context = format!("{durability:?}, {fault:?} at operation {fail_at} ({failed:?})");
                check(dir.path(), expected, &context);
                if let Some((op, _)) = failed {
                    *by_kind.entry(format!("{op:?}")).or_default() += 1;
                    injected += 1;
                }
            }
        }
        println!("{durability:?}: {operations} I/O operations a run");
    }
    println!("{injected} faults injected, by kind: {by_kind:?}");
    for kind in [Op::Sync, Op::Allocate, Op::Create, Op::Write, Op::Rename, Op::Read, Op::Remove] {
        assert!(by_kind.contains_key(&format!("{kind:?}")), "no fault was injected at a {kind:?}: {by_kind:?}");
    }
}
