//! A serializability checker. Threads run random transactions over a few keys (gets,
//! ranges from either end, puts, deletes) and record every read with its result.
//! The committed ones are replayed against a `BTreeMap` model in commit order (the
//! sequence `commit_sequenced` returns); each must have read exactly what the model
//! (with its own earlier writes on top) held at its commit, and each read-only one
//! what the model held at its begin. Anything else is an anomaly a serializable
//! store cannot show.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alexstorage::{Db, Error};

type Model = BTreeMap<i64, Vec<u8>>;

#[derive(Clone, Debug)]
enum Op {
    Get(i64, Option<Vec<u8>>),
    /// A range `lo..=hi` read from the low end (or the high end), as far as it went.
    Range {
        lo: i64,
        hi: i64,
        back: bool,
        read: Vec<(i64, Vec<u8>)>,
        whole: bool,
    },
    Put(i64, Vec<u8>),
    Delete(i64),
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
        match random.below(4) {
            0 => ops.push(Op::Get(key, tx.get(key).unwrap().map(|value| value.to_vec()))),
            1 => {
                let hi = key + random.below(4) as i64;
                let back = random.below(2) == 1;
                let limit = 1 + random.below(4) as usize;
                let mut range = tx.range(key..=hi);
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
                ops.push(Op::Range { lo: key, hi, back, read, whole });
            }
            2 => {
                let value = format!("{tag}.{op}").into_bytes();
                tx.put(key, &value);
                ops.push(Op::Put(key, value));
            }
            _ => {
                tx.delete(key);
                ops.push(Op::Delete(key));
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
            Op::Get(key, read) => assert_eq!(local.get(key), read.as_ref(), "{what}: get({key})"),
            Op::Range { lo, hi, back, read, whole } => {
                let all: Vec<(i64, Vec<u8>)> = local.range(lo..=hi).map(|(k, v)| (*k, v.clone())).collect();
                let expected: Vec<(i64, Vec<u8>)> = if *back {
                    all.iter().rev().take(read.len()).cloned().collect()
                } else {
                    all.iter().take(read.len()).cloned().collect()
                };
                assert_eq!(read, &expected, "{what}: range {lo}..={hi} (back: {back})");
                if *whole {
                    assert_eq!(read.len(), all.len(), "{what}: range {lo}..={hi} ended early");
                }
            }
            Op::Put(key, value) => {
                local.insert(*key, value.clone());
            }
            Op::Delete(key) => {
                local.remove(key);
            }
        }
    }
    local
}

#[test]
fn committed_transactions_are_serializable_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut model = Model::new();
    for key in 0..KEYS {
        let value = format!("initial.{key}").into_bytes();
        db.put(key, &value).unwrap();
        model.insert(key, value);
    }
    let start = db.snapshot().sequence();
    let committed = Arc::new(Mutex::new(Vec::new()));
    let conflicts = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let (db, committed, conflicts) = (db.clone(), Arc::clone(&committed), Arc::clone(&conflicts));
            std::thread::spawn(move || {
                let mut random = alexstorage_keygen::SplitMix64::new(100 + thread);
                for number in 0..400 {
                    let (result, begin, ops) = run_one(&db, &mut random, &format!("{thread}.{number}"));
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
    // The store ends where the model does.
    let found: Model = db.iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
    assert_eq!(found, model);
    println!("{} writers and {} read-only transactions checked, {conflicts} conflicts", writers.len(), readers.len());
    assert!(writers.len() > 100 && conflicts > 50, "too little concurrency to check anything");
    assert!(overlapped > writers.len() / 10, "only {overlapped} commits overlapped another");
}
