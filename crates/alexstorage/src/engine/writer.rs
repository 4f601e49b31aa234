//! The writer's side of the store: what only the thread in the writer's section
//! touches.

use crate::log::checkpoint::Point;
use crate::log::{Location, Log};
use crate::{Error, Result};

use super::record::record_len;

/// The single writer's state, guarded by `Engine::writer` (lock order 3).
pub(crate) struct Writer {
    /// The segments and the one being appended to.
    pub log: Log,
    /// The last sequence number assigned.
    pub sequence: u64,
    /// Bytes of the records of live keys (the rest of the log is garbage).
    pub live_bytes: u64,
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
    pub fn new(log: Log, sequence: u64, live_bytes: u64) -> Writer {
        let checkpointed_rollovers = log.rollovers();
        let leased = log.segments().map(|segment| segment.id()).max().unwrap_or(0);
        Writer {
            log,
            sequence,
            live_bytes,
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

    /// Accounts for the record at `old` (if any) no longer being live: a write
    /// overwrote or deleted its key. Reads the record's header: the writer holds its
    /// segment, and does this outside the view's lock.
    #[inline]
    pub fn supersede(&mut self, old: Option<u64>) {
        let Some(old) = old.map(Location) else { return };
        if let Some(len) = self.log.segment(old.segment()).and_then(|segment| record_len(segment, old)) {
            self.live_bytes = self.live_bytes.saturating_sub(len);
        }
    }

    /// Where a checkpoint taken now stands.
    pub fn point(&self) -> Point {
        Point {
            sequence: self.sequence,
            generation: self.log.manifest().generation,
            live_bytes: self.live_bytes,
            segments: self.log.segment_ends(),
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
