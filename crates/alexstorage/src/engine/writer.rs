//! The writer's side of the store: what only the thread in the writer's section
//! touches.

use std::collections::BTreeMap;

use crate::log::catalog::Catalog;
use crate::log::checkpoint::{Point, PointFamily};
use crate::log::{Location, Log};
use crate::{Error, Result};

use super::record::record_len;

/// The single writer's state, guarded by `Engine::writer` (lock order 3).
pub(crate) struct Writer {
    /// The segments and the one being appended to.
    pub log: Log,
    /// The last sequence number assigned.
    pub sequence: u64,
    /// Bytes of the records of live keys, every family's (the rest of the log is
    /// garbage).
    pub live_bytes: u64,
    /// The part of `live_bytes` in each named family (the default family has the
    /// rest), so that dropping one makes its bytes garbage at once.
    pub family_live_bytes: BTreeMap<u16, u64>,
    /// The column-family catalog as it is on disk (changed only with the file).
    pub catalog: Catalog,
    /// Bytes of records of families dropped since open (or since the compaction that
    /// removed them began): garbage that compaction reclaims without copying, which
    /// therefore does not hold writers back (`Pressure::assess`).
    pub dropped_bytes: u64,
    /// Writes since open.
    pub counters: Counters,
    /// Set when what is durable is no longer known: writes fail until a reopen.
    pub poisoned: Option<String>,
    /// The log's roll-over count when the last checkpoint was started.
    pub checkpointed_rollovers: u64,
    /// The newest segment the view has leases for.
    pub leased: u32,
}

/// Writes since open.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    /// Single-key puts.
    pub puts: u64,
    /// Single-key deletes that wrote a tombstone.
    pub deletes: u64,
    /// Batches written.
    pub batches: u64,
    /// Writes inside those batches.
    pub batch_writes: u64,
    /// Bytes appended to the log by writes.
    pub bytes_written: u64,
}

impl Writer {
    /// A writer over a recovered `log` whose last sequence is `sequence`.
    pub fn new(log: Log, sequence: u64, catalog: Catalog, family_live_bytes: BTreeMap<u16, u64>) -> Writer {
        let checkpointed_rollovers = log.rollovers();
        let leased = log.segments().map(|segment| segment.id()).max().unwrap_or(0);
        Writer {
            log,
            sequence,
            live_bytes: family_live_bytes.values().fold(0, |sum, bytes| sum.saturating_add(*bytes)),
            dropped_bytes: 0,
            family_live_bytes: family_live_bytes.into_iter().filter(|(id, _)| *id != 0).collect(),
            catalog,
            counters: Counters::default(),
            poisoned: None,
            checkpointed_rollovers,
            leased,
        }
    }

    /// `Err(Error::Poisoned)` if writes are refused.
    #[inline]
    pub fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Appends to the log ([`Log::append`]). A failure that came from a failed sync
    /// (sealing the full segment before the next) poisons the store: what that sync
    /// should have made durable may be lost.
    #[inline]
    pub fn append(&mut self, parts: &[&[u8]]) -> Result<Location> {
        self.log.append(parts).inspect_err(|error| {
            if self.log.sync_failed() {
                self.poisoned = Some(error.to_string());
            }
        })
    }

    /// Accounts for `len` bytes of a new live record of family `family`.
    #[inline]
    pub fn add_live(&mut self, family: u16, len: u64) {
        self.live_bytes += len;
        if family != 0 {
            *self.family_live_bytes.entry(family).or_default() += len;
        }
    }

    /// Accounts for a live record of family `family` replaced by a copy `by` bytes
    /// longer (negative: shorter): compaction rewrote it with another compression.
    pub fn resize_live(&mut self, family: u16, by: i64) {
        let resize = |bytes: &mut u64| {
            *bytes = if by >= 0 { bytes.saturating_add(by as u64) } else { bytes.saturating_sub(by.unsigned_abs()) }
        };
        resize(&mut self.live_bytes);
        if family != 0 {
            if let Some(bytes) = self.family_live_bytes.get_mut(&family) {
                resize(bytes);
            }
        }
    }

    /// Accounts for the record at `old` (if any) of family `family` no longer being
    /// live: a write overwrote or deleted its key. Reads the record's header: the
    /// writer holds its segment, and does this outside the view's lock.
    #[inline]
    pub fn supersede(&mut self, family: u16, old: Option<u64>) {
        let Some(old) = old.map(Location) else { return };
        if let Some(len) = self.log.segment(old.segment()).and_then(|segment| record_len(segment, old)) {
            self.live_bytes = self.live_bytes.saturating_sub(len);
            if family != 0 {
                if let Some(bytes) = self.family_live_bytes.get_mut(&family) {
                    *bytes = bytes.saturating_sub(len);
                }
            }
        }
    }

    /// Whether the family with `id` and `incarnation` exists.
    #[inline]
    pub fn has_family(&self, id: u16, incarnation: u64) -> bool {
        id == 0 && incarnation == 0 || self.catalog.entry(id).is_some_and(|entry| entry.incarnation == incarnation)
    }

    /// Where a checkpoint taken now stands.
    pub fn point(&self) -> Point {
        let named: u64 = self.family_live_bytes.values().sum();
        let default = PointFamily { id: 0, incarnation: 0, live_bytes: self.live_bytes.saturating_sub(named) };
        let families = self.catalog.families.iter().map(|entry| PointFamily {
            id: entry.id,
            incarnation: entry.incarnation,
            live_bytes: self.family_live_bytes.get(&entry.id).copied().unwrap_or(0),
        });
        Point {
            sequence: self.sequence,
            generation: self.log.manifest().generation,
            segments: self.log.segment_ends(),
            families: std::iter::once(default).chain(families).collect(),
        }
    }

    /// Whether the log rolled over to a new segment since the last checkpoint was
    /// started; if so, notes that one is being started now.
    #[inline]
    pub fn take_rollover(&mut self) -> bool {
        let rollovers = self.log.rollovers();
        if rollovers == self.checkpointed_rollovers {
            return false;
        }
        self.checkpointed_rollovers = rollovers;
        true
    }
}
