//! Scale tests of the learned index: 10M keys, and 1M inserts of every key pattern.
//! Too slow for debug builds; CI runs them with `cargo test --release --test index_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alexstorage::index::Alex;
use alexstorage_keygen::{generate, KeyPattern, SplitMix64};

/// Bulk load 10M keys, insert and erase a million each, check structure and contents.
#[test]
#[cfg_attr(debug_assertions, ignore = "10M keys: run with --release")]
fn ten_million_keys() {
    for pattern in [KeyPattern::Uniform, KeyPattern::Lognormal] {
        let mut keys = generate(pattern, 11_000_000, 5);
        let extra: Vec<i64> = keys.split_off(10_000_000);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let pairs: Vec<(i64, u64)> = sorted.iter().map(|&key| (key, key as u64)).collect();
        let mut index = Alex::bulk_load(&pairs).unwrap();
        index.check_invariants().unwrap();
        let bulk_bytes = index.size_in_bytes() as f64 / index.len() as f64;
        assert!(bulk_bytes <= 24.5, "{pattern:?}: {bulk_bytes} bytes per key after bulk load");
        for &key in &extra {
            assert_eq!(index.insert(key, key as u64), None);
        }
        let mut order = keys.clone();
        SplitMix64::new(1).shuffle(&mut order);
        for &key in order.iter().take(1_000_000) {
            assert_eq!(index.remove(key), Some(key as u64));
        }
        assert_eq!(index.len(), 10_000_000);
        index.check_invariants().unwrap();
        for &key in order.iter().skip(1_000_000).step_by(97).chain(extra.iter().step_by(13)) {
            assert_eq!(index.get(key), Some(key as u64));
        }
        for &key in order.iter().take(1_000_000).step_by(31) {
            assert_eq!(index.get(key), None);
        }
        let stats = index.stats();
        assert!(stats.max_depth <= 8, "{pattern:?}: {stats:?}");
        let bytes = index.size_in_bytes() as f64 / index.len() as f64;
        assert!(bytes <= 32.0, "{pattern:?}: {bytes} bytes per key after inserts");
    }
}

/// A million keys of every pattern inserted one at a time stay shallow, compact and
/// correct; so does a bulk load followed by inserts from a different distribution.
#[test]
#[cfg_attr(debug_assertions, ignore = "1M keys per pattern: run with --release")]
fn every_pattern_at_a_million() {
    for pattern in KeyPattern::ALL {
        let keys = generate(pattern, 1_000_000, 9);
        let mut index: Alex<u64> = Alex::new();
        for (position, &key) in keys.iter().enumerate() {
            assert_eq!(index.insert(key, position as u64), None);
        }
        index.check_invariants().unwrap_or_else(|error| panic!("{pattern:?}: {error}"));
        let stats = index.stats();
        assert!(stats.max_depth <= 10, "{pattern:?}: {stats:?}");
        let bytes = index.size_in_bytes() as f64 / keys.len() as f64;
        assert!(bytes <= 40.0, "{pattern:?}: {bytes} bytes per key");
        for (position, &key) in keys.iter().enumerate().step_by(7) {
            assert_eq!(index.get(key), Some(position as u64));
        }
    }
    for (bulk, later) in [(KeyPattern::Uniform, KeyPattern::Clustered), (KeyPattern::Sequential, KeyPattern::Lognormal)]
    {
        let mut sorted = generate(bulk, 500_000, 3);
        sorted.sort_unstable();
        let pairs: Vec<(i64, u64)> = sorted.iter().map(|&key| (key, 0)).collect();
        let mut index = Alex::bulk_load(&pairs).unwrap();
        for key in generate(later, 500_000, 4) {
            index.insert(key, 1);
        }
        index.check_invariants().unwrap_or_else(|error| panic!("{bulk:?} then {later:?}: {error}"));
        assert!(index.stats().max_depth <= 10);
    }
}
