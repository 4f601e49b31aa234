//! [`Snapshot`]: a point-in-time, read-only view of the store, and the chunked walk
//! of its (key, location) pairs that index checkpoints are written from.
//!
//! How a snapshot decides which version of a key it sees, and which superseded
//! versions are kept for it, is the engine's version registry (`engine/versions.rs`);
//! ranges over it are `range.rs`.

use std::collections::VecDeque;
use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::engine::{missing_segment, record_sequence, Registration, Slot, View, MULTI_GET_SECTION};
use crate::family::FamilyRef;
use crate::index::Alex;
use crate::log::Location;
use crate::range::{locate_chunk, resolve, resolve_many, Located, Range, MAX_CHUNK};
use crate::{Error, Result, Value};

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
        registration.engine.metrics.reads.gets(1);
        let (latest, older) = {
            let view = registration.engine.read_view();
            (view.locate(key), view.history.at(0, key, registration.sequence))
        };
        resolve(&registration.engine, registration.sequence, 0, key, latest, older)
    }

    /// The values `keys` had when the snapshot was taken, one result per key, in
    /// order: as [`Snapshot::get`] of each, faster per key (see [`crate::Db::multi_get`]).
    pub fn multi_get(&self, keys: &[i64]) -> Result<Vec<Option<Value>>> {
        self.multi_get_in(FamilyRef::default_family(), keys)
    }

    /// [`Snapshot::multi_get`] in `family`; `Error::ColumnFamilyNotFound` once the
    /// family is gone. Keys are looked up in sections of [`MULTI_GET_SECTION`], each
    /// under the view's lock once (the snapshot makes them one view), so that no
    /// batch holds the lock for long.
    pub(crate) fn multi_get_in(&self, family: &FamilyRef, keys: &[i64]) -> Result<Vec<Option<Value>>> {
        let registration = &self.registration;
        let engine = &registration.engine;
        engine.metrics.reads.gets(keys.len() as u64);
        let mut values = Vec::with_capacity(keys.len());
        let (mut latest, mut older) = (Vec::new(), Vec::new());
        for section in keys.chunks(MULTI_GET_SECTION) {
            latest.clear();
            older.clear();
            {
                let view = engine.read_view();
                let index = view.index_of(family).ok_or_else(|| family.missing())?;
                view.locate_many(index, section, &mut latest);
                older.extend(section.iter().map(|&key| view.history.at(family.id, key, registration.sequence)));
            }
            resolve_many(engine, registration.sequence, family.id, section, &mut latest, &mut older, &mut values)?;
        }
        Ok(values)
    }

    /// The value `key` of `family` had when the snapshot was taken (nothing, for a
    /// family created since); `Error::ColumnFamilyNotFound` once the family is gone.
    pub(crate) fn get_in(&self, family: &FamilyRef, key: i64) -> Result<Option<Value>> {
        let registration = &self.registration;
        registration.engine.metrics.reads.gets(1);
        let (latest, older) = {
            let view = registration.engine.read_view();
            (view.locate_in(family, key)?, view.history.at(family.id, key, registration.sequence))
        };
        resolve(&registration.engine, registration.sequence, family.id, key, latest, older)
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
        self.range_in(FamilyRef::default_family(), range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// The keys of `family` in `(lo, hi)` as of the snapshot; a family that is gone
    /// gives one `Err(Error::ColumnFamilyNotFound)`.
    pub(crate) fn range_in(&self, family: &FamilyRef, lo: Bound<i64>, hi: Bound<i64>) -> Range {
        Range::new(Arc::clone(&self.registration), family.clone(), lo, hi)
    }

    /// Every key as of the snapshot: `range(..)`.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// Whether `key` was written (put or deleted) after the snapshot was taken: its
    /// latest version is newer than the snapshot, or it had a version then and has
    /// none now. Compaction moves records but keeps their sequence numbers, so it
    /// changes nothing here. Meant to run with the writer's section held (so that no
    /// write lands while it looks): a transaction's commit check.
    pub(crate) fn written_since(&self, family: &FamilyRef, key: i64) -> Result<bool> {
        let registration = &self.registration;
        let (latest, older) = {
            let view = registration.engine.read_view();
            (view.locate_in(family, key)?, view.history.at(family.id, key, registration.sequence))
        };
        written_after(&registration.engine.path, registration.sequence, latest, older.is_some())
    }

    /// The first key of `(lo, hi)`, ascending, that was written after the snapshot
    /// was taken (see [`Snapshot::written_since`]): a key put, overwritten or deleted
    /// since. Walks the index and the kept versions of the range in chunks, each under
    /// the shared lock for that chunk only.
    pub(crate) fn first_written_since(
        &self,
        family: &FamilyRef,
        mut lo: Bound<i64>,
        hi: Bound<i64>,
    ) -> Result<Option<i64>> {
        let registration = &self.registration;
        loop {
            let (located, boundary) = {
                let view = registration.engine.read_view();
                let index = view.index_of(family).ok_or_else(|| family.missing())?;
                locate_chunk(&view, family.id, index, lo, hi, registration.sequence, false, MAX_CHUNK)
            };
            for Located { key, latest, older } in located {
                if written_after(&registration.engine.path, registration.sequence, latest, older.is_some())? {
                    return Ok(Some(key));
                }
            }
            match boundary {
                Some(key) => lo = Bound::Excluded(key),
                None => return Ok(None),
            }
        }
    }

    /// (key, record location) of every key of `family` as of the snapshot,
    /// ascending: what an index checkpoint holds. A family that is gone yields
    /// nothing, or, if `strict`, ends with one `Err(Error::ColumnFamilyNotFound)` (a
    /// backup's checkpoint, whose catalog still lists it, must not take it as empty).
    pub(crate) fn locations(&self, family: FamilyRef, strict: bool) -> Locations {
        Locations {
            registration: Arc::clone(&self.registration),
            family,
            strict,
            lo: Bound::Unbounded,
            buffer: VecDeque::new(),
            done: false,
        }
    }
}

/// See [`Snapshot::locations`]. An unreadable record ends it with one `Err` item.
pub(crate) struct Locations {
    registration: Arc<Registration>,
    family: FamilyRef,
    strict: bool,
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
                let view = registration.engine.read_view();
                let Some(index) = view.index_of(&self.family) else {
                    // Dropped since the capture: the store's catalog no longer lists
                    // it, so recovery would not use its section.
                    self.done = true;
                    return self.strict.then(|| Err(self.family.missing()));
                };
                if view.sequence == sequence && view.history.len() == 0 {
                    // Nothing written since the snapshot (a checkpoint at close, for
                    // one): the index is the snapshot; copy a chunk of it as it is.
                    match self.copy_chunk(&view, index) {
                        Ok(()) => continue,
                        Err(error) => {
                            self.done = true;
                            return Some(Err(error));
                        }
                    }
                }
                let (located, boundary) =
                    locate_chunk(&view, self.family.id, index, self.lo, Bound::Unbounded, sequence, false, MAX_CHUNK);
                // Nothing written since the snapshot (a checkpoint at close, for one):
                // every latest version is the snapshot's, and its record need not be
                // read to tell (which would cost a memory miss per key).
                (located, boundary, view.sequence == sequence)
            };
            match boundary {
                Some(key) => self.lo = Bound::Excluded(key),
                None => self.done = true,
            }
            for Located { key, latest, older } in located {
                let mut chosen = None;
                if let Some(Slot { location, lease }) = latest {
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
                            let path = &self.registration.engine.path;
                            return Some(Err(Error::corruption(path, u64::from(location.offset()), reason)));
                        }
                    }
                }
                if let Some(location) = chosen.or(older.map(|slot| slot.location)) {
                    self.buffer.push_back((key, location.0));
                }
            }
        }
    }
}

