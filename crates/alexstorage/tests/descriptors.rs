//! A store of many segments holds few file descriptors: only the segment being
//! written (and a compaction's output) keeps one; sealed, compacted and read-only
//! segments are read through their mappings alone. Before, a store of a few MB with
//! 4 KiB segments held one descriptor per segment and failed writes with "Too many
//! open files" under the usual `ulimit -n 1024`.
//!
//! One test in this file: it counts the process's open descriptors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alexstorage::Options;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn many_small_segments_hold_few_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let before = open_descriptors();
    let value = [7u8; 1000];
    {
        let db = Options::new().segment_size(4096).background_compaction(false).open(dir.path()).unwrap();
        for key in 0..3000 {
            db.put(key, value).unwrap();
        }
        let segments = db.stats().segments;
        assert!(segments >= 1000, "{segments} segments");
        // The lock file, the segment being written, and a few for the threads.
        let held = open_descriptors().saturating_sub(before);
        assert!(held < 16, "{held} descriptors held for {segments} segments");
        for key in (0..3000).step_by(2) {
            db.delete(key).unwrap();
        }
        db.compact().unwrap();
        assert!(
            open_descriptors().saturating_sub(before) < 16,
            "after compaction: {}",
            open_descriptors().saturating_sub(before)
        );
        assert_eq!(db.get(1).unwrap().unwrap(), value);
    }
    // Reopened, writable beside read-only: every segment mapped, few descriptors.
    let db = Options::new().segment_size(4096).background_compaction(false).open(dir.path()).unwrap();
    let read_only = Options::new().read_only(true).open(dir.path()).unwrap();
    assert!(db.stats().segments >= 500, "{}", db.stats().segments);
    assert!(
        open_descriptors().saturating_sub(before) < 16,
        "after reopening: {}",
        open_descriptors().saturating_sub(before)
    );
    for key in (1..3000).step_by(2) {
        assert_eq!(read_only.get(key).unwrap().unwrap(), value, "key {key}");
        assert_eq!(db.get(key).unwrap().unwrap(), value, "key {key}");
    }
    assert_eq!(db.get(0).unwrap(), None);
    db.put(5_000, b"after").unwrap();
    assert_eq!(db.get(5_000).unwrap().unwrap(), b"after");
}
