//! Property test: random operation sequences (put, overwrite, delete, batch, get,
//! len, flush, reopen, crash-and-recover) against a `BTreeMap` model; every value
//! checked after every step and after every recovery. Each open takes the next
//! compression setting in turn (none, LZ4, zstd), so the store holds records of every
//! kind, replayed, checkpointed and compacted into each other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use alexstorage::{Compression, Db, Durability, Failpoint, Options, WriteBatch};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(bool, u8, u16)>),
    Get(u8),
    Flush,
    Reopen,
    Crash,
    /// Compact; with a failpoint (index into `FAILPOINTS`, passes to skip), crash
    /// there and reopen.
    Compact(Option<(usize, u64)>),
}

const FAILPOINTS: [Failpoint; 6] = Failpoint::ALL;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), 0u16..600).prop_map(|(k, len)| Op::Put(k, len)),
        3 => any::<u8>().prop_map(Op::Delete),
        2 => prop::collection::vec((any::<bool>(), any::<u8>(), 0u16..300), 0..12).prop_map(Op::Batch),
        3 => any::<u8>().prop_map(Op::Get),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => prop::option::of((0..FAILPOINTS.len(), 0u64..3)).prop_map(Op::Compact),
    ]
}

/// 256 key slots spread over the whole i64 range, extremes included.
fn key(slot: u8) -> i64 {
    match slot {
        0 => i64::MIN,
        255 => i64::MAX,
        _ => (i64::from(slot) - 128).wrapping_mul(0x0123_4567_89AB_CDEF) / 3,
    }
}

/// A value; those of odd steps repeat every 8 bytes, so that they compress (from 32
/// bytes on) under the LZ4 and zstd opens, in puts and batches alike.
fn value(slot: u8, len: u16, step: usize) -> Vec<u8> {
    (0..len)
        .map(|index| match step % 2 {
            0 => (index as usize).wrapping_mul(31).wrapping_add(step).wrapping_add(slot as usize) as u8,
            _ => b"abcdefgh"[(index as usize + slot as usize + step) % 8],
        })
        .collect()
}

fn check_all(db: &Db, model: &BTreeMap<i64, Vec<u8>>) {
    assert_eq!(db.len(), model.len());
    for slot in 0..=255u8 {
        let got = db.get(key(slot)).unwrap().map(|value| value.to_vec());
        assert_eq!(got.as_ref(), model.get(&key(slot)), "key slot {slot}");
    }
}

fn run(durability: Durability, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let opens = std::cell::Cell::new(0usize);
    let open = || {
        let compression = [Compression::None, Compression::Lz4, Compression::Zstd(1)][opens.get() % 3];
        opens.set(opens.get() + 1);
        Options::new().durability(durability).compression(compression).segment_size(4096).open(dir.path()).unwrap()
    };
    let mut db = open();
    let mut model: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
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
                let mut next = model.clone();
                for (is_put, slot, len) in writes {
                    if is_put {
                        let bytes = value(slot, len, step);
                        batch.put(key(slot), &bytes);
                        next.insert(key(slot), bytes);
                    } else {
                        batch.delete(key(slot));
                        next.remove(&key(slot));
                    }
                }
                db.write(batch).unwrap();
                model = next;
            }
            Op::Get(slot) => {
                let got = db.get(key(slot)).unwrap().map(|value| value.to_vec());
                assert_eq!(got.as_ref(), model.get(&key(slot)));
            }
            Op::Flush => db.flush().unwrap(),
            Op::Reopen => {
                drop(db);
                db = open();
                check_all(&db, &model);
            }
            Op::Crash => {
                db.simulate_crash();
                db = open();
                check_all(&db, &model);
            }
            Op::Compact(None) => {
                db.compact().unwrap();
                check_all(&db, &model);
            }
            Op::Compact(Some((point, skip))) => {
                db.set_compaction_failpoint(Some(FAILPOINTS[point]), skip);
                // Stops at the failpoint, or finishes if it lies beyond this compaction.
                let _ = db.compact();
                db.simulate_crash();
                db = open();
                check_all(&db, &model);
            }
        }
        assert_eq!(db.len(), model.len());
    }
    check_all(&db, &model);
    db.verify().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(48), ..ProptestConfig::default() })]

    #[test]
    fn buffered_store_matches_btreemap(ops in prop::collection::vec(op(), 1..150)) {
        run(Durability::Buffered, ops);
    }

    #[test]
    fn sync_store_matches_btreemap(ops in prop::collection::vec(op(), 1..60)) {
        run(Durability::Sync, ops);
    }
}
