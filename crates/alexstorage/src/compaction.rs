//! Compaction: reclaims the space of overwritten and deleted records and rewrites the
//! live ones in key order.
//!
//! # Steps
//! 1. **Seal.** Under the writer's lock (for a moment): the segment being appended to
//!    is sealed and no new one is started; writers go on in a new segment that the
//!    next append creates. Every record written so far lies in a segment with an id
//!    below the *boundary* (the id the next segment will get): those segments are the
//!    inputs. The last sequence number assigned, `S`, is noted.
//! 2. **Copy.** The index is read in key order, a chunk of keys at a time under the
//!    shared read lock; every key whose record lies in an input is copied, record
//!    bytes unchanged (checksum verified, sequence number kept), into a new
//!    *compacted* segment (header flag set). Keys whose record lies past the boundary
//!    were written after `S` and are left alone, as are deleted keys: their records
//!    are not copied, which is the reclaimed space.
//! 3. **Commit,** each time an output segment fills and at the end: the output is
//!    synced and truncated to its records, then a new manifest is made durable
//!    (temporary file, fsync, rename, directory fsync) that lists it, along with the
//!    previous compacted segments still needed. From this moment recovery uses it.
//! 4. **Switch.** In chunks, each under the exclusive view lock (an in-memory step),
//!    every copied key whose index entry still points at the record that was copied
//!    is pointed at the copy; a key written meanwhile keeps its newer location.
//! 5. **Retire.** Segments nothing in the index points into any more leave the
//!    store's tables and their files are deleted: after each commit, the previous
//!    compacted segments whose whole key range the outputs now cover; at the end,
//!    every input. Readers that still hold one (a [`crate::Value`], a kept version
//!    of a snapshot) keep its mapping, and with it its bytes: Linux keeps an unlinked
//!    file's inode until the last mapping goes, and only then frees its blocks.
//! 6. **Checkpoint** of the index, so that reopening stays fast.
//!
//! # Crash safety
//! Before the first commit the outputs are leftovers that recovery deletes. After a
//! commit the manifest lists the outputs, and recovery replays them before the log
//! segments, keeping for each key the version with the highest sequence number: an
//! input log segment still on disk holds only older versions of copied keys, and the
//! tombstones of deleted keys, which stay until the inputs go in the last commit
//! (nothing older than `S` survives that commit except the copies). So a crash at
//! any point recovers every acknowledged write and no deleted key. `tests/compaction.rs`
//! kills a compacting process at random points to check this.
//!
//! # Locks
//! `compaction_lock` (one compaction at a time) -> `checkpoint_lock` (held throughout:
//! no checkpoint reads a half-switched index) -> `writer` -> `view`, each of the last
//! two only for in-memory steps; no lock readers take is ever held across I/O.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::db::{checked_record, missing_segment, Shared, Writer};
use crate::log::checkpoint;
use crate::log::format::SEGMENT_HEADER_SIZE;
use crate::log::manifest::{self, CompactedSegment, Manifest};
use crate::log::segment::Segment;
use crate::log::Location;
use crate::snapshot::Snapshot;
use crate::value::{Lease, Leases};
use crate::{Error, Result};

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

/// Whether the armed failpoint is `point` (counting down its `skip` first).
fn fails_at(shared: &Shared, point: Failpoint) -> bool {
    let armed = shared.failpoint.load(Ordering::Acquire);
    if armed == 0 || armed % 100 != point as u64 {
        return false;
    }
    if armed >= 100 {
        shared.failpoint.store(armed - 100, Ordering::Release);
        return false;
    }
    true
}

/// The error a failpoint returns.
fn failed(point: Failpoint) -> Error {
    Error::InvalidArgument(format!("compaction stopped at failpoint {point:?}"))
}

/// Keys read from the index per shared-lock section.
const READ_CHUNK: usize = 4096;
/// Keys switched to their copies per exclusive-lock section.
const SWITCH_CHUNK: usize = 1024;

