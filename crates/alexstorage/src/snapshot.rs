//! MVCC: [`Snapshot`]s and [`Range`]s, and the old versions kept for them.
//!
//! # Versions
//! Every committed write has a sequence number (a batch's writes share one). The index
//! maps each key to its latest version only; the record in the log carries the
//! version's sequence. When a write supersedes (overwrites or deletes) a version that a
//! live snapshot can still see, the superseded version goes into [`History`]: key ->
//! `(from, until, location)`, the sequence range in which it was the key's value. A
//! snapshot taken at sequence `S` reads a key as:
//! 1. the latest version, if its record's sequence is `<= S`; else
//! 2. the history version with `from <= S < until`, if there is one; else
//! 3. absent (the key was created after `S`, or deleted before it).
//!
//! A superseded version is kept only if some live snapshot's sequence is `>= from`
//! (its `until` is the new write's sequence, above every live snapshot). When a
//! snapshot is dropped, versions no live snapshot falls within are dropped with it;
//! with no snapshot left the whole history goes. [`crate::Stats::retained_versions`]
//! shows how many are kept. Their log records stay on disk until compaction, which
//! must keep every record a live snapshot can reach.
//!
//! # Ranges
//! A [`Range`] holds its snapshot and reads the index in chunks of keys (16, doubling
//! to 512), each under the shared read lock for only that chunk's in-memory walk (which
//! also takes a lease on each key's segment); a record is read and checked outside the
//! lock, when its key is returned, so reading ahead costs index work only. It never
//! blocks writers for longer than one chunk, and a compaction that retires segments
//! meanwhile does not disturb it: the leases keep them mapped.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::db::{read_record, record_sequence, Shared, Slot, View};
use crate::log::Location;
use crate::value::Lease;
use crate::{Error, Result, Value};

/// Keys read under the lock by a range's first chunk; each later chunk doubles, up to
/// [`MAX_CHUNK`], so that short scans read little ahead and long ones lock seldom.
pub const FIRST_CHUNK: usize = 16;
/// The largest chunk.
pub const MAX_CHUNK: usize = 512;

/// A version superseded while a snapshot could still see it.
#[derive(Clone, Debug)]
pub(crate) struct OldVersion {
    /// Sequence of the write that created it.
    pub from: u64,
    /// Sequence of the write that superseded it.
    pub until: u64,
    /// Its record.
    pub location: Location,
    /// Keeps the record's segment mapped: compaction may retire the segment (and
    /// delete its file) while a snapshot still needs this version.
    pub lease: Option<Arc<Lease>>,
}

/// Superseded versions that live snapshots may read, by key.
#[derive(Debug, Default)]
pub(crate) struct History {
    versions: BTreeMap<i64, Vec<OldVersion>>,
    count: usize,
}

impl History {
    /// Keeps `version` of `key`.
    pub fn keep(&mut self, key: i64, version: OldVersion) {
        self.versions.entry(key).or_default().push(version);
        self.count += 1;
    }

    /// The version of `key` that was current at `sequence`, if one is kept.
    pub fn at(&self, key: i64, sequence: u64) -> Option<Slot> {
        let versions = self.versions.get(&key)?;
        versions
            .iter()
            .find(|version| version.from <= sequence && sequence < version.until)
            .map(|version| (version.location, version.lease.clone()))
    }

    /// Number of versions kept.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Drops every version that no sequence in `live` falls within.
    pub fn prune(&mut self, live: &BTreeMap<u64, usize>) {
        let mut count = 0;
        self.versions.retain(|_, versions| {
            versions.retain(|version| live.range(version.from..version.until).next().is_some());
            count += versions.len();
            !versions.is_empty()
        });
        self.count = count;
    }

    /// Takes everything out (for dropping outside the lock).
    pub fn take(&mut self) -> History {
        std::mem::take(self)
    }

    /// Keys with kept versions in `(lo, hi)`, ascending or descending, at most `limit`.
    fn keys(&self, lo: Bound<i64>, hi: Bound<i64>, descending: bool, limit: usize) -> Vec<i64> {
        if range_is_empty(lo, hi) {
            return Vec::new();
        }
        let range = self.versions.range((lo, hi)).map(|(key, _)| *key);
        if descending {
            range.rev().take(limit).collect()
        } else {
            range.take(limit).collect()
        }
    }
}

