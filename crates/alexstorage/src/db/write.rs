//! The write path: put, delete and atomic batches.
//!
//! Every write takes the same steps: wait out write stalls, take the writer's section,
//! append its record(s) to the log (a memory copy; a roll-over when the segment is
//! full), publish them to readers in one exclusive section of the view (in-memory
//! index updates, keeping superseded versions that live snapshots see), account, and
//! leave the writer's section; then, in `Sync` mode, wait until the records are
//! durable through the group commit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::MutexGuard;

use crate::batch::{BatchOperation, WriteBatch};
use crate::checkpointer::Capture;
use crate::compression;
use crate::engine::{Engine, View, Writer};
use crate::family::FamilyRef;
use crate::log::format::{BatchDescriptor, RecordHeader, RecordKind, BATCH_DESCRIPTOR_SIZE, RECORD_HEADER_SIZE};
use crate::log::segment::{GroupCommit, Segment};
use crate::log::Location;
use crate::value::Leases;
use crate::{Durability, Error, Result};

use super::Db;

/// Where a write's record(s) start, and how many bytes they take.
#[derive(Clone, Copy, Debug)]
struct Appended {
    location: Location,
    len: u64,
}

/// The location and sequence of the version a write supersedes, read before the
/// exclusive section (`Engine::old_version`).
type Hint = (Location, u64);

/// The writer's section, plus, for a `Sync` write, its count among the writes in
/// flight (kept by [`Db::finish_write`] until the write is durable; dropped with the
/// guard on an error).
struct WriterGuard<'a> {
    writer: MutexGuard<'a, Writer>,
    active: Option<ActiveSync<'a>>,
    /// When a `Sync` write began (for its latency histogram).
    started: Option<Instant>,
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

impl Db {
    /// Inserts or overwrites `key`.
    pub fn put(&self, key: i64, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_in(FamilyRef::default_family(), key, value.as_ref())
    }

    /// Deletes `key`; deleting an absent key is `Ok(())` and writes nothing.
    pub fn delete(&self, key: i64) -> Result<()> {
        self.delete_in(FamilyRef::default_family(), key)
    }

    /// Inserts or overwrites `key` of `family`.
    pub(crate) fn put_in(&self, family: &FamilyRef, key: i64, value: &[u8]) -> Result<()> {
        self.check_value(value.len())?;
        // Compressed before the writer's section: other writers need not wait for it.
        let mut compressed = Vec::new();
        let flag = compression::compress(self.engine.options.compression, value, &mut compressed);
        let value = if flag == compression::RAW { value } else { &compressed[..] };
        let mut writer = self.lock_writer()?;
        check_family(&writer, self.engine.store, family)?;
        let sequence = writer.sequence + 1;
        let header =
            RecordHeader::new(RecordKind::Put, family.id, key, sequence, value.len() as u32).with_compression(flag);
        let hint = self.engine.old_version(family.id, key);
        let location = writer.append(&[&header.encode(value), value])?;
        let len = (RECORD_HEADER_SIZE + value.len()) as u64;
        let superseded = self.publish(&mut writer, sequence, location, |view| {
            apply(&self.engine, view, family.id, key, Some(location), sequence, |_| hint)
        });
        writer.add_live(family.id, len);
        writer.supersede(family.id, superseded);
        writer.sequence = sequence;
        writer.counters.puts += 1;
        writer.counters.bytes_written += len;
        self.finish_write(writer, Appended { location, len })
    }

    /// Deletes `key` of `family`; deleting an absent key is `Ok(())` and writes
    /// nothing.
    pub(crate) fn delete_in(&self, family: &FamilyRef, key: i64) -> Result<()> {
        let mut writer = self.lock_writer()?;
        check_family(&writer, self.engine.store, family)?;
        // Only the writer changes the index, and it is this thread: no race.
        if !self.engine.read_view().index_by_id(family.id).is_some_and(|index| index.contains_key(key)) {
            return Ok(());
        }
        let sequence = writer.sequence + 1;
        let header = RecordHeader::new(RecordKind::Delete, family.id, key, sequence, 0);
        let hint = self.engine.old_version(family.id, key);
        let location = writer.append(&[&header.encode(&[])])?;
        let superseded = self.publish(&mut writer, sequence, location, |view| {
            apply(&self.engine, view, family.id, key, None, sequence, |_| hint)
        });
        writer.supersede(family.id, superseded);
        writer.sequence = sequence;
        writer.counters.deletes += 1;
        writer.counters.bytes_written += RECORD_HEADER_SIZE as u64;
        self.finish_write(writer, Appended { location, len: RECORD_HEADER_SIZE as u64 })
    }

