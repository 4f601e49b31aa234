//! [`Range`]: ordered, lazy, double-ended iteration over a snapshot's keys, and the
//! chunked index walks that snapshots and checkpoints share.
//!
//! A range holds its snapshot's registration and reads the index in chunks of keys
//! (16, doubling to 512), each under the shared read lock for only that chunk's
//! in-memory walk (which also takes a lease on each key's segment); a record is read
//! and checked outside the lock, when its key is returned, so reading ahead costs
//! index work only. It never blocks writers for longer than one chunk, and a
//! compaction that retires segments meanwhile does not disturb it: the leases keep
//! them mapped.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::engine::{
    prefetch_record, range_is_empty, read_record, read_record_up_to, Engine, Registration, Slot, View,
    RECORD_PREFETCH_DISTANCE,
};
use crate::family::FamilyRef;
use crate::index::Alex;
use crate::log::Location;
use crate::value::Lease;
use crate::{Result, Value};

/// Keys read under the lock by a range's first chunk; each later chunk doubles, up to
/// [`MAX_CHUNK`], so that short scans read little ahead and long ones lock seldom.
pub(crate) const FIRST_CHUNK: usize = 16;
/// The largest chunk.
pub(crate) const MAX_CHUNK: usize = 512;

/// Reads the version of `key` of family `family` a snapshot at `sequence` sees,
/// given the latest version and the kept version current at `sequence` (both located
/// under the lock).
pub(crate) fn resolve(
    engine: &Engine,
    sequence: u64,
    family: u16,
    key: i64,
    latest: Option<Slot>,
    older: Option<Slot>,
) -> Result<Option<Value>> {
    if let Some(Slot { location, lease }) = latest {
        if let (_, Some(value)) = read_record_up_to(&engine.path, location, lease, family, key, sequence)? {
            engine.metrics.reads.bytes(value.len() as u64);
            return Ok(Some(value));
        }
    }
    match older {
        Some(Slot { location, lease }) => {
            let (_, value) = read_record(&engine.path, location, lease, family, key)?;
            engine.metrics.reads.bytes(value.len() as u64);
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// [`resolve`] of each of `keys` (a `multi_get`'s), given their latest versions and,
/// where `older` holds them, their kept ones, appended to `out` in order; each record
/// is prefetched a few keys ahead of its read, so that the misses overlap. The latest
/// reads of a store pass `u64::MAX` as the sequence and no kept versions.
pub(crate) fn resolve_many(
    engine: &Engine,
    sequence: u64,
    family: u16,
    keys: &[i64],
    latest: &mut [Option<Slot>],
    older: &mut [Option<Slot>],
    out: &mut Vec<Option<Value>>,
) -> Result<()> {
    for slot in latest.iter().take(RECORD_PREFETCH_DISTANCE) {
        prefetch_record(slot.as_ref());
    }
    for (at, &key) in keys.iter().enumerate() {
        if let Some(ahead) = latest.get(at + RECORD_PREFETCH_DISTANCE) {
            prefetch_record(ahead.as_ref());
        }
        let newest = latest.get_mut(at).and_then(Option::take);
        let kept = older.get_mut(at).and_then(Option::take);
        out.push(resolve(engine, sequence, family, key, newest, kept)?);
    }
    Ok(())
}

/// A key located under the lock: its latest version and the version kept for the
/// snapshot, if any.
pub(crate) struct Located {
    pub key: i64,
    pub latest: Option<Slot>,
    pub older: Option<Slot>,
}

/// An ordered, lazy, double-ended iterator over a snapshot's keys in a range (for a
/// transaction's range: merged with the transaction's own writes).
///
/// Items are `Result<(i64, Value)>`: a record that fails its checksum is an
/// `Err(Error::Corruption)` item, and iteration goes on past it.
pub struct Range(Source);

/// Where a range's entries come from.
enum Source {
    Snapshot(SnapshotRange),
    /// Built on top of snapshot ranges by a higher layer (a transaction's).
    Layered(Box<dyn DoubleEndedIterator<Item = Result<(i64, Value)>> + Send + Sync>),
}

/// A range over a snapshot's keys: see [`Range`].
pub(crate) struct SnapshotRange {
    registration: Arc<Registration>,
    /// The column family it reads.
    family: FamilyRef,
    /// The family was found dropped: an error is returned once, then the range ends.
    missing: bool,
    /// Keys not yet read into a buffer lie within `(lo, hi)`.
    lo: Bound<i64>,
    hi: Bound<i64>,
    /// Located ahead from the low end, ascending; each record is read and checked
    /// only when its key is returned, so reading ahead costs index work only.
    front: VecDeque<Located>,
    /// Located ahead from the high end, ascending.
    back: VecDeque<Located>,
    /// Keys the next chunk from the low end reads.
    front_chunk: usize,
    /// Keys the next chunk from the high end reads.
    back_chunk: usize,
}

impl fmt::Debug for Range {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Snapshot(range) => formatter
                .debug_struct("Range")
                .field("sequence", &range.registration.sequence)
                .field("unread", &(range.lo, range.hi))
                .finish(),
            Source::Layered(_) => formatter.debug_struct("Range").finish_non_exhaustive(),
        }
    }
}

impl Range {
    pub(crate) fn new(registration: Arc<Registration>, family: FamilyRef, lo: Bound<i64>, hi: Bound<i64>) -> Range {
        registration.engine.metrics.ranges.increment();
        Range(Source::Snapshot(SnapshotRange::new(registration, family, lo, hi)))
    }

    /// A range that yields `error` once and ends.
    pub(crate) fn failed(error: crate::Error) -> Range {
        Range(Source::Layered(Box::new(std::iter::once(Err(error)))))
    }

    /// A range whose entries a higher layer produces (merging snapshot ranges with
    /// something of its own).
    pub(crate) fn layered(
        entries: impl DoubleEndedIterator<Item = Result<(i64, Value)>> + std::iter::FusedIterator + Send + Sync + 'static,
    ) -> Range {
        Range(Source::Layered(Box::new(entries)))
    }
}

impl SnapshotRange {
    pub(crate) fn new(
        registration: Arc<Registration>,
        family: FamilyRef,
        lo: Bound<i64>,
        hi: Bound<i64>,
    ) -> SnapshotRange {
        SnapshotRange {
            registration,
            family,
            missing: false,
            lo,
            hi,
            front: VecDeque::new(),
            back: VecDeque::new(),
            front_chunk: FIRST_CHUNK,
            back_chunk: FIRST_CHUNK,
        }
    }

    fn exhausted(&self) -> bool {
        range_is_empty(self.lo, self.hi)
    }

    /// Reads the next chunk from the low end (or the high end when `descending`) into
    /// its buffer and narrows the unread bounds past it.
    fn refill(&mut self, descending: bool) {
        let sequence = self.registration.sequence;
        let chunk = if descending { &mut self.back_chunk } else { &mut self.front_chunk };
        let limit = *chunk;
        *chunk = (limit * 2).min(MAX_CHUNK);
        let boundary = {
            let view = self.registration.engine.read_view();
            let buffer = if descending { &mut self.back } else { &mut self.front };
            match view.index_of(&self.family) {
                None => {
                    // The family was dropped: one error, then nothing.
                    self.missing = true;
                    None
                }
                // No kept versions: each key's version is its latest one.
                Some(index) if view.history.len() == 0 => {
                    locate_latest(&view, index, self.lo, self.hi, descending, limit, buffer)
                }
                Some(index) => {
                    let (located, boundary) =
                        locate_chunk(&view, self.family.id, index, self.lo, self.hi, sequence, descending, limit);
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
    fn resolve(&self, Located { key, latest, older }: Located) -> Option<Result<(i64, Value)>> {
        let registration = &self.registration;
        match resolve(&registration.engine, registration.sequence, self.family.id, key, latest, older) {
            Ok(Some(value)) => Some(Ok((key, value))),
            Ok(None) => None,
            Err(error) => Some(Err(error)),
        }
    }

    /// Prefetches the record of the located key `ahead` places past the next one to
    /// be returned from this end (from the low end, or with `BACK` the high end).
    #[inline]
    fn prefetch_ahead<const BACK: bool>(&self, ahead: usize) {
        let buffer = if BACK { &self.back } else { &self.front };
        let at = if BACK { buffer.len().checked_sub(ahead + 1) } else { Some(ahead) };
        if let Some(located) = at.and_then(|at| buffer.get(at)) {
            prefetch_record(located.latest.as_ref());
        }
    }

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
                    if std::mem::take(&mut self.missing) {
                        return Some(Err(self.family.missing()));
                    }
                    // The first records of the refilled chunk, before the first read.
                    for ahead in 0..RECORD_PREFETCH_DISTANCE {
                        self.prefetch_ahead::<BACK>(ahead);
                    }
                    continue;
                }
            };
            // Records of a scan as loaded lie anywhere in the log: fetch the one a few
            // keys ahead while this one is read, so that their misses overlap.
            self.prefetch_ahead::<BACK>(RECORD_PREFETCH_DISTANCE - 1);
            if let Some(item) = self.resolve(located) {
                return Some(item);
            }
        }
    }
}

impl Iterator for SnapshotRange {
    type Item = Result<(i64, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step::<false>()
    }
}

impl DoubleEndedIterator for SnapshotRange {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step::<true>()
    }
}