/// Whether no key satisfies both bounds (`BTreeMap::range` panics on some of these).
pub(crate) fn range_is_empty(lo: Bound<i64>, hi: Bound<i64>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b)) | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        (Bound::Excluded(a), Bound::Excluded(b)) => a >= b || a.checked_add(1) == Some(b),
        _ => false,
    }
}

/// A registered point in time: keeps its versions reachable until dropped.
pub(crate) struct Registration {
    pub shared: Arc<Shared>,
    pub sequence: u64,
    pub len: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.release_snapshot(self.sequence);
    }
}

/// A point-in-time, read-only view of the store.
///
/// Its `get`, `contains_key`, `range` and `len` answer as of the moment it was taken,
/// whatever is written, deleted or compacted afterwards, until it is dropped. It is
/// `Send + Sync + 'static`: move it to other threads freely. Old versions it can see
/// are kept in memory (and their records on disk) while it lives: drop snapshots you
/// no longer need.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let db = alexstorage::Db::open(dir.path()).unwrap();
/// db.put(1, b"old").unwrap();
/// let snapshot = db.snapshot();
/// db.put(1, b"new").unwrap();
/// db.delete(1).unwrap();
/// assert_eq!(snapshot.get(1).unwrap().unwrap(), b"old");
/// assert_eq!(db.get(1).unwrap(), None);
/// ```
#[derive(Clone)]
pub struct Snapshot {
    registration: Arc<Registration>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Snapshot")
            .field("sequence", &self.registration.sequence)
            .field("len", &self.registration.len)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(registration: Registration) -> Snapshot {
        Snapshot { registration: Arc::new(registration) }
    }

    /// The sequence number of the last write it sees.
    pub fn sequence(&self) -> u64 {
        self.registration.sequence
    }

    /// The value `key` had when the snapshot was taken.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        let registration = &self.registration;
        let (latest, older) = {
            let view = registration.shared.read_view();
            (view.locate(key), view.history.at(key, registration.sequence))
        };
        resolve(&registration.shared, registration.sequence, key, latest, older)
    }

    /// Whether `key` had a value when the snapshot was taken.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        self.get(key).map(|value| value.is_some())
    }

    /// Number of keys when the snapshot was taken (exact).
    pub fn len(&self) -> usize {
        self.registration.len
    }

    /// Whether the store was empty when the snapshot was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys in `range` as of the snapshot, ascending (or descending with `.rev()`).
    pub fn range(&self, range: impl RangeBounds<i64>) -> Range {
        Range::new(Arc::clone(&self.registration), range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Every key as of the snapshot: `range(..)`.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// (key, record location) of every key as of the snapshot, ascending: what an
    /// index checkpoint holds.
    pub(crate) fn locations(&self) -> Locations {
        Locations {
            registration: Arc::clone(&self.registration),
            lo: Bound::Unbounded,
            buffer: VecDeque::new(),
            done: false,
        }
    }
}

/// See [`Snapshot::locations`]. An unreadable record ends it with one `Err` item.
pub(crate) struct Locations {
    registration: Arc<Registration>,
    lo: Bound<i64>,
    buffer: VecDeque<(i64, u64)>,
    done: bool,
}

impl Iterator for Locations {
    type Item = Result<(i64, u64)>;

    fn next(&mut self) -> Option<Result<(i64, u64)>> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            let sequence = self.registration.sequence;
            let registration = Arc::clone(&self.registration);
            let (located, boundary, quiet) = {
                let view = registration.shared.read_view();
                if view.sequence == sequence && view.history.len() == 0 {
                    // Nothing written since the snapshot (a checkpoint at close, for
                    // one): the index is the snapshot; copy a chunk of it as it is.
                    match self.copy_chunk(&view) {
                        Ok(()) => continue,
                        Err(error) => {
                            self.done = true;
                            return Some(Err(error));
                        }
                    }
                }
                let (located, boundary) = locate_chunk(&view, self.lo, Bound::Unbounded, sequence, false, MAX_CHUNK);
                // Nothing written since the snapshot (a checkpoint at close, for one):
                // every latest version is the snapshot's, and its record need not be
                // read to tell (which would cost a memory miss per key).
                (located, boundary, view.sequence == sequence)
            };
            match boundary {
                Some(key) => self.lo = Bound::Excluded(key),
                None => self.done = true,
            }
            for (key, latest, older) in located {
                let mut chosen = None;
                if let Some((location, lease)) = latest {
                    let written_at = if quiet {
                        lease.map(|_| sequence)
                    } else {
                        lease.and_then(|lease| record_sequence(lease.segment(), location))
                    };
                    match written_at {
                        Some(written_at) if written_at <= sequence => chosen = Some(location),
                        Some(_) => {}
                        None => {
                            self.done = true;
                            let reason = format!("unreadable record of key {key} in segment {}", location.segment());
                            let path = &self.registration.shared.path;
                            return Some(Err(Error::corruption(path, u64::from(location.offset()), reason)));
                        }
                    }
                }
                if let Some(location) = chosen.or(older.map(|(location, _)| location)) {
                    self.buffer.push_back((key, location.0));
                }
            }
        }
    }
}

