//! Property test: random writes, snapshots taken and dropped, and range queries with
//! every kind of bound, read forward, backward and from both ends at once, against
//! `BTreeMap` copies of the model taken with each snapshot; with reopens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use alexstorage::{Db, Options, Range, Snapshot, WriteBatch};
use proptest::prelude::*;

type Model = BTreeMap<i64, Vec<u8>>;

fn key(slot: u8) -> i64 {
    (i64::from(slot) - 32) * 1000
}

fn value(slot: u8, len: u16, step: usize) -> Vec<u8> {
    (0..len).map(|index| (index as usize ^ step ^ usize::from(slot)) as u8).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(bool, u8, u16)>),
    Take,
    Release(usize),
    Check(usize, (u8, i64), (u8, i64), u8),
    CheckLatest((u8, i64), (u8, i64), u8),
    Reopen,
    Compact,
    /// Opens a range over the latest state, kept open across later operations.
    Open((u8, i64), (u8, i64)),
    /// Reads `count` entries of an open range, from the front or from the back.
    Step(usize, u8, bool),
}

fn bound_of((kind, at): (u8, i64)) -> Bound<i64> {
    match kind % 3 {
        0 => Bound::Included(at),
        1 => Bound::Excluded(at),
        _ => Bound::Unbounded,
    }
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0u8..64;
    let bound = (0u8..3, prop_oneof![(-40i64..40).prop_map(|slot| slot * 1000), -40_000i64..40_000]);
    prop_oneof![
        6 => (slot.clone(), 0u16..200).prop_map(|(slot, len)| Op::Put(slot, len)),
        2 => slot.clone().prop_map(Op::Delete),
        2 => prop::collection::vec((any::<bool>(), slot, 0u16..100), 1..6).prop_map(Op::Batch),
        2 => Just(Op::Take),
        1 => (0usize..4).prop_map(Op::Release),
        2 => (0usize..4, bound.clone(), bound.clone(), 0u8..3).prop_map(|(at, lo, hi, how)| Op::Check(at, lo, hi, how)),
        1 => (bound.clone(), bound.clone(), 0u8..3).prop_map(|(lo, hi, how)| Op::CheckLatest(lo, hi, how)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
        2 => (bound.clone(), bound.clone()).prop_map(|(lo, hi)| Op::Open(lo, hi)),
        3 => (0usize..3, 1u8..20, any::<bool>()).prop_map(|(at, count, back)| Op::Step(at, count, back)),
    ]
}

fn expected(model: &Model, lo: Bound<i64>, hi: Bound<i64>) -> Vec<(i64, Vec<u8>)> {
    model.iter().filter(|(key, _)| (lo, hi).contains(*key)).map(|(key, value)| (*key, value.clone())).collect()
}

fn check_snapshot(snapshot: &Snapshot, model: &Model) {
    assert_eq!(snapshot.len(), model.len());
    for slot in 0..64 {
        let got = snapshot.get(key(slot)).unwrap().map(|value| value.to_vec());
        assert_eq!(got.as_ref(), model.get(&key(slot)), "slot {slot}");
    }
}

/// What an open range has left to return, ascending.
type Left = std::collections::VecDeque<(i64, Vec<u8>)>;

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: snapshots span roll-overs and background checkpoints.
    let open = || Options::new().segment_size(4096).open(dir.path()).unwrap();
    let mut db: Db = open();
    let mut model = Model::new();
    let mut snapshots: Vec<(Snapshot, Model)> = Vec::new();
    // Open ranges and what they have left to return, ascending.
    let mut ranges: Vec<(Range, Left)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(slot, len) => {
                let bytes = value(slot, len, step);
                db.put(key(slot), &bytes).unwrap();
                model.insert(key(slot), bytes);
            }
            Op::Delete(slot) => {
                db.delete(key(slot)).unwrap();
                model.remove(&key(slot));
            }
            Op::Batch(writes) => {
                let mut batch = WriteBatch::new();
                for (put, slot, len) in writes {
                    if put {
                        let bytes = value(slot, len, step);
                        batch.put(key(slot), &bytes);
                        model.insert(key(slot), bytes);
                    } else {
                        batch.delete(key(slot));
                        model.remove(&key(slot));
                    }
                }
                db.write(batch).unwrap();
            }
            Op::Take => {
                if snapshots.len() == 4 {
                    snapshots.remove(0);
                }
                snapshots.push((db.snapshot(), model.clone()));
            }
            Op::Release(at) => {
                if at < snapshots.len() {
                    snapshots.remove(at);
                }
            }
            Op::Check(at, lo, hi, how) => {
                if let Some((snapshot, frozen)) = snapshots.get(at) {
                    check_snapshot(snapshot, frozen);
                    let (lo, hi) = (bound_of(lo), bound_of(hi));
                    assert_eq!(
                        common::read_range(snapshot.range((lo, hi)), how),
                        expected(frozen, lo, hi),
                        "{lo:?}..{hi:?}"
                    );
                }
            }
            Op::CheckLatest(lo, hi, how) => {
                let (lo, hi) = (bound_of(lo), bound_of(hi));
                assert_eq!(common::read_range(db.range((lo, hi)), how), expected(&model, lo, hi), "{lo:?}..{hi:?}");
            }
            Op::Reopen => {
                snapshots.clear();
                drop(db);
                db = open();
            }
            // Snapshots and their ranges must read through it unchanged.
            Op::Compact => {
                db.compact().unwrap();
            }
            Op::Open(lo, hi) => {
                if ranges.len() == 3 {
                    ranges.remove(0);
                }
                let (lo, hi) = (bound_of(lo), bound_of(hi));
                ranges.push((db.range((lo, hi)), expected(&model, lo, hi).into()));
            }
            Op::Step(at, count, back) => {
                if let Some((range, left)) = ranges.get_mut(at) {
                    for _ in 0..count {
                        let got = if back { range.next_back() } else { range.next() };
                        let want = if back { left.pop_back() } else { left.pop_front() };
                        let got = got.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap());
                        assert_eq!(got, want, "an open range drifted");
                    }
                }
            }
        }
        // A background checkpoint holds a snapshot of its own while it runs.
        let stats = db.stats();
        if stats.snapshots == 0 {
            assert_eq!(stats.retained_versions, 0, "versions kept with no snapshot alive");
        }
    }
    for (range, left) in ranges.drain(..) {
        let rest: Vec<(i64, Vec<u8>)> =
            range.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect();
        assert_eq!(rest, Vec::from(left), "an open range drifted");
    }
    for (snapshot, frozen) in &snapshots {
        check_snapshot(snapshot, frozen);
        assert_eq!(common::read_range(snapshot.iter(), 0), expected(frozen, Bound::Unbounded, Bound::Unbounded));
    }
    snapshots.clear();
    let stats = db.stats();
    assert!(stats.snapshots > 0 || stats.retained_versions == 0, "{stats:?}");
    assert_eq!(common::read_range(db.iter(), 2), expected(&model, Bound::Unbounded, Bound::Unbounded));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(64)))]

    #[test]
    fn snapshots_and_ranges_match_btreemap(ops in prop::collection::vec(op(), 1..160)) {
        run(ops);
    }
}

