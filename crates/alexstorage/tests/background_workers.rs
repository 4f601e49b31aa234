//! The background threads (periodic syncer, compactor, checkpointer) live exactly as
//! long as the store: started by a writable open, stopped and joined by the last
//! handle's drop, even while snapshots and values outlive it. A read-only open starts
//! none.
//!
//! One test in this file, so that no other test's stores share its process (the
//! threads are counted by name from `/proc/self/task`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use alexstorage::{Durability, Options};

/// Threads of this process whose name starts with `alexstorage-` (names are cut to
/// 15 bytes by the kernel: `alexstorage-che` is the checkpointer).
fn store_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            if name.starts_with("alexstorage-") {
                names.push(name.trim().to_string());
            }
        }
    }
    names.sort();
    names
}

/// Waits (bounded) until [`store_threads`] is `expected`: a new thread names itself
/// once it runs, a moment after it is spawned, and an exited one leaves the task list
/// a moment after it ends.
fn expect_threads(expected: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store_threads() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(store_threads(), expected);
}

#[test]
fn background_threads_stop_when_the_last_handle_is_dropped() {
    assert!(store_threads().is_empty(), "{:?}", store_threads());
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new()
        .durability(Durability::Periodic(Duration::from_millis(5)))
        .segment_size(64 << 10)
        .open(dir.path())
        .unwrap();
    expect_threads(&["alexstorage-che", "alexstorage-com", "alexstorage-syn"]);
    for key in 0..2_000 {
        db.put(key, [key as u8; 100]).unwrap();
    }
    assert!(db.stats().segments > 1, "the writes rolled the log over");
    let snapshot = db.snapshot();
    let value = db.get(7).unwrap().unwrap();
    let clone = db.clone();
    drop(db);
    assert_eq!(store_threads().len(), 3, "a clone keeps the store open");
    drop(clone);
    // Joined by the drop; the kernel may list an exited thread a moment longer.
    expect_threads(&[]);
    // What outlives the store still reads.
    assert_eq!(snapshot.get(1_999).unwrap().unwrap(), [1_999u16 as u8; 100]);
    assert_eq!(value, [7u8; 100]);
    drop(snapshot);

    let read_only = Options::new().read_only(true).open(dir.path()).unwrap();
    assert_eq!(read_only.len(), 2_000);
    assert!(store_threads().is_empty(), "a read-only store runs no background thread: {:?}", store_threads());
    drop(read_only);

    let quiet = Options::new().background_compaction(false).open(dir.path()).unwrap();
    // Buffered, no background compaction: the checkpointer only.
    expect_threads(&["alexstorage-che"]);
    drop(quiet);
    expect_threads(&[]);
}