/// Runs one compaction (see the module docs). Stops early, between two steps and
/// with the store consistent, when `cancel` is set.
pub(crate) fn run(shared: &Arc<Shared>, cancel: &AtomicBool) -> Result<CompactionStats> {
    let _one = shared.compaction_lock.lock();
    let mut newest_checkpoint = shared.checkpoint_lock.lock();
    let _running = Running::start(shared);
    // Sync the segment being appended to now, outside the writer's lock, so that
    // sealing it under the lock has little left to sync.
    let segments: Vec<Arc<Segment>> = shared.writer.lock().log.segments().cloned().collect();
    shared.sync_or_poison(&segments)?;
    let (boundary, sequence, manifest) = {
        let mut writer = shared.writer.lock();
        if let Some(reason) = &writer.poisoned {
            return Err(Error::Poisoned(reason.clone()));
        }
        let unsorted: u64 = writer
            .log
            .segments()
            .filter(|segment| !segment.is_compacted())
            .map(|segment| segment.published() - SEGMENT_HEADER_SIZE as u64)
            .sum();
        if unsorted == 0 && writer.log.bytes() == writer.live_bytes {
            // Already one run of live records in key order.
            return Ok(CompactionStats::default());
        }
        let boundary = writer.log.seal_active()?;
        (boundary, writer.sequence, writer.log.manifest().clone())
    };
    if fails_at(shared, Failpoint::Sealed) {
        return Err(failed(Failpoint::Sealed));
    }
    let mut job = Job {
        shared,
        boundary,
        sequence,
        remaining: manifest.compacted.clone(),
        manifest,
        committed: Vec::new(),
        output: None,
        stats: CompactionStats::default(),
        removed_bytes: 0,
        written_bytes: 0,
        crashed: false,
    };
    let outcome = match job.copy_all(cancel) {
        Ok(true) => job.commit(true).map(|()| true),
        other => other,
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => {
            job.abandon();
            return Ok(job.stats);
        }
        Err(error) => {
            job.abandon();
            return Err(error);
        }
    }
    let mut stats = job.stats;
    stats.bytes_reclaimed = job.removed_bytes.saturating_sub(job.written_bytes);
    shared.compactions.fetch_add(1, Ordering::Relaxed);
    shared.compaction_bytes_written.fetch_add(stats.bytes_written, Ordering::Relaxed);
    tracing::debug!(?stats, "compaction finished");
    // A fresh checkpoint: the old one names retired segments and would be ignored.
    let (point, snapshot, segments) = {
        let writer = shared.writer.lock();
        let segments: Vec<Arc<Segment>> = writer.log.segments().cloned().collect();
        (writer.point(), Snapshot::new(shared.register_snapshot()), segments)
    };
    // A checkpoint must never point at records that a power loss could take.
    if segments.iter().try_for_each(|segment| segment.sync().map(|_| ())).is_ok()
        && checkpoint::write(&shared.path, &point, snapshot.locations()).is_ok()
    {
        *newest_checkpoint = point.sequence;
    }
    Ok(stats)
}

/// Marks a compaction as running (writers held back by the space limit wait only for
/// a running one); on drop, re-assesses the limit and wakes them.
struct Running<'a>(&'a Shared);

impl<'a> Running<'a> {
    fn start(shared: &'a Shared) -> Running<'a> {
        shared.pressure.compacting.store(true, Ordering::Release);
        Running(shared)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.pressure.compacting.store(false, Ordering::Release);
        assess(self.0, &self.0.writer.lock());
        self.0.pressure.wake_all();
    }
}

/// An output segment being filled.
struct Output {
    segment: Arc<Segment>,
    first_key: i64,
    last_key: i64,
    records: u64,
    /// (key, location copied, location of the copy), ascending by key.
    moves: Vec<(i64, u64, u64)>,
}

/// The state of one compaction.
struct Job<'a> {
    shared: &'a Arc<Shared>,
    /// Segments with a smaller id are the inputs.
    boundary: u32,
    /// The last sequence number at the seal.
    sequence: u64,
    /// The manifest in force.
    manifest: Manifest,
    /// The previous compacted segments not yet retired.
    remaining: Vec<CompactedSegment>,
    /// Outputs committed so far.
    committed: Vec<CompactedSegment>,
    output: Option<Output>,
    stats: CompactionStats,
    removed_bytes: u64,
    written_bytes: u64,
    /// A failpoint fired: leave everything as a dead process would.
    crashed: bool,
}

