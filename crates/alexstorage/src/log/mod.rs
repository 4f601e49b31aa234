//! The log: segment files of checksummed records, the only copy of the data.
//!
//! It knows record locations, never the index's internals. [`Log::open`] replays every
//! record to a callback, oldest first; [`Log::append`] writes records and returns where
//! they landed. See `docs/FORMAT.md` for the bytes.

pub mod catalog;
pub mod checkpoint;
pub mod format;
pub mod io;
pub mod manifest;
pub mod recovery;
pub mod segment;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{Error, Result};
use format::SEGMENT_HEADER_SIZE;
use manifest::Manifest;
use segment::Segment;

/// Where a record starts: segment id in the high 32 bits, byte offset in the low 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Location(pub u64);

impl Location {
    /// The location of the record at `offset` of segment `segment`.
    pub fn new(segment: u32, offset: u32) -> Self {
        Location((u64::from(segment) << 32) | u64::from(offset))
    }

    /// The segment id.
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The byte offset in the segment.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

/// The set of segments and the one being appended to.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    segments: BTreeMap<u32, Arc<Segment>>,
    active: Option<Arc<Segment>>,
    segment_size: u64,
    writable: bool,
    rollovers: u64,
    /// Bytes of torn tail that recovery discarded when the log was opened.
    torn_bytes: u64,
    /// The id the next new segment gets (ids are never reused).
    next_id: u32,
    /// The manifest in force (the last one made durable).
    manifest: Manifest,
}

impl Log {
    /// The segment with `id`, if live.
    #[inline]
    pub fn segment(&self, id: u32) -> Option<&Arc<Segment>> {
        self.segments.get(&id)
    }

    /// The segment being appended to, if one is.
    #[inline]
    pub fn active(&self) -> Option<&Arc<Segment>> {
        self.active.as_ref()
    }

    /// The id of the segment being appended to, if one is.
    pub fn active_id(&self) -> Option<u32> {
        self.active.as_ref().map(|active| active.id())
    }

    /// Every live segment, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.segments.values()
    }

    /// Total bytes of the records of writes in all segments (compacted segments'
    /// dictionaries are not counted).
    pub fn bytes(&self) -> u64 {
        self.segments
            .values()
            .map(|segment| {
                (segment.published() - SEGMENT_HEADER_SIZE as u64).saturating_sub(segment.dictionary_bytes())
            })
            .sum()
    }

    /// Appends the concatenation of `parts` (one or more whole records) to the active
    /// segment, rolling over to a new one when it does not fit. Returns the location of
    /// the first byte. On error nothing was written.
    pub fn append(&mut self, parts: &[&[u8]]) -> Result<Location> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if let Some(active) = &self.active {
            if let Some(offset) = active.append(parts)? {
                return Ok(Location::new(active.id(), offset as u32));
            }
        }
        let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
        let capacity = self.segment_size.max(SEGMENT_HEADER_SIZE as u64 + total + segment::MARKS_ROOM);
        if capacity > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(format!("a write of {total} bytes does not fit a segment")));
        }
        let id = self.allocate_id()?;
        // A sealed segment must be complete on disk before a later one can hold
        // records: recovery treats a bad record followed by a later segment as
        // corruption, so the older tail may not be left to a later flush.
        if let Some(active) = &self.active {
            active.seal()?;
        }
        let segment = Arc::new(Segment::create(&self.dir, id, capacity, false)?);
        self.segments.insert(id, Arc::clone(&segment));
        // Sealing a segment is a roll-over; creating the first one is not.
        if self.active.replace(Arc::clone(&segment)).is_some() {
            self.rollovers += 1;
        }
        let offset = segment
            .append(parts)?
            .ok_or_else(|| Error::InvalidArgument(format!("a write of {total} bytes does not fit a segment")))?;
        Ok(Location::new(id, offset as u32))
    }

    /// Whether a sync of any segment ever failed.
    pub fn sync_failed(&self) -> bool {
        self.segments.values().any(|segment| segment.sync_failed())
    }

    /// A fresh segment id.
    pub fn allocate_id(&mut self) -> Result<u32> {
        let id = self.next_id;
        self.next_id = id
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("segment ids are exhausted (u32::MAX segments)".into()))?;
        Ok(id)
    }

    /// Seals the segment being appended to (its records made durable) without
    /// starting another: the next append creates one. Returns the id that segment
    /// will have at the least; every record appended so far lies in a segment below it.
    pub fn seal_active(&mut self) -> Result<u32> {
        if let Some(active) = self.active.take() {
            if let Err(error) = active.seal() {
                self.active = Some(active);
                return Err(error);
            }
        }
        Ok(self.next_id)
    }

    /// The manifest in force.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Puts a (durably written) manifest in force.
    pub fn set_manifest(&mut self, manifest: Manifest) {
        self.manifest = manifest;
    }

    /// Adds a finished compacted segment.
    pub fn insert_compacted(&mut self, segment: Arc<Segment>) {
        self.segments.insert(segment.id(), segment);
    }

    /// Removes the segments `remove` picks (never the one being appended to) and
    /// returns them; their files are the caller's to delete.
    pub fn remove_segments(&mut self, mut remove: impl FnMut(&Segment) -> bool) -> Vec<Arc<Segment>> {
        let active = self.active.as_ref().map(|active| active.id());
        let ids: Vec<u32> = self
            .segments
            .values()
            .filter(|segment| Some(segment.id()) != active && remove(segment))
            .map(|segment| segment.id())
            .collect();
        ids.iter().filter_map(|id| self.segments.remove(id)).collect()
    }

    /// (id, end of records) of every segment, for a checkpoint.
    pub fn segment_ends(&self) -> Vec<(u32, u64)> {
        self.segments.values().map(|segment| (segment.id(), segment.published())).collect()
    }

    /// Bytes of torn tail recovery discarded at open (0 after a clean close).
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// How many times since open a full segment was sealed for a new one.
    pub fn rollovers(&self) -> u64 {
        self.rollovers
    }
}
