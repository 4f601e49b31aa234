//! The bounded property-test twin of the cargo-fuzz target `power_cuts`: random
//! puts, deletes, batches, flushes, compactions, snapshots, clean reopens, process
//! crashes and power cuts from the simulated disk (every file's unsynced pages lost,
//! kept or torn at a sector; unsynced directory entries undone; unsynced files short)
//! against a `BTreeMap` model, in `Buffered` and `Sync` mode (with and without early
//! writeback), on a store of 8 KiB
//! segments (roll-overs and their checkpoints every few dozen writes). After each
//! reopen the store must hold a prefix of the writes that includes every durable one
//! (`alexstorage::testing::power_cuts`).
//!
//! `PROPTEST_CASES=1000 ALEXSTORAGE_POWER_CUT_RUNS=2000 cargo test --release -p
//! alexstorage --test power_cut_model -- --nocapture` runs a longer search.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use alexstorage::testing::power_cuts::{run_operations, Outcome};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(64), ..ProptestConfig::default() })]

    #[test]
    fn crashes_and_power_cuts_keep_a_durable_prefix(data in prop::collection::vec(any::<u8>(), 0..2400)) {
        let dir = tempfile::tempdir().unwrap();
        run_operations(dir.path(), &data);
    }
}

/// Deterministic runs that surely cut the power several times in each mode (24, or
/// `ALEXSTORAGE_POWER_CUT_RUNS`).
#[test]
fn many_power_cuts_in_both_modes() {
    let runs: u64 = std::env::var("ALEXSTORAGE_POWER_CUT_RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(24);
    let mut random = alexstorage_keygen::SplitMix64::new(17);
    let (mut buffered, mut sync) = (Outcome::default(), Outcome::default());
    for run in 0..runs {
        // Flushes and clean closes rarer than in uniform bytes, so that power cuts meet
        // long unsynced tails (a byte may be an operation or its argument; either way
        // this only shifts the odds).
        // Bit 0: `Sync` or `Buffered`; bit 1: early writeback or none.
        let mut data = vec![run as u8 & 3];
        for _ in 0..900 {
            let mut byte = random.next_u64() as u8;
            while matches!(byte % 12, 5 | 8) && random.below(8) != 0 {
                byte = random.next_u64() as u8;
            }
            data.push(byte);
        }
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_operations(dir.path(), &data);
        if outcome.sync_runs == 1 {
            sync.add(&outcome)
        } else {
            buffered.add(&outcome)
        }
    }
    // The runs must have met what they are for, or they prove nothing.
    for (mode, total) in [("Buffered", &buffered), ("Sync", &sync)] {
        let half = runs / 2;
        assert!(total.cuts as u64 >= half, "{mode}: only {} power cuts in {half} runs", total.cuts);
        assert!(total.writes as u64 >= half * 10, "{mode}: only {} writes in {half} runs", total.writes);
        assert!(total.pages_dropped > 0, "{mode}: no power cut dropped a page");
        assert!(total.compactions > 0 && total.snapshots > 0, "{mode}: no compaction or no snapshot: {total:?}");
        assert!(total.incremental_compactions > 0, "{mode}: no incremental compaction did its work: {total:?}");
        assert!(total.family_changes > 0, "{mode}: no column family created or dropped: {total:?}");
        assert!(
            total.faults > 0 && total.recoveries_interrupted > 0,
            "{mode}: no fault inside an operation or a recovery: {total:?}"
        );
    }
    let mut total = buffered.clone();
    total.add(&sync);
    assert!(total.entries_undone > 0, "no power cut undid a directory entry: {total:?}");
    // Power cuts took acknowledged Buffered writes past the last flush: the cuts do
    // drop what was not synced (a store that synced everything would show none).
    assert!(buffered.writes_lost_to_cuts > 0, "no Buffered write lost to a power cut: {buffered:?}");
    println!("{runs} runs, Buffered: {buffered:?}");
    println!("{runs} runs, Sync: {sync:?}");
}
