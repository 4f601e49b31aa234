//! Write stalls: when garbage piles up faster than compaction reclaims it, writers
//! wait for the running compaction, so that disk use stays bounded whatever the write
//! rate (as an LSM tree's write stalls do).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, PoisonError};
use std::time::{Duration, Instant};

use crate::Options;

use super::writer::Writer;

/// How long a writer waits for a compaction to start when over the limit.
const GRACE: Duration = Duration::from_millis(200);

/// The write-stall state. Its flags are atomics; the condition variable's mutex is a
/// leaf lock (order 6).
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    /// The log is over its limit (set and cleared by [`Pressure::assess`]).
    over: AtomicBool,
    /// A compaction is running.
    compacting: AtomicBool,
    /// The last background compaction failed (a full disk, a corrupt record): writers
    /// are not held back for one that cannot bring the log under its limit.
    failing: AtomicBool,
    /// Guards nothing but the wait itself (a leaf lock, order 6): writers over the
    /// limit sleep on `relieved` under it.
    lock: std::sync::Mutex<()>,
    /// Signalled when the limit is re-assessed or a compaction ends.
    relieved: Condvar,
}

impl Pressure {
    /// Called by writers before they write, holding no lock: returns at once unless
    /// the log is over its limit, and then waits while a compaction runs to bring it
    /// back under. Returns how long it waited, if it did.
    #[inline]
    pub fn wait(&self) -> Option<Duration> {
        if !self.over.load(Ordering::Acquire) || self.failing.load(Ordering::Acquire) {
            return None;
        }
        let started = Instant::now();
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut waited = false;
        while self.over.load(Ordering::Acquire)
            && (self.compacting.load(Ordering::Acquire) || started.elapsed() < GRACE)
        {
            waited = true;
            guard = match self.relieved.wait_timeout(guard, Duration::from_millis(10)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        waited.then(|| started.elapsed())
    }

    /// Wakes every waiting writer to look again.
    pub fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.relieved.notify_all();
    }

    /// Marks a compaction as running or not.
    pub fn set_compacting(&self, running: bool) {
        self.compacting.store(running, Ordering::Release);
    }

    /// Marks the background compactions as failing (writers then do not wait) or not.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    /// Re-evaluates the space limit (under the writer's lock): with background
    /// compaction on, the log may hold `live / (1 - threshold)` bytes, plus a segment
    /// or a sixteenth of the live data, before writers wait. Returns whether a
    /// compaction is due.
    pub fn assess(&self, options: &Options, writer: &Writer) -> bool {
        if !options.background_compaction {
            return false;
        }
        // Everything counts, the running compaction's outputs included: the limit
        // bounds the disk. So when a compaction's outputs push the store over it (the
        // first compaction of a large, unsorted log can), writers wait for it.
        // A dropped family's records are garbage that no copy has to catch up with: a
        // large drop must not stall every writer until the next compaction ends.
        // Compacted segments' dictionaries are left out, as from the garbage: no
        // compaction can reclaim them (they are at most a sixteenth of each).
        let total = writer.log.bytes().saturating_sub(writer.dropped_bytes);
        let live = writer.live_bytes;
        let slack = options.segment_size.max(live / 16);
        let limit = (live as f64 / (1.0 - options.compaction_threshold)) as u64 + slack;
        let over = total > limit && writer.poisoned.is_none();
        if self.over.swap(over, Ordering::AcqRel) && !over {
            self.wake_all();
        }
        compaction_due(options, writer)
    }
}

/// Whether the garbage has passed the compaction threshold.
pub(crate) fn compaction_due(options: &Options, writer: &Writer) -> bool {
    if writer.poisoned.is_some() {
        return false;
    }
    let total = writer.log.bytes();
    let garbage = total.saturating_sub(writer.live_bytes);
    garbage >= options.segment_size / 4 && garbage as f64 >= options.compaction_threshold * total as f64
}
