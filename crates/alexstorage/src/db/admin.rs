//! Maintenance and introspection: compaction, flush, verify, stats, and the hooks
//! tests use to crash a store on purpose.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::compaction::{CompactionStats, Failpoint, Scope};
use crate::compression;
use crate::engine::decompress;
use crate::family::DEFAULT_FAMILY_NAME;
use crate::log::format::{Decoded, RecordHeader, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::log::manifest::Manifest;
use crate::log::recovery::{scan_compacted, verify_records, Replayed, Sequence};
use crate::log::segment::Segment;
use crate::log::Location;
use crate::stats::{CorruptRecord, FamilyStats, Stats, VerifyReport};
use crate::{Error, Result};

use super::Db;

impl Db {
    /// Reclaims the space of overwritten and deleted records now, and rewrites the
    /// live records in key order, so that range scans read them sequentially. Runs
    /// while other threads read and write (readers never wait for it; writers wait
    /// only for the in-memory steps). Returns what it did. Compaction also runs in the
    /// background when garbage passes [`crate::Options::compaction_threshold`].
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
        if self.engine.options.read_only {
            return Err(Error::ReadOnly);
        }
        self.store.compaction.run(&self.engine, &self.store.checkpointer, &AtomicBool::new(false), Scope::Full)
    }

    /// Runs the compaction the background compactor runs once garbage passes
    /// [`crate::Options::compaction_threshold`]: it rewrites only the segments whose
    /// space pays most to reclaim (the log's oldest segments, and the compacted
    /// segments most overwritten since), least live first, until the garbage is at
    /// most half the threshold, and leaves the rest in place: on a store that is
    /// written all over, far fewer bytes rewritten than [`Db::compact`]. Where no such
    /// choice gets the garbage down (most of it in the segment being written, or
    /// spread thin over segments more than four fifths live), or a dropped column
    /// family's records wait to be reclaimed, it runs a full compaction instead
    /// ([`CompactionStats::full`] says which ran). Below the threshold it may do
    /// nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let options = alexstorage::Options::new().segment_size(64 << 10).background_compaction(false);
    /// let db = options.open(dir.path()).unwrap();
    /// for round in 0..4u8 {
    ///     for key in 0..2_000 {
    ///         db.put(key, [round; 64]).unwrap();
    ///     }
    /// }
    /// // The first three rounds are garbage: the oldest log segments go, uncopied.
    /// let stats = db.compact_incremental().unwrap();
    /// assert!(!stats.full && stats.bytes_reclaimed > 0 && stats.records == 0);
    /// assert_eq!(&db.get(7).unwrap().unwrap()[..], &[3u8; 64][..]);
    /// ```
    pub fn compact_incremental(&self) -> Result<CompactionStats> {
        if self.engine.options.read_only {
            return Err(Error::ReadOnly);
        }
        self.store.compaction.run(&self.engine, &self.store.checkpointer, &AtomicBool::new(false), Scope::Incremental)
    }

    /// Makes every write acknowledged so far durable, in any durability mode.
    pub fn flush(&self) -> Result<()> {
        let segments = {
            let writer = self.engine.writer.lock();
            writer.check_usable()?;
            writer.log.segments().cloned().collect::<Vec<_>>()
        };
        self.engine.sync_or_poison(&segments)
    }

    /// Reads every record of every segment and checks every checksum. Returns the
    /// report, or `Error::Corruption` for the first bad record.
    pub fn verify(&self) -> Result<VerifyReport> {
        let (segments, manifest) = {
            let writer = self.engine.writer.lock();
            (writer.log.segments().cloned().collect::<Vec<_>>(), writer.log.manifest().clone())
        };
        let mut report = VerifyReport { segments: segments.len(), ..VerifyReport::default() };
        // The first log record may follow a compaction's last sealed write; from there
        // on each follows the one before by one.
        let mut sequence = match manifest.sequence {
            0 => Sequence::after(0),
            sealed => Sequence::at_most(sealed.saturating_add(1)),
        };
        for segment in &segments {
            verify_segment(segment, &manifest, &mut sequence, &mut report);
        }
        match report.corrupt.first() {
            Some(bad) => Err(Error::corruption(&bad.file, bad.offset, bad.reason.clone())),
            None => Ok(report),
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let writer = self.engine.writer.lock();
        let view = self.engine.read_view();
        let counters = writer.counters;
        let syncs = &self.engine.syncs;
        let metrics = &self.engine.metrics;
        let reads = metrics.reads.totals();
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
            gets: reads.0,
            ranges: metrics.ranges.get(),
            bytes_read: reads.1,
            transactions_committed: metrics.transactions_committed.load(Ordering::Relaxed),
            transaction_conflicts: metrics.transaction_conflicts.load(Ordering::Relaxed),
            transaction_errors: metrics.transaction_errors.load(Ordering::Relaxed),
            sync_write_errors: metrics.sync_write_errors.load(Ordering::Relaxed),
            writes_refused: writer.poisoned.is_some(),
            write_stalls: metrics.write_stalls.load(Ordering::Relaxed),
            write_stall_micros: metrics.write_stall_micros.load(Ordering::Relaxed),
            sync_write_latency: metrics.sync_writes.stats(),
            compaction_duration: metrics.compactions.stats(),
            families: std::iter::once(FamilyStats {
                name: DEFAULT_FAMILY_NAME.to_owned(),
                keys: view.index.len(),
                live_bytes: writer.live_bytes.saturating_sub(writer.family_live_bytes.values().sum()),
            })
            .chain(view.families.iter().map(|(id, family)| FamilyStats {
                name: family.name.to_string(),
                keys: family.index.len(),
                live_bytes: writer.family_live_bytes.get(&id).copied().unwrap_or(0),
            }))
            .collect(),
            column_families: view.families.iter().count(),
            column_family_keys: view.families.iter().map(|(_, family)| family.index.len()).sum(),
            compactions: self.store.compaction.completed(),
            compaction_bytes_written: self.store.compaction.bytes_written(),
            compaction_bytes_reclaimed: self.store.compaction.bytes_reclaimed(),
            syncs: syncs.segment_syncs.load(Ordering::Relaxed),
            sync_writes: syncs.sync_writes.load(Ordering::Relaxed),
            unsynced_bytes: writer.log.segments().map(|segment| segment.unsynced()).sum(),
            snapshots: self.engine.versions.live_count(),
            retained_versions: view.history.len(),
            checkpoints: self.store.checkpointer.written(),
            opened_from_checkpoint: self.engine.recovery.from_checkpoint,
            replayed_keys: self.engine.recovery.replayed_keys,
            torn_tail_bytes: writer.log.torn_bytes(),
        }
    }

    /// For tests: closes this handle as a crashed process would, without the final
    /// sync of a clean close (other clones keep the store open until dropped).
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.store.crashed.store(true, Ordering::Relaxed);
    }

    /// For tests: makes the next compactions stop at `point`, after passing it `skip`
    /// times, as if the process died there (no clean-up runs; follow with
    /// [`Db::simulate_crash`] and reopen). `None` disarms it.
    #[doc(hidden)]
    pub fn set_compaction_failpoint(&self, point: Option<Failpoint>, skip: u64) {
        self.store.compaction.set_failpoint(point, skip);
    }
}

