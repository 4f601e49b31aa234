//! [`Db`]: the store's public handle. Opening is `open.rs`, writes `write.rs`,
//! maintenance and introspection (compaction, flush, verify, stats) `admin.rs`; the
//! reads are here.
//!
//! # Concurrency
//! Any number of threads read and write one `Db` (it is `Clone + Send + Sync`).
//! Readers lock only their own thread's shard of the view for one index lookup (or
//! one chunk of a range), so reading cores write no shared cache line; a writer locks
//! every shard for the in-memory index update of one write or one whole batch
//! (bounded: an insert moves at most one index node). Records are read and checked
//! after the lock is released, and values keep their segment mapped through
//! per-thread-shard leases (`value.rs`), so the reference count they take is not
//! shared between cores either. Appending a record is a memory copy into the mapped
//! segment under the single writer's section; a roll-over (creating the next
//! segment, sealing the last one with a sync) also happens there. Only writers wait
//! for it. Every lock and its order: `engine/mod.rs`.
//!
//! Readers therefore never wait for an fsync, a roll-over, a checkpoint or a writer's
//! I/O: only for other threads' in-memory index updates. Why not lock-free: the
//! learned index rebuilds nodes on insert (expansions, splits), and making its readers
//! safe against that would need epoch reclamation of whole nodes; the sharded lock
//! gives readers the same scaling on this workload (see `docs/BENCHMARKS.md`,
//! `read-threads`) with no unsafe code. `docs/DESIGN.md` has the whole story,
//! including MVCC and group commit.
//!
//! # Failure
//! An append that fails (a full disk when a new segment is created) writes nothing and
//! leaves the store usable. A failed sync means acknowledged-as-durable data may not
//! be: the store then refuses writes (`Error::Poisoned`) until it is reopened and
//! recovered, never continuing in a half-known state.

mod admin;
mod backup;
mod family;
mod metrics;
mod open;
mod write;

pub use backup::{BackupStage, BackupStats};
pub use family::ColumnFamily;

use std::fs::File;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::background::Worker;
use crate::checkpointer::{Capture, Checkpointer};
use crate::compaction::Compaction;
use crate::engine::{read_record, Engine, MULTI_GET_SECTION};
use crate::family::FamilyRef;
use crate::range::{resolve_many, Range};
use crate::snapshot::Snapshot;
use crate::{Result, Value};

/// An open store. Cheap to clone; all clones share one store, which closes cleanly
/// (everything acknowledged made durable, the lock file released) when the last
/// handle is dropped. Snapshots and ranges may outlive it: they keep reading, but
/// hold neither the lock nor any write path.
#[derive(Clone)]
pub struct Db {
    /// The shared state every read and write goes through.
    engine: Arc<Engine>,
    /// The services around it: checkpoints, compaction, background workers.
    store: Arc<Store>,
    /// Shared by the clones of this handle only: its drop closes the store.
    _handle: Arc<Handle>,
}

