//! Scenario tests of the whole tree, with small node limits so that every structural
//! path (expansion, sideways and downward splits, parent growth, domain widening,
//! contraction, merges, collapses) runs many times. Each step is checked against a
//! `BTreeMap` and by the invariant checker.

use std::collections::BTreeMap;

use super::{Alex, BulkLoadError, IndexConfig};

/// Limits small enough that a few hundred keys exercise every structural change.
pub(crate) const TINY: IndexConfig = IndexConfig { max_data_node_slots: 64, max_fanout_bits: 3 };

fn check(index: &Alex<u64>, model: &BTreeMap<i64, u64>) {
    if let Err(error) = index.check_invariants() {
        panic!("invariant violated: {error}\n{index:#?}");
    }
    assert_eq!(index.len(), model.len());
    let got: Vec<(i64, u64)> = index.iter().collect();
    let want: Vec<(i64, u64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
    assert_eq!(got, want);
}

fn insert_all(keys: impl IntoIterator<Item = i64>, config: IndexConfig) -> (Alex<u64>, BTreeMap<i64, u64>) {
    let mut index = Alex::with_config(config);
    let mut model = BTreeMap::new();
    for (step, key) in keys.into_iter().enumerate() {
        assert_eq!(index.insert(key, step as u64), model.insert(key, step as u64), "insert {key}");
        if step % 7 == 0 {
            check(&index, &model);
        }
    }
    check(&index, &model);
    (index, model)
}

#[test]
fn sequential_inserts_grow_the_tree() {
    let (index, model) = insert_all(0..2000, TINY);
    for key in 0..2000 {
        assert_eq!(index.get(key), model.get(&key).copied());
    }
    assert_eq!(index.get(2000), None);
    assert!(index.stats().max_depth > 1);
}

#[test]
fn reverse_sequential_inserts() {
    insert_all((0..2000).rev(), TINY);
}

#[test]
fn extreme_keys() {
    let keys = [i64::MAX, i64::MIN, 0, -1, 1, i64::MAX - 1, i64::MIN + 1];
    let (mut index, mut model) = insert_all(keys, TINY);
    for key in keys {
        assert_eq!(index.remove(key), model.remove(&key));
        check(&index, &model);
    }
    assert!(index.is_empty());
}

#[test]
fn spread_keys_with_huge_gaps() {
    let mut keys = Vec::new();
    for cluster in 0..40i64 {
        let base = cluster.wrapping_mul(0x0123_4567_89ab_cdef);
        keys.extend((0..50).map(|i| base.wrapping_add(i)));
    }
    insert_all(keys, TINY);
}

#[test]
fn bulk_load_then_delete_everything() {
    let pairs: Vec<(i64, u64)> = (0..3000).map(|i| (i * 3 - 4000, i as u64)).collect();
    let mut index = Alex::bulk_load_with_config(&pairs, TINY).unwrap();
    let mut model: BTreeMap<i64, u64> = pairs.iter().copied().collect();
    check(&index, &model);
    for (step, (key, _)) in pairs.iter().enumerate() {
        assert_eq!(index.remove(*key), model.remove(key));
        if step % 11 == 0 {
            check(&index, &model);
        }
    }
    check(&index, &model);
    let stats = index.stats();
    assert_eq!(stats.data_nodes, 1, "{stats:?}");
}

#[test]
fn bulk_load_rejects_unsorted_input() {
    let error = Alex::<u64>::bulk_load(&[(1, 0), (1, 0)]).unwrap_err();
    assert!(matches!(error, BulkLoadError::NotAscending { position: 1, .. }));
}

#[test]
fn ranges_all_bound_kinds() {
    let pairs: Vec<(i64, u64)> = (0..500).map(|i| (i * 2, i as u64)).collect();
    let index = Alex::bulk_load_with_config(&pairs, TINY).unwrap();
    let model: BTreeMap<i64, u64> = pairs.iter().copied().collect();
    use std::ops::Bound::*;
    let bounds = [Included(-5), Excluded(0), Included(1), Included(500), Excluded(998), Unbounded, Included(2000)];
    for &low in &bounds {
        for &high in &bounds {
            if let (Included(a) | Excluded(a), Included(b) | Excluded(b)) = (low, high) {
                if a > b || (a == b && (matches!(low, Excluded(_)) || matches!(high, Excluded(_)))) {
                    continue; // BTreeMap panics on these; ours returns empty
                }
            }
            let got: Vec<_> = index.range((low, high)).collect();
            let want: Vec<_> = model.range((low, high)).map(|(&k, &v)| (k, v)).collect();
            assert_eq!(got, want, "{low:?}..{high:?}");
            let got_rev: Vec<_> = index.range((low, high)).rev().collect();
            let want_rev: Vec<_> = model.range((low, high)).rev().map(|(&k, &v)| (k, v)).collect();
            assert_eq!(got_rev, want_rev);
        }
    }
    let (high, low) = (5, 10);
    assert_eq!(index.range(low..high).count(), 0);
    assert_eq!(index.range((Excluded(i64::MAX), Unbounded)).count(), 0);
    let mut both = index.range(0..10);
    assert_eq!(both.next(), Some((0, 0)));
    assert_eq!(both.next_back(), Some((8, 4)));
    assert_eq!(both.next(), Some((2, 1)));
    assert_eq!(both.next_back(), Some((6, 3)));
    assert_eq!(both.next(), Some((4, 2)));
    assert_eq!(both.next(), None);
    assert_eq!(both.next_back(), None);
}

/// `get_many` returns what `get` of each key returns, in order, for groups of every
/// size around the lookup group: present, absent, repeated and extreme keys, in a tree
/// with many small nodes and in one bulk-loaded.
#[test]
fn get_many_matches_get() {
    let keys: Vec<i64> = (0..3000).map(|i: i64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64) >> 7).collect();
    let (tiny, _) = insert_all(keys.iter().copied(), TINY);
    let mut pairs: Vec<(i64, u64)> = keys.iter().map(|&key| (key, key as u64 ^ 1)).collect();
    pairs.sort_unstable();
    let loaded = Alex::bulk_load(&pairs).unwrap();
    let empty: Alex<u64> = Alex::with_config(TINY);
    for index in [&tiny, &loaded, &empty] {
        for len in [0, 1, 15, 16, 17, 33, 100, 1000] {
            let probe: Vec<i64> = (0..len)
                .map(|i| match i % 5 {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    2 => keys[(i * 7) % keys.len()] + 1,
                    _ => keys[(i * 13) % keys.len()],
                })
                .collect();
            let mut out = vec![Some(99)];
            index.get_many(&probe, &mut out);
            assert_eq!(out.len(), len + 1, "appends");
            let want: Vec<Option<u64>> =
                std::iter::once(Some(99)).chain(probe.iter().map(|&key| index.get(key))).collect();
            assert_eq!(out, want, "{len} keys");
        }
    }
}
