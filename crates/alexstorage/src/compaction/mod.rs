//! Compaction: reclaims the space of overwritten and deleted records and rewrites the
//! live ones in key order.
//!
//! # Steps
//! 1. **Choose the inputs** (the *victims*). A [`Scope::Full`] compaction, under the
//!    writer's lock (for a moment), seals the segment being appended to without
//!    starting a new one (writers go on in a new segment that the next append
//!    creates) and takes every segment; the last sequence number assigned, `S`, is
//!    noted. A [`Scope::Incremental`] one takes the oldest log segments (a prefix of
//!    the log, never the segment being appended to) and the compacted segments whose
//!    space pays most to reclaim (`select.rs`), and notes `S`, the sequence of the
//!    last write in the log segments it takes.
//! 2. **Copy.** The index is read in key order, a chunk of keys at a time under the
//!    shared read lock; every key whose record lies in a victim is copied, record
//!    bytes unchanged (checksum verified, sequence number kept) unless recompressed,
//!    into a new *compacted* segment (header flag set). Keys whose record lies
//!    elsewhere were written after the choice, or lie in a segment left in place, and
//!    are left alone, as are deleted keys: their records are not copied, which is the
//!    reclaimed space. An incremental compaction also carries the tombstones that
//!    compacted segments left in place still need (see `job.rs`).
//! 3. **Commit,** each time an output segment fills and at the end: the output is
//!    synced and truncated to its records, then a new manifest is made durable
//!    (temporary file, fsync, rename, directory fsync) that lists it, along with the
//!    previous compacted segments still needed. From this moment recovery uses it.
//! 4. **Switch.** In chunks, each under the exclusive view lock (an in-memory step),
//!    every copied key whose index entry still points at the record that was copied
//!    is pointed at the copy; a key written meanwhile keeps its newer location.
//! 5. **Retire.** Segments nothing in the index points into any more leave the
//!    store's tables and their files are deleted: after each commit, the compacted
//!    victims whose whole key range the outputs now cover; at the end, every victim.
//!    Readers that still hold one (a [`crate::Value`], a kept version of a snapshot)
//!    keep its mapping, and with it its bytes: Linux keeps an unlinked
//!    file's inode until the last mapping goes, and only then frees its blocks.
//! 6. **Checkpoint** of the index, so that reopening stays fast.
//!
//! # Crash safety
//! Before the first commit the outputs are leftovers that recovery deletes. After a
//! commit the manifest lists the outputs, and recovery replays them before the log
//! segments, keeping for each key the version with the highest sequence number: a
//! victim log segment still on disk holds only older versions of copied keys, and the
//! tombstones of deleted keys, which stay until the victims go in the last commit
//! (after which a tombstone that a segment left in place may still need is in an
//! output). So a crash at any point recovers every acknowledged write and no deleted
//! key. `tests/compaction.rs` kills a compacting process at random points to check
//! this, and `tests/incremental_compaction.rs` stops incremental ones at every step.
//!
//! # Locks
//! [`Compaction`]'s lock (one compaction at a time) -> the checkpoint lock (held
//! throughout: no checkpoint reads a half-switched index) -> the writer's section ->
//! the view, each of the last two only for in-memory steps; no lock readers take is
//! ever held across I/O (the engine's lock table, `engine/mod.rs`, has them all).
//!
//! The copy, commit, switch and retire steps are `job.rs`; this file runs them, keeps
//! the counters, and drives the background compactor.

mod job;
mod select;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::background::{Next, Worker};
use crate::checkpointer::{Capture, Checkpointer};
use crate::compression;
use crate::engine::{compaction_due, Engine, Writer};
use crate::log::format::SEGMENT_HEADER_SIZE;
use crate::log::segment::Segment;
use crate::{Error, Result};

use job::{Job, Seal};
use select::Choice;

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CompactionStats {
    /// Bytes of live records read from the old segments.
    pub bytes_read: u64,
    /// Bytes of records written to new segments.
    pub bytes_written: u64,
    /// Bytes of segment files deleted, less the bytes of the new segment files: the
    /// disk space given back once no reader holds the old segments.
    pub bytes_reclaimed: u64,
    /// Segment files deleted.
    pub segments_removed: u64,
    /// Compacted segment files written.
    pub segments_written: u64,
    /// Live records copied (in key order).
    pub records: u64,
    /// Tombstones carried into the new segments: an incremental compaction keeps a
    /// deleted key's tombstone while a compacted segment it left in place may hold an
    /// older put of the key (a full compaction drops them all).
    pub tombstones: u64,
    /// Whether every segment was rewritten (by [`crate::Db::compact`], or by the full
    /// compaction an incremental one fell back to), rather than only some.
    pub full: bool,
}

