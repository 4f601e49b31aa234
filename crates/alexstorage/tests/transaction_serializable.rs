//! A serializability checker. Threads run random transactions over a few keys of three
//! column families (the default one and two named ones: gets, ranges from either end,
//! puts, deletes) and record every read with its result.
//! The committed ones are replayed against a `BTreeMap` model in commit order (the
//! sequence `commit_sequenced` returns); each must have read exactly what the model
//! (with its own earlier writes on top) held at its commit, and each read-only one
//! what the model held at its begin. Anything else is an anomaly a serializable
//! store cannot show.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alexstorage::{ColumnFamily, Db, Error};

/// (family number, key) -> value; family 0 is the default one.
type Model = BTreeMap<(usize, i64), Vec<u8>>;

/// The families the transactions use: the default one, then two named ones.
const FAMILIES: [&str; 3] = ["default", "a", "b"];

#[derive(Clone, Debug)]
enum Op {
    Get(usize, i64, Option<Vec<u8>>),
    /// A range `lo..=hi` of a family read from the low end (or the high end), as far
    /// as it went.
    Range {
        family: usize,
        lo: i64,
        hi: i64,
        back: bool,
        read: Vec<(i64, Vec<u8>)>,
        whole: bool,
    },
    Put(usize, i64, Vec<u8>),
    Delete(usize, i64),
}

#[derive(Debug)]
struct Committed {
    begin: u64,
    sequence: Option<u64>,
    ops: Vec<Op>,
}

const KEYS: i64 = 8;

fn run_one(
    db: &Db,
    families: &[ColumnFamily],
    random: &mut alexstorage_keygen::SplitMix64,
    tag: &str,
) -> (alexstorage::Result<Option<u64>>, u64, Vec<Op>) {
    let mut tx = db.transaction();
    let begin = tx.sequence();
    let mut ops = Vec::new();
    for op in 0..1 + random.below(6) {
        // Let the other threads' transactions interleave with this one.
        std::thread::yield_now();
        let key = random.below(KEYS as u64) as i64;
        let family = random.below(FAMILIES.len() as u64) as usize;
        let handle = &families[family];
        match random.below(4) {
            0 => ops.push(Op::Get(family, key, tx.get_cf(handle, key).unwrap().map(|value| value.to_vec()))),
            1 => {
                let hi = key + random.below(4) as i64;
                let back = random.below(2) == 1;
                let limit = 1 + random.below(4) as usize;
                let mut range = tx.range_cf(handle, key..=hi);
                let mut read = Vec::new();
                let mut whole = true;
                for _ in 0..limit {
                    match if back { range.next_back() } else { range.next() } {
                        Some(entry) => {
                            let (key, value) = entry.unwrap();
                            read.push((key, value.to_vec()));
                        }
                        None => break,
                    }
                }
                if read.len() == limit {
                    whole = false;
                }
                ops.push(Op::Range { family, lo: key, hi, back, read, whole });
            }
            2 => {
                let value = format!("{tag}.{op}").into_bytes();
                tx.put_cf(handle, key, &value);
                ops.push(Op::Put(family, key, value));
            }
            _ => {
                tx.delete_cf(handle, key);
                ops.push(Op::Delete(family, key));
            }
        }
    }
    (tx.commit_sequenced(), begin, ops)
}