impl Locations {
    /// Copies the next chunk of (key, location) pairs from the index into the buffer,
    /// checking that every location's segment exists.
    fn copy_chunk(&mut self, view: &View, index: &Alex<u64>) -> Result<()> {
        let mut last = None;
        let mut count = 0;
        let mut segment = None;
        for (key, at) in index.range((self.lo, Bound::Unbounded)).take(MAX_CHUNK) {
            let location = Location(at);
            if segment != Some(location.segment()) {
                if !view.segments.contains_key(&location.segment()) {
                    let reason = format!("key {key} points into segment {} which does not exist", location.segment());
                    return Err(Error::corruption(
                        &self.registration.engine.path,
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

/// Whether a key whose latest version is `latest` (`None`: no version now), and which
/// had a kept version at `sequence` if `had_kept`, was written after `sequence`.
fn written_after(store: &std::path::Path, sequence: u64, latest: Option<Slot>, had_kept: bool) -> Result<bool> {
    let Some(Slot { location, lease }) = latest else {
        // No version now: deleted since if it had one then.
        return Ok(had_kept);
    };
    let Some(lease) = lease else { return Err(missing_segment(store, location)) };
    match record_sequence(lease.segment(), location) {
        Some(written) => Ok(written > sequence),
        None => Err(Error::corruption(
            lease.segment().path(),
            u64::from(location.offset()),
            "record header past the segment's published end",
        )),
    }
}