/// Places where a test can make a compaction stop as if the process died there
/// ([`crate::Db::set_compaction_failpoint`]): nothing after the point runs, not even
/// the clean-up of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Failpoint {
    /// The active segment is sealed; nothing copied yet.
    Sealed = 1,
    /// An output segment holds its first record.
    Copying = 2,
    /// An output segment is finished (synced, truncated), not yet in a manifest.
    Finished = 3,
    /// The manifest listing an output is durable; the index not yet switched.
    Committed = 4,
    /// The index points at the output; the retired segments are not yet deleted.
    Switched = 5,
    /// Retired segments are deleted.
    Retired = 6,
}

impl Failpoint {
    /// Every failpoint, in the order a compaction passes them.
    pub const ALL: [Failpoint; 6] = [
        Failpoint::Sealed,
        Failpoint::Copying,
        Failpoint::Finished,
        Failpoint::Committed,
        Failpoint::Switched,
        Failpoint::Retired,
    ];
}

/// The compaction state shared by [`crate::Db::compact`] and the background
/// compactor.
#[derive(Debug, Default)]
pub(crate) struct Compaction {
    /// One compaction at a time (lock order 1, taken before every other lock).
    lock: Mutex<()>,
    /// Compactions completed since open.
    completed: AtomicU64,
    /// Bytes those compactions wrote.
    bytes_written: AtomicU64,
    /// Disk bytes those compactions gave back (deleted less written).
    bytes_reclaimed: AtomicU64,
    /// For tests: where a compaction stops as if the process died (0: nowhere;
    /// else the failpoint plus 100 for each pass to let through first).
    failpoint: AtomicU64,
    /// The keys the store held when a dictionary last did not pay (0: never): it is
    /// not trained again until the store has twice as many.
    pub(super) dictionary_declined: AtomicU64,
    /// The next compaction is a full one, whatever its caller asked for.
    full_next: AtomicBool,
}

impl Compaction {
    /// Compactions completed since open.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Bytes compactions wrote since open.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// Disk bytes compactions gave back since open.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_reclaimed.load(Ordering::Relaxed)
    }

    /// Arms (or with `None` disarms) a failpoint, let through `skip` times first.
    pub fn set_failpoint(&self, point: Option<Failpoint>, skip: u64) {
        let armed = point.map_or(0, |point| point as u64 + 100 * skip);
        self.failpoint.store(armed, Ordering::Release);
    }

    /// Whether the armed failpoint is `point` (counting down its `skip` first).
    fn fails_at(&self, point: Failpoint) -> bool {
        let armed = self.failpoint.load(Ordering::Acquire);
        if armed == 0 || armed % 100 != point as u64 {
            return false;
        }
        if armed >= 100 {
            self.failpoint.store(armed - 100, Ordering::Release);
            return false;
        }
        true
    }

    /// Runs one compaction of `scope` (see the module docs). Stops early, between two
    /// steps and with the store consistent, when `cancel` is set.
    pub fn run(
        &self,
        engine: &Arc<Engine>,
        checkpointer: &Checkpointer,
        cancel: &AtomicBool,
        scope: Scope,
    ) -> Result<CompactionStats> {
        let _one = self.lock.lock();
        let mut newest_checkpoint = checkpointer.lock();
        let _running = Running::start(engine);
        let started = std::time::Instant::now();
        // A closing store may have cancelled it while it waited for the locks.
        if cancel.load(Ordering::Acquire) {
            return Ok(CompactionStats::default());
        }
        // After an incremental compaction that failed or gave back too little (its
        // victims' space was mostly tombstones it had to carry on), a full one, until
        // one finishes.
        let scope = if self.full_next.load(Ordering::Acquire) { Scope::Full } else { scope };
        let Some(seal) = seal(engine, scope)? else {
            return Ok(CompactionStats::default());
        };
        let (full, expected) = (seal.full, seal.expected);
        if self.fails_at(Failpoint::Sealed) {
            return Err(failed(Failpoint::Sealed));
        }
        let (mut stats, finished) = match Job::new(engine, self, seal).run(cancel) {
            Ok(outcome) => outcome,
            Err(error) => {
                // An incremental compaction also reads the dead records of its victims
                // (for their tombstones); damage there must not stop compaction for
                // good: a full one reads only live records.
                if !full {
                    self.full_next.store(true, Ordering::Release);
                }
                return Err(error);
            }
        };
        stats.full = full;
        if !finished {
            return Ok(stats);
        }
        if full {
            self.full_next.store(false, Ordering::Release);
        } else if stats.bytes_reclaimed < expected / 2 {
            self.full_next.store(true, Ordering::Release);
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        engine.metrics.compactions.observe(started.elapsed());
        self.bytes_written.fetch_add(stats.bytes_written, Ordering::Relaxed);
        self.bytes_reclaimed.fetch_add(stats.bytes_reclaimed, Ordering::Relaxed);
        tracing::debug!(?stats, "compaction finished");
        // A fresh checkpoint: the old one names retired segments and would be ignored.
        let capture = Capture::take(engine, &engine.writer.lock());
        if let Err(error) = checkpointer.write(&mut newest_checkpoint, engine, capture, cancel) {
            // A failed sync poisoned the store: the caller must hear of it. A failed
            // checkpoint write only makes the next open slower.
            engine.writer.lock().check_usable()?;
            if !cancel.load(Ordering::Acquire) {
                tracing::warn!("no checkpoint after the compaction: {error}");
            }
        }
        Ok(stats)
    }
}