    /// Applies every write of `batch` atomically: readers see all or none of them, and
    /// after a crash the store holds all or none. A value over `max_value_size` fails
    /// the whole batch before anything is written.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_checked(batch, |_| Ok(())).map(|_| ())
    }

    /// [`Db::write`], after `check` passed inside the writer's section (no other write
    /// can land between the check and this batch): a transaction's commit, whose check
    /// is that nothing it read has changed. `check` is given the sequence of the last
    /// write (the state it checks). A failed check writes nothing. Returns the batch's
    /// sequence number (`None` for an empty batch, which writes nothing).
    pub(crate) fn write_checked(
        &self,
        batch: WriteBatch,
        check: impl FnOnce(u64) -> Result<()>,
    ) -> Result<Option<u64>> {
        if batch.is_empty() {
            return if self.engine.options.read_only { Err(Error::ReadOnly) } else { Ok(None) };
        }
        for operation in &batch.operations {
            if let BatchOperation::Put { value_len, .. } = operation {
                self.check_value(*value_len)?;
            }
        }
        let count = u32::try_from(batch.len())
            .map_err(|_| Error::InvalidArgument(format!("a batch of {} writes is too large", batch.len())))?;
        // Compressed before the writer's section: other writers need not wait for it.
        let batch = batch.compressed(self.engine.options.compression);
        let mut writer = self.lock_writer()?;
        for family in &batch.families {
            check_family(&writer, self.engine.store, family)?;
        }
        check(writer.sequence)?;
        let sequence = writer.sequence + 1;
        let encoded = EncodedBatch::new(&batch, count, sequence);
        let hints = self.engine.old_versions(batch.operations.iter().map(family_key));
        let start = writer.append(&encoded.parts(&batch))?;
        let appended = Appended { location: start, len: encoded.len() };
        // All of the batch becomes visible in one exclusive section.
        let applied = self.publish(&mut writer, sequence, start, |view| {
            apply_batch(&self.engine, view, &batch, appended, sequence, hints.as_ref())
        });
        for (family, len) in applied.live {
            writer.add_live(family, len);
        }
        for (family, old) in applied.superseded {
            writer.supersede(family, Some(old));
        }
        writer.sequence = sequence;
        writer.counters.batches += 1;
        writer.counters.batch_writes += u64::from(count);
        writer.counters.bytes_written += appended.len;
        self.finish_write(writer, appended).map(|()| Some(sequence))
    }

    /// The sequence of the last write readers can see: once the writer's section is
    /// released, that of the last write.
    pub(crate) fn visible_sequence(&self) -> u64 {
        self.engine.read_view().sequence
    }

    fn check_value(&self, size: usize) -> Result<()> {
        let max = self.engine.options.max_value_size;
        if size > max {
            return Err(Error::ValueTooLarge { size, max });
        }
        Ok(())
    }

    /// The writer's section, if writes are allowed. In `Sync` mode the guard also
    /// counts this write as in flight for group commit, until the write returns.
    fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        if self.engine.options.read_only {
            return Err(Error::ReadOnly);
        }
        let sync = self.engine.options.durability == Durability::Sync;
        let started = sync.then(Instant::now);
        if let Some(waited) = self.engine.pressure.wait() {
            let metrics = &self.engine.metrics;
            metrics.write_stalls.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            metrics.write_stall_micros.fetch_add(micros, Ordering::Relaxed);
        }
        let group = &self.engine.syncs.group;
        let active = sync.then(|| {
            group.active.fetch_add(1, Ordering::AcqRel);
            ActiveSync(group)
        });
        let guard = WriterGuard { writer: self.engine.writer.lock(), active, started };
        guard.writer.check_usable()?;
        Ok(guard)
    }

    /// Makes a write appended at `location` visible: in one exclusive section of the
    /// view, adds a new segment's leases if the append rolled over, applies `change`
    /// to the index, and moves the visible sequence to `sequence`. In-memory work only.
    fn publish<T>(
        &self,
        writer: &mut Writer,
        sequence: u64,
        location: Location,
        change: impl FnOnce(&mut View) -> T,
    ) -> T {
        let mut new_segment = None;
        if location.segment() > writer.leased {
            new_segment = writer.log.segment(location.segment()).cloned();
            writer.leased = location.segment();
        }
        let mut view = self.engine.write_view();
        if let Some(segment) = new_segment {
            view.segments.entry(segment.id()).or_insert_with(|| Leases::new(segment));
        }
        let changed = change(&mut view);
        view.sequence = sequence;
        changed
    }

    /// Finishes a write: after a segment roll-over, hands a checkpoint to the
    /// background checkpointer and wakes the compactor if garbage is due; releases the
    /// writer's section; and, in `Sync` mode, makes the write durable.
    fn finish_write(&self, mut writer: WriterGuard<'_>, appended: Appended) -> Result<()> {
        let released = if writer.take_rollover() { self.after_rollover(&writer) } else { None };
        // Only `Sync` writes count as in flight. Earlier segments were synced when
        // they were sealed: only the one written to can hold this write's unsynced
        // bytes.
        let durable =
            writer.active.take().map(|active| (active, writer.log.segment(appended.location.segment()).cloned()));
        // Outside `Sync` mode, unsynced bytes pile up until a seal syncs them all in
        // the writer's section: with `Options::writeback_step`, their writeback starts
        // early.
        let step = self.engine.options.writeback_step;
        let writeback =
            step > 0 && durable.is_none() && writer.log.active().is_some_and(|active| active.wants_writeback(step));
        let started = writer.started;
        drop(writer);
        if writeback {
            self.store.workers.wake_writeback();
        }
        // Outside the writer's section: releasing a snapshot may prune kept versions,
        // and a capture's segments may be the last holders of retired ones.
        drop(released);
        let Some((active, segment)) = durable else { return Ok(()) };
        if let Err(error) = self.wait_durable(active, segment.as_deref(), appended) {
            self.engine.metrics.sync_write_errors.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        if let Some(started) = started {
            self.engine.metrics.sync_writes.observe(started.elapsed());
        }
        Ok(())
    }

    /// After a roll-over (under the writer's section): leaves a checkpoint capture for
    /// the background checkpointer and wakes it, and wakes the compactor if garbage
    /// is due. Returns a capture to drop once the section is released.
    fn after_rollover(&self, writer: &Writer) -> Option<Capture> {
        let checkpointer = &self.store.checkpointer;
        let mut released = checkpointer.defer(Capture::take(&self.engine, writer));
        if !self.store.workers.wake_checkpointer() {
            // No worker will write it (its thread ended): do not keep its snapshot
            // registered, and with it every superseded version.
            released = checkpointer.take_deferred();
        }
        if self.engine.pressure.assess(&self.engine.options, writer) {
            self.store.workers.wake_compactor();
        }
        released
    }

    /// Returns once the write `appended` to `segment` is durable.
    ///
    /// The sync runs outside every lock, which is what makes it a group commit: a
    /// segment syncs everything published so far, so writers whose records were
    /// appended while another writer's `msync` was in flight find their records
    /// already durable, or share the next `msync`. Each returns only once its own
    /// record is durable.
    fn wait_durable(&self, active: ActiveSync<'_>, segment: Option<&Segment>, appended: Appended) -> Result<()> {
        let syncs = &self.engine.syncs;
        // Published before counted: a leader that counts this write covers its record.
        syncs.group.published.fetch_add(1, Ordering::AcqRel);
        let Some(segment) = segment else { return Ok(()) };
        let outcome = segment.sync_through(u64::from(appended.location.offset()) + appended.len, &syncs.group);
        drop(active);
        match outcome {
            Ok(synced) => {
                syncs.segment_syncs.fetch_add(u64::from(synced), Ordering::Relaxed);
                syncs.sync_writes.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                // The write is in the log but may not be durable, and a failed sync
                // can lose dirty pages: refuse further writes until a reopen recovers.
                self.engine.poison(error.to_string());
                Err(error)
            }
        }
    }
}

