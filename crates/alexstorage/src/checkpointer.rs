//! The checkpointer: the one place that writes index checkpoints, for the three
//! moments a store takes one — after a segment roll-over (in the background), at the
//! end of a compaction, and when the store closes.
//!
//! Each is the same sequence: under the writer's section, a [`Capture`] notes where
//! the log ends and registers a snapshot at that point (in-memory work only); then,
//! holding the checkpoint lock and no other, the log is synced (a checkpoint must
//! never point at records a power loss could take) and the snapshot's (key, location)
//! pairs are written chunk by chunk (`log/checkpoint.rs`: temporary file, fsync,
//! rename, directory fsync). A failed or stopped checkpoint leaves the previous one in
//! place; it only makes the next open slower, since the log is complete without it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, MutexGuard};

use crate::background::{Next, Worker};
use crate::engine::{Engine, Writer};
use crate::family::FamilyRef;
use crate::log::checkpoint::{self, Entries, Point, PointFamily};
use crate::log::segment::Segment;
use crate::snapshot::Snapshot;
use crate::{Error, Result};

/// The state a checkpoint covers: the last sequence and the manifest generation it
/// was taken at (a compaction changes locations without new writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Covered {
    /// The last write it holds.
    pub sequence: u64,
    /// The manifest generation whose segments it points into.
    pub generation: u64,
}

/// What a checkpoint taken now will hold: taken together under the writer's section,
/// so that the log's ends match the snapshot.
pub(crate) struct Capture {
    point: Point,
    segments: Vec<Arc<Segment>>,
    snapshot: Snapshot,
}

impl Capture {
    /// The state as of now (call under the writer's section).
    pub fn take(engine: &Arc<Engine>, writer: &Writer) -> Capture {
        Capture {
            point: writer.point(),
            segments: writer.log.segments().cloned().collect(),
            snapshot: Snapshot::new(engine.register_snapshot()),
        }
    }

    fn covered(&self) -> Covered {
        Covered { sequence: self.point.sequence, generation: self.point.generation }
    }

    /// Where the log stood: its sequence, manifest generation, segment ends, families.
    pub fn point(&self) -> &Point {
        &self.point
    }

    /// The segments of the log then.
    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// Writes the checkpoint file of this capture into `dir` (the store's, or a
    /// backup's): every family's (key, location) pairs, read chunk by chunk from the
    /// capture's snapshot. Stops early, writing nothing, when `stop` is set, and, if
    /// `strict`, when a family of the capture was dropped meanwhile. The caller holds
    /// the checkpoint lock (no compaction moves records meanwhile) and makes sure the
    /// bytes it points at are durable.
    pub fn write_to(&self, dir: &std::path::Path, engine: &Engine, stop: &AtomicBool, strict: bool) -> Result<()> {
        let snapshot = &self.snapshot;
        let entries = |family: &PointFamily| -> Entries<'_> {
            let family =
                FamilyRef { id: family.id, incarnation: family.incarnation, store: engine.store, name: Arc::from("") };
            Box::new(snapshot.locations(family, strict).map(|entry| match stop.load(Ordering::Acquire) {
                true => Err(Error::InvalidArgument("the checkpoint was stopped: the store is closing".into())),
                false => entry,
            }))
        };
        checkpoint::write(dir, &self.point, entries)
    }
}

/// The checkpoint lock, held while a checkpoint is written (lock order 2): holds what
/// the newest checkpoint covers.
pub(crate) type CheckpointLock<'a> = MutexGuard<'a, Option<Covered>>;

/// Writes the store's checkpoints; see the module docs.
pub(crate) struct Checkpointer {
    dir: PathBuf,
    /// Serializes checkpoint writers (lock order 2); what the newest checkpoint
    /// covers (one written since open, or the one the open used). A compaction holds it throughout, so that no
    /// checkpoint reads a half-switched index.
    newest: Mutex<Option<Covered>>,
    /// The capture of the last roll-over, waiting for the background worker (a leaf
    /// lock). A newer roll-over replaces it: the newer checkpoint covers more.
    pending: Mutex<Option<Capture>>,
    /// Checkpoints written since open.
    written: AtomicU64,
}

impl Checkpointer {
    /// The checkpointer of the store in `dir`, whose checkpoint file covers
    /// `covered`, if known (the open used it and replayed nothing after it).
    pub fn new(dir: PathBuf, covered: Option<Covered>) -> Checkpointer {
        Checkpointer { dir, newest: Mutex::new(covered), pending: Mutex::new(None), written: AtomicU64::new(0) }
    }

    /// Takes the checkpoint lock.
    pub fn lock(&self) -> CheckpointLock<'_> {
        self.newest.lock()
    }

    /// Writes a checkpoint of `capture` unless the newest one (written since open, or
    /// the one the open used) covers it already; `newest` is this checkpointer's lock. Stops early, leaving the
    /// previous checkpoint in place, when `stop` is set. A failed sync poisons the
    /// store.
    pub fn write(
        &self,
        newest: &mut CheckpointLock<'_>,
        engine: &Engine,
        capture: Capture,
        stop: &AtomicBool,
    ) -> Result<()> {
        let covered = capture.covered();
        if newest.is_some_and(|newest| newest.sequence >= covered.sequence && newest.generation >= covered.generation) {
            return Ok(());
        }
        // A checkpoint must never point at bytes that a power loss could take: every
        // byte up to the ends it records, a trailing durable mark included.
        engine.settle_or_poison(&capture.segments)?;
        capture.write_to(&self.dir, engine, stop, false)?;
        **newest = Some(covered);
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Checkpoints written since open.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// [`Checkpointer::write`], taking the lock.
    pub fn write_now(&self, engine: &Engine, capture: Capture, stop: &AtomicBool) -> Result<()> {
        self.write(&mut self.lock(), engine, capture, stop)
    }

    /// Leaves `capture` for the background worker (see [`Checkpointer::start_worker`]),
    /// which the caller then wakes. Returns the capture it replaces, for the caller to
    /// drop once it holds no lock (releasing its snapshot may prune kept versions under
    /// the exclusive view, and its segments may be the last holders of retired ones).
    #[must_use = "drop the replaced capture outside the writer's section"]
    pub fn defer(&self, capture: Capture) -> Option<Capture> {
        self.pending.lock().replace(capture)
    }

    /// Takes the deferred capture: for the worker to write, or back (the store is
    /// closing and writes its own, or no worker runs to write it) for the caller to
    /// drop outside its locks.
    #[must_use = "drop the capture outside the writer's section"]
    pub fn take_deferred(&self) -> Option<Capture> {
        self.pending.lock().take()
    }

    /// Starts the background worker that writes deferred captures, one at a time,
    /// each when woken.
    pub fn start_worker(self: &Arc<Self>, engine: &Arc<Engine>) -> Result<Worker> {
        let checkpointer = Arc::clone(self);
        let engine: Weak<Engine> = Arc::downgrade(engine);
        Worker::spawn("alexstorage-checkpoint", Next::OnWake, move |stop| {
            let Some(engine) = engine.upgrade() else { return Next::Exit };
            if let Some(capture) = checkpointer.take_deferred() {
                // The write that triggered it is committed: a checkpoint is an
                // optimization, and the log is complete without it.
                match checkpointer.write_now(&engine, capture, stop) {
                    Err(error) if stop.load(Ordering::Acquire) => {
                        tracing::debug!("background checkpoint stopped: {error}")
                    }
                    Err(error) => tracing::warn!("background checkpoint not written: {error}"),
                    Ok(()) => {}
                }
            }
            Next::OnWake
        })
    }
}
