//! What a transaction reads: its snapshot at begin with its own writes on top, in
//! `get` and in ranges merged in key order from both ends; nobody sees its writes
//! before commit, and a rolled-back or dropped transaction writes nothing. Checked
//! against a `BTreeMap` model with random writes and ranges.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::Bound;

use alexstorage::Db;
use proptest::prelude::*;

#[test]
fn own_writes_show_only_to_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(1, b"one").unwrap();
    db.put(2, b"two").unwrap();
    let mut tx = db.transaction();
    tx.put(3, b"three");
    tx.delete(1);
    tx.put(2, b"TWO");
    assert_eq!(tx.get(1).unwrap(), None);
    assert_eq!(tx.get(2).unwrap().unwrap(), b"TWO");
    assert!(!tx.get(3).unwrap().unwrap().is_zero_copy(), "its own write is a copy");
    assert_eq!(db.get(1).unwrap().unwrap(), b"one");
    assert_eq!(db.get(3).unwrap(), None);
    // A write after begin by someone else is not seen.
    db.put(4, b"four").unwrap();
    assert_eq!(tx.get(4).unwrap(), None);
    let forward: Vec<(i64, Vec<u8>)> = tx.range(..).map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
    assert_eq!(forward, [(2, b"TWO".to_vec()), (3, b"three".to_vec())]);
    let backward: Vec<i64> = tx.range(..).rev().map(|entry| entry.unwrap().0).collect();
    assert_eq!(backward, [3, 2]);
    tx.rollback();
    assert_eq!(db.get(3).unwrap(), None);
    let mut dropped = db.transaction();
    dropped.put(9, b"never");
    drop(dropped);
    assert_eq!(db.get(9).unwrap(), None);
    assert_eq!(db.len(), 3);
}

#[derive(Clone, Debug)]
enum Step {
    Store(i64, Option<u8>),
    Own(i64, Option<u8>),
    Range(Option<i64>, Option<i64>, bool, u8),
}

fn step() -> impl Strategy<Value = Step> {
    let key = -20i64..20;
    prop_oneof![
        (key.clone(), proptest::option::of(any::<u8>())).prop_map(|(k, v)| Step::Store(k, v)),
        (key.clone(), proptest::option::of(any::<u8>())).prop_map(|(k, v)| Step::Own(k, v)),
        (proptest::option::of(key.clone()), proptest::option::of(key), any::<bool>(), any::<u8>())
            .prop_map(|(lo, hi, inclusive, pattern)| Step::Range(lo, hi, inclusive, pattern)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Ranges read from both ends in a random pattern return exactly the model's
    /// entries: the snapshot at begin with the transaction's writes on top.
    #[test]
    fn merged_ranges_match_a_model(initial in prop::collection::btree_map(-20i64..20, any::<u8>(), 0..30),
                                   steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        for (key, value) in &initial {
            db.put(*key, [*value]).unwrap();
        }
        let mut tx = db.transaction();
        let mut seen: BTreeMap<i64, u8> = initial.clone();
        for step in steps {
            match step {
                Step::Store(key, Some(value)) => db.put(key, [value]).unwrap(),
                Step::Store(key, None) => db.delete(key).unwrap(),
                Step::Own(key, value) => {
                    match value {
                        Some(value) => { tx.put(key, [value]); seen.insert(key, value); }
                        None => { tx.delete(key); seen.remove(&key); }
                    }
                    prop_assert_eq!(tx.get(key).unwrap().map(|v| v[0]), value);
                }
                Step::Range(lo, hi, inclusive, pattern) => {
                    // Low bounds both included and excluded (by the pattern's top bit).
                    let lo = match lo { None => Bound::Unbounded, Some(lo) if pattern & 0x80 == 0 => Bound::Included(lo), Some(lo) => Bound::Excluded(lo) };
                    let hi = match hi { None => Bound::Unbounded, Some(hi) if inclusive => Bound::Included(hi), Some(hi) => Bound::Excluded(hi) };
                    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = (lo, hi) {
                        if a > b || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))) { continue; }
                    }
                    let expected: Vec<(i64, u8)> = seen.range((lo, hi)).map(|(k, v)| (*k, *v)).collect();
                    let mut range = tx.range((lo, hi));
                    let (mut front, mut back) = (Vec::new(), Vec::new());
                    let mut bits = pattern;
                    loop {
                        let entry = if bits & 1 == 0 { range.next() } else { range.next_back() };
                        let Some(entry) = entry else { break };
                        let (key, value) = entry.unwrap();
                        if bits & 1 == 0 { front.push((key, value[0])) } else { back.push((key, value[0])) }
                        bits = bits.rotate_right(1);
                    }
                    prop_assert!(range.next().is_none() && range.next_back().is_none());
                    back.reverse();
                    front.extend(back);
                    prop_assert_eq!(front, expected);
                }
            }
        }
    }
}

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn crossed_bounds_are_an_empty_range() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(5, b"x").unwrap();
    let mut tx = db.transaction();
    tx.put(6, b"y");
    assert_eq!(tx.range(10..3).count(), 0);
    assert_eq!(tx.range((Bound::Excluded(6), Bound::Excluded(6))).count(), 0);
    assert_eq!(tx.range((Bound::Excluded(5), Bound::Included(5))).count(), 0);
    assert_eq!(tx.range(5..=6).count(), 2);
    tx.commit().unwrap();
}

#[test]
fn a_range_read_after_its_transaction_ended_fails_once_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..10 {
        db.put(key, b"v").unwrap();
    }
    let mut tx = db.transaction();
    let mut range = tx.range(..);
    assert_eq!(range.next().unwrap().unwrap().0, 0);
    tx.put(100, b"w");
    tx.commit().unwrap();
    // What it returned now would not have been checked by the commit.
    assert!(matches!(range.next(), Some(Err(alexstorage::Error::InvalidArgument(_)))));
    assert!(range.next().is_none() && range.next_back().is_none());
    // The same for a range that outlives a dropped transaction.
    let tx = db.transaction();
    let mut range = tx.range(..);
    drop(tx);
    assert!(matches!(range.next_back(), Some(Err(_))));
    assert!(range.next().is_none());
}
