//! The engine core: the state every part of the store shares, split by concern, and
//! the one table of its locks. It starts no thread and writes no checkpoint: the
//! layers above it (snapshots and ranges, the checkpointer, compaction, the background
//! workers, and `Db` on top) are built from these parts and take only the ones they
//! need.
//!
//! - [`View`] (behind [`Engine::read_view`]): what readers use — the index, the
//!   segment table with its leases, the visible sequence, the versions kept for
//!   snapshots.
//! - [`Writer`] (`writer.rs`): the single writer's section — the log, sequence
//!   numbers, live-bytes accounting, the poisoned flag.
//! - [`Versions`] (`versions.rs`): the registry of live snapshots and the rules for
//!   keeping superseded versions.
//! - [`Pressure`] (`pressure.rs`): write stalls while compaction catches up.
//! - [`Syncs`]: group commit and sync counters.
//! - `record.rs`: reading and checking one record at a location.
//!
//! # Locks
//! Every lock in the crate, in the order they are taken (a thread holding one may
//! take only those below it). No lock that readers take is ever held across I/O.
//!
//! | # | lock | guards | held across I/O |
//! |---|---|---|---|
//! | 1 | `Compaction::lock` (`compaction/`) | one compaction at a time | yes: a whole compaction |
//! | 2 | `Checkpointer::newest` (`checkpointer.rs`) | the checkpoint file; which state it covers | yes: a checkpoint's write, a backup's included (a compaction holds it throughout, so no checkpoint reads a half-switched index) |
//! | 3 | `Engine::writer` | [`Writer`]: the log's tail, sequence numbers, accounting, `poisoned`, the family catalog | roll-overs (sealing a segment syncs it; creating one allocates); a family's creation or drop (a sync, the catalog's replacement) |
//! | 4 | `Engine::view` (sharded: a reader locks its own shard, a writer all of them) | [`View`] | never: in-memory steps only |
//! | 5 | `Versions::live` | the live snapshots' sequences | never |
//! | 6 | leaves: `Checkpointer::pending`, the store's worker slots, `Pressure`'s condition variable, a segment's tail and sync locks (`log/segment.rs`), a transaction's reads (`transaction/reads.rs`) | their own field | a segment's sync lock: its `msync` |
//!
//! Leaves take no other lock. Writers wait on `Pressure` before they take the writer's
//! section, holding nothing; the group commit's sync runs after the writer's section
//! is released.

mod family;
mod metrics;
mod pressure;
mod record;
mod versions;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use parking_lot::Mutex;

use crate::family::FamilyRef;
use crate::index::{Alex, GET_MANY_GROUP};
use crate::log::segment::{GroupCommit, Segment};
use crate::log::Location;
use crate::value::{Lease, Leases, SegmentTable};
use crate::{Options, Result};

pub(crate) use family::{Families, Family};
pub(crate) use metrics::Metrics;
pub(crate) use pressure::{compaction_due, Pressure};
pub(crate) use record::{
    checked_record, decompress, missing_segment, read_record, read_record_up_to, record_len, record_sequence,
};
pub(crate) use versions::{range_is_empty, History, Registration, Versions};
pub(crate) use writer::Writer;

/// The store's shared state. One per open store, behind an `Arc` that `Db` handles,
/// snapshots, ranges and background workers hold.
pub(crate) struct Engine {
    /// The store's directory.
    pub path: PathBuf,
    /// The options it was opened with.
    pub options: Options,
    /// What readers use. Guarded by its own sharded lock (order 4): a reader locks
    /// only its own shard, a writer every shard, briefly, for in-memory work.
    view: ShardedLock<View>,
    /// The single writer's section (order 3): guards the [`Writer`].
    pub writer: Mutex<Writer>,
    /// Live snapshots; decides which superseded versions the view keeps.
    pub versions: Versions,
    /// Holds writers back while compaction catches up with the garbage.
    pub pressure: Pressure,
    /// Group commit and sync counters.
    pub syncs: Syncs,
    /// How the store was opened.
    pub recovery: Recovery,
    /// This open store's number: the `store` of its families' handles.
    pub store: u64,
    /// Reads, transactions, stalls and latency histograms (the writer's counters are
    /// in [`Writer`]).
    pub metrics: Metrics,
    /// Set once the store is closed (its last `Db` handle dropped): handles that
    /// outlive it (column families) then refuse to work.
    pub closed: AtomicBool,
}