/// In the exclusive section: points `key` at the put at `put` (or, with `None`,
/// removes it), and keeps the version this supersedes if a live snapshot sees it
/// (`hint` gives, for the superseded record, what was read of it before the section).
/// Returns the superseded record's location.
#[inline]
fn apply(
    engine: &Engine,
    view: &mut View,
    family: u16,
    key: i64,
    put: Option<Location>,
    sequence: u64,
    hint: impl FnOnce(u64) -> Option<Hint>,
) -> Option<u64> {
    // The writer checked that the family exists, and families change only under the
    // writer's section.
    let index = view.index_by_id_mut(family)?;
    let old = match put {
        Some(location) => index.insert(key, location.0),
        None => index.remove(key),
    };
    if let Some(old) = old {
        engine.retire(view, family, key, Location(old), sequence, hint(old));
    }
    old
}

/// Fails with `Error::ColumnFamilyNotFound` if `family` no longer exists (under the
/// writer's section, where families are created and dropped).
#[inline]
fn check_family(writer: &Writer, store: u64, family: &FamilyRef) -> Result<()> {
    if family.is_default() || (family.store == store && writer.has_family(family.id, family.incarnation)) {
        Ok(())
    } else {
        Err(family.missing())
    }
}

/// What publishing a batch changed, for the writer's accounting.
struct BatchApplied {
    /// Bytes of the batch's records that are now live, by family (one entry per put).
    live: Vec<(u16, u64)>,
    /// Records the batch superseded, with their family.
    superseded: Vec<(u16, u64)>,
}

