//! [openraft](https://docs.rs/openraft/0.9) storage on AlexStorage: the Raft log
//! ([`LogStore`], openraft's `RaftLogStorage`) and a key-value state machine
//! ([`StateMachineStore`], `RaftStateMachine`) in one store, each in column
//! families of its own.
//!
//! # Layout
//! | family | key | value |
//! |---|---|---|
//! | `raft_log` | the entry's log index | the entry |
//! | `raft_meta` | 0: vote, 1: committed log id, 2: last purged log id, 3: layout version | as named |
//! | `raft_data` | the application's key | the application's value |
//! | `raft_state` | 0: last applied log id, 1: last membership | as named |
//! | `raft_snapshot` | 0: the current snapshot's metadata and chunk count; 1..: its data in chunks | metadata; raw bytes |
//!
//! Everything but the application's values, the snapshot data and the layout version
//! is encoded with `postcard` (serde's compact binary form): an entry takes about its
//! request's size. `docs/FORMAT.md` ("Replication's layout") gives every byte; a store
//! laid out by another version ([`LAYOUT_VERSION`]) is refused.
//!
//! # How openraft's calls map onto the store, and what is durable when
//! - `append`: one [`WriteBatch`] of every entry, and returns (the entries are
//!   readable); openraft's flush callback is called by a flushing thread of the store's
//!   own once a [`Db::flush`] after the write returned, so an append is reported flushed
//!   only when it is on stable storage, whatever the store's `Durability`. The thread
//!   serves every waiter that arrived during one flush with the next: appends and votes
//!   that come together share one sync.
//! - `save_vote`: a put, then it awaits a flush on that thread before it returns.
//! - `save_committed` (a put), `truncate`, `purge`: one write each, without a flush of
//!   their own. The store keeps a prefix of the write order through any crash or power
//!   cut, so a later flushed append (or vote) makes them durable first; a purge writes
//!   the new purged log id and deletes the entries in the same batch. A purge past the
//!   last applied log id the state machine holds (openraft purges a follower's log up
//!   to a snapshot it received before the state machine has stored it) is done in
//!   memory, seen by reads and the log state, and written right after the state
//!   machine's write that covers it: a crash in between loses only the purge.
//! - `apply`: one batch for all the entries of the call: the data writes, the last
//!   applied log id and the membership, all or nothing after a crash. Not flushed: after
//!   a crash the state machine resumes from a prefix of what it applied, and openraft
//!   applies the log again from there.
//! - `build_snapshot`: a consistent [`alexstorage::Snapshot`] of the data and state
//!   families, read while writes go on; the snapshot is kept (in `raft_snapshot`, one
//!   batch, unless a newer one was kept meanwhile), then a [`Db::flush`]: the state the
//!   snapshot describes, and everything applied before it, is durable before openraft
//!   purges the log up to it.
//! - `install_snapshot`: one batch that deletes every key of `raft_data`, writes the
//!   snapshot's pairs, its last applied log id and membership, keeps the snapshot, and
//!   purges the log through the snapshot (as openraft does right after an install): the
//!   state is replaced atomically, never without the purge; then a flush. Data that does not decode is
//!   refused before anything is written.
//!
//! # Limits
//! - The calls run their store work on the async runtime's thread, but for the flushes,
//!   which run on the flushing thread (a sync waits for the disk).
//!   Writes are `Buffered` (they land in the page cache) and reads are memory-mapped,
//!   so neither waits for the disk; a snapshot build or install encodes the whole state
//!   on the runtime's thread.
//! - An entry is one value of the store, so a request's value must fit the store's
//!   `max_value_size` (64 MiB by default) with a few bytes to spare; a snapshot is kept
//!   in chunks of 16 MiB, so that limit must be at least that; a snapshot (and an
//!   install, which writes the data and keeps a copy) is one batch, which must fit one
//!   log segment (at most 4 GiB).
//!
//! # Example
//! ```
//! use alexstorage_raft::{open, Request};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (log_store, state_machine) = open(dir.path()).unwrap();
//! // Hand both to `openraft::Raft::new(id, config, network, log_store, state_machine)`;
//! // the application's writes are `Request`s:
//! let request = Request::Put { key: 7, value: b"seven".to_vec() };
//! # let _ = (log_store, state_machine, request);
//! ```