/// Checks every published record of `segment` as recovery would into `report`:
/// a compacted segment against its manifest entry; a log segment's checksums, rising
/// sequence numbers after `sequence`, and complete batches.
fn verify_segment(segment: &Segment, manifest: &Manifest, sequence: &mut Sequence, report: &mut VerifyReport) {
    let published = segment.published();
    let contents = segment.read(0, published as usize).unwrap_or(&[]);
    // Every compressed value must decompress to its length (its checksum only says
    // the stored bytes are the ones written): the first that does not is reported.
    let mut undecodable: Option<(usize, String)> = None;
    let mut decode = |write: Replayed| {
        if let Replayed::Put { location, .. } = write {
            if undecodable.is_none() {
                undecodable = decodes(segment, contents, location).err();
            }
        }
    };
    let checked = match manifest.entry(segment.id()) {
        Some(entry) if segment.is_compacted() => {
            scan_compacted(contents, segment.version(), entry, manifest.sequence, &mut decode)
        }
        // A compacted segment retired by a compaction that ran meanwhile.
        _ if segment.is_compacted() => return,
        _ => verify_records(contents, segment.id(), sequence, &mut decode),
    };
    match checked {
        Ok(records) => {
            report.records += records;
            report.bytes += published - SEGMENT_HEADER_SIZE as u64;
            // The records chain on: only the value is bad.
            if let Some((offset, reason)) = undecodable {
                report.corrupt.push(CorruptRecord { file: segment.path().into(), offset: offset as u64, reason });
            }
        }
        Err((offset, reason)) => {
            report.corrupt.push(CorruptRecord { file: segment.path().into(), offset: offset as u64, reason });
            // Where the log goes on is not known: check the next segment's records on
            // their own rather than report this damage once per segment after it.
            *sequence = Sequence::at_most(u64::MAX);
        }
    }
}

/// Whether the value of the (checksummed) put at `location` of `segment`, whose bytes
/// are `contents`, decodes: raw, or decompressing to its length (with the segment's
/// dictionary, if it was compressed with one).
fn decodes(segment: &Segment, contents: &[u8], location: Location) -> std::result::Result<(), (usize, String)> {
    let at = location.offset() as usize;
    let failed = |reason: String| (at, reason);
    let Decoded::Record { header, len } = RecordHeader::decode(contents.get(at..).unwrap_or(&[])) else {
        return Err(failed("record does not decode".into()));
    };
    if header.compression() == compression::RAW {
        return Ok(());
    }
    let value = contents.get(at + RECORD_HEADER_SIZE..at + len).unwrap_or(&[]);
    decompress(segment, location, header, value).map(|_| ()).map_err(|error| match error {
        Error::Corruption { offset, reason, .. } => (offset as usize, reason),
        other => failed(other.to_string()),
    })
}