impl std::iter::FusedIterator for SnapshotRange {}

impl Iterator for Range {
    type Item = Result<(i64, Value)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Source::Snapshot(range) => range.next(),
            Source::Layered(entries) => entries.next(),
        }
    }
}

impl DoubleEndedIterator for Range {
    #[inline]
    fn next_back(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Source::Snapshot(range) => range.next_back(),
            Source::Layered(entries) => entries.next_back(),
        }
    }
}

/// Every layered range a transaction builds ends for good once it returns `None`.
impl std::iter::FusedIterator for Range {}

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
            Some((segment, lease)) if *segment == location.segment() => Slot { location, lease: lease.clone() },
            _ => {
                let slot = view.slot(location);
                self.0 = Some((location.segment(), slot.lease.clone()));
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
    index: &Alex<u64>,
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
        Located { key, latest: Some(leases.slot(view, Location(at))), older: None }
    };
    if descending {
        for (key, at) in index.range((lo, hi)).rev().take(limit) {
            buffer.push_front(locate(key, at));
        }
    } else {
        for (key, at) in index.range((lo, hi)).take(limit) {
            buffer.push_back(locate(key, at));
        }
    }
    if count == limit {
        last
    } else {
        None
    }
}

/// Under the read lock: up to `limit` keys from one end of `(lo, hi)` of family
/// `family` (whose index is `index`), from the index and from the kept versions, in
/// iteration order; and the last key examined (`None` if the chunk reached the far
/// bound).
#[allow(clippy::too_many_arguments)]
pub(crate) fn locate_chunk(
    view: &View,
    family: u16,
    index: &Alex<u64>,
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
        index.range((lo, hi)).rev().take(limit).collect()
    } else {
        index.range((lo, hi)).take(limit).collect()
    };
    let kept = view.history.keys(family, lo, hi, descending, limit);
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
        let older = if keeps_versions { view.history.at(family, key, sequence) } else { None };
        located.push(Located { key, latest, older });
    }
    (located, boundary)
}
