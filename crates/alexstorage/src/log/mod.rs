//! The log: segment files of checksummed records, the only copy of the data.
//!
//! It knows record locations, never the index's internals. [`Log::open`] replays every
//! record to a callback, oldest first; [`Log::append`] writes records and returns where
//! they landed. See `docs/FORMAT.md` for the bytes.

pub mod checkpoint;
pub mod format;
pub mod recovery;
pub mod segment;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{Error, Result};
use format::SEGMENT_HEADER_SIZE;
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
}

impl Log {
    /// The segment with `id`, if live.
    #[inline]
    pub fn segment(&self, id: u32) -> Option<&Arc<Segment>> {
        self.segments.get(&id)
    }

    /// Every live segment, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.segments.values()
    }

    /// Total bytes of records in all segments.
    pub fn bytes(&self) -> u64 {
        self.segments.values().map(|segment| segment.published() - SEGMENT_HEADER_SIZE as u64).sum()
    }

    /// Appends the concatenation of `parts` (one or more whole records) to the active
    /// segment, rolling over to a new one when it does not fit. Returns the location of
    /// the first byte. On error nothing was written.
    pub fn append(&mut self, parts: &[&[u8]]) -> Result<Location> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if let Some(active) = &self.active {
            if let Some(offset) = active.append(parts) {
                return Ok(Location::new(active.id(), offset as u32));
            }
        }
        let total: u64 = parts.iter().map(|part| part.len() as u64).sum();
        let capacity = self.segment_size.max(SEGMENT_HEADER_SIZE as u64 + total);
        if capacity > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(format!("a write of {total} bytes does not fit a segment")));
        }
        let id = match self.segments.keys().next_back() {
            None => 1,
            Some(last) => last
                .checked_add(1)
                .ok_or_else(|| Error::InvalidArgument("segment ids are exhausted (u32::MAX segments)".into()))?,
        };
        // A sealed segment must be complete on disk before a later one can hold
        // records: recovery treats a bad record followed by a later segment as
        // corruption, so the older tail may not be left to a later flush.
        if let Some(active) = &self.active {
            active.seal()?;
        }
        let segment = Arc::new(Segment::create(&self.dir, id, capacity)?);
        self.segments.insert(id, Arc::clone(&segment));
        // Sealing a segment is a roll-over; creating the first one is not.
        if self.active.replace(Arc::clone(&segment)).is_some() {
            self.rollovers += 1;
        }
        let offset = segment
            .append(parts)
            .ok_or_else(|| Error::InvalidArgument(format!("a write of {total} bytes does not fit a segment")))?;
        Ok(Location::new(id, offset as u32))
    }

    /// Makes every record appended so far durable; returns the segments synced.
    pub fn sync(&self) -> Result<usize> {
        let mut synced = 0;
        for segment in self.segments.values() {
            if segment.sync()? {
                synced += 1;
            }
        }
        Ok(synced)
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
