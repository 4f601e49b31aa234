//! The bounded property-test twin of the cargo-fuzz target `power_cuts`: random
//! puts, deletes, batches, flushes, clean reopens, process crashes and power cuts
//! (every page past the durable end lost, kept or torn at a sector) against a
//! `BTreeMap` model, in `Buffered` and `Sync` mode. After each reopen the store must
//! hold a prefix of the writes that includes every durable one
//! (`alexstorage::testing::power_cuts`).
//!
//! `PROPTEST_CASES=1000 cargo test --release -p alexstorage --test power_cut_model`
//! runs a longer search.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use alexstorage::testing::power_cuts::run_operations;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    #[test]
    fn crashes_and_power_cuts_keep_a_durable_prefix(data in prop::collection::vec(any::<u8>(), 0..1200)) {
        let dir = tempfile::tempdir().unwrap();
        run_operations(dir.path(), &data);
    }
}

/// Deterministic runs that surely cut the power several times in each mode.
#[test]
fn many_power_cuts_in_both_modes() {
    let mut random = alexstorage_keygen::SplitMix64::new(17);
    let mut cuts = 0;
    let mut writes = 0;
    for run in 0..24u8 {
        // Flushes and clean closes rarer than in uniform bytes, so that power cuts meet
        // long unsynced tails (a byte may be an operation or its argument; either way
        // this only shifts the odds).
        let mut data = vec![run & 1];
        for _ in 0..900 {
            let mut byte = random.next_u64() as u8;
            while matches!(byte % 8, 5 | 6) && random.below(8) != 0 {
                byte = random.next_u64() as u8;
            }
            data.push(byte);
        }
        let dir = tempfile::tempdir().unwrap();
        let (run_writes, run_cuts) = run_operations(dir.path(), &data);
        writes += run_writes;
        cuts += run_cuts;
    }
    assert!(cuts >= 24, "only {cuts} power cuts in 24 runs");
    assert!(writes >= 24 * 10, "only {writes} writes in 24 runs");
    println!("{writes} writes kept and {cuts} power cuts in 24 runs");
}
