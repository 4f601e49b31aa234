//! [`Db`]: the store.
//!
//! # Concurrency (for now)
//! One reader-writer lock guards the index and the log's segment table. Reads hold it
//! shared only for the index lookup and then check and return the record outside it;
//! writes hold it exclusively while they append and update the index. Syncs for
//! `flush()` and the periodic syncer run outside the lock. The concurrency issue
//! replaces this with readers that never wait and group commit.
//!
//! # Failure
//! An append that fails (a full disk when a new segment is created) writes nothing and
//! leaves the store usable. A failed sync means acknowledged-as-durable data may not
//! be: the store then refuses writes (`Error::Poisoned`) until it is reopened and
//! recovered, never continuing in a half-known state.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::batch::{BatchOperation, WriteBatch};
use crate::index::Alex;
use crate::log::checkpoint;
use crate::log::format::{
    BatchDescriptor, Decoded, HeaderError, RecordHeader, RecordKind, StoreHeader, FORMAT_VERSION, RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
};
use crate::log::recovery::{verify_records, Replayed};
use crate::log::segment::{sync_directory, Segment};
use crate::log::{Location, Log};
use crate::options::{DEFAULT_MAX_VALUE_SIZE, MIN_SEGMENT_SIZE};
use crate::stats::{CorruptRecord, Stats, VerifyReport};
use crate::{Compression, Durability, Error, Options, Result, Value};

/// Name of the file that marks a directory as a store.
pub const IDENTITY_FILE: &str = "ALEXSTORAGE";
/// Name of the lock file a writer holds.
pub const LOCK_FILE: &str = "LOCK";
/// Largest `max_value_size` accepted (a record must fit a 4 GiB segment).
pub const MAX_VALUE_SIZE_LIMIT: usize = 1 << 30;

/// An open store. Cheap to clone; all clones share one store, which closes cleanly
/// (everything acknowledged made durable) when the last handle is dropped.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    options: Options,
    state: RwLock<State>,
    /// Held for the life of a writable store (the lock is released when it closes).
    _lock: Option<File>,
    /// Dropping it stops the periodic syncer.
    stop_syncer: Mutex<Option<Sender<()>>>,
    /// Set by [`Db::simulate_crash`]: close without the final sync.
    crashed: std::sync::atomic::AtomicBool,
    /// Serializes checkpoint writers; holds the sequence of the newest checkpoint.
    checkpoint_lock: Arc<Mutex<u64>>,
    /// Segment syncs since open (outside the lock: syncs run outside it).
    syncs: AtomicU64,
}

struct State {
    index: Alex<u64>,
    log: Log,
    sequence: u64,
    counters: Counters,
    poisoned: Option<String>,
    /// The log's roll-over count when the last checkpoint was started.
    checkpointed_rollovers: u64,
    /// How the store was opened: from a checkpoint, and how many keys the log
    /// replay touched.
    recovery: (bool, usize),
}