// openraft's `StorageError` is what its traits return, and it is large: every storage
// implementation returns it by value.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use alexstorage::{ColumnFamily, Db, WriteBatch};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use crate::flusher::Flusher;

mod flusher;

/// A Raft member's id.
pub type NodeId = u64;

/// A write to the replicated key-value state machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: i64,
        /// The value (encoded as a byte string: a length, then the bytes as they are).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: i64,
    },
    /// Several writes applied together, in order, at one log index: all or none of
    /// them, after any crash.
    Batch(Vec<Request>),
}

impl Request {
    /// Adds this write's puts and deletes of `data` to `batch`, in order.
    fn add_to(self, batch: &mut WriteBatch, data: &ColumnFamily) {
        match self {
            Request::Put { key, value } => {
                batch.put_cf(data, key, value);
            }
            Request::Delete { key } => {
                batch.delete_cf(data, key);
            }
            Request::Batch(writes) => {
                for write in writes {
                    write.add_to(batch, data);
                }
            }
        }
    }
}

/// What applying an entry answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index the entry was applied at.
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The openraft types of an AlexStorage-backed key-value store: [`Request`]s in,
    /// [`Response`]s out, `u64` node ids, `BasicNode` addresses, snapshots as bytes.
    pub TypeConfig: D = Request, R = Response
);

/// Storage errors as openraft takes them.
pub type StorageResult<T> = Result<T, StorageError<NodeId>>;

const LOG: &str = "raft_log";
const META: &str = "raft_meta";
const DATA: &str = "raft_data";
const STATE: &str = "raft_state";
const SNAPSHOT: &str = "raft_snapshot";

const VOTE_KEY: i64 = 0;
const COMMITTED_KEY: i64 = 1;
const PURGED_KEY: i64 = 2;
/// The version of this layout (`docs/FORMAT.md`, "Replication's layout"), 4 bytes
/// little-endian, written when the stores are first made on a store.
const LAYOUT_KEY: i64 = 3;
/// The layout this build writes and reads.
pub const LAYOUT_VERSION: u32 = 1;
const APPLIED_KEY: i64 = 0;
const MEMBERSHIP_KEY: i64 = 1;
const SNAPSHOT_META_KEY: i64 = 0;
/// Snapshot data is kept in chunks of this many bytes (a store's values are limited).
const SNAPSHOT_CHUNK: usize = 16 << 20;
/// A read of log entries for replication stops once it holds this many bytes of
/// encoded entries (always holding at least one): openraft asks for up to
/// `max_payload_entries` at once, and entries may hold batches of many writes. A
/// little under 4 MiB, so that the append that carries them stays under a 4 MiB budget.
pub const LOG_READ_BUDGET: usize = (4 << 20) - (64 << 10);

/// Opens (or creates) the store at `path` and returns its Raft log and state machine.
/// The store is opened with AlexStorage's default options; see [`stores`] to choose
/// them.
pub fn open(path: impl AsRef<Path>) -> alexstorage::Result<(LogStore, StateMachineStore)> {
    stores(Db::open(path)?)
}

/// The Raft log and the state machine over an open store (its column families are
/// created on first use).
pub fn stores(db: Db) -> alexstorage::Result<(LogStore, StateMachineStore)> {
    let meta = db.column_family(META)?;
    check_layout(&meta)?;
    let state = db.column_family(STATE)?;
    let shared = Arc::new(Shared { pending_purge: Mutex::new(None), flusher: Flusher::start(db.clone())? });
    let log = LogStore {
        log: db.column_family(LOG)?,
        meta,
        state: state.clone(),
        shared: Arc::clone(&shared),
        db: db.clone(),
    };
    let state_machine = StateMachineStore {
        data: db.column_family(DATA)?,
        state,
        snapshot: db.column_family(SNAPSHOT)?,
        log: log.log.clone(),
        meta: log.meta.clone(),
        keeping: Arc::new(Mutex::new(())),
        shared,
        db,
    };
    Ok((log, state_machine))
}