impl Locations {
    /// Copies the next chunk of (key, location) pairs from the index into the buffer,
    /// checking that every location's segment exists.
    fn copy_chunk(&mut self, view: &View) -> Result<()> {
        let mut last = None;
        let mut count = 0;
        let mut segment = None;
        for (key, at) in view.index.range((self.lo, Bound::Unbounded)).take(MAX_CHUNK) {
            let location = Location(at);
            if segment != Some(location.segment()) {
                if !view.segments.contains_key(&location.segment()) {
                    let reason = format!("key {key} points into segment {} which does not exist", location.segment());
                    return Err(Error::corruption(
                        &self.registration.shared.path,
                        u64::from(location.offset()),
                        reason,
                    ));
                }
                segment = Some(location.segment());
            }
            self.buffer.push_back((key, at));
            last = Some(key);
            count += 1;
        }
        match last {
            Some(key) if count == MAX_CHUNK => self.lo = Bound::Excluded(key),
            _ => self.done = true,
        }
        Ok(())
    }
}

/// Reads the version of `key` a snapshot at `sequence` sees, given the latest version
/// and the kept version current at `sequence` (both located under the lock).
fn resolve(
    shared: &Shared,
    sequence: u64,
    key: i64,
    latest: Option<Slot>,
    older: Option<Slot>,
) -> Result<Option<Value>> {
    if let Some((location, lease)) = latest {
        let (written_at, value) = read_record(&shared.path, location, lease, key)?;
        if written_at <= sequence {
            return Ok(Some(value));
        }
    }
    match older {
        Some((location, lease)) => read_record(&shared.path, location, lease, key).map(|(_, value)| Some(value)),
        None => Ok(None),
    }
}

/// A key located under the lock: its latest version and the kept version, if any.
type Located = (i64, Option<Slot>, Option<Slot>);

/// An ordered, lazy, double-ended iterator over a snapshot's keys in a range.
///
/// Items are `Result<(i64, Value)>`: a record that fails its checksum is an
/// `Err(Error::Corruption)` item, and iteration goes on past it.
pub struct Range {
    registration: Arc<Registration>,
    /// Keys not yet read into a buffer lie within `(lo, hi)`.
    lo: Bound<i64>,
    hi: Bound<i64>,
    /// Located ahead from the low end, ascending; each record is read and checked
    /// only when its key is returned, so reading ahead costs index work only.
    front: VecDeque<Located>,
    /// Located ahead from the high end, ascending.
    back: VecDeque<Located>,
    /// Keys the next chunk from each end reads (front, back).
    chunks: (usize, usize),
}

impl fmt::Debug for Range {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Range")
            .field("sequence", &self.registration.sequence)
            .field("unread", &(self.lo, self.hi))
            .finish()
    }
}

impl Range {
    pub(crate) fn new(registration: Arc<Registration>, lo: Bound<i64>, hi: Bound<i64>) -> Range {
        Range {
            registration,
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            chunks: (FIRST_CHUNK, FIRST_CHUNK),
        }
    }

