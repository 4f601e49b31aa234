//! [`Db`]: the store.
//!
//! # Concurrency
//! Any number of threads read and write one `Db` (it is `Clone + Send + Sync`).
//! Three locks, taken in this order and never held across a sync:
//! - `writer` (a mutex): the single writer's section. Appending a record is a memory
//!   copy into the mapped segment; a roll-over (creating the next segment, sealing
//!   the last one with a sync) also happens here. Only writers wait for it.
//! - `view` (a [`ShardedLock`]): the index, the readers' segment table and the versions
//!   kept for snapshots. A reader locks only its own thread's shard for one index
//!   lookup (or one chunk of a range), so reading cores write no shared cache line; a
//!   writer locks every shard for the in-memory index update of one write or one whole
//!   batch (bounded: an insert moves at most one index node). Records are read and
//!   checked after the lock is released, and values keep their segment mapped through
//!   per-thread-shard leases (`value.rs`), so the reference count they take is not
//!   shared between cores either.
//! - `snapshots` (a mutex): the sequences of live snapshots.
//!
//! Readers therefore never wait for an fsync, a roll-over, a checkpoint or a writer's
//! I/O: only for other threads' in-memory index updates. Why not lock-free: the
//! learned index rebuilds nodes on insert (expansions, splits), and making its readers
//! safe against that would need epoch reclamation of whole nodes; the sharded lock
//! gives readers the same scaling on this workload (see `docs/BENCHMARKS.md`,
//! `read-threads`) with no unsafe code. `docs/DESIGN.md` has the whole story,
//! including MVCC (`snapshot.rs`) and group commit.
//!
//! # Failure
//! An append that fails (a full disk when a new segment is created) writes nothing and
//! leaves the store usable. A failed sync means acknowledged-as-durable data may not
//! be: the store then refuses writes (`Error::Poisoned`) until it is reopened and
//! recovered, never continuing in a half-known state.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::{Mutex, MutexGuard};

use crate::batch::{BatchOperation, WriteBatch};
use crate::compaction::{self, CompactionStats, Compactor, Pressure};
use crate::index::Alex;
use crate::log::checkpoint::{self, Point};
use crate::log::format::{
    BatchDescriptor, Decoded, HeaderError, RecordHeader, RecordKind, StoreHeader, FORMAT_VERSION, RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
};
use crate::log::recovery::{scan_compacted, verify_records, Replayed};
use crate::log::segment::{sync_directory, GroupCommit, Segment};
use crate::log::{Location, Log};
use crate::options::{DEFAULT_MAX_VALUE_SIZE, MIN_SEGMENT_SIZE};
use crate::snapshot::{History, OldVersion, Range, Registration, Snapshot};
use crate::stats::{CorruptRecord, Stats, VerifyReport};
use crate::value::{Lease, Leases, SegmentTable};
use crate::{Compression, Durability, Error, Options, Result, Value};

/// Name of the file that marks a directory as a store.
pub const IDENTITY_FILE: &str = "ALEXSTORAGE";
/// Name of the lock file a writer holds.
pub const LOCK_FILE: &str = "LOCK";
/// Largest `max_value_size` accepted (a record must fit a 4 GiB segment).
pub const MAX_VALUE_SIZE_LIMIT: usize = 1 << 30;

/// An open store. Cheap to clone; all clones share one store, which closes cleanly
/// (everything acknowledged made durable, the lock file released) when the last
/// handle is dropped. Snapshots and ranges may outlive it: they keep reading, but
/// hold neither the lock nor any write path.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
    /// Shared by the clones of this handle only: its drop closes the store.
    _handle: Arc<Handle>,
}

/// Closes the store when the last [`Db`] clone lets go of it.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) options: Options,
    /// What readers use: the index, the segments, kept versions. Sharded: a reader
    /// locks only its own shard, a writer all of them, briefly, for in-memory work.
    view: ShardedLock<View>,
    /// The single writer's section: the log tail and sequence numbers. Segment
    /// roll-overs and their I/O happen under it, never under the view's lock.
    pub(crate) writer: Mutex<Writer>,
    /// Live snapshots: sequence -> how many.
    snapshots: Mutex<BTreeMap<u64, usize>>,
    /// 1 + the newest live snapshot's sequence, 0 if none. Changed under `snapshots`
    /// (registering also holds the view shared, so no write publishes in between);
    /// read by writers under the exclusive view lock.
    newest_snapshot: AtomicU64,
    /// How the store was opened: from a checkpoint, and how many keys the log replay
    /// touched.
    recovery: (bool, usize),
    /// Held while a writable store is open; released by [`Shared::close`].
    lock_file: Mutex<Option<File>>,
    /// Dropping it stops the periodic syncer.
    stop_syncer: Mutex<Option<Sender<()>>>,
    /// Set by [`Db::simulate_crash`]: close without the final sync.
    crashed: std::sync::atomic::AtomicBool,
    /// Serializes checkpoint writers; holds the sequence of the newest checkpoint.
    /// A compaction holds it throughout, so no checkpoint reads a half-switched index.
    pub(crate) checkpoint_lock: Arc<Mutex<u64>>,
    /// Serializes compactions (taken before every other lock).
    pub(crate) compaction_lock: Mutex<()>,
    /// The background compaction thread, stopped and joined on close.
    compactor: Mutex<Option<Compactor>>,
    /// Compactions completed since open, and the bytes they wrote.
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    /// Holds writers back while compaction catches up with the garbage.
    pub(crate) pressure: Pressure,
    /// For tests: where a compaction stops as if the process died (0: nowhere).
    pub(crate) failpoint: AtomicU64,
    /// Set when the store starts closing: a background checkpoint still running stops
    /// (the close writes a newer one).
    closing: Arc<std::sync::atomic::AtomicBool>,
    /// The background checkpoint thread, if one was started (joined on close).
    checkpoint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Segment syncs since open (outside the lock: syncs run outside it).
    syncs: AtomicU64,
    /// `Sync` writes acknowledged since open (each after its record was durable).
    sync_writes: AtomicU64,
    /// `Sync` writes in flight, for the group commit's leader.
    group: GroupCommit,
    /// `view.history.len()`, readable without the view's lock.
    retained: AtomicUsize,
}