/// Refuses a store laid out by another version of this crate; records the version on
/// a store that has none yet (a read-only store is left as it is).
fn check_layout(meta: &ColumnFamily) -> alexstorage::Result<()> {
    match meta.get(LAYOUT_KEY)? {
        Some(bytes) => match <[u8; 4]>::try_from(&bytes[..]).map(u32::from_le_bytes) {
            Ok(LAYOUT_VERSION) => Ok(()),
            Ok(found) => Err(alexstorage::Error::InvalidArgument(format!(
                "the store's Raft layout is version {found}; this build reads version {LAYOUT_VERSION}"
            ))),
            Err(_) => Err(alexstorage::Error::InvalidArgument(format!(
                "the store's Raft layout version is {} bytes long, not 4",
                bytes.len()
            ))),
        },
        None => match meta.put(LAYOUT_KEY, LAYOUT_VERSION.to_le_bytes()) {
            Ok(()) | Err(alexstorage::Error::ReadOnly) => Ok(()),
            Err(error) => Err(error),
        },
    }
}

fn io_error(error: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&error)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AnyError> {
    postcard::to_stdvec(value).map_err(io_error)
}

fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, AnyError> {
    postcard::from_bytes(bytes).map_err(io_error)
}

/// The value at `key` of `family`, decoded.
fn read<T: for<'a> Deserialize<'a>>(family: &ColumnFamily, key: i64) -> Result<Option<T>, AnyError> {
    match family.get(key).map_err(io_error)? {
        Some(bytes) => decode(&bytes).map(Some),
        None => Ok(None),
    }
}

/// The keys of `family` in `range`.
fn keys(family: &ColumnFamily, range: impl RangeBounds<i64>) -> Result<Vec<i64>, AnyError> {
    family.range(range).map(|entry| entry.map(|(key, _)| key).map_err(io_error)).collect()
}

/// A log index as a key of the log family (indexes past `i64::MAX` are refused).
fn index_key(index: u64) -> Result<i64, AnyError> {
    i64::try_from(index).map_err(|_| AnyError::error(format!("log index {index} is past i64::MAX")))
}

/// The Raft log, vote and committed log id (openraft's `RaftLogStorage`). Clones share
/// the store.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: Db,
    log: ColumnFamily,
    meta: ColumnFamily,
    /// The state machine's state family: a purge is written no further than what it
    /// holds.
    state: ColumnFamily,
    shared: Arc<Shared>,
}

impl LogStore {
    /// The last purged log id: the one written, or a pending one past it.
    fn purged(&self) -> Result<Option<LogId<NodeId>>, AnyError> {
        let pending = *self.shared.pending_purge.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(stored_purged(&self.meta)?.max(pending))
    }

    fn write_meta<T: Serialize>(&self, key: i64, value: &T) -> Result<(), AnyError> {
        self.meta.put(key, encode(value)?).map_err(io_error)
    }
}