/// The readers' side of the store, guarded by [`Engine`]'s view lock.
pub(crate) struct View {
    /// The default family: key -> location of its latest version.
    pub index: Alex<u64>,
    /// The named column families, each with its own index.
    pub families: Families,
    /// Every segment the index (or a kept version) may point into, with leases.
    pub segments: SegmentTable,
    /// The sequence of the last write readers can see.
    pub sequence: u64,
    /// Superseded versions live snapshots can still read.
    pub history: History,
}

impl View {
    /// A lease on the segment holding `location` (none if no such segment is live).
    #[inline]
    pub fn slot(&self, location: Location) -> Slot {
        Slot { location, lease: self.segments.get(&location.segment()).map(Leases::lease) }
    }

    /// Where the latest version of `key` of the default family is, with a lease on
    /// its segment.
    #[inline]
    pub fn locate(&self, key: i64) -> Option<Slot> {
        self.index.get(key).map(|location| self.slot(Location(location)))
    }

    /// The index of `family`, if it still exists.
    #[inline]
    pub fn index_of(&self, family: &FamilyRef) -> Option<&Alex<u64>> {
        if family.is_default() {
            return Some(&self.index);
        }
        self.families.get(family).map(|found| &found.index)
    }

    /// The index of the family with id `id` (the writer's own checks made sure it is
    /// the one it means).
    #[inline]
    pub fn index_by_id_mut(&mut self, id: u16) -> Option<&mut Alex<u64>> {
        if id == 0 {
            return Some(&mut self.index);
        }
        self.families.by_id_mut(id).map(|found| &mut found.index)
    }

    /// The index of the family with id `id`.
    #[inline]
    pub fn index_by_id(&self, id: u16) -> Option<&Alex<u64>> {
        if id == 0 {
            return Some(&self.index);
        }
        self.families.by_id(id).map(|found| &found.index)
    }

    /// Where the latest versions of `keys` in `index` are (one of the view's indexes),
    /// in order, appended to `out`, with leases on their segments.
    pub fn locate_many(&self, index: &Alex<u64>, keys: &[i64], out: &mut Vec<Option<Slot>>) {
        out.reserve(keys.len());
        let mut found = Vec::with_capacity(GET_MANY_GROUP);
        for group in keys.chunks(GET_MANY_GROUP) {
            found.clear();
            index.get_many(group, &mut found);
            for location in found.drain(..) {
                let slot = location.map(|location| self.slot(Location(location)));
                // The records of one group load while the next group's index
                // lookups run.
                prefetch_record(slot.as_ref());
                out.push(slot);
            }
        }
    }

    /// Where the latest version of `key` of `family` is: `Err` if the family is gone.
    #[inline]
    pub fn locate_in(&self, family: &FamilyRef, key: i64) -> crate::Result<Option<Slot>> {
        let index = self.index_of(family).ok_or_else(|| family.missing())?;
        Ok(index.get(key).map(|location| self.slot(Location(location))))
    }
}

/// Keys a `multi_get` looks up per section of the view's lock: a larger batch holds
/// a snapshot and takes the lock once per section, so that it never holds the lock
/// (and so every writer) for long.
pub(crate) const MULTI_GET_SECTION: usize = 1024;

/// How many records ahead of the one being read a `multi_get` or a range prefetches
/// (a few misses in flight without hundreds of lines waiting to be read; chosen, not
/// tuned by measurement).
pub(crate) const RECORD_PREFETCH_DISTANCE: usize = 8;

/// Hints the processor to fetch the record of `slot` (its header and the first bytes
/// of its value), if there is one.
#[inline]
pub(crate) fn prefetch_record(slot: Option<&Slot>) {
    if let Some(Slot { location, lease: Some(lease) }) = slot {
        lease.segment().prefetch(u64::from(location.offset()), 128);
    }
}