/// The readers' side of the store.
pub(crate) struct View {
    pub(crate) index: Alex<u64>,
    /// Every segment the index may point into, with leases for readers.
    pub(crate) segments: SegmentTable,
    /// The sequence of the last write readers can see.
    pub(crate) sequence: u64,
    /// Superseded versions live snapshots can still read.
    pub(crate) history: History,
}

impl View {
    /// A lease on the segment holding `location`; `None` if no such segment is live.
    #[inline]
    pub(crate) fn lease_at(&self, location: Location) -> Slot {
        (location, self.segments.get(&location.segment()).map(Leases::lease))
    }

    /// Where the latest version of `key` is, with a lease on its segment.
    #[inline]
    pub(crate) fn locate(&self, key: i64) -> Option<Slot> {
        self.index.get(key).map(|location| self.lease_at(Location(location)))
    }
}

/// A record's location and a lease on its segment (`None`: the segment is missing,
/// which reading reports as corruption).
pub(crate) type Slot = (Location, Option<Arc<Lease>>);

/// The writer's side of the store.
pub(crate) struct Writer {
    pub(crate) log: Log,
    /// The last sequence number assigned.
    pub(crate) sequence: u64,
    /// Bytes of the records of live keys (the rest of the log is garbage).
    pub(crate) live_bytes: u64,
    counters: Counters,
    pub(crate) poisoned: Option<String>,
    /// The log's roll-over count when the last checkpoint was started.
    checkpointed_rollovers: u64,
    /// The newest segment the view has leases for.
    leased: u32,
}

impl Writer {
    /// Accounts for the record at `old` (if any) no longer being live: a write
    /// overwrote or deleted its key. Reads the record's header: the writer holds its
    /// segment, and does this outside the view's lock.
    fn supersede(&mut self, old: Option<u64>) {
        let Some(old) = old.map(Location) else { return };
        if let Some(len) = self.log.segment(old.segment()).and_then(|segment| record_len(segment, old)) {
            self.live_bytes = self.live_bytes.saturating_sub(len);
        }
    }

    /// Where a checkpoint taken now stands.
    pub(crate) fn point(&self) -> Point {
        Point {
            sequence: self.sequence,
            generation: self.log.manifest().generation,
            live_bytes: self.live_bytes,
            segments: self.log.segment_ends(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Counters {
    puts: u64,
    deletes: u64,
    batches: u64,
    batch_writes: u64,
    bytes_written: u64,
}

/// A write's record(s): where they start and how many bytes.
type Written = (Location, u64);

/// The writer's section, plus, for a `Sync` write, its count among the writes in
/// flight (kept by [`Db::after_write`] until the write is durable; dropped with the
/// guard on an error).
struct WriterGuard<'a> {
    writer: MutexGuard<'a, Writer>,
    active: Option<ActiveSync<'a>>,
}

/// One `Sync` write in flight.
struct ActiveSync<'a>(&'a GroupCommit);

impl Drop for ActiveSync<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.writer
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Db")
            .field("path", &self.shared.path)
            .field("options", &self.shared.options)
            .field("keys", &self.len())
            .finish()
    }
}

