//! Property test: random sequences of bulk load, insert, update, erase, lookup and
//! range over every key pattern, compared with `BTreeMap`, with the structural
//! invariant checker run after every step.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use alexstorage::index::{Alex, IndexConfig};
use alexstorage_keygen::{generate, KeyPattern};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Insert(usize),
    Update(usize),
    Remove(usize),
    RemoveAbsent(i64),
    Get(usize),
    GetAbsent(i64),
    Range(usize, usize, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<usize>().prop_map(Op::Insert),
        1 => any::<usize>().prop_map(Op::Update),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => any::<i64>().prop_map(Op::RemoveAbsent),
        2 => any::<usize>().prop_map(Op::Get),
        1 => any::<i64>().prop_map(Op::GetAbsent),
        1 => (any::<usize>(), any::<usize>(), 0u8..9, any::<bool>()).prop_map(|(a, b, k, r)| Op::Range(a, b, k, r)),
    ]
}

fn pattern() -> impl Strategy<Value = KeyPattern> {
    prop::sample::select(KeyPattern::ALL.to_vec())
}

fn bound(key: i64, kind: u8) -> Bound<i64> {
    match kind {
        0 => Bound::Included(key),
        1 => Bound::Excluded(key),
        _ => Bound::Unbounded,
    }
}

fn valid_for_btreemap(low: Bound<i64>, high: Bound<i64>) -> bool {
    match (low, high) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

fn run(config: IndexConfig, bulk: KeyPattern, later: KeyPattern, bulk_count: usize, seed: u64, ops: Vec<Op>) {
    let mut bulk_keys = generate(bulk, bulk_count, seed);
    bulk_keys.sort_unstable();
    let pairs: Vec<(i64, u64)> = bulk_keys.iter().map(|&key| (key, key as u64)).collect();
    let mut index = Alex::bulk_load_with_config(&pairs, config).unwrap();
    let mut model: BTreeMap<i64, u64> = pairs.iter().copied().collect();
    let mut pool = generate(later, 400, seed.wrapping_add(1));
    pool.extend(bulk_keys.iter().copied().take(200));
    index.check_invariants().unwrap();
    for (step, op) in ops.into_iter().enumerate() {
        let value = step as u64 + 1_000_000;
        let pick = |position: usize| pool[position % pool.len()];
        match op {
            Op::Insert(at) => assert_eq!(index.insert(pick(at), value), model.insert(pick(at), value)),
            Op::Update(at) => {
                let key = pick(at);
                let present = model.contains_key(&key);
                assert_eq!(index.update(key, value), present);
                if present {
                    model.insert(key, value);
                }
            }
            Op::Remove(at) => assert_eq!(index.remove(pick(at)), model.remove(&pick(at))),
            Op::RemoveAbsent(key) => assert_eq!(index.remove(key), model.remove(&key)),
            Op::Get(at) => assert_eq!(index.get(pick(at)), model.get(&pick(at)).copied()),
            Op::GetAbsent(key) => assert_eq!(index.get(key), model.get(&key).copied()),
            Op::Range(a, b, kinds, reverse) => {
                let (mut low, mut high) = (pick(a), pick(b));
                if low > high {
                    std::mem::swap(&mut low, &mut high);
                }
                let (low, high) = (bound(low, kinds % 3), bound(high, kinds / 3));
                if valid_for_btreemap(low, high) {
                    let want: Vec<(i64, u64)> = model.range((low, high)).map(|(&k, &v)| (k, v)).collect();
                    let got: Vec<(i64, u64)> = if reverse {
                        let mut got: Vec<_> = index.range((low, high)).rev().collect();
                        got.reverse();
                        got
                    } else {
                        index.range((low, high)).collect()
                    };
                    assert_eq!(got, want);
                } else {
                    assert_eq!(index.range((low, high)).count(), 0);
                }
            }
        }
        assert_eq!(index.len(), model.len());
        if let Err(error) = index.check_invariants() {
            panic!("after step {step}: {error}");
        }
    }
    let all: Vec<(i64, u64)> = index.iter().collect();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}

const TINY: IndexConfig = IndexConfig { max_data_node_slots: 64, max_fanout_bits: 2 };
const SMALL: IndexConfig = IndexConfig { max_data_node_slots: 256, max_fanout_bits: 4 };

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    #[test]
    fn tiny_nodes_match_btreemap(
        bulk in pattern(), later in pattern(), bulk_count in 0usize..300, seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(TINY, bulk, later, bulk_count, seed, ops);
    }

    #[test]
    fn small_nodes_match_btreemap(
        bulk in pattern(), later in pattern(), bulk_count in 0usize..600, seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(SMALL, bulk, later, bulk_count, seed, ops);
    }

    #[test]
    fn default_nodes_match_btreemap(
        bulk in pattern(), later in pattern(), bulk_count in 0usize..2000, seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run(IndexConfig::default(), bulk, later, bulk_count, seed, ops);
    }
}

/// Every pattern inserted one by one (no bulk load) and then erased, with checks.
#[test]
fn every_pattern_inserted_then_erased() {
    for pattern in KeyPattern::ALL {
        for config in [TINY, SMALL, IndexConfig::default()] {
            let keys = generate(pattern, 3000, 11);
            let mut index: Alex<u64> = Alex::with_config(config);
            for (step, &key) in keys.iter().enumerate() {
                assert_eq!(index.insert(key, step as u64), None);
                if step % 97 == 0 {
                    index.check_invariants().unwrap_or_else(|e| panic!("{pattern:?} {config:?}: {e}"));
                }
            }
            index.check_invariants().unwrap_or_else(|e| panic!("{pattern:?} {config:?}: {e}"));
            for (step, &key) in keys.iter().enumerate() {
                assert_eq!(index.get(key), Some(step as u64));
            }
            for (step, &key) in keys.iter().enumerate().rev() {
                assert_eq!(index.remove(key), Some(step as u64), "{pattern:?}");
                if step % 97 == 0 {
                    index.check_invariants().unwrap_or_else(|e| panic!("{pattern:?} {config:?}: {e}"));
                }
            }
            assert!(index.is_empty());
            let stats = index.stats();
            assert!(
                stats.data_nodes <= 2 && stats.inner_nodes <= 1,
                "{pattern:?} {config:?}: sparse tree left: {stats:?}"
            );
        }
    }
}