    fn exhausted(&self) -> bool {
        range_is_empty(self.lo, self.hi)
    }

    /// Reads the next chunk from the low end (or the high end when `descending`) into
    /// its buffer and narrows the unread bounds past it.
    fn refill(&mut self, descending: bool) {
        let sequence = self.registration.sequence;
        let chunk = if descending { &mut self.chunks.1 } else { &mut self.chunks.0 };
        let limit = *chunk;
        *chunk = (limit * 2).min(MAX_CHUNK);
        let boundary = {
            let view = self.registration.shared.read_view();
            let buffer = if descending { &mut self.back } else { &mut self.front };
            if view.history.len() == 0 {
                // No kept versions: each key's version is its latest one.
                locate_latest(&view, self.lo, self.hi, descending, limit, buffer)
            } else {
                let (located, boundary) = locate_chunk(&view, self.lo, self.hi, sequence, descending, limit);
                if descending {
                    // Located in descending order; the buffer is kept ascending.
                    for item in located {
                        buffer.push_front(item);
                    }
                } else {
                    buffer.extend(located);
                }
                boundary
            }
        };
        match boundary {
            Some(key) if descending => self.hi = Bound::Excluded(key),
            Some(key) => self.lo = Bound::Excluded(key),
            // Everything left was read: make the bounds empty.
            None => {
                self.lo = Bound::Excluded(0);
                self.hi = Bound::Excluded(0);
            }
        }
    }

    /// Reads a located key's version as of the snapshot: `None` if it had none.
    fn resolve(&self, (key, latest, older): Located) -> Option<Result<(i64, Value)>> {
        let registration = &self.registration;
        match resolve(&registration.shared, registration.sequence, key, latest, older) {
            Ok(Some(value)) => Some(Ok((key, value))),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        }
    }
}

/// Leases for the keys of one chunk. Neighbouring keys mostly share a segment
/// (always, after a compaction): the previous key's lease is reused instead of a
/// lookup in the segment table.
#[derive(Default)]
struct LeaseCache(Option<(u32, Option<Arc<Lease>>)>);

impl LeaseCache {
    /// The slot of `location`: a lease on its segment, if the view has it.
    #[inline]
    fn slot(&mut self, view: &View, location: Location) -> Slot {
        match &self.0 {
            Some((segment, lease)) if *segment == location.segment() => (location, lease.clone()),
            _ => {
                let slot = view.lease_at(location);
                self.0 = Some((location.segment(), slot.1.clone()));
                slot
            }
        }
    }
}

/// [`locate_chunk`] when no versions are kept (the common case): up to `limit` keys
/// from one end of `(lo, hi)` straight from the index into `buffer` (kept ascending);
/// returns the last key examined, or `None` if the chunk reached the far bound.
fn locate_latest(
    view: &View,
    lo: Bound<i64>,
    hi: Bound<i64>,
    descending: bool,
    limit: usize,
    buffer: &mut VecDeque<Located>,
) -> Option<i64> {
    if range_is_empty(lo, hi) {
        return None;
    }
    let mut count = 0;
    let mut last = None;
    let mut leases = LeaseCache::default();
    let mut locate = |key: i64, at: u64| -> Located {
        count += 1;
        last = Some(key);
        (key, Some(leases.slot(view, Location(at))), None)
    };
    if descending {
        for (key, at) in view.index.range((lo, hi)).rev().take(limit) {
            buffer.push_front(locate(key, at));
        }
    } else {
        for (key, at) in view.index.range((lo, hi)).take(limit) {
            buffer.push_back(locate(key, at));
        }
    }
    if count == limit {
        last
    } else {
        None
    }
}