impl Job<'_> {
    /// Whether the armed failpoint is `point`; if so the job stops as if it crashed.
    fn fails_at(&mut self, point: Failpoint) -> Result<()> {
        if fails_at(self.shared, point) {
            self.crashed = true;
            return Err(failed(point));
        }
        Ok(())
    }
}

impl Job<'_> {
    /// Copies every key whose record lies in an input, in key order. `Ok(false)` if
    /// cancelled.
    fn copy_all(&mut self, cancel: &AtomicBool) -> Result<bool> {
        let mut lo = Bound::Unbounded;
        loop {
            if cancel.load(Ordering::Acquire) {
                return Ok(false);
            }
            let chunk: Vec<(i64, Location, Option<Arc<Lease>>)> = {
                let view = self.shared.read_view();
                view.index
                    .range((lo, Bound::Unbounded))
                    .take(READ_CHUNK)
                    .map(|(key, at)| {
                        let location = Location(at);
                        let lease = if location.segment() < self.boundary { view.lease_at(location).1 } else { None };
                        (key, location, lease)
                    })
                    .collect()
            };
            let Some(&(last, _, _)) = chunk.last() else { return Ok(true) };
            lo = Bound::Excluded(last);
            for (key, location, lease) in chunk {
                if location.segment() < self.boundary {
                    self.copy(key, location, lease)?;
                }
            }
        }
    }

    /// Copies the record of `key` at `location` into the output.
    fn copy(&mut self, key: i64, location: Location, lease: Option<Arc<Lease>>) -> Result<()> {
        let Some(lease) = lease else { return Err(missing_segment(&self.shared.path, location)) };
        let (_, record) = checked_record(lease.segment(), location, key)?;
        let len = record.len() as u64;
        let appended = match self.output.as_ref() {
            Some(output) => output.segment.append(&[record])?,
            None => None,
        };
        let at = match appended {
            Some(at) => at,
            None => {
                if self.output.is_some() {
                    self.commit(false)?;
                }
                let capacity = self.shared.options.segment_size.max(SEGMENT_HEADER_SIZE as u64 + len);
                let id = self.shared.writer.lock().log.allocate_id()?;
                let segment = Arc::new(Segment::create(&self.shared.path, id, capacity, true)?);
                self.stats.segments_written += 1;
                let at = match segment.append(&[record]) {
                    Ok(Some(at)) => at,
                    failed => {
                        // Not yet the job's output: delete it here (a full disk needs
                        // the space back now, not at the next open).
                        remove_file(segment.path());
                        failed?;
                        return Err(Error::InvalidArgument(format!("a record of {len} bytes does not fit a segment")));
                    }
                };
                self.output = Some(Output { segment, first_key: key, last_key: key, records: 0, moves: Vec::new() });
                self.fails_at(Failpoint::Copying)?;
                at
            }
        };
        if let Some(output) = self.output.as_mut() {
            output.last_key = key;
            output.records += 1;
            output.moves.push((key, location.0, Location::new(output.segment.id(), at as u32).0));
        }
        self.stats.bytes_read += len;
        self.stats.bytes_written += len;
        self.stats.records += 1;
        Ok(())
    }

    /// Commits the current output (if any): finishes it, makes a manifest listing it
    /// durable, switches its keys to it, and retires the segments no longer needed.
    /// The `last` commit also retires every input.
    fn commit(&mut self, last: bool) -> Result<()> {
        let mut output = self.output.take();
        let entry = match &output {
            Some(output) => {
                if let Err(error) = output.segment.finish() {
                    // Not yet listed anywhere: the file is a leftover.
                    remove_file(output.segment.path());
                    return Err(error);
                }
                let end = output.segment.published();
                self.written_bytes += end;
                Some(CompactedSegment {
                    id: output.segment.id(),
                    end,
                    first_key: output.first_key,
                    last_key: output.last_key,
                    records: output.records,
                })
            }
            None => None,
        };
        if entry.is_some() {
            self.output = output;
            self.fails_at(Failpoint::Finished)?;
            output = self.output.take();
        }
        // Previous compacted segments whose every key the outputs now cover.
        let covered = entry.map(|entry| entry.last_key);
        let (passed, kept): (Vec<CompactedSegment>, Vec<CompactedSegment>) =
            self.remaining.iter().partition(|old| last || covered.is_some_and(|covered| old.last_key <= covered));
        if last || !passed.is_empty() {
            // The segments this commit retires may hold the only durable version of a
            // key whose newer version (written after the seal, which is why it was
            // not copied) may not be durable yet: make it so first, or a power loss
            // could lose both.
            self.sync_newer_log()?;
        }
        let mut compacted: Vec<CompactedSegment> = self.committed.iter().chain(&entry).chain(&kept).copied().collect();
        compacted.sort_by_key(|entry| entry.id);
        let next = Manifest {
            generation: self.manifest.generation + 1,
            sequence: self.sequence,
            log_start: if last { self.boundary } else { self.manifest.log_start },
            compacted,
        };
        if let Err(error) = manifest::write(&self.shared.path, &next) {
            // Whether the rename happened is unknown: leave every file as it is
            // (recovery sorts them out by the manifest it finds) and refuse writes
            // until a reopen has done so.
            self.shared.writer.lock().poisoned = Some(format!("writing the manifest failed: {error}"));
            return Err(error);
        }
        self.manifest = next.clone();
        self.committed.extend(entry);
        self.remaining = kept;
        self.fails_at(Failpoint::Committed)?;
        self.shared.writer.lock().log.set_manifest(next);
        if let Some(output) = output {
            self.install(output);
        }
        self.fails_at(Failpoint::Switched)?;
        let passed: HashSet<u32> = passed.iter().map(|entry| entry.id).collect();
        let boundary = self.boundary;
        self.retire(|segment| passed.contains(&segment.id()) || (last && segment.id() < boundary));
        self.fails_at(Failpoint::Retired)
    }

    /// Syncs the log segments written since the seal; a failure poisons the store,
    /// like any failed sync.
    fn sync_newer_log(&self) -> Result<()> {
        let boundary = self.boundary;
        let newer: Vec<Arc<Segment>> = self
            .shared
            .writer
            .lock()
            .log
            .segments()
            .filter(|segment| segment.id() >= boundary && !segment.is_compacted())
            .cloned()
            .collect();
        self.shared.sync_or_poison(&newer)
    }

    /// Makes a committed output readable and points its keys at it.
    fn install(&mut self, output: Output) {
        let segment = output.segment;
        // The writer's table first: a writer that overwrites a switched key reads the
        // old record's length through it.
        self.shared.writer.lock().log.insert_compacted(Arc::clone(&segment));
        self.shared.write_view().segments.insert(segment.id(), Leases::new(segment));
        for chunk in output.moves.chunks(SWITCH_CHUNK) {
            let mut view = self.shared.write_view();
            for &(key, old, new) in chunk {
                // A key written since it was copied keeps its newer record.
                if view.index.get(key) == Some(old) {
                    view.index.insert(key, new);
                }
            }
        }
    }

    /// Removes the segments `retire` picks from the store's tables and deletes their
    /// files. Nothing in the index points into them: their keys were switched to
    /// copies or written anew.
    fn retire(&mut self, retire: impl FnMut(&Segment) -> bool) {
        let retired = {
            let mut writer = self.shared.writer.lock();
            let retired = writer.log.remove_segments(retire);
            assess(self.shared, &writer);
            retired
        };
        if retired.is_empty() {
            return;
        }
        {
            let mut view = self.shared.write_view();
            for segment in &retired {
                view.segments.remove(&segment.id());
            }
        }
        for segment in &retired {
            self.removed_bytes += std::fs::metadata(segment.path()).map_or(0, |metadata| metadata.len());
            self.stats.segments_removed += 1;
            remove_file(segment.path());
        }
    }

    /// Drops an output that was never committed.
    fn abandon(&mut self) {
        if self.crashed {
            return;
        }
        if let Some(output) = self.output.take() {
            remove_file(output.segment.path());
        }
    }
}