/// In the exclusive section: applies every write of `batch`, appended as `appended`.
fn apply_batch(
    engine: &Engine,
    view: &mut View,
    batch: &WriteBatch,
    appended: Appended,
    sequence: u64,
    hints: Option<&HashMap<(u16, i64), Hint>>,
) -> BatchApplied {
    let start = appended.location;
    let mut applied = BatchApplied { live: Vec::new(), superseded: Vec::new() };
    let mut offset = u64::from(start.offset()) + (RECORD_HEADER_SIZE + BATCH_DESCRIPTOR_SIZE) as u64;
    for operation in &batch.operations {
        let location = Location::new(start.segment(), offset as u32);
        let len = record_len(operation);
        offset += len;
        let (family, key, put) = match *operation {
            BatchOperation::Put { column_family, key, .. } => (column_family, key, Some(location)),
            BatchOperation::Delete { column_family, key } => (column_family, key, None),
        };
        if put.is_some() {
            applied.live.push((family, len));
        }
        // A record of this very batch (a key written twice in it) was written at its
        // sequence; otherwise the hint, if the key has not moved since (compaction
        // switches keys to their copies), or `retire` reads the record's sequence.
        let hint = |old: u64| {
            if old >= start.0 && old < start.0 + appended.len {
                Some((Location(old), sequence))
            } else {
                hints.and_then(|hints| hints.get(&(family, key)).copied().filter(|(at, _)| at.0 == old))
            }
        };
        if let Some(old) = apply(engine, view, family, key, put, sequence, hint) {
            applied.superseded.push((family, old));
        }
    }
    applied
}

/// A batch's framing, encoded: the batch record, its descriptor, and each write's
/// record header.
struct EncodedBatch {
    batch_header: [u8; RECORD_HEADER_SIZE],
    descriptor: [u8; BATCH_DESCRIPTOR_SIZE],
    headers: Vec<[u8; RECORD_HEADER_SIZE]>,
    body_len: u64,
}

impl EncodedBatch {
    fn new(batch: &WriteBatch, count: u32, sequence: u64) -> EncodedBatch {
        let mut body_len = 0u64;
        let headers = batch
            .operations
            .iter()
            .map(|operation| {
                body_len += record_len(operation);
                match *operation {
                    BatchOperation::Put { column_family, key, value_start, value_len, compression } => {
                        RecordHeader::new(RecordKind::Put, column_family, key, sequence, value_len as u32)
                            .with_compression(compression)
                            .encode(batch.value(value_start, value_len))
                    }
                    BatchOperation::Delete { column_family, key } => {
                        RecordHeader::new(RecordKind::Delete, column_family, key, sequence, 0).encode(&[])
                    }
                }
            })
            .collect();
        let descriptor = BatchDescriptor { count, body_len }.encode();
        let batch_header =
            RecordHeader::new(RecordKind::Batch, 0, 0, sequence, descriptor.len() as u32).encode(&descriptor);
        EncodedBatch { batch_header, descriptor, headers, body_len }
    }

    /// Bytes of the whole batch in the log.
    fn len(&self) -> u64 {
        (RECORD_HEADER_SIZE + BATCH_DESCRIPTOR_SIZE) as u64 + self.body_len
    }

    /// The batch's bytes in log order: framing, then each write's header and value.
    fn parts<'a>(&'a self, batch: &'a WriteBatch) -> Vec<&'a [u8]> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + 2 * batch.len());
        parts.push(&self.batch_header);
        parts.push(&self.descriptor);
        for (operation, header) in batch.operations.iter().zip(&self.headers) {
            parts.push(header);
            if let BatchOperation::Put { value_start, value_len, .. } = *operation {
                parts.push(batch.value(value_start, value_len));
            }
        }
        parts
    }
}

/// The bytes of a batch write's record in the log, header included.
fn record_len(operation: &BatchOperation) -> u64 {
    match *operation {
        BatchOperation::Put { value_len, .. } => (RECORD_HEADER_SIZE + value_len) as u64,
        BatchOperation::Delete { .. } => RECORD_HEADER_SIZE as u64,
    }
}

/// The (family, key) a batch write changes.
fn family_key(operation: &BatchOperation) -> (u16, i64) {
    match *operation {
        BatchOperation::Put { column_family, key, .. } | BatchOperation::Delete { column_family, key } => {
            (column_family, key)
        }
    }
}