#[derive(Clone, Copy, Default)]
struct Counters {
    puts: u64,
    deletes: u64,
    batches: u64,
    batch_writes: u64,
    bytes_written: u64,
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
        // The last replayed write of each key: Some(location) for a put, None for a
        // delete.
        let mut latest: HashMap<i64, Option<Location>> = HashMap::new();
        let writable = !options.read_only;
        let (log, sequence, used_checkpoint) =
            Log::open(path, options.segment_size, writable, checkpoint.as_ref(), |write| match write {
                Replayed::Put { column_family: 0, key, location, .. } => {
                    latest.insert(key, Some(location));
                }
                Replayed::Delete { column_family: 0, key, .. } => {
                    latest.insert(key, None);
                }
                // Other families are not opened by this version; their records stay
                // in the log untouched.
                Replayed::Put { .. } | Replayed::Delete { .. } => {}
            })?;
        let replayed_keys = latest.len();
        let index = match checkpoint.filter(|_| used_checkpoint) {
            Some(checkpoint) => {
                let mut index = Alex::bulk_load(&checkpoint.entries).map_err(invalid_checkpoint)?;
                for (key, write) in latest {
                    match write {
                        Some(location) => index.insert(key, location.0),
                        None => index.remove(key),
                    };
                }
                index
            }
            None => {
                let mut pairs: Vec<(i64, u64)> =
                    latest.into_iter().filter_map(|(key, write)| Some((key, write?.0))).collect();
                pairs.sort_unstable_by_key(|pair| pair.0);
                Alex::bulk_load(&pairs).map_err(invalid_checkpoint)?
            }
        };
        let checkpointed_rollovers = log.rollovers();
        let state = State {
            index,
            log,
            sequence,
            counters: Counters::default(),
            poisoned: None,
            checkpointed_rollovers,
            recovery: (used_checkpoint, replayed_keys),
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            options,
            state: RwLock::new(state),
            _lock: lock,
            stop_syncer: Mutex::new(None),
            crashed: std::sync::atomic::AtomicBool::new(false),
            checkpoint_lock: Arc::new(Mutex::new(0)),
            syncs: AtomicU64::new(0),
        });
        if let (Durability::Periodic(interval), false) = (shared.options.durability, shared.options.read_only) {
            start_periodic_syncer(&shared, interval)?;
        }
        Ok(Db { shared })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Inserts or overwrites `key`.
    pub fn put(&self, key: i64, value: impl AsRef<[u8]>) -> Result<()> {
        let value = value.as_ref();
        self.check_value(value.len())?;
        let mut state = self.write_state()?;
        let sequence = state.sequence + 1;
        let header = RecordHeader::new(RecordKind::Put, 0, key, sequence, value.len() as u32);
        let location = state.log.append(&[&header.encode(value), value])?;
        let written = (location, (RECORD_HEADER_SIZE + value.len()) as u64);
        state.sequence = sequence;
        state.index.insert(key, location.0);
        state.counters.puts += 1;
        state.counters.bytes_written += (RECORD_HEADER_SIZE + value.len()) as u64;
        self.after_write(state, written)
    }

    /// The latest value of `key`.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        let found = {
            let state = self.shared.state.read();
            match state.index.get(key) {
                None => return Ok(None),
                Some(location) => {
                    let location = Location(location);
                    (location, state.log.segment(location.segment()).cloned())
                }
            }
        };
        match found {
            (location, Some(segment)) => read_value(segment, location, key).map(Some),
            (location, None) => Err(Error::corruption(
                &self.shared.path,
                u64::from(location.offset()),
                format!("index points into segment {} which does not exist", location.segment()),
            )),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        Ok(self.shared.state.read().index.contains_key(key))
    }

    /// Deletes `key`; deleting an absent key is `Ok(())` and writes nothing.
    pub fn delete(&self, key: i64) -> Result<()> {
        let mut state = self.write_state()?;
        if !state.index.contains_key(key) {
            return Ok(());
        }
        let sequence = state.sequence + 1;
        let header = RecordHeader::new(RecordKind::Delete, 0, key, sequence, 0);
        let location = state.log.append(&[&header.encode(&[])])?;
        let written = (location, RECORD_HEADER_SIZE as u64);
        state.sequence = sequence;
        state.index.remove(key);
        state.counters.deletes += 1;
        state.counters.bytes_written += RECORD_HEADER_SIZE as u64;
        self.after_write(state, written)
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
        let mut state = self.write_state()?;
        let sequence = state.sequence + 1;
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
        let start = state.log.append(&parts)?;
        let written = (start, parts.iter().map(|part| part.len() as u64).sum::<u64>());
        state.sequence = sequence;
        let mut offset = u64::from(start.offset()) + (RECORD_HEADER_SIZE + descriptor.len()) as u64;
        for operation in &batch.operations {
            let location = Location::new(start.segment(), offset as u32);
            match *operation {
                BatchOperation::Put { column_family: 0, key, value_len, .. } => {
                    state.index.insert(key, location.0);
                    offset += (RECORD_HEADER_SIZE + value_len) as u64;
                }
                BatchOperation::Put { value_len, .. } => offset += (RECORD_HEADER_SIZE + value_len) as u64,
                BatchOperation::Delete { column_family, key } => {
                    if column_family == 0 {
                        state.index.remove(key);
                    }
                    offset += RECORD_HEADER_SIZE as u64;
                }
            }
        }
        state.counters.batches += 1;
        state.counters.batch_writes += u64::from(count);
        state.counters.bytes_written += (RECORD_HEADER_SIZE + descriptor.len()) as u64 + body_len;
        self.after_write(state, written)
    }

    /// Number of live keys (exact).
    pub fn len(&self) -> usize {
        self.shared.state.read().index.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every write acknowledged so far durable, in any durability mode.
    pub fn flush(&self) -> Result<()> {
        let segments: Vec<Arc<Segment>> = {
            let state = self.shared.state.read();
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned(reason.clone()));
            }
            state.log.segments().cloned().collect()
        };
        match sync_segments(&segments) {
            Ok(synced) => {
                self.shared.syncs.fetch_add(synced, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.shared.state.write().poisoned = Some(error.to_string());
                Err(error)
            }
        }
    }

    /// Reads every record of every segment and checks every checksum. Returns the
    /// report, or `Error::Corruption` for the first bad record.
    pub fn verify(&self) -> Result<VerifyReport> {
        let segments: Vec<Arc<Segment>> = self.shared.state.read().log.segments().cloned().collect();
        let mut report = VerifyReport { segments: segments.len(), ..VerifyReport::default() };
        let mut sequence = 0;
        for segment in &segments {
            verify_segment(segment, &mut sequence, &mut report);
        }
        match report.corrupt.first() {
            Some(bad) => Err(Error::corruption(&bad.file, bad.offset, bad.reason.clone())),
            None => Ok(report),
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let state = self.shared.state.read();
        let counters = state.counters;
        Stats {
            keys: state.index.len(),
            segments: state.log.segments().count(),
            log_bytes: state.log.bytes(),
            index_bytes: state.index.size_in_bytes(),
            sequence: state.sequence,
            puts: counters.puts,
            deletes: counters.deletes,
            batches: counters.batches,
            batch_writes: counters.batch_writes,
            bytes_written: counters.bytes_written,
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            unsynced_bytes: state.log.segments().map(|segment| segment.unsynced()).sum(),
            opened_from_checkpoint: state.recovery.0,
            replayed_keys: state.recovery.1,
            torn_tail_bytes: state.log.torn_bytes(),
        }
    }

    /// Snapshots the index (under the caller's write lock) and writes it as a
    /// checkpoint on another thread, after making the log it points into durable.
    fn start_background_checkpoint(&self, state: &State) -> Result<()> {
        let entries: Vec<(i64, u64)> = state.index.iter().collect();
        let ends = state.log.segment_ends();
        let segments: Vec<Arc<Segment>> = state.log.segments().cloned().collect();
        let sequence = state.sequence;
        let dir = self.shared.path.clone();
        let lock = Arc::clone(&self.shared.checkpoint_lock);
        std::thread::Builder::new().name("alexstorage-checkpoint".into()).spawn(move || {
            let mut newest = lock.lock();
            if *newest >= sequence {
                return;
            }
            // A checkpoint must never point at records that a power loss could take.
            if segments.iter().try_for_each(|segment| segment.sync().map(|_| ())).is_err() {
                return;
            }
            // A failed checkpoint is only a slower next open: the log is complete.
            if checkpoint::write(&dir, sequence, &ends, entries.into_iter()).is_ok() {
                *newest = sequence;
            }
        })?;
        Ok(())
    }

    /// For tests: closes this handle as a crashed process would, without the final
    /// sync of a clean close (other clones keep the store open until dropped).
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.shared.crashed.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn check_value(&self, size: usize) -> Result<()> {
        let max = self.shared.options.max_value_size;
        if size > max {
            return Err(Error::ValueTooLarge { size, max });
        }
        Ok(())
    }

    /// The state, locked for a write, if writes are allowed.
    fn write_state(&self) -> Result<RwLockWriteGuard<'_, State>> {
        if self.shared.options.read_only {
            return Err(Error::ReadOnly);
        }
        let state = self.shared.state.write();
        if let Some(reason) = &state.poisoned {
            return Err(Error::Poisoned(reason.clone()));
        }
        Ok(state)
    }

    /// Finishes a write: starts a checkpoint after a segment roll-over, releases the
    /// write lock, and, in `Sync` mode, makes the write durable.
    ///
    /// The sync runs outside the store's lock, which is what makes it a group commit:
    /// a segment syncs everything published so far, so writers whose records were
    /// appended while another writer's `msync` was in flight find their records
    /// already durable, or share the next `msync`. Each returns only once its own
    /// record is durable.
    fn after_write(&self, mut state: RwLockWriteGuard<'_, State>, written: (Location, u64)) -> Result<()> {
        if state.log.rollovers() != state.checkpointed_rollovers {
            state.checkpointed_rollovers = state.log.rollovers();
            self.start_background_checkpoint(&state)?;
        }
        if self.shared.options.durability != Durability::Sync {
            return Ok(());
        }
        // Earlier segments were synced when they were sealed: only the one written
        // to can hold this write's unsynced bytes.
        let (location, len) = written;
        let segment = state.log.segment(location.segment()).cloned();
        drop(state);
        let Some(segment) = segment else { return Ok(()) };
        match segment.sync_through(u64::from(location.offset()) + len) {
            Ok(true) => {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(error) => {
                // The write is in the log but may not be durable, and a failed sync
                // can lose dirty pages: refuse further writes until a reopen recovers.
                self.shared.state.write().poisoned = Some(error.to_string());
                Err(error)
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if self.options.read_only || *self.crashed.get_mut() {
            return;
        }
        // Closing makes everything acknowledged durable, then checkpoints the index
        // so that the next open is fast. Errors here have no caller to go to: the
        // data is in the page cache regardless, and a missing checkpoint only means
        // a full replay.
        let state = self.state.get_mut();
        if state.log.sync().is_err() || state.poisoned.is_some() {
            return;
        }
        let mut newest = self.checkpoint_lock.lock();
        if *newest < state.sequence || state.sequence == 0 {
            let ends = state.log.segment_ends();
            let entries = state.index.iter();
            if checkpoint::write(&self.path, state.sequence, &ends, entries).is_ok() {
                *newest = state.sequence;
            }
        }
    }
}

fn invalid_checkpoint(error: crate::index::BulkLoadError) -> Error {
    Error::InvalidArgument(format!("index rebuild failed: {error}"))
}

/// Reads and checks the record of `key` at `location`.
fn read_value(segment: Arc<Segment>, location: Location, key: i64) -> Result<Value> {
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
            Ok(Value::mapped(Arc::clone(&segment), offset + RECORD_HEADER_SIZE as u64, value_len))
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
            Some(shared) => shared.state.read().log.segments().cloned().collect(),
            None => return,
        };
        let result = sync_segments(&segments);
        let Some(shared) = weak.upgrade() else { return };
        match result {
            Ok(synced) => shared.syncs.fetch_add(synced, Ordering::Relaxed),
            Err(error) => {
                shared.state.write().poisoned = Some(error.to_string());
                return;
            }
        };
    })?;
    *shared.stop_syncer.lock() = Some(stop);
    Ok(())
}