#[test]
fn every_bound_kind_on_a_fixed_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut model = Model::new();
    for key in [i64::MIN, -7, -1, 0, 3, 10, 11, i64::MAX] {
        db.put(key, key.to_le_bytes()).unwrap();
        model.insert(key, key.to_le_bytes().to_vec());
    }
    let keys = |range: Range| range.map(|entry| entry.unwrap().0).collect::<Vec<_>>();
    assert_eq!(keys(db.range(..)), model.keys().copied().collect::<Vec<_>>());
    assert_eq!(keys(db.range(0..)), [0, 3, 10, 11, i64::MAX]);
    assert_eq!(keys(db.range(..0)), [i64::MIN, -7, -1]);
    assert_eq!(keys(db.range(-1..10)), [-1, 0, 3]);
    assert_eq!(keys(db.range(-1..=10)), [-1, 0, 3, 10]);
    assert_eq!(keys(db.range((Bound::Excluded(-1), Bound::Unbounded))), [0, 3, 10, 11, i64::MAX]);
    assert_eq!(keys(db.range((Bound::Excluded(i64::MAX), Bound::Unbounded))), Vec::<i64>::new());
    assert_eq!(keys(db.range((Bound::Excluded(3), Bound::Excluded(4)))), Vec::<i64>::new());
    assert_eq!(keys(db.range(5..5)), Vec::<i64>::new());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = db.range(10..3);
    assert_eq!(keys(backwards), Vec::<i64>::new());
    assert_eq!(keys(db.range(i64::MIN..=i64::MIN)), [i64::MIN]);
    assert_eq!(
        db.iter().rev().map(|entry| entry.unwrap().0).collect::<Vec<_>>(),
        [i64::MAX, 11, 10, 3, 0, -1, -7, i64::MIN]
    );
}