/// Closes the store when the last [`Db`] clone lets go of it.
struct Handle(Arc<Store>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What a writable store runs beside its engine.
struct Store {
    /// The same engine the handles hold.
    engine: Arc<Engine>,
    /// Writes every index checkpoint (its lock is order 2).
    checkpointer: Arc<Checkpointer>,
    /// The compaction lock (order 1), counters and failpoints.
    compaction: Arc<Compaction>,
    /// The background threads, stopped by [`Store::close`].
    workers: Workers,
    /// Held while a writable store is open; released by [`Store::close`].
    lock_file: Mutex<Option<File>>,
    /// Set by [`Db::simulate_crash`] (and by an open that failed after starting):
    /// close without the final sync and checkpoint.
    crashed: AtomicBool,
}

/// The background workers; each slot is a leaf lock (taken to wake a worker, and at
/// close to stop it).
#[derive(Default)]
struct Workers {
    /// `Durability::Periodic`'s syncer.
    syncer: Mutex<Option<Worker>>,
    /// The background compactor.
    compactor: Mutex<Option<Worker>>,
    /// Writes the checkpoints that roll-overs defer.
    checkpointer: Mutex<Option<Worker>>,
    /// Starts the kernel's writeback of the active segment ahead of its seal (with
    /// `Options::writeback_step`, in every mode but `Sync`, whose writes sync as they
    /// go).
    writeback: Mutex<Option<Worker>>,
}

impl Workers {
    /// Wakes the compactor, if there is one.
    fn wake_compactor(&self) {
        if let Some(worker) = self.compactor.lock().as_ref() {
            worker.wake();
        }
    }

    /// Wakes the writeback worker, if there is one.
    fn wake_writeback(&self) {
        if let Some(worker) = self.writeback.lock().as_ref() {
            worker.wake();
        }
    }

    /// Wakes the checkpointer; `false` if there is none running to take the capture.
    fn wake_checkpointer(&self) -> bool {
        self.checkpointer.lock().as_ref().is_some_and(Worker::wake)
    }

    /// Stops every worker: all stop flags first, so that none waits for another's
    /// run to end on its own (a compaction waiting for the checkpoint lock while a
    /// background checkpoint holds it), then each joined outside its slot's lock.
    fn stop_all(&self) {
        let slots = [&self.syncer, &self.compactor, &self.checkpointer, &self.writeback];
        for slot in slots {
            if let Some(worker) = slot.lock().as_ref() {
                worker.request_stop();
            }
        }
        for slot in slots {
            let worker = slot.lock().take();
            if let Some(worker) = worker {
                worker.stop();
            }
        }
    }
}

impl Store {
    /// Closes the store (the last [`Db`] handle was dropped): stops the workers (a
    /// compaction or background checkpoint in progress stops at its next step),
    /// makes everything acknowledged durable, writes a checkpoint so that the next
    /// open is fast, and releases the lock file. Errors have no caller to go to: the
    /// data is in the page cache regardless, and a missing checkpoint only means a
    /// full replay.
    fn close(&self) {
        // A background checkpoint must not outlive the lock (a reopened store would
        // race it on the checkpoint file); it stops early, for the one below.
        self.engine.closed.store(true, Ordering::Release);
        self.workers.stop_all();
        let lock_file = self.lock_file.lock().take();
        if self.engine.options.read_only {
            return;
        }
        drop(self.checkpointer.take_deferred());
        if self.crashed.load(Ordering::Relaxed) {
            return;
        }
        if self.engine.sync_or_poison(&self.engine.segments()).is_err() {
            return;
        }
        let capture = {
            let writer = self.engine.writer.lock();
            if writer.poisoned.is_some() {
                return;
            }
            Capture::take(&self.engine, &writer)
        };
        // Read through a snapshot, chunk by chunk: no lock but the checkpoint's is
        // held across the file's writes and syncs.
        if let Err(error) = self.checkpointer.write_now(&self.engine, capture, &AtomicBool::new(false)) {
            tracing::warn!("no checkpoint at close: {error}");
        }
        // Last, the durable mark the final sync left (a checkpoint skipped as covered
        // did not sync it): the next open then knows the whole log reached the disk.
        if let Err(error) = self.engine.settle_or_poison(&self.engine.segments()) {
            tracing::warn!("the last durable mark was not synced: {error}");
        }
        drop(lock_file);
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Db")
            .field("path", &self.engine.path)
            .field("options", &self.engine.options)
            .field("keys", &self.len())
            .finish()
    }
}

impl Db {
    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.engine.path
    }

    /// The latest value of `key`.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        self.engine.metrics.reads.gets(1);
        let slot = self.engine.read_view().locate(key);
        match slot {
            None => Ok(None),
            Some(slot) => {
                let (_, value) = read_record(&self.engine.path, slot.location, slot.lease, 0, key)?;
                self.engine.metrics.reads.bytes(value.len() as u64);
                Ok(Some(value))
            }
        }
    }

    /// The latest values of `keys`, one result per key, in order (a key may repeat):
    /// what [`Db::get`] of each returns, from one consistent view of the store (no
    /// write lands between two of them), and faster per key than `get` in a loop. The
    /// index lookups of a batch go in groups whose cache misses overlap, and each
    /// record is prefetched a few keys before it is read; values are checked and
    /// zero-copy as a get's. A batch of up to 1,024 keys is looked up in one section
    /// of the view's lock; a larger one takes a snapshot and the lock once per 1,024
    /// keys (so a huge batch never holds writers back for long). If reading any key
    /// fails (a damaged record), the call returns that error.
    pub fn multi_get(&self, keys: &[i64]) -> Result<Vec<Option<Value>>> {
        multi_get_in(&self.engine, FamilyRef::default_family(), keys)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        Ok(self.engine.read_view().index.contains_key(key))
    }

    /// Number of live keys (exact).
    pub fn len(&self) -> usize {
        self.engine.read_view().index.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A point-in-time view: reads through it ignore every later write.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.engine.register_snapshot())
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

    /// The store's metrics, for the layers above (transactions count their commits).
    pub(crate) fn metrics(&self) -> &crate::engine::Metrics {
        &self.engine.metrics
    }
}