impl Db {
    /// Opens the store at `path` with default options, creating the directory and an
    /// empty store if missing and recovering if present.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Options::default().open(path)
    }

    pub(crate) fn open_with(path: &Path, options: Options) -> Result<Db> {
        check_options(&options)?;
        prepare_directory(path, options.read_only)?;
        let lock = if options.read_only { None } else { Some(lock_store(path)?) };
        check_identity(path, options.read_only)?;
        let checkpoint = checkpoint::read(path)?;
        // The newest replayed write of each key, by sequence (compacted segments are
        // replayed before older log records): Some((location, record length)) for a
        // put, None for a delete.
        let mut latest: HashMap<i64, (u64, Option<(Location, u32)>)> = HashMap::new();
        let mut replay = |key: i64, sequence: u64, write: Option<(Location, u32)>| {
            let entry = latest.entry(key).or_insert((0, None));
            if sequence >= entry.0 {
                *entry = (sequence, write);
            }
        };
        let writable = !options.read_only;
        let (log, sequence, used_checkpoint) =
            Log::open(path, options.segment_size, writable, checkpoint.as_ref(), |write| match write {
                Replayed::Put { column_family: 0, key, sequence, location, len } => {
                    replay(key, sequence, Some((location, len)))
                }
                Replayed::Delete { column_family: 0, key, sequence } => replay(key, sequence, None),
                // Other families are not opened by this version; their records stay
                // in the log untouched.
                Replayed::Put { .. } | Replayed::Delete { .. } => {}
            })?;
        let replayed_keys = latest.len();
        let (index, live_bytes) = match checkpoint.filter(|_| used_checkpoint) {
            Some(checkpoint) => {
                let mut index = Alex::bulk_load(&checkpoint.entries).map_err(invalid_checkpoint)?;
                let mut live_bytes = checkpoint.live_bytes;
                let superseded_len = |old: Option<u64>| {
                    let old = Location(old?);
                    record_len(log.segment(old.segment())?, old)
                };
                for (key, (_, write)) in latest {
                    let old = match write {
                        Some((location, len)) => {
                            live_bytes += u64::from(len);
                            index.insert(key, location.0)
                        }
                        None => index.remove(key),
                    };
                    live_bytes = live_bytes.saturating_sub(superseded_len(old).unwrap_or(0));
                }
                (index, live_bytes)
            }
            None => {
                let mut live_bytes = 0;
                let mut pairs: Vec<(i64, u64)> = latest
                    .into_iter()
                    .filter_map(|(key, (_, write))| {
                        let (location, len) = write?;
                        live_bytes += u64::from(len);
                        Some((key, location.0))
                    })
                    .collect();
                pairs.sort_unstable_by_key(|pair| pair.0);
                (Alex::bulk_load(&pairs).map_err(invalid_checkpoint)?, live_bytes)
            }
        };
        let segments = log.segments().map(|segment| (segment.id(), Leases::new(Arc::clone(segment)))).collect();
        let view = View { index, segments, sequence, history: History::default() };
        let checkpointed_rollovers = log.rollovers();
        let leased = log.segments().map(|segment| segment.id()).max().unwrap_or(0);
        let writer = Writer {
            log,
            sequence,
            live_bytes,
            counters: Counters::default(),
            poisoned: None,
            checkpointed_rollovers,
            leased,
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            options,
            view: ShardedLock::new(view),
            writer: Mutex::new(writer),
            snapshots: Mutex::new(BTreeMap::new()),
            newest_snapshot: AtomicU64::new(0),
            recovery: (used_checkpoint, replayed_keys),
            lock_file: Mutex::new(lock),
            stop_syncer: Mutex::new(None),
            crashed: std::sync::atomic::AtomicBool::new(false),
            checkpoint_lock: Arc::new(Mutex::new(0)),
            compaction_lock: Mutex::new(()),
            compactor: Mutex::new(None),
            compactions: AtomicU64::new(0),
            compaction_bytes_written: AtomicU64::new(0),
            failpoint: AtomicU64::new(0),
            pressure: Pressure::default(),
            checkpoint_thread: Mutex::new(None),
            closing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            syncs: AtomicU64::new(0),
            sync_writes: AtomicU64::new(0),
            group: GroupCommit::default(),
            retained: AtomicUsize::new(0),
        });
        if let (Durability::Periodic(interval), false) = (shared.options.durability, shared.options.read_only) {
            start_periodic_syncer(&shared, interval)?;
        }
        if shared.options.background_compaction && !shared.options.read_only {
            *shared.compactor.lock() = Some(Compactor::start(&shared)?);
        }
        Ok(Db { _handle: Arc::new(Handle(Arc::clone(&shared))), shared })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Inserts or overwrites `key`.
    pub fn put(&self, key: i64, value: impl AsRef<[u8]>) -> Result<()> {
        let value = value.as_ref();
        self.check_value(value.len())?;
        let mut writer = self.lock_writer()?;
        let sequence = writer.sequence + 1;
        let header = RecordHeader::new(RecordKind::Put, 0, key, sequence, value.len() as u32);
        let hint = self.shared.old_version(key);
        let location = writer.log.append(&[&header.encode(value), value])?;
        let len = (RECORD_HEADER_SIZE + value.len()) as u64;
        let mut superseded = None;
        self.publish(&mut writer, sequence, location, |shared, view| {
            superseded = view.index.insert(key, location.0);
            if let Some(old) = superseded {
                shared.retire(view, key, Location(old), sequence, hint);
            }
        });
        writer.live_bytes += len;
        writer.supersede(superseded);
        writer.sequence = sequence;
        writer.counters.puts += 1;
        writer.counters.bytes_written += len;
        self.after_write(writer, (location, len))
    }

    /// The latest value of `key`.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        let slot = self.shared.read_view().locate(key);
        match slot {
            None => Ok(None),
            Some((location, lease)) => {
                read_record(&self.shared.path, location, lease, key).map(|(_, value)| Some(value))
            }
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        Ok(self.shared.read_view().index.contains_key(key))
    }

    /// Deletes `key`; deleting an absent key is `Ok(())` and writes nothing.
    pub fn delete(&self, key: i64) -> Result<()> {
        let mut writer = self.lock_writer()?;
        // Only the writer changes the index, and it is this thread: no race.
        if !self.shared.read_view().index.contains_key(key) {
            return Ok(());
        }
        let sequence = writer.sequence + 1;
        let header = RecordHeader::new(RecordKind::Delete, 0, key, sequence, 0);
        let hint = self.shared.old_version(key);
        let location = writer.log.append(&[&header.encode(&[])])?;
        let mut superseded = None;
        self.publish(&mut writer, sequence, location, |shared, view| {
            superseded = view.index.remove(key);
            if let Some(old) = superseded {
                shared.retire(view, key, Location(old), sequence, hint);
            }
        });
        writer.supersede(superseded);
        writer.sequence = sequence;
        writer.counters.deletes += 1;
        writer.counters.bytes_written += RECORD_HEADER_SIZE as u64;
        self.after_write(writer, (location, RECORD_HEADER_SIZE as u64))
    }

    /// Applies every write of `batch` atomically: readers see all or none of them, and
    /// after a crash the store holds all or none. A value over `max_value_size` fails
    /// the whole batch before anything is written.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return if self.shared.options.read_only { Err(Error::ReadOnly) } else { Ok(()) };
        }
        for operation in &batch.operations {
            if let BatchOperation::Put { value_len, .. } = operation {
                self.check_value(*value_len)?;
            }
        }
        let count = u32::try_from(batch.len())
            .map_err(|_| Error::InvalidArgument(format!("a batch of {} writes is too large", batch.len())))?;
        let mut writer = self.lock_writer()?;
        let sequence = writer.sequence + 1;
        let (headers, body_len) = encode_batch(&batch, sequence);
        let descriptor = BatchDescriptor { count, body_len }.encode();
        let batch_header =
            RecordHeader::new(RecordKind::Batch, 0, 0, sequence, descriptor.len() as u32).encode(&descriptor);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + 2 * batch.len());
        parts.push(&batch_header);
        parts.push(&descriptor);
        for (operation, header) in batch.operations.iter().zip(&headers) {
            parts.push(header);
            if let BatchOperation::Put { value_start, value_len, .. } = *operation {
                parts.push(batch.value(value_start, value_len));
            }
        }
        let hints = self.shared.batch_hints(&batch);
        let start = writer.log.append(&parts)?;
        let batch_len = parts.iter().map(|part| part.len() as u64).sum::<u64>();
        let written = (start, batch_len);
        // All of the batch becomes visible in one exclusive section.
        let mut superseded = Vec::new();
        let mut live = 0u64;
        self.publish(&mut writer, sequence, start, |shared, view| {
            let mut offset = u64::from(start.offset()) + (RECORD_HEADER_SIZE + descriptor.len()) as u64;
            for operation in &batch.operations {
                let location = Location::new(start.segment(), offset as u32);
                let (key, old) = match *operation {
                    BatchOperation::Put { column_family, key, value_len, .. } => {
                        offset += (RECORD_HEADER_SIZE + value_len) as u64;
                        if column_family == 0 {
                            live += (RECORD_HEADER_SIZE + value_len) as u64;
                        }
                        (key, if column_family == 0 { view.index.insert(key, location.0) } else { None })
                    }
                    BatchOperation::Delete { column_family, key } => {
                        offset += RECORD_HEADER_SIZE as u64;
                        (key, if column_family == 0 { view.index.remove(key) } else { None })
                    }
                };
                if let Some(old) = old {
                    superseded.push(old);
                    // A record of this very batch (a key written twice in it) was
                    // written at its sequence; otherwise the hint, if the key has not
                    // moved since (compaction switches keys to their copies), or
                    // `retire` reads the record's sequence itself.
                    let in_batch = old >= start.0 && old < start.0 + batch_len;
                    let hint = if in_batch {
                        Some((Location(old), sequence))
                    } else {
                        hints.as_ref().and_then(|hints| hints.get(&key).copied().filter(|(at, _)| at.0 == old))
                    };
                    shared.retire(view, key, Location(old), sequence, hint);
                }
            }
        });
        writer.live_bytes += live;
        for old in superseded {
            writer.supersede(Some(old));
        }
        writer.sequence = sequence;
        writer.counters.batches += 1;
        writer.counters.batch_writes += u64::from(count);
        writer.counters.bytes_written += (RECORD_HEADER_SIZE + descriptor.len()) as u64 + body_len;
        self.after_write(writer, written)
    }

    /// Number of live keys (exact).
    pub fn len(&self) -> usize {
        self.shared.read_view().index.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A point-in-time view: reads through it ignore every later write.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.shared.register_snapshot())
    }

    /// The keys in `range` with their values, in ascending key order (`.rev()` for
    /// descending), as of this call: a lazy iterator over a snapshot taken now.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = alexstorage::Db::open(dir.path()).unwrap();
    /// for key in [5, -3, 12, 7] {
    ///     db.put(key, key.to_le_bytes()).unwrap();
    /// }
    /// let keys: Vec<i64> = db.range(-3..=7).map(|entry| entry.unwrap().0).collect();
    /// assert_eq!(keys, [-3, 5, 7]);
    /// let (last, value) = db.iter().next_back().unwrap().unwrap();
    /// assert_eq!((last, &value[..]), (12, &12i64.to_le_bytes()[..]));
    /// ```
    pub fn range(&self, range: impl RangeBounds<i64>) -> Range {
        self.snapshot().range(range)
    }

    /// Every key with its value, ascending: `range(..)`.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// Reclaims the space of overwritten and deleted records now, and rewrites the
    /// live records in key order, so that range scans read them sequentially. Runs
    /// while other threads read and write (readers never wait for it; writers wait
    /// only for the in-memory steps). Returns what it did. Compaction also runs in the
    /// background when garbage passes [`Options::compaction_threshold`].
    ///
    /// Versions that live snapshots, ranges or values still read stay readable: their
    /// segment files are deleted, but stay mapped until the last reader lets go (the
    /// disk space returns then).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = alexstorage::Db::open(dir.path()).unwrap();
    /// for round in 0..3u8 {
    ///     for key in 0..100 {
    ///         db.put(key, [round; 64]).unwrap();
    ///     }
    /// }
    /// let stats = db.compact().unwrap();
    /// assert_eq!(stats.records, 100);
    /// assert_eq!(db.stats().live_bytes, db.stats().log_bytes);
    /// assert_eq!(&db.get(7).unwrap().unwrap()[..], &[2u8; 64][..]);
    /// ```
    pub fn compact(&self) -> Result<CompactionStats> {
        if self.shared.options.read_only {
            return Err(Error::ReadOnly);
        }
        compaction::run(&self.shared, &std::sync::atomic::AtomicBool::new(false))
    }

    /// Makes every write acknowledged so far durable, in any durability mode.
    pub fn flush(&self) -> Result<()> {
        let segments: Vec<Arc<Segment>> = {
            let writer = self.shared.writer.lock();
            if let Some(reason) = &writer.poisoned {
                return Err(Error::Poisoned(reason.clone()));
            }
            writer.log.segments().cloned().collect()
        };
        self.shared.sync_or_poison(&segments)
    }

    /// Reads every record of every segment and checks every checksum. Returns the
    /// report, or `Error::Corruption` for the first bad record.
    pub fn verify(&self) -> Result<VerifyReport> {
        let (segments, manifest) = {
            let writer = self.shared.writer.lock();
            (writer.log.segments().cloned().collect::<Vec<_>>(), writer.log.manifest().clone())
        };
        let mut report = VerifyReport { segments: segments.len(), ..VerifyReport::default() };
        let mut sequence = 0;
        for segment in &segments {
            match manifest.entry(segment.id()) {
                Some(entry) if segment.is_compacted() => {
                    let contents = segment.read(0, segment.published() as usize).unwrap_or(&[]);
                    match scan_compacted(contents, entry, manifest.sequence, &mut |_| {}) {
                        Ok(records) => {
                            report.records += records;
                            report.bytes += segment.published() - SEGMENT_HEADER_SIZE as u64;
                        }
                        Err((offset, reason)) => report.corrupt.push(CorruptRecord {
                            file: segment.path().into(),
                            offset: offset as u64,
                            reason,
                        }),
                    }
                }
                // A compacted segment retired by a compaction that ran meanwhile.
                _ if segment.is_compacted() => {}
                _ => verify_segment(segment, &mut sequence, &mut report),
            }
        }
        match report.corrupt.first() {
            Some(bad) => Err(Error::corruption(&bad.file, bad.offset, bad.reason.clone())),
            None => Ok(report),
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let writer = self.shared.writer.lock();
        let view = self.shared.read_view();
        let counters = writer.counters;
        Stats {
            keys: view.index.len(),
            segments: writer.log.segments().count(),
            log_bytes: writer.log.bytes(),
            index_bytes: view.index.size_in_bytes(),
            sequence: writer.sequence,
            puts: counters.puts,
            deletes: counters.deletes,
            batches: counters.batches,
            batch_writes: counters.batch_writes,
            bytes_written: counters.bytes_written,
            live_bytes: writer.live_bytes,
            compactions: self.shared.compactions.load(Ordering::Relaxed),
            compaction_bytes_written: self.shared.compaction_bytes_written.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            sync_writes: self.shared.sync_writes.load(Ordering::Relaxed),
            unsynced_bytes: writer.log.segments().map(|segment| segment.unsynced()).sum(),
            snapshots: self.shared.snapshots.lock().values().sum(),
            retained_versions: view.history.len(),
            opened_from_checkpoint: self.shared.recovery.0,
            replayed_keys: self.shared.recovery.1,
            torn_tail_bytes: writer.log.torn_bytes(),
        }
    }

    /// For tests: closes this handle as a crashed process would, without the final
    /// sync of a clean close (other clones keep the store open until dropped).
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.shared.crashed.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// For tests: makes the next compactions stop at `point`, after passing it `skip`
    /// times, as if the process died there (no clean-up runs; follow with
    /// [`Db::simulate_crash`] and reopen). `None` disarms it.
    #[doc(hidden)]
    pub fn set_compaction_failpoint(&self, point: Option<compaction::Failpoint>, skip: u64) {
        let armed = point.map_or(0, |point| point as u64 + 100 * skip);
        self.shared.failpoint.store(armed, Ordering::Release);
    }

    fn check_value(&self, size: usize) -> Result<()> {
        let max = self.shared.options.max_value_size;
        if size > max {
            return Err(Error::ValueTooLarge { size, max });
        }
        Ok(())
    }

    /// The writer's section, if writes are allowed. In `Sync` mode the guard also
    /// counts this write as in flight for group commit, until the write returns.
    fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        if self.shared.options.read_only {
            return Err(Error::ReadOnly);
        }
        self.shared.pressure.wait();
        let active = (self.shared.options.durability == Durability::Sync).then(|| {
            self.shared.group.active.fetch_add(1, Ordering::AcqRel);
            ActiveSync(&self.shared.group)
        });
        let guard = WriterGuard { writer: self.shared.writer.lock(), active };
        if let Some(reason) = &guard.writer.poisoned {
            return Err(Error::Poisoned(reason.clone()));
        }
        Ok(guard)
    }

    /// Makes a write appended at `location` visible: in one exclusive section of the
    /// view, adds a new segment's leases if the append rolled over, applies `change`
    /// to the index, and moves the visible sequence to `sequence`. In-memory work only.
    fn publish(&self, writer: &mut Writer, sequence: u64, location: Location, change: impl FnOnce(&Shared, &mut View)) {
        let mut new_segment = None;
        if location.segment() > writer.leased {
            new_segment = writer.log.segment(location.segment()).cloned();
            writer.leased = location.segment();
        }
        let mut view = self.shared.write_view();
        if let Some(segment) = new_segment {
            view.segments.entry(segment.id()).or_insert_with(|| Leases::new(segment));
        }
        change(&self.shared, &mut view);
        view.sequence = sequence;
    }

    /// Finishes a write: starts a checkpoint after a segment roll-over, releases the
    /// writer's section, and, in `Sync` mode, makes the write durable.
    ///
    /// The sync runs outside every lock, which is what makes it a group commit: a
    /// segment syncs everything published so far, so writers whose records were
    /// appended while another writer's `msync` was in flight find their records
    /// already durable, or share the next `msync`. Each returns only once its own
    /// record is durable.
    fn after_write(&self, mut writer: WriterGuard<'_>, written: Written) -> Result<()> {
        if writer.log.rollovers() != writer.checkpointed_rollovers {
            writer.checkpointed_rollovers = writer.log.rollovers();
            self.start_background_checkpoint(&writer);
            if compaction::assess(&self.shared, &writer) {
                if let Some(compactor) = self.shared.compactor.lock().as_ref() {
                    compactor.wake();
                }
            }
        }
        if self.shared.options.durability != Durability::Sync {
            return Ok(());
        }
        // Earlier segments were synced when they were sealed: only the one written
        // to can hold this write's unsynced bytes.
        let (location, len) = written;
        let segment = writer.log.segment(location.segment()).cloned();
        let active = writer.active.take();
        drop(writer);
        // Published before counted: a leader that counts this write covers its record.
        self.shared.group.published.fetch_add(1, Ordering::AcqRel);
        let Some(segment) = segment else { return Ok(()) };
        let outcome = segment.sync_through(u64::from(location.offset()) + len, &self.shared.group);
        drop(active);
        match outcome {
            Ok(synced) => {
                self.shared.syncs.fetch_add(u64::from(synced), Ordering::Relaxed);
                self.shared.sync_writes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                // The write is in the log but may not be durable, and a failed sync
                // can lose dirty pages: refuse further writes until a reopen recovers.
                self.shared.writer.lock().poisoned = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Writes a checkpoint of the index as of now on another thread: it registers a
    /// snapshot here (in-memory, under the writer's section so that the log's ends
    /// match the snapshot), then reads the snapshot's locations in chunks there.
    fn start_background_checkpoint(&self, writer: &Writer) {
        // One at a time: a roll-over while one runs is covered by the next roll-over
        // or by the checkpoint of a clean close.
        let mut thread = self.shared.checkpoint_thread.lock();
        if thread.as_ref().is_some_and(|running| !running.is_finished()) {
            return;
        }
        let point = writer.point();
        let segments: Vec<Arc<Segment>> = writer.log.segments().cloned().collect();
        let snapshot = self.snapshot();
        let dir = self.shared.path.clone();
        let lock = Arc::clone(&self.shared.checkpoint_lock);
        let closing = Arc::clone(&self.shared.closing);
        let spawned = std::thread::Builder::new().name("alexstorage-checkpoint".into()).spawn(move || {
            let sequence = snapshot.sequence();
            let mut newest = lock.lock();
            if *newest >= sequence {
                return;
            }
            // A checkpoint must never point at records that a power loss could take.
            if segments.iter().try_for_each(|segment| segment.sync().map(|_| ())).is_err() {
                return;
            }
            // A failed checkpoint (an unreadable record aborts it before it replaces
            // the current one) is only a slower next open: the log is complete.
            // Stopped (an `Err` entry aborts the write) when the store closes.
            let entries = snapshot.locations().map(|entry| match closing.load(Ordering::Acquire) {
                true => Err(Error::InvalidArgument("the store is closing".into())),
                false => entry,
            });
            if checkpoint::write(&dir, &point, entries).is_ok() {
                *newest = sequence;
            }
        });
        match spawned {
            Ok(handle) => *thread = Some(handle),
            // The write that triggered it is committed: a checkpoint is an optimization.
            Err(error) => tracing::warn!("no background checkpoint: {error}"),
        }
    }
}

impl Shared {
    /// Syncs `segments`, counting the syncs; a failure poisons the store (after a
    /// failed sync the kernel may have dropped dirty pages: only a reopen's recovery
    /// knows what is durable).
    pub(crate) fn sync_or_poison(&self, segments: &[Arc<Segment>]) -> Result<()> {
        match sync_segments(segments) {
            Ok(synced) => {
                self.syncs.fetch_add(synced, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.writer.lock().poisoned = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// The view, for reading (the calling thread's shard of the lock).
    #[inline]
    pub(crate) fn read_view(&self) -> ShardedLockReadGuard<'_, View> {
        // The lock is poisoned only if a thread panicked inside it; the view is
        // changed in single steps that leave it consistent, so go on reading.
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The view, exclusively (every shard).
    pub(crate) fn write_view(&self) -> ShardedLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a snapshot of the current state.
    pub(crate) fn register_snapshot(self: &Arc<Self>) -> Registration {
        let view = self.read_view();
        let sequence = view.sequence;
        let len = view.index.len();
        let mut snapshots = self.snapshots.lock();
        *snapshots.entry(sequence).or_insert(0) += 1;
        let newest = snapshots.last_key_value().map_or(0, |(newest, _)| newest + 1);
        self.newest_snapshot.store(newest, Ordering::SeqCst);
        drop(snapshots);
        drop(view);
        Registration { shared: Arc::clone(self), sequence, len }
    }

    /// Unregisters a snapshot and drops the versions only it kept.
    pub(crate) fn release_snapshot(&self, sequence: u64) {
        // The common case (a range or snapshot dropped while nothing is kept) takes
        // no view lock at all, so dropping a range never waits for, or blocks, others.
        {
            let mut snapshots = self.snapshots.lock();
            if let Some(count) = snapshots.get_mut(&sequence) {
                *count -= 1;
                if *count > 0 {
                    // Another snapshot at the same sequence still sees the same versions.
                    return;
                }
                snapshots.remove(&sequence);
            }
            let newest = snapshots.last_key_value().map_or(0, |(newest, _)| newest + 1);
            self.newest_snapshot.store(newest, Ordering::SeqCst);
        }
        // A writer that read the old `newest` may still add a version after this
        // check; `retire` drops such leftovers when it next runs with no snapshot live.
        if self.retained.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut view = self.write_view();
        let snapshots = self.snapshots.lock();
        let garbage = if snapshots.is_empty() {
            view.history.take()
        } else {
            view.history.prune(&snapshots);
            History::default()
        };
        self.retained.store(view.history.len(), Ordering::SeqCst);
        drop(snapshots);
        drop(view);
        // Freed outside the locks.
        drop(garbage);
    }

    /// Where the current version of `key` is and its sequence, read before the
    /// exclusive section (so that reading a record, which may fault a page in, never
    /// happens while readers are locked out), if snapshots are live. Called by the
    /// writer, so the index cannot change before the write is published.
    fn old_version(&self, key: i64) -> Option<(Location, u64)> {
        if self.newest_snapshot.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (location, lease) = self.read_view().locate(key)?;
        Some((location, record_sequence(lease?.segment(), location)?))
    }

    /// [`Shared::old_version`] for every key of a batch (one lookup under the shared
    /// lock, then the records read outside it); `None` if no snapshot is live.
    fn batch_hints(&self, batch: &WriteBatch) -> Option<HashMap<i64, (Location, u64)>> {
        if self.newest_snapshot.load(Ordering::Acquire) == 0 {
            return None;
        }
        let slots: Vec<(i64, Slot)> = {
            let view = self.read_view();
            batch
                .operations
                .iter()
                .filter_map(|operation| match *operation {
                    BatchOperation::Put { column_family: 0, key, .. }
                    | BatchOperation::Delete { column_family: 0, key } => view.locate(key).map(|slot| (key, slot)),
                    _ => None,
                })
                .collect()
        };
        let read = |(key, (location, lease)): (i64, Slot)| {
            Some((key, (location, record_sequence(lease?.segment(), location)?)))
        };
        Some(slots.into_iter().filter_map(read).collect())
    }

    /// Called (under the exclusive view) when the write with `sequence` supersedes
    /// the version of `key` at `old`: keeps that version if a live snapshot sees it.
    /// `hint` is [`Shared::old_version`]'s answer, if it was asked.
    fn retire(&self, view: &mut View, key: i64, old: Location, sequence: u64, hint: Option<(Location, u64)>) {
        let newest = self.newest_snapshot.load(Ordering::SeqCst);
        if newest == 0 {
            if view.history.len() > 0 {
                // Left by a write that raced the release of the last snapshot.
                view.history = History::default();
                self.retained.store(0, Ordering::SeqCst);
            }
            return;
        }
        let from = match hint {
            Some((location, from)) if location == old => Some(from),
            // A snapshot registered after the hint was skipped, or a batch: read now.
            _ => view.lease_at(old).1.and_then(|lease| record_sequence(lease.segment(), old)),
        };
        // Unreadable: the version is not kept, and a snapshot reading the key reports
        // the corruption through the latest version's read instead.
        let Some(from) = from else { return };
        // `newest` is 1 + the newest live snapshot sequence.
        if newest > from {
            let lease = view.lease_at(old).1;
            view.history.keep(key, OldVersion { from, until: sequence, location: old, lease });
            self.retained.store(view.history.len(), Ordering::SeqCst);
        }
    }
}

impl Shared {
    /// Closes the store (the last [`Db`] handle was dropped): stops the syncer, waits
    /// for a background checkpoint, makes everything acknowledged durable, writes a
    /// checkpoint so that the next open is fast, and releases the lock file. Errors
    /// have no caller to go to: the data is in the page cache regardless, and a
    /// missing checkpoint only means a full replay.
    fn close(self: &Arc<Self>) {
        drop(self.stop_syncer.lock().take());
        // A compaction in progress stops at its next step (what it committed stays).
        if let Some(compactor) = self.compactor.lock().take() {
            compactor.stop();
        }
        let lock_file = self.lock_file.lock().take();
        if self.options.read_only {
            return;
        }
        // A background checkpoint must not outlive the lock (a reopened store would
        // race it on the checkpoint file); it stops early, for the one below.
        self.closing.store(true, Ordering::Release);
        if let Some(thread) = self.checkpoint_thread.lock().take() {
            let _ = thread.join();
        }
        let mut newest = self.checkpoint_lock.lock();
        if self.crashed.load(Ordering::Relaxed) {
            return;
        }
        let writer = self.writer.lock();
        if writer.log.sync().is_err() || writer.poisoned.is_some() {
            return;
        }
        if *newest < writer.sequence || writer.sequence == 0 {
            let point = writer.point();
            // Read through a snapshot, chunk by chunk: no lock is held across the
            // file's writes and syncs (snapshots may still be read by other threads).
            let snapshot = Snapshot::new(self.register_snapshot());
            if checkpoint::write(&self.path, &point, snapshot.locations()).is_ok() {
                *newest = writer.sequence;
            }
        }
        drop(writer);
        drop(lock_file);
    }
}

fn invalid_checkpoint(error: crate::index::BulkLoadError) -> Error {
    Error::InvalidArgument(format!("index rebuild failed: {error}"))
}

/// The length (header included) of the record at `location` of `segment`.
pub(crate) fn record_len(segment: &Segment, location: Location) -> Option<u64> {
    let header = segment.read(u64::from(location.offset()), RECORD_HEADER_SIZE)?;
    let value_len = u32::from_le_bytes(header.get(8..12)?.try_into().ok()?);
    Some(RECORD_HEADER_SIZE as u64 + u64::from(value_len))
}

/// The sequence number in the header of the record at `location` of `segment`.
pub(crate) fn record_sequence(segment: &Segment, location: Location) -> Option<u64> {
    let header = segment.read(u64::from(location.offset()), RECORD_HEADER_SIZE)?;
    Some(u64::from_le_bytes(header.get(12..20)?.try_into().ok()?))
}

/// Reads and checks the record of `key` at `location`: its sequence and its value.
#[inline]
pub(crate) fn read_record(
    store: &Path,
    location: Location,
    lease: Option<Arc<Lease>>,
    key: i64,
) -> Result<(u64, Value)> {
    let Some(lease) = lease else { return Err(missing_segment(store, location)) };
    let (header, record) = checked_record(lease.segment(), location, key)?;
    let value_len = record.len() - RECORD_HEADER_SIZE;
    let offset = u64::from(location.offset()) + RECORD_HEADER_SIZE as u64;
    Ok((header.sequence, Value::mapped(lease, offset, value_len)))
}

/// The error for a location whose segment the store does not have.
pub(crate) fn missing_segment(store: &Path, location: Location) -> Error {
    let reason = format!("index points into segment {} which does not exist", location.segment());
    Error::corruption(store, u64::from(location.offset()), reason)
}

/// The whole record of `key` at `location` of `segment` (header and value), checked:
/// published, its checksum matching, a put of `key` with no unknown flags.
#[inline(always)]
pub(crate) fn checked_record(segment: &Segment, location: Location, key: i64) -> Result<(RecordHeader, &[u8])> {
    let offset = u64::from(location.offset());
    let corrupt = |reason: String| Error::corruption(segment.path(), offset, reason);
    let header =
        segment.read(offset, RECORD_HEADER_SIZE).ok_or_else(|| corrupt("record header not in the log".into()))?;
    let value_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let record = segment
        .read(offset, RECORD_HEADER_SIZE + value_len)
        .ok_or_else(|| corrupt(format!("value of {value_len} bytes runs past the written log")))?;
    match RecordHeader::decode(record) {
        Decoded::Record { header, .. } if header.key == key && header.kind == RecordKind::Put => {
            if header.flags != 0 {
                return Err(corrupt(format!("unsupported record flags {:#04x}", header.flags)));
            }
            Ok((header, record))
        }
        Decoded::Record { header, .. } => {
            Err(corrupt(format!("index expects a put of key {key}, record is a {:?} of {}", header.kind, header.key)))
        }
        Decoded::Invalid(reason) => Err(corrupt(reason)),
        Decoded::End => Err(corrupt("record is all zeros".into())),
    }
}

/// Encodes the record headers of a batch's writes; returns them and the body length.
fn encode_batch(batch: &WriteBatch, sequence: u64) -> (Vec<[u8; RECORD_HEADER_SIZE]>, u64) {
    let mut body_len = 0u64;
    let headers = batch
        .operations
        .iter()
        .map(|operation| match *operation {
            BatchOperation::Put { column_family, key, value_start, value_len } => {
                body_len += (RECORD_HEADER_SIZE + value_len) as u64;
                RecordHeader::new(RecordKind::Put, column_family, key, sequence, value_len as u32)
                    .encode(batch.value(value_start, value_len))
            }
            BatchOperation::Delete { column_family, key } => {
                body_len += RECORD_HEADER_SIZE as u64;
                RecordHeader::new(RecordKind::Delete, column_family, key, sequence, 0).encode(&[])
            }
        })
        .collect();
    (headers, body_len)
}

/// Decodes every published record of `segment` into `report`.
/// Checks every published record of `segment` as recovery would (checksums, rising
/// sequence numbers after `sequence`, complete batches) into `report`.
fn verify_segment(segment: &Segment, sequence: &mut u64, report: &mut VerifyReport) {
    let published = segment.published();
    let contents = segment.read(0, published as usize).unwrap_or(&[]);
    match verify_records(contents, segment.id(), sequence) {
        Ok(writes) => {
            report.records += writes;
            report.bytes += published - SEGMENT_HEADER_SIZE as u64;
        }
        Err((offset, reason)) => {
            report.corrupt.push(CorruptRecord { file: segment.path().into(), offset: offset as u64, reason });
        }
    }
}

fn check_options(options: &Options) -> Result<()> {
    if options.compression != Compression::None {
        return Err(Error::InvalidArgument(
            "value compression is not available in this version; use Compression::None".into(),
        ));
    }
    if options.segment_size < MIN_SEGMENT_SIZE || options.segment_size > u64::from(u32::MAX) {
        return Err(Error::InvalidArgument(format!(
            "segment_size must be between {MIN_SEGMENT_SIZE} and {} bytes",
            u32::MAX
        )));
    }
    if options.max_value_size > MAX_VALUE_SIZE_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "max_value_size may not exceed {MAX_VALUE_SIZE_LIMIT} bytes (default {DEFAULT_MAX_VALUE_SIZE})"
        )));
    }
    if !(options.compaction_threshold > 0.0 && options.compaction_threshold < 1.0) {
        return Err(Error::InvalidArgument("compaction_threshold must lie strictly between 0 and 1".into()));
    }
    if let Durability::Periodic(interval) = options.durability {
        if interval.is_zero() {
            return Err(Error::InvalidArgument("a periodic sync interval must be positive".into()));
        }
    }
    Ok(())
}

/// Makes sure `path` is a directory, creating it for a writable open.
fn prepare_directory(path: &Path, read_only: bool) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!("{} exists and is not a directory", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !read_only => {
            std::fs::create_dir_all(path)?;
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::InvalidArgument(format!("no store at {} to open read-only", path.display())))
        }
        Err(error) => Err(error.into()),
    }
}