/// Checks `ops`' reads against `model` with the transaction's own writes applied in
/// order; returns the model after its writes.
fn replay(model: &Model, ops: &[Op], what: &str) -> Model {
    let mut local = model.clone();
    for op in ops {
        match op {
            Op::Get(family, key, read) => {
                assert_eq!(local.get(&(*family, *key)), read.as_ref(), "{what}: get({family}, {key})")
            }
            Op::Range { family, lo, hi, back, read, whole } => {
                let all: Vec<(i64, Vec<u8>)> =
                    local.range((*family, *lo)..=(*family, *hi)).map(|(k, v)| (k.1, v.clone())).collect();
                let expected: Vec<(i64, Vec<u8>)> = if *back {
                    all.iter().rev().take(read.len()).cloned().collect()
                } else {
                    all.iter().take(read.len()).cloned().collect()
                };
                assert_eq!(read, &expected, "{what}: range {lo}..={hi} of {family} (back: {back})");
                if *whole {
                    assert_eq!(read.len(), all.len(), "{what}: range {lo}..={hi} of {family} ended early");
                }
            }
            Op::Put(family, key, value) => {
                local.insert((*family, *key), value.clone());
            }
            Op::Delete(family, key) => {
                local.remove(&(*family, *key));
            }
        }
    }
    local
}

#[test]
fn committed_transactions_are_serializable_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let families: Vec<ColumnFamily> = FAMILIES.iter().map(|name| db.column_family(name).unwrap()).collect();
    let mut model = Model::new();
    for (family, handle) in families.iter().enumerate() {
        for key in 0..KEYS {
            let value = format!("initial.{family}.{key}").into_bytes();
            handle.put(key, &value).unwrap();
            model.insert((family, key), value);
        }
    }
    let start = db.snapshot().sequence();
    let committed = Arc::new(Mutex::new(Vec::new()));
    let conflicts = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let (db, committed, conflicts) = (db.clone(), Arc::clone(&committed), Arc::clone(&conflicts));
            let families = families.clone();
            std::thread::spawn(move || {
                let mut random = alexstorage_keygen::SplitMix64::new(100 + thread);
                for number in 0..400 {
                    let (result, begin, ops) = run_one(&db, &families, &mut random, &format!("{thread}.{number}"));
                    match result {
                        Ok(sequence) => committed.lock().unwrap().push(Committed { begin, sequence, ops }),
                        Err(Error::Conflict { .. }) => *conflicts.lock().unwrap() += 1,
                        Err(error) => panic!("{error}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let committed = std::mem::take(&mut *committed.lock().unwrap());
    let conflicts = *conflicts.lock().unwrap();
    let (mut writers, readers): (Vec<Committed>, Vec<Committed>) =
        committed.into_iter().partition(|transaction| transaction.sequence.is_some());
    writers.sort_by_key(|transaction| transaction.sequence);
    // Commit sequences are distinct and after their transaction's begin; many
    // writers had another commit land while they were open (real concurrency).
    let mut overlapped = 0;
    for pair in writers.windows(2) {
        assert!(pair[0].sequence < pair[1].sequence, "two commits at one sequence");
    }
    for transaction in &writers {
        let sequence = transaction.sequence.unwrap();
        assert!(sequence > transaction.begin, "a commit at {sequence} before its begin {}", transaction.begin);
        overlapped += usize::from(sequence > transaction.begin + 1);
    }
    // The model after each commit, by sequence, for the read-only ones.
    let mut states: Vec<(u64, Model)> = vec![(start, model.clone())];
    for transaction in &writers {
        let sequence = transaction.sequence.unwrap();
        model = replay(&model, &transaction.ops, &format!("the transaction committed at {sequence}"));
        states.push((sequence, model.clone()));
    }
    for transaction in &readers {
        let at = states.iter().rev().find(|(sequence, _)| *sequence <= transaction.begin).unwrap();
        replay(&at.1, &transaction.ops, &format!("a read-only transaction begun at {}", transaction.begin));
    }
    // The store ends where the model does, in every family.
    let mut found = Model::new();
    for (family, handle) in families.iter().enumerate() {
        for entry in handle.iter() {
            let (key, value) = entry.unwrap();
            found.insert((family, key), value.to_vec());
        }
    }
    assert_eq!(found, model);
    println!("{} writers and {} read-only transactions checked, {conflicts} conflicts", writers.len(), readers.len());
    assert!(writers.len() > 100 && conflicts > 50, "too little concurrency to check anything");
    assert!(overlapped > writers.len() / 10, "only {overlapped} commits overlapped another");
}