/// How much of the store a compaction rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every segment: the store ends as one run of live records in key order, with no
    /// garbage and no tombstone ([`crate::Db::compact`]).
    Full,
    /// The segments whose space pays most to reclaim (the log's oldest, and compacted
    /// segments most overwritten), until the garbage is at most half the compaction
    /// threshold; a full compaction when that cannot get it there. What the
    /// background compactor runs ([`crate::Db::compact_incremental`]).
    Incremental,
}

/// Step 1: chooses the inputs. A full compaction seals the active segment under the
/// writer's lock and takes every segment; an incremental one takes the segments
/// `select.rs` chooses and leaves the active segment alone. `None` if there is
/// nothing to do: for a full compaction, the log is already one run of live records
/// in key order written with the current compression setting.
fn seal(engine: &Engine, scope: Scope) -> Result<Option<Seal>> {
    if scope == Scope::Incremental {
        match select_incremental(engine)? {
            Selected::Seal(seal) => return Ok(Some(seal)),
            Selected::Nothing => return Ok(None),
            Selected::Full => {}
        }
    }
    // Sync the segment being appended to now, outside the writer's lock, so that
    // sealing it under the lock has little left to sync.
    engine.sync_or_poison(&engine.segments())?;
    let mut writer = engine.writer.lock();
    writer.check_usable()?;
    let unsorted: u64 = writer
        .log
        .segments()
        .filter(|segment| !segment.is_compacted())
        .map(|segment| segment.published() - SEGMENT_HEADER_SIZE as u64)
        .sum();
    // Compacted segments written with another compression setting are rewritten
    // (switching compression on and compacting shrinks a compacted store).
    let recompress = needs_recompression(engine, &writer);
    // Tombstones that compacted segments carry count as garbage: they go too. And
    // incremental compactions leave compacted runs that overlap: one run is the
    // compacted segments in id order, each past the last key of the one before.
    let one_run = writer.log.manifest().compacted.windows(2).all(|pair| pair[0].last() < pair[1].first());
    if unsorted == 0 && writer.log.bytes() == writer.live_bytes && !recompress && one_run {
        return Ok(None);
    }
    let boundary = writer.log.seal_active().inspect_err(|error| {
        if writer.log.sync_failed() {
            writer.poisoned = Some(error.to_string());
        }
    })?;
    let victims = writer.log.segments().map(|segment| segment.id()).filter(|&id| id < boundary).collect();
    Ok(Some(Seal {
        victims,
        log_start: boundary,
        sequence: writer.sequence,
        manifest: writer.log.manifest().clone(),
        dropped_bytes: writer.dropped_bytes,
        full: true,
        expected: 0,
    }))
}

/// Whether a compacted segment was written with another compression setting than
/// the store's (only a full compaction rewrites them all).
fn needs_recompression(engine: &Engine, writer: &Writer) -> bool {
    let wanted = compression::flag_of(engine.options.compression);
    writer.log.segments().any(|segment| segment.is_compacted() && segment.compacted_with() != wanted)
}

/// What an incremental compaction is to do.
enum Selected {
    /// Rewrite the segments the seal names.
    Seal(Seal),
    /// Nothing: the garbage is at most half the threshold already.
    Nothing,
    /// Run a full compaction instead.
    Full,
}