/// Takes the writer's lock on the store, or fails with `Error::Locked`.
fn lock_store(path: &Path) -> Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path.join(LOCK_FILE))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => Err(Error::Locked { path: path.to_path_buf() }),
        Err(errno) => Err(Error::Io(errno.into())),
    }
}

/// Checks the identity file, creating it in an empty directory.
fn check_identity(path: &Path, read_only: bool) -> Result<()> {
    let identity = path.join(IDENTITY_FILE);
    match std::fs::read(&identity) {
        Ok(bytes) => match StoreHeader::decode(&bytes) {
            Ok(_) => Ok(()),
            Err(HeaderError::NewerVersion(found)) => {
                Err(Error::UnsupportedVersion { file: identity, found, supported: FORMAT_VERSION })
            }
            Err(HeaderError::Invalid(reason)) => Err(Error::corruption(identity, 0, reason)),
            Err(HeaderError::Blank) => Err(Error::corruption(identity, 0, "blank identity file")),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let foreign =
                std::fs::read_dir(path)?.filter_map(|entry| entry.ok()).any(|entry| entry.file_name() != LOCK_FILE);
            if foreign {
                return Err(Error::InvalidArgument(format!(
                    "{} holds files but is not an AlexStorage store",
                    path.display()
                )));
            }
            if read_only {
                return Err(Error::InvalidArgument(format!("no store at {} to open read-only", path.display())));
            }
            let temporary = path.join(format!("{IDENTITY_FILE}.tmp"));
            std::fs::write(&temporary, StoreHeader { version: FORMAT_VERSION }.encode())?;
            File::open(&temporary)?.sync_all()?;
            std::fs::rename(&temporary, &identity)?;
            sync_directory(path)
        }
        Err(error) => Err(error.into()),
    }
}

