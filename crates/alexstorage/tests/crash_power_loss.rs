//! Kill -9 and then a power cut: a child process runs 3 `Sync` writer threads, each
//! owning a disjoint set of keys (single puts, deletes and batches, each reported
//! before it starts and once it is acknowledged), and a thread compacting now and
//! then. The parent kills it at a random moment and then plays the disk: `kill -9`
//! leaves unsynced pages in the page cache, so the parent drops them itself, every
//! page of the newest log segment past the end its durable marks claim lost, kept or
//! torn at a 512-byte sector (`testing::power_cuts::cut_power_after_kill`). It checks,
//! thread by thread, that every acknowledged write survived and that the write in
//! flight (a batch included) is there entirely or not at all, then lets the next
//! child go on from the recovered store (`tests/common/sync_writers.rs`).
//!
//! `ALEXSTORAGE_POWER_KILLS` sets the number of rounds (default 20, what CI runs):
//! `ALEXSTORAGE_POWER_KILLS=1000 cargo test --release -p alexstorage --test crash_power_loss`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use alexstorage::testing::power_cuts::cut_power_after_kill;
use common::sync_writers::{child, kill_loop, Loop};

const SETUP: Loop = Loop { threads: 3, compact: true };

/// The child: writer threads and a compactor until killed (or, as a safeguard, 60 s).
#[test]
#[ignore = "run by sync_writers_survive_kill9_and_power_cuts as its child process"]
fn crash_power_loss_child() {
    child(&SETUP);
}

#[test]
fn sync_writers_survive_kill9_and_power_cuts() {
    let kills: u64 = std::env::var("ALEXSTORAGE_POWER_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(20);
    let mut pages = 0;
    let acknowledged = kill_loop(&SETUP, "crash_power_loss_child", kills, |dir, durable, random| {
        let mut choices = std::iter::repeat_with(|| random.next_u64() as u8);
        pages += cut_power_after_kill(dir, durable, &mut choices);
    });
    assert!(pages > 0, "no power cut changed a page");
    println!("{kills} kills and power cuts: {acknowledged} writes acknowledged, {pages} pages dropped or torn");
}
