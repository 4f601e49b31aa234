//! Crash test with concurrent `Sync` writers: a child process runs 4 writer threads,
//! each owning a disjoint set of keys, writing single puts, deletes and batches with
//! `Durability::Sync` and reporting each write before it starts and once it is
//! acknowledged. The parent `kill -9`s the child at random moments and checks, thread
//! by thread, that every acknowledged write survived and that the write in flight
//! (a batch included) is there entirely or not at all (`tests/common/sync_writers.rs`).
//!
//! `ALEXSTORAGE_CRASH_KILLS` sets the number of kills (default 20, what CI runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sync_writers::{child, kill_loop, Loop};

const SETUP: Loop = Loop { threads: 4, compact: false };

/// The child: writer threads until killed (or, as a safeguard, for 60 s).
#[test]
#[ignore = "run by concurrent_sync_writers_survive_kill9 as its child process"]
fn crash_concurrent_child() {
    child(&SETUP);
}

#[test]
fn concurrent_sync_writers_survive_kill9() {
    let kills: u64 = std::env::var("ALEXSTORAGE_CRASH_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(20);
    kill_loop(&SETUP, "crash_concurrent_child", kills, |_, _, _| {});
}