/// Syncs every segment in `segments`; returns how many needed an `msync`, or the
/// first failure (after which the caller poisons the store).
fn sync_segments(segments: &[Arc<Segment>]) -> Result<u64> {
    let mut synced = 0;
    for segment in segments {
        if segment.sync()? {
            synced += 1;
        }
    }
    Ok(synced)
}

/// Starts the background syncer of `Durability::Periodic`; it stops when the store
/// closes.
fn start_periodic_syncer(shared: &Arc<Shared>, interval: Duration) -> Result<()> {
    let (stop, stopped) = channel::<()>();
    let weak: Weak<Shared> = Arc::downgrade(shared);
    std::thread::Builder::new().name("alexstorage-sync".into()).spawn(move || loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // Hold the store only while listing its segments, so that the last handle's
        // drop (the final sync and checkpoint) runs in the caller's thread, not here.
        let segments: Vec<Arc<Segment>> = match weak.upgrade() {
            Some(shared) => shared.writer.lock().log.segments().cloned().collect(),
            None => return,
        };
        let result = sync_segments(&segments);
        let Some(shared) = weak.upgrade() else { return };
        match result {
            Ok(synced) => shared.syncs.fetch_add(synced, Ordering::Relaxed),
            Err(error) => {
                shared.writer.lock().poisoned = Some(error.to_string());
                return;
            }
        };
    })?;
    *shared.stop_syncer.lock() = Some(stop);
    Ok(())
}