/// Deletes a file no manifest lists; a failure leaves a leftover the next open
/// deletes.
fn remove_file(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), "could not delete a retired segment: {error}");
    }
}

/// Back-pressure: when garbage piles up faster than compaction reclaims it, writers
/// wait for the running compaction, so that disk use stays bounded whatever the
/// write rate (as an LSM tree's write stalls do).
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    /// The log is over its limit (set and cleared by [`assess`]).
    over: AtomicBool,
    /// A compaction is running.
    compacting: AtomicBool,
    /// The last background compaction failed (a full disk, a corrupt record): writers
    /// are not held back for one that cannot bring the log under its limit.
    failing: AtomicBool,
    lock: std::sync::Mutex<()>,
    relieved: std::sync::Condvar,
}

/// How long a writer waits for a compaction to start when over the limit.
const GRACE: Duration = Duration::from_millis(200);

impl Pressure {
    /// Called by writers before they write: returns at once unless the log is over
    /// its limit, and then waits while a compaction runs to bring it back under.
    pub(crate) fn wait(&self) {
        if !self.over.load(Ordering::Acquire) || self.failing.load(Ordering::Acquire) {
            return;
        }
        let started = std::time::Instant::now();
        let mut guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while self.over.load(Ordering::Acquire)
            && (self.compacting.load(Ordering::Acquire) || started.elapsed() < GRACE)
        {
            guard = match self.relieved.wait_timeout(guard, Duration::from_millis(10)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.relieved.notify_all();
    }
}

/// Re-evaluates the space limit (under the writer's lock): with background
/// compaction on, the log may hold `live / (1 - threshold)` bytes, plus a segment or
/// a sixteenth of the live data, before writers wait. Returns whether a compaction is
/// due.
pub(crate) fn assess(shared: &Shared, writer: &Writer) -> bool {
    if !shared.options.background_compaction {
        return false;
    }
    // Everything counts, the running compaction's outputs included: the limit bounds
    // the disk. So when a compaction's outputs push the store over it (the first
    // compaction of a large, unsorted log can), writers wait for that compaction.
    let total = writer.log.bytes();
    let live = writer.live_bytes;
    let slack = shared.options.segment_size.max(live / 16);
    let limit = (live as f64 / (1.0 - shared.options.compaction_threshold)) as u64 + slack;
    let over = total > limit && writer.poisoned.is_none();
    if shared.pressure.over.swap(over, Ordering::AcqRel) && !over {
        shared.pressure.wake_all();
    }
    due(shared, writer)
}

/// How often the background thread checks the garbage.
const POLL: Duration = Duration::from_millis(50);
/// How long it waits after a failed compaction.
const BACKOFF: Duration = Duration::from_secs(5);

/// The background compaction thread.
pub(crate) struct Compactor {
    cancel: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: JoinHandle<()>,
}

impl Compactor {
    /// Starts the thread; it holds the store only weakly between compactions.
    /// Asks the thread to check the garbage now.
    pub(crate) fn wake(&self) {
        let _ = self.wake.send(());
    }

    pub(crate) fn start(shared: &Arc<Shared>) -> Result<Compactor> {
        let (wake, woken) = channel::<()>();
        let cancel = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(shared);
        let flag = Arc::clone(&cancel);
        let thread = std::thread::Builder::new().name("alexstorage-compaction".into()).spawn(move || {
            let mut pause = POLL;
            loop {
                match woken.recv_timeout(pause) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(shared) = weak.upgrade() else { return };
                if flag.load(Ordering::Acquire) {
                    return;
                }
                if !due(&shared, &shared.writer.lock()) {
                    pause = POLL;
                    continue;
                }
                let outcome = run(&shared, &flag);
                shared.pressure.failing.store(outcome.is_err(), Ordering::Release);
                pause = match outcome {
                    Ok(_) => POLL,
                    Err(error) => {
                        tracing::warn!("background compaction failed: {error}");
                        shared.pressure.wake_all();
                        BACKOFF
                    }
                };
            }
        })?;
        Ok(Compactor { cancel, wake, thread })
    }

    /// Stops the thread (a compaction in progress stops at its next step) and waits
    /// for it.
    pub(crate) fn stop(self) {
        self.cancel.store(true, Ordering::Release);
        drop(self.wake);
        let _ = self.thread.join();
    }
}

/// Whether the garbage has passed the threshold.
fn due(shared: &Shared, writer: &Writer) -> bool {
    if writer.poisoned.is_some() {
        return false;
    }
    let total = writer.log.bytes();
    let garbage = total.saturating_sub(writer.live_bytes);
    garbage >= shared.options.segment_size / 4 && garbage as f64 >= shared.options.compaction_threshold * total as f64
}