/// `multi_get` of `keys` in `family` of the store of `engine`: up to
/// [`MULTI_GET_SECTION`] keys in one section of the view's lock, more through a
/// snapshot taken now (one view across sections).
pub(crate) fn multi_get_in(engine: &Arc<Engine>, family: &FamilyRef, keys: &[i64]) -> Result<Vec<Option<Value>>> {
    if keys.len() > MULTI_GET_SECTION {
        return Snapshot::new(engine.register_snapshot()).multi_get_in(family, keys);
    }
    engine.metrics.reads.gets(keys.len() as u64);
    let mut latest = Vec::with_capacity(keys.len());
    {
        let view = engine.read_view();
        let index = view.index_of(family).ok_or_else(|| family.missing())?;
        view.locate_many(index, keys, &mut latest);
    }
    let mut values = Vec::with_capacity(keys.len());
    resolve_many(engine, u64::MAX, family.id, keys, &mut latest, &mut [], &mut values)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Durability, Options};

    #[test]
    fn the_writeback_worker_writes_the_active_segment_back_ahead_of_its_seal() {
        // Not asked for, or in `Sync` mode (every write syncs): no worker.
        for options in [Options::new(), Options::new().durability(Durability::Sync).writeback_step(4096)] {
            let dir = tempfile::tempdir().unwrap();
            let db = options.open(dir.path()).unwrap();
            assert!(db.store.workers.writeback.lock().is_none());
        }
        let dir = tempfile::tempdir().unwrap();
        let options = Options::new().segment_size(1 << 20).writeback_step(16 << 10);
        let db = options.clone().open(dir.path()).unwrap();
        assert!(db.store.workers.writeback.lock().is_some());
        // About 2.5 segments: each written back in steps, then sealed.
        for key in 0..2500 {
            db.put(key, vec![key as u8; 1000]).unwrap();
        }
        let active = || db.engine.writer.lock().log.active().cloned().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while active().written_back() < 64 << 10 {
            assert!(std::time::Instant::now() < deadline, "the worker never wrote the active segment back");
            // A write past the step asks again if the last request was taken.
            db.put(-1, vec![0u8; 20 << 10]).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(db);
        let db = options.open(dir.path()).unwrap();
        for key in 0..2500 {
            assert_eq!(db.get(key).unwrap().as_deref(), Some(&vec![key as u8; 1000][..]));
        }
        db.verify().unwrap();
    }

    #[test]
    fn closing_stops_every_worker_and_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new()
            .durability(Durability::Periodic(Duration::from_millis(5)))
            .writeback_step(4096)
            .open(dir.path())
            .unwrap();
        let store = Arc::clone(&db.store);
        let workers = &store.workers;
        assert!(workers.syncer.lock().is_some() && workers.compactor.lock().is_some());
        assert!(workers.checkpointer.lock().is_some() && workers.writeback.lock().is_some());
        db.put(1, b"one").unwrap();
        let clone = db.clone();
        drop(db);
        assert!(workers.checkpointer.lock().is_some(), "a clone keeps the store open");
        drop(clone);
        // Only `Store::close` empties the slots, and it joins each worker it takes.
        assert!(workers.syncer.lock().is_none() && workers.compactor.lock().is_none());
        assert!(workers.checkpointer.lock().is_none() && workers.writeback.lock().is_none());
        assert!(store.lock_file.lock().is_none());
        // The lock is free: the store opens again, with its write.
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get(1).unwrap().unwrap(), b"one");
        // A read-only open beside it starts no worker at all.
        let read_only = Options::new().read_only(true).writeback_step(4096).open(dir.path()).unwrap();
        let workers = &read_only.store.workers;
        assert!(workers.syncer.lock().is_none() && workers.compactor.lock().is_none());
        assert!(workers.checkpointer.lock().is_none() && workers.writeback.lock().is_none());
    }
}
