//! A transaction's range: the snapshot's entries with the transaction's own writes
//! on top, in key order from either end, recording in the transaction's reads how
//! far it got.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::reads::Reads;
use crate::{Error, Range, Result, Value};

type Entry = Result<(i64, Value)>;

/// See the module docs.
pub(super) struct Merged {
    /// The snapshot's entries in the range.
    snapshot: Range,
    /// An entry taken from the snapshot's low end, not yet returned.
    front: Option<Entry>,
    /// One taken from its high end.
    back: Option<Entry>,
    /// The transaction's writes in the range when it was made, ascending (`None`: a
    /// delete).
    writes: VecDeque<(i64, Option<Arc<[u8]>>)>,
    reads: Arc<Mutex<Reads>>,
    /// Gone once the transaction is dropped.
    alive: Weak<()>,
    /// This range's number in `reads`.
    part: usize,
    done: bool,
}

impl Merged {
    pub(super) fn new(
        snapshot: Range,
        writes: VecDeque<(i64, Option<Arc<[u8]>>)>,
        reads: Arc<Mutex<Reads>>,
        alive: Weak<()>,
        part: usize,
    ) -> Merged {
        Merged { snapshot, front: None, back: None, writes, reads, alive, part, done: false }
    }

    /// The snapshot's next entry from the low end (`BACK`: the high end), peeked.
    /// Once the snapshot range is used up, what is left is the entry the other end
    /// peeked.
    fn peek<const BACK: bool>(&mut self) -> Option<&Entry> {
        let (this, other) = if BACK { (&mut self.back, &mut self.front) } else { (&mut self.front, &mut self.back) };
        if this.is_none() {
            *this = if BACK { self.snapshot.next_back() } else { self.snapshot.next() };
            if this.is_none() {
                *this = other.take();
            }
        }
        this.as_ref()
    }

    fn step<const BACK: bool>(&mut self) -> Option<Entry> {
        if self.done {
            return None;
        }
        if self.alive.strong_count() == 0 || self.reads.lock().ended() {
            // What it would return now would go unchecked: the transaction committed
            // (or was dropped) with what it had read so far.
            self.done = true;
            return Some(Err(Error::InvalidArgument(
                "a transaction's range was read after the transaction ended".to_owned(),
            )));
        }
        loop {
            let from_snapshot = match self.peek::<BACK>() {
                Some(Ok((key, _))) => Some(*key),
                // An unreadable record: reported where it stands.
                Some(Err(_)) => return if BACK { self.back.take() } else { self.front.take() },
                None => None,
            };
            let from_writes = if BACK { self.writes.back() } else { self.writes.front() }.map(|(key, _)| *key);
            // Whether the snapshot's key comes first from this end.
            let snapshot_first = match (from_snapshot, from_writes) {
                (None, None) => {
                    self.done = true;
                    self.reads.lock().exhausted(self.part);
                    return None;
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(ours), Some(theirs)) => {
                    if BACK {
                        ours > theirs
                    } else {
                        ours < theirs
                    }
                }
            };
            if snapshot_first {
                let entry = if BACK { self.back.take() } else { self.front.take() };
                if let Some(Ok((key, _))) = &entry {
                    self.reads.lock().reached(self.part, *key, BACK);
                }
                return entry;
            }
            let Some((key, write)) = (if BACK { self.writes.pop_back() } else { self.writes.pop_front() }) else {
                continue;
            };
            if from_snapshot == Some(key) {
                // The transaction's own write hides the snapshot's version.
                if BACK {
                    self.back = None;
                } else {
                    self.front = None;
                }
            }
            self.reads.lock().reached(self.part, key, BACK);
            if let Some(value) = write {
                return Some(Ok((key, Value::owned(value))));
            }
            // Its own delete: nothing to return here.
        }
    }
}

impl Iterator for Merged {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.step::<false>()
    }
}

impl DoubleEndedIterator for Merged {
    fn next_back(&mut self) -> Option<Entry> {
        self.step::<true>()
    }
}

/// Once `done`, every call returns `None`.
impl std::iter::FusedIterator for Merged {}