/// The inputs of an incremental compaction. A full one runs instead where a dropped
/// family's records wait (only a full compaction reclaims them all), a compacted
/// segment is written with another compression setting, or no choice of segments
/// gets the garbage down.
fn select_incremental(engine: &Engine) -> Result<Selected> {
    let (segments, mut candidates, garbage, total) = {
        let writer = engine.writer.lock();
        writer.check_usable()?;
        if writer.dropped_bytes > 0 || needs_recompression(engine, &writer) {
            return Ok(Selected::Full);
        }
        let segments: Vec<Arc<Segment>> = writer.log.segments().cloned().collect();
        let candidates = select::candidates(&segments, writer.log.active_id());
        let total = writer.log.bytes();
        (segments, candidates, total.saturating_sub(writer.live_bytes), total)
    };
    select::count_live(engine, &segments, &mut candidates);
    let target = (engine.options.compaction_threshold / 2.0 * total as f64) as u64;
    let (victims, expected) = match select::choose(&candidates, garbage, target) {
        Choice::Victims { victims, garbage } => (victims, garbage),
        Choice::Nothing => return Ok(Selected::Nothing),
        Choice::Impossible => return Ok(Selected::Full),
    };
    let writer = engine.writer.lock();
    writer.check_usable()?;
    let manifest = writer.log.manifest().clone();
    let last_log_victim = candidates
        .iter()
        .filter(|candidate| !candidate.compacted && victims.contains(&candidate.id))
        .map(|candidate| candidate.id)
        .max();
    let (log_start, sequence) = match last_log_victim {
        // Only compacted segments: the log and the manifest's sequence stay.
        None => (manifest.log_start, manifest.sequence),
        Some(last) => {
            // The log now starts at the first segment after the victims; the manifest's
            // sequence is that of the last write before it, so that recovery still
            // checks that the log runs on from it without a gap.
            let kept = writer.log.segments().find(|segment| !segment.is_compacted() && segment.id() > last);
            match kept {
                Some(kept) => match select::first_write_sequence(kept) {
                    Some(first) => (kept.id(), first.saturating_sub(1)),
                    None => (kept.id(), writer.sequence),
                },
                None => (last.saturating_add(1), writer.sequence),
            }
        }
    };
    Ok(Selected::Seal(Seal {
        victims,
        log_start,
        sequence: sequence.max(manifest.sequence),
        manifest,
        dropped_bytes: 0,
        full: false,
        expected,
    }))
}

/// The error a failpoint returns.
fn failed(point: Failpoint) -> Error {
    Error::InvalidArgument(format!("compaction stopped at failpoint {point:?}"))
}

/// Marks a compaction as running (writers held back by the space limit wait only for
/// a running one); on drop, re-assesses the limit and wakes them.
struct Running<'a>(&'a Engine);

impl<'a> Running<'a> {
    fn start(engine: &'a Engine) -> Running<'a> {
        engine.pressure.set_compacting(true);
        Running(engine)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let engine = self.0;
        engine.pressure.set_compacting(false);
        engine.pressure.assess(&engine.options, &engine.writer.lock());
        engine.pressure.wake_all();
    }
}

/// How often the background compactor checks the garbage.
const POLL: Duration = Duration::from_millis(50);
/// How long it waits after a failed compaction.
const BACKOFF: Duration = Duration::from_secs(5);

/// Starts the background compactor: every [`POLL`], or when woken, it compacts if the
/// garbage has passed the threshold. It holds the store only weakly between runs.
pub(crate) fn start_compactor(
    engine: &Arc<Engine>,
    checkpointer: &Arc<Checkpointer>,
    compaction: &Arc<Compaction>,
) -> Result<Worker> {
    let engine: Weak<Engine> = Arc::downgrade(engine);
    let checkpointer = Arc::clone(checkpointer);
    let compaction = Arc::clone(compaction);
    Worker::spawn("alexstorage-compaction", Next::After(POLL), move |stop| {
        let Some(engine) = engine.upgrade() else { return Next::Exit };
        if !compaction_due(&engine.options, &engine.writer.lock()) {
            return Next::After(POLL);
        }
        let outcome = compaction.run(&engine, &checkpointer, stop, Scope::Incremental);
        engine.pressure.set_failing(outcome.is_err());
        match outcome {
            Ok(_) => Next::After(POLL),
            Err(error) => {
                tracing::warn!("background compaction failed: {error}");
                engine.pressure.wake_all();
                Next::After(BACKOFF)
            }
        }
    })
}
