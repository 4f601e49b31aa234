//! Model check (loom) of the one lock-free protocol in the store: a segment's
//! `published` end. The appender copies a record into the mapping above `published`
//! and then moves `published` past it with a release store; readers load `published`
//! with acquire and read only below it, with no lock. loom explores every interleaving
//! and memory-order outcome the C++11 model allows and fails on a data race (a read of
//! bytes not yet published, or a read that could see a torn record).
//!
//! The model mirrors `log/segment.rs`: `append` (under the tail lock, modelled by the
//! single appender thread) and `read(offset, len)` (below `published`). It checks the
//! protocol, not the mmap itself.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release -p alexstorage --test loom_publish`
//! (`scripts/test.sh` does, with its own target directory).

#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

const CAPACITY: usize = 4;

/// A segment reduced to what the protocol touches: bytes and the published end.
struct Segment {
    bytes: [UnsafeCell<u8>; CAPACITY],
    published: AtomicUsize,
}

impl Segment {
    fn new() -> Segment {
        Segment { bytes: std::array::from_fn(|_| UnsafeCell::new(0)), published: AtomicUsize::new(0) }
    }

    /// The appender: write above `published`, then publish with release.
    fn append(&self, record: &[u8]) {
        let start = self.published.load(Ordering::Relaxed);
        for (index, &byte) in record.iter().enumerate() {
            // SAFETY (of the model): only the appender writes, and only above
            // `published`, which no reader reads yet.
            self.bytes[start + index].with_mut(|cell| unsafe { *cell = byte });
        }
        self.published.store(start + record.len(), Ordering::Release);
    }

    /// A reader: everything below `published` (acquire).
    fn read_published(&self) -> Vec<u8> {
        let end = self.published.load(Ordering::Acquire);
        // SAFETY (of the model): bytes below `published` are never written again.
        (0..end).map(|index| self.bytes[index].with(|cell| unsafe { *cell })).collect()
    }
}

#[test]
fn readers_see_only_whole_published_records() {
    loom::model(|| {
        let segment = Arc::new(Segment::new());
        let appender = {
            let segment = Arc::clone(&segment);
            thread::spawn(move || {
                segment.append(&[1, 2]);
                segment.append(&[3, 4]);
            })
        };
        let reader = {
            let segment = Arc::clone(&segment);
            thread::spawn(move || segment.read_published())
        };
        let seen = reader.join().unwrap();
        appender.join().unwrap();
        // Whole records only, never a prefix of one, never stale bytes.
        assert!(seen.is_empty() || seen == [1, 2] || seen == [1, 2, 3, 4], "reader saw {seen:?}");
        assert_eq!(segment.read_published(), [1, 2, 3, 4]);
    });
}