/// A record's location and a lease on its segment.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// Where the record starts.
    pub location: Location,
    /// Keeps the segment mapped; `None`: the segment is missing, which reading the
    /// record reports as corruption.
    pub lease: Option<Arc<Lease>>,
}

/// How the store was opened.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Recovery {
    /// From an index checkpoint (else by replaying the whole log).
    pub from_checkpoint: bool,
    /// Keys the log replay touched.
    pub replayed_keys: usize,
}

/// Group commit and the sync counters (atomics: syncs run outside every lock).
#[derive(Default)]
pub(crate) struct Syncs {
    /// `Sync` writes in flight, for the group commit's leader.
    pub group: GroupCommit,
    /// Segment `msync`s since open.
    pub segment_syncs: AtomicU64,
    /// `Sync` writes acknowledged since open (each after its record was durable).
    pub sync_writes: AtomicU64,
}

impl Engine {
    /// The engine over a recovered `view` and `writer`.
    pub fn new(path: PathBuf, options: Options, view: View, writer: Writer, recovery: Recovery) -> Engine {
        let store = view.families.store();
        Engine {
            path,
            options,
            view: ShardedLock::new(view),
            writer: Mutex::new(writer),
            versions: Versions::default(),
            pressure: Pressure::default(),
            syncs: Syncs::default(),
            recovery,
            store,
            metrics: Metrics::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// The view, for reading (the calling thread's shard of the lock).
    #[inline]
    pub fn read_view(&self) -> ShardedLockReadGuard<'_, View> {
        // The lock is poisoned only if a thread panicked inside it; the view is
        // changed in single steps that leave it consistent, so go on reading.
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The view, exclusively (every shard).
    #[inline]
    pub fn write_view(&self) -> ShardedLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses writes until the store is reopened: what is durable is no longer known
    /// (a failed sync may have dropped dirty pages) or the files are in a state only
    /// recovery sorts out.
    pub fn poison(&self, reason: String) {
        self.writer.lock().poisoned = Some(reason);
    }

    /// Syncs `segments`, counting the syncs; a failure poisons the store (after a
    /// failed sync the kernel may have dropped dirty pages: only a reopen's recovery
    /// knows what is durable). A failed sync is never retried as if it had succeeded.
    pub fn sync_or_poison(&self, segments: &[Arc<Segment>]) -> Result<()> {
        self.sync_each(segments, Segment::sync)
    }

    /// [`Engine::sync_or_poison`], making each segment durable through everything
    /// published, its last durable mark included: what a checkpoint, which may record
    /// an end just past that mark, needs.
    pub fn settle_or_poison(&self, segments: &[Arc<Segment>]) -> Result<()> {
        self.sync_each(segments, Segment::settle)
    }

    fn sync_each(&self, segments: &[Arc<Segment>], sync: impl Fn(&Segment) -> Result<bool>) -> Result<()> {
        let mut synced = 0;
        for segment in segments {
            match sync(segment) {
                Ok(true) => synced += 1,
                Ok(false) => {}
                Err(error) => {
                    self.syncs.segment_syncs.fetch_add(synced, Ordering::Relaxed);
                    self.poison(error.to_string());
                    return Err(error);
                }
            }
        }
        self.syncs.segment_syncs.fetch_add(synced, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs every segment of the log inside the writer's section (`writer` is its
    /// guard): what must be durable before a step that cannot wait for the group
    /// commit, such as dropping a column family. A failure poisons the store.
    pub fn sync_in_section(&self, writer: &mut Writer) -> Result<()> {
        let mut synced = 0;
        let mut outcome = Ok(());
        for segment in writer.log.segments() {
            match segment.sync() {
                Ok(true) => synced += 1,
                Ok(false) => {}
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        self.syncs.segment_syncs.fetch_add(synced, Ordering::Relaxed);
        if let Err(error) = &outcome {
            writer.poisoned = Some(error.to_string());
        }
        outcome
    }

    /// Every segment of the log, for a sync outside the writer's section.
    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.writer.lock().log.segments().cloned().collect()
    }
}