/// Under the read lock: up to `limit` keys from one end of `(lo, hi)`, from the index
/// and from the kept versions, in iteration order; and the last key examined (`None`
/// if the chunk reached the far bound).
fn locate_chunk(
    view: &View,
    lo: Bound<i64>,
    hi: Bound<i64>,
    sequence: u64,
    descending: bool,
    limit: usize,
) -> (Vec<Located>, Option<i64>) {
    if range_is_empty(lo, hi) {
        return (Vec::new(), None);
    }
    let latest: Vec<(i64, u64)> = if descending {
        view.index.range((lo, hi)).rev().take(limit).collect()
    } else {
        view.index.range((lo, hi)).take(limit).collect()
    };
    let kept = view.history.keys(lo, hi, descending, limit);
    // The chunk ends where either source stopped short of the far bound.
    let before = |a: i64, b: i64| if descending { a > b } else { a < b };
    let mut boundary: Option<i64> = None;
    for (full, last) in
        [(latest.len() == limit, latest.last().map(|entry| entry.0)), (kept.len() == limit, kept.last().copied())]
    {
        if let (true, Some(last)) = (full, last) {
            boundary = Some(match boundary {
                Some(current) if before(current, last) => current,
                _ => last,
            });
        }
    }
    let within = |key: i64| boundary.is_none_or(|edge| !before(edge, key));
    let mut located = Vec::with_capacity(latest.len() + kept.len());
    let mut leases = LeaseCache::default();
    let keeps_versions = view.history.len() > 0;
    let (mut a, mut b) = (
        latest.into_iter().filter(|entry| within(entry.0)).peekable(),
        kept.into_iter().filter(|key| within(*key)).peekable(),
    );
    loop {
        let next_latest = a.peek().map(|entry| entry.0);
        let next_kept = b.peek().copied();
        let key = match (next_latest, next_kept) {
            (None, None) => break,
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (Some(x), Some(y)) => {
                if before(y, x) {
                    y
                } else {
                    x
                }
            }
        };
        let latest =
            if next_latest == Some(key) { a.next().map(|(_, at)| leases.slot(view, Location(at))) } else { None };
        if next_kept == Some(key) {
            b.next();
        }
        let older = if keeps_versions { view.history.at(key, sequence) } else { None };
        located.push((key, latest, older));
    }
    (located, boundary)
}

impl Range {
    /// The next entry from the low end, or with `BACK` from the high end.
    /// (Generic over the end, so that each direction compiles to its own loop.)
    #[inline]
    fn step<const BACK: bool>(&mut self) -> Option<Result<(i64, Value)>> {
        loop {
            let popped = if BACK { self.back.pop_back() } else { self.front.pop_front() };
            let located = match popped {
                Some(located) => located,
                // Everything is located: what is left lies in the other end's buffer.
                None if self.exhausted() => {
                    if BACK {
                        self.front.pop_back()?
                    } else {
                        self.back.pop_front()?
                    }
                }
                None => {
                    self.refill(BACK);
                    continue;
                }
            };
            if let Some(item) = self.resolve(located) {
                return Some(item);
            }
        }
    }
}

impl Iterator for Range {
    type Item = Result<(i64, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step::<false>()
    }
}

impl DoubleEndedIterator for Range {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step::<true>()
    }
}

impl std::iter::FusedIterator for Range {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ranges() {
        use Bound::*;
        assert!(range_is_empty(Included(2), Included(1)));
        assert!(!range_is_empty(Included(1), Included(1)));
        assert!(range_is_empty(Included(1), Excluded(1)));
        assert!(range_is_empty(Excluded(1), Excluded(2)));
        assert!(!range_is_empty(Excluded(1), Excluded(3)));
        assert!(!range_is_empty(Unbounded, Excluded(i64::MIN + 1)));
    }

    #[test]
    fn history_keeps_what_live_snapshots_see() {
        let mut history = History::default();
        let version = |from, until, location| OldVersion { from, until, location: Location(location), lease: None };
        history.keep(1, version(1, 5, 10));
        history.keep(1, version(5, 9, 11));
        history.keep(2, version(2, 3, 12));
        let at = |history: &History, key, sequence| history.at(key, sequence).map(|slot| slot.0);
        assert_eq!(at(&history, 1, 4), Some(Location(10)));
        assert_eq!(at(&history, 1, 5), Some(Location(11)));
        assert_eq!(at(&history, 1, 9), None);
        let live: BTreeMap<u64, usize> = [(6, 1)].into_iter().collect();
        history.prune(&live);
        assert_eq!(history.len(), 1);
        assert_eq!(at(&history, 1, 6), Some(Location(11)));
        assert_eq!(at(&history, 2, 2), None);
    }
}