/// `range` of log indexes as a range of the log family's keys: a start past
/// `i64::MAX` starts after every key, an end past it bounds nothing.
fn key_range(range: &impl RangeBounds<u64>) -> (Bound<i64>, Bound<i64>) {
    let start = match range.start_bound() {
        Bound::Included(&index) => index_key(index).map_or(Bound::Excluded(i64::MAX), Bound::Included),
        Bound::Excluded(&index) => index_key(index).map_or(Bound::Excluded(i64::MAX), Bound::Excluded),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(&index) => index_key(index).map_or(Bound::Unbounded, Bound::Included),
        Bound::Excluded(&index) => index_key(index).map_or(Bound::Unbounded, Bound::Excluded),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

impl LogStore {
    /// The entries in `range`, stopping once they hold `budget` encoded bytes (with at
    /// least one entry, if the range holds any).
    fn entries(&self, range: &impl RangeBounds<u64>, budget: usize) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let range = key_range(range);
        // Entries a pending purge covers are gone as far as openraft is concerned.
        let purged = self.purged().map_err(StorageIOError::read_logs)?.map(|purged| purged.index);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for entry in self.log.range(range) {
            let (key, value) = entry.map_err(|error| StorageIOError::read_logs(io_error(error)))?;
            if purged.is_some_and(|purged| key as u64 <= purged) {
                continue;
            }
            if !entries.is_empty() && bytes.saturating_add(value.len()) > budget {
                break;
            }
            bytes = bytes.saturating_add(value.len());
            entries.push(decode(&value).map_err(StorageIOError::read_logs)?);
        }
        Ok(entries)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.entries(&range, usize::MAX)
    }

    /// Replication's reads: the first entries of `start..end` up to
    /// [`LOG_READ_BUDGET`] bytes (at least one), so that an append to a member that
    /// lags stays small enough to be sent, decoded and flushed within openraft's
    /// append timeout (one heartbeat interval).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> StorageResult<Vec<Entry<TypeConfig>>> {
        self.entries(&(start..end), LOG_READ_BUDGET)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.purged().map_err(StorageIOError::read_logs)?;
        let last = match self.log.range(..).next_back() {
            Some(entry) => {
                let (_, value) = entry.map_err(|error| StorageIOError::read_logs(io_error(error)))?;
                let entry: Entry<TypeConfig> = decode(&value).map_err(StorageIOError::read_logs)?;
                Some(entry.log_id)
            }
            None => None,
        };
        // The last entry, unless a purge covers its index (then the purged log id).
        let last_log_id = match (last, last_purged_log_id) {
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged),
            (last, purged) => last.or(purged),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.write_meta(VOTE_KEY, vote).map_err(StorageIOError::write_vote)?;
        // Durable before it returns.
        self.shared.flusher.flushed().await.map_err(StorageIOError::write_vote)?;
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(read(&self.meta, VOTE_KEY).map_err(StorageIOError::read_vote)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.write_meta(COMMITTED_KEY, &committed).map_err(StorageIOError::write)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = read(&self.meta, COMMITTED_KEY).map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            let key = index_key(entry.log_id.index).map_err(StorageIOError::write_logs)?;
            batch.put_cf(&self.log, key, encode(&entry).map_err(StorageIOError::write_logs)?);
        }
        // Readable once written; reported flushed only once on stable storage, by the
        // flushing thread.
        self.db.write(batch).map_err(|error| StorageIOError::write_logs(io_error(error)))?;
        self.shared.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let from = index_key(log_id.index).map_err(StorageIOError::write_logs)?;
        let keys = keys(&self.log, from..).map_err(StorageIOError::write_logs)?;
        let mut batch = WriteBatch::new();
        for key in keys {
            batch.delete_cf(&self.log, key);
        }
        self.db.write(batch).map_err(|error| StorageIOError::write_logs(io_error(error)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        // openraft purges a follower's log up to a snapshot it received as soon as it
        // hands the install to the state machine, which stores it in another task: a
        // crash in between must not leave the log purged past what the state machine
        // holds. A purge past the applied log id the store holds is done in memory
        // (reads and the log state see it) and written once the state machine holds
        // it; a crash before that loses only the purge.
        let mut pending = self.shared.pending_purge.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = applied_log_id(&self.state).map_err(StorageIOError::write_logs)?;
        if applied.is_some_and(|applied| applied.index >= log_id.index) {
            write_purge(&self.db, &self.log, &self.meta, log_id).map_err(StorageIOError::write_logs)?;
            if pending.is_some_and(|pending| pending.index <= log_id.index) {
                *pending = None;
            }
        } else if pending.is_none_or(|pending| pending.index < log_id.index) {
            *pending = Some(log_id);
        }
        Ok(())
    }
}

/// Resolves once the stores it came from were all dropped
/// ([`StateMachineStore::released`]).
#[derive(Debug)]
pub struct Released(tokio::sync::watch::Receiver<bool>);

impl Released {
    /// Waits for the release.
    pub async fn wait(mut self) {
        // The sender sets the value before it is dropped: an error means it is set.
        let _ = self.0.wait_for(|released| *released).await;
    }
}

/// What a store's log and state machine share.
#[derive(Debug)]
struct Shared {
    /// A purge openraft asked for past the state machine's applied log id: done in
    /// memory until the state machine holds it, then written.
    pending_purge: Mutex<Option<LogId<NodeId>>>,
    /// The thread that flushes for appends, votes and snapshots.
    flusher: Flusher,
}

/// The last applied log id the state family holds.
fn applied_log_id(state: &ColumnFamily) -> Result<Option<LogId<NodeId>>, AnyError> {
    Ok(read::<Option<LogId<NodeId>>>(state, APPLIED_KEY)?.flatten())
}

/// The purged log id the meta family holds.
fn stored_purged(meta: &ColumnFamily) -> Result<Option<LogId<NodeId>>, AnyError> {
    Ok(read::<Option<LogId<NodeId>>>(meta, PURGED_KEY)?.flatten())
}

/// Adds to `batch` the deletes of the log entries through `log_id` and the record of
/// it as the last purged (nothing, if a purge as far is recorded).
fn add_purge(
    batch: &mut WriteBatch,
    log: &ColumnFamily,
    meta: &ColumnFamily,
    log_id: LogId<NodeId>,
) -> Result<(), AnyError> {
    if stored_purged(meta)?.is_some_and(|purged| purged.index >= log_id.index) {
        return Ok(());
    }
    let through = index_key(log_id.index)?;
    batch.put_cf(meta, PURGED_KEY, encode(&Some(log_id))?);
    for key in keys(log, ..=through)? {
        batch.delete_cf(log, key);
    }
    Ok(())
}

/// Deletes the log entries through `log_id` and records it as the last purged, in
/// one batch (nothing, if a purge as far is recorded).
fn write_purge(db: &Db, log: &ColumnFamily, meta: &ColumnFamily, log_id: LogId<NodeId>) -> Result<(), AnyError> {
    let mut batch = WriteBatch::new();
    add_purge(&mut batch, log, meta, log_id)?;
    if batch.is_empty() {
        return Ok(());
    }
    db.write(batch).map_err(io_error)
}

/// The replicated key-value state machine (openraft's `RaftStateMachine`) and its
/// snapshots. Clones share the store. Its data is readable directly through
/// [`StateMachineStore::get`] (reads from one member are not linearizable by
/// themselves: a caller that needs that goes through the leader first).
#[derive(Clone, Debug)]
pub struct StateMachineStore {
    db: Db,
    data: ColumnFamily,
    state: ColumnFamily,
    snapshot: ColumnFamily,
    /// The log's families: a pending purge is written once the state holds it.
    log: ColumnFamily,
    meta: ColumnFamily,
    /// Held while the current snapshot is compared and replaced: a build that
    /// finishes after a newer snapshot was built or installed keeps the newer one.
    keeping: Arc<Mutex<()>>,
    shared: Arc<Shared>,
}

/// A kept snapshot's metadata, as stored.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    chunks: u64,
}

impl StateMachineStore {
    /// The value of `key` in the state machine as applied on this member.
    pub fn get(&self, key: i64) -> alexstorage::Result<Option<Vec<u8>>> {
        Ok(self.data.get(key)?.map(|value| value.to_vec()))
    }

    /// The number of keys in the state machine as applied on this member.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the state machine holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Resolves once every handle of these stores (the log's and the state
    /// machine's, with their clones) was dropped and their flushing thread ended: the
    /// store is then closed, unless the application holds a `Db` handle of its own.
    pub fn released(&self) -> Released {
        Released(self.shared.flusher.released())
    }

    /// Writes a pending purge once the state holds what it covers (after the write
    /// that made it so, so that a crash keeps the purge only with it).
    fn settle_purge(&self) -> Result<(), AnyError> {
        let mut pending = self.shared.pending_purge.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(purge) = *pending else { return Ok(()) };
        if applied_log_id(&self.state)?.is_some_and(|applied| applied.index >= purge.index) {
            write_purge(&self.db, &self.log, &self.meta, purge)?;
            *pending = None;
        }
        Ok(())
    }

    /// Adds to `batch` the writes that keep `meta` and `data` as the current snapshot.
    fn keep_snapshot(
        &self,
        batch: &mut WriteBatch,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), AnyError> {
        for key in keys(&self.snapshot, ..)? {
            batch.delete_cf(&self.snapshot, key);
        }
        let chunks: Vec<&[u8]> = data.chunks(SNAPSHOT_CHUNK).collect();
        let stored = StoredSnapshot { meta: meta.clone(), chunks: chunks.len() as u64 };
        batch.put_cf(&self.snapshot, SNAPSHOT_META_KEY, encode(&stored)?);
        for (index, chunk) in chunks.into_iter().enumerate() {
            batch.put_cf(&self.snapshot, index as i64 + 1, chunk);
        }
        Ok(())
    }
}

/// Snapshot data: every (key, value) pair of the state machine in key order, each as
/// the key (8 bytes, little-endian), the value's length (4 bytes, little-endian) and the
/// value.
fn encode_pairs(
    pairs: impl Iterator<Item = alexstorage::Result<(i64, alexstorage::Value)>>,
) -> Result<Vec<u8>, AnyError> {
    let mut out = Vec::new();
    for pair in pairs {
        let (key, value) = pair.map_err(io_error)?;
        let len = u32::try_from(value.len()).map_err(|_| AnyError::error("a value of 4 GiB or more"))?;
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&value);
    }
    Ok(out)
}

/// The pairs of snapshot data written by [`encode_pairs`]; an error for bytes that are
/// not such data.
fn decode_pairs(mut bytes: &[u8]) -> Result<Vec<(i64, &[u8])>, AnyError> {
    let mut pairs = Vec::new();
    while !bytes.is_empty() {
        let cut = || AnyError::error("snapshot data cut short");
        let key = i64::from_le_bytes(bytes.get(..8).ok_or_else(cut)?.try_into().map_err(|_| cut())?);
        let len = u32::from_le_bytes(bytes.get(8..12).ok_or_else(cut)?.try_into().map_err(|_| cut())?) as usize;
        let rest = bytes.get(12..).ok_or_else(cut)?;
        let value = rest.get(..len).ok_or_else(cut)?;
        pairs.push((key, value));
        bytes = rest.get(len..).ok_or_else(cut)?;
    }
    Ok(pairs)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let failed = |error: AnyError| StorageIOError::write_snapshot(None, error);
        let snapshot = self.db.snapshot();
        let state = |key: i64| -> Result<Option<Vec<u8>>, AnyError> {
            Ok(snapshot.get_cf(&self.state, key).map_err(io_error)?.map(|value| value.to_vec()))
        };
        let applied: Option<LogId<NodeId>> = match state(APPLIED_KEY).map_err(failed)? {
            Some(bytes) => decode(&bytes).map_err(failed)?,
            None => None,
        };
        let membership: StoredMembership<NodeId, openraft::BasicNode> = match state(MEMBERSHIP_KEY).map_err(failed)? {
            Some(bytes) => decode(&bytes).map_err(failed)?,
            None => StoredMembership::default(),
        };
        let data = encode_pairs(snapshot.range_cf(&self.data, ..)).map_err(failed)?;
        let id = match applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, snapshot.sequence()),
            None => format!("none-{}", snapshot.sequence()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id: id };
        {
            let _keeping = self.keeping.lock().unwrap_or_else(PoisonError::into_inner);
            // A snapshot built or installed meanwhile that is newer stays the current one.
            let kept: Option<StoredSnapshot> = read(&self.snapshot, SNAPSHOT_META_KEY).map_err(failed)?;
            if kept.is_none_or(|kept| kept.meta.last_log_id <= meta.last_log_id) {
                let mut batch = WriteBatch::new();
                self.keep_snapshot(&mut batch, &meta, &data).map_err(failed)?;
                self.db.write(batch).map_err(|error| failed(io_error(error)))?;
            }
        }
        // The state the snapshot describes, and everything applied before it, durable
        // before openraft purges the log up to it (a flush covers every earlier write).
        self.shared.flusher.flushed().await.map_err(failed)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, openraft::BasicNode>)> {
        let applied = applied_log_id(&self.state).map_err(StorageIOError::read_state_machine)?;
        let membership = read(&self.state, MEMBERSHIP_KEY).map_err(StorageIOError::read_state_machine)?;
        Ok((applied, membership.unwrap_or_default()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let failed = StorageIOError::write_state_machine;
        let mut batch = WriteBatch::new();
        let mut responses = Vec::new();
        let mut last = None;
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(request) => request.add_to(&mut batch, &self.data),
                EntryPayload::Membership(membership) => {
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    batch.put_cf(&self.state, MEMBERSHIP_KEY, encode(&stored).map_err(failed)?);
                }
            }
            responses.push(Response { index: entry.log_id.index });
            last = Some(entry.log_id);
        }
        if let Some(log_id) = last {
            batch.put_cf(&self.state, APPLIED_KEY, encode(&Some(log_id)).map_err(failed)?);
            self.db.write(batch).map_err(|error| failed(io_error(error)))?;
            self.settle_purge().map_err(failed)?;
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let failed = |error: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), error);
        let data = snapshot.into_inner();
        let pairs = match decode_pairs(&data) {
            Ok(pairs) => pairs,
            Err(error) => {
                // No purge stays pending for a state that never came.
                *self.shared.pending_purge.lock().unwrap_or_else(PoisonError::into_inner) = None;
                return Err(failed(error).into());
            }
        };
        let old = keys(&self.data, ..).map_err(failed)?;
        // The whole state replaced in one batch: after a crash, the old state or the
        // new one.
        let mut batch = WriteBatch::new();
        for key in old {
            batch.delete_cf(&self.data, key);
        }
        for (key, value) in pairs {
            batch.put_cf(&self.data, key, value);
        }
        batch.put_cf(&self.state, APPLIED_KEY, encode(&meta.last_log_id).map_err(failed)?);
        batch.put_cf(&self.state, MEMBERSHIP_KEY, encode(&meta.last_membership).map_err(failed)?);
        {
            // Lock order: the pending purge, then the kept snapshot.
            let mut pending = self.shared.pending_purge.lock().unwrap_or_else(PoisonError::into_inner);
            // openraft purges the log through the snapshot right after an install (or
            // just before it, then held pending): the purge goes in the install's batch,
            // so that no crash keeps one without the other (entries of a later term
            // below the snapshot would otherwise survive it).
            if let Some(last) = meta.last_log_id {
                add_purge(&mut batch, &self.log, &self.meta, last).map_err(failed)?;
            }
            let _keeping = self.keeping.lock().unwrap_or_else(PoisonError::into_inner);
            self.keep_snapshot(&mut batch, meta, &data).map_err(failed)?;
            let written = self.db.write(batch).map_err(|error| failed(io_error(error)));
            // A pending purge the install covers is done; after a failed install none
            // stays pending past the state.
            if written.is_err() || pending.is_some_and(|purge| Some(purge.index) <= meta.last_log_id.map(|id| id.index))
            {
                *pending = None;
            }
            written?;
        }
        self.settle_purge().map_err(failed)?;
        self.shared.flusher.flushed().await.map_err(failed)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let failed = |error: AnyError| StorageIOError::read_snapshot(None, error);
        let snapshot = self.db.snapshot();
        let Some(stored) =
            snapshot.get_cf(&self.snapshot, SNAPSHOT_META_KEY).map_err(|error| failed(io_error(error)))?
        else {
            return Ok(None);
        };
        let stored: StoredSnapshot = decode(&stored).map_err(failed)?;
        let mut data = Vec::new();
        for chunk in 1..=stored.chunks {
            let key = i64::try_from(chunk).map_err(|_| failed(AnyError::error("implausible chunk count")))?;
            let bytes = snapshot
                .get_cf(&self.snapshot, key)
                .map_err(|error| failed(io_error(error)))?
                .ok_or_else(|| failed(AnyError::error(format!("snapshot chunk {chunk} is missing"))))?;
            data.extend_from_slice(&bytes);
        }
        Ok(Some(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    #[test]
    fn log_index_ranges_map_onto_keys_past_i64_max_too() {
        assert_eq!(key_range(&(5..=9)), (Bound::Included(5), Bound::Included(9)));
        assert_eq!(key_range(&(5..u64::MAX)), (Bound::Included(5), Bound::Unbounded));
        assert_eq!(key_range(&(u64::MAX..)), (Bound::Excluded(i64::MAX), Bound::Unbounded));
        assert_eq!(key_range(&..), (Bound::Unbounded, Bound::Unbounded));
    }

    /// A snapshot build that finishes after a newer snapshot was kept (openraft builds
    /// in a task of its own, beside installs) leaves the newer one current.
    #[tokio::test(flavor = "current_thread")]
    async fn an_older_build_never_replaces_a_newer_kept_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut state_machine) = open(dir.path()).unwrap();
        let newer = SnapshotMeta {
            last_log_id: Some(log_id(50)),
            last_membership: StoredMembership::default(),
            snapshot_id: "installed at 50".into(),
        };
        state_machine.install_snapshot(&newer, Box::new(Cursor::new(Vec::new()))).await.unwrap();
        // The state as an older build would have read it: applied through 40.
        state_machine.state.put(APPLIED_KEY, encode(&Some(log_id(40))).unwrap()).unwrap();
        let built = state_machine.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(40)), "the build describes what it read");
        let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, "installed at 50", "the newer snapshot stays current");
        // A build as new as the kept one or newer replaces it.
        state_machine.state.put(APPLIED_KEY, encode(&Some(log_id(60))).unwrap()).unwrap();
        let built = state_machine.build_snapshot().await.unwrap();
        let current = state_machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, built.meta.snapshot_id);
        assert_eq!(current.meta.last_log_id, Some(log_id(60)));
    }

    #[test]
    fn a_store_of_another_layout_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        drop(stores(db.clone()).unwrap());
        let meta = db.column_family(META).unwrap();
        assert_eq!(meta.get(LAYOUT_KEY).unwrap().as_deref(), Some(&LAYOUT_VERSION.to_le_bytes()[..]));
        // The version is kept, and accepted again.
        drop(stores(db.clone()).unwrap());
        meta.put(LAYOUT_KEY, 2u32.to_le_bytes()).unwrap();
        let refused = stores(db.clone()).unwrap_err();
        assert!(refused.to_string().contains("version 2"), "{refused}");
        meta.put(LAYOUT_KEY, [1u8, 0]).unwrap();
        assert!(stores(db).is_err(), "a version of the wrong length is refused");
    }

    /// Replication reads stop at the budget, but always return an entry, however large.
    #[tokio::test(flavor = "current_thread")]
    async fn replication_reads_stop_at_the_budget_with_at_least_one_entry() {
        use openraft::storage::RaftLogReader;
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _state_machine) = open(dir.path()).unwrap();
        let entry = |index: u64, bytes: usize| Entry::<TypeConfig> {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Request::Put { key: index as i64, value: vec![1; bytes] }),
        };
        let mut batch = WriteBatch::new();
        for (index, bytes) in [(1, 3 << 20), (2, 3 << 20), (3, 10), (4, 6 << 20)] {
            batch.put_cf(&log.log, index as i64, encode(&entry(index, bytes)).unwrap());
        }
        log.db.write(batch).unwrap();
        let indexes =
            |entries: Vec<Entry<TypeConfig>>| entries.iter().map(|entry| entry.log_id.index).collect::<Vec<_>>();
        assert_eq!(indexes(log.limited_get_log_entries(1, 5).await.unwrap()), vec![1], "3 + 3 MiB is past 4 MiB");
        assert_eq!(indexes(log.limited_get_log_entries(2, 5).await.unwrap()), vec![2, 3]);
        assert_eq!(
            indexes(log.limited_get_log_entries(4, 5).await.unwrap()),
            vec![4],
            "one entry past the budget alone"
        );
        assert_eq!(indexes(log.try_get_log_entries(1..5).await.unwrap()), vec![1, 2, 3, 4], "other reads are whole");
    }
}
