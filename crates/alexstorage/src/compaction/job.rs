//! One compaction's copy, commit, switch and retire steps (see the module docs of
//! `compaction/mod.rs` for the whole sequence and why each crash point is safe).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::compression::{self, Dictionary, DictionaryCompressor, DICTIONARY_SIZE, MIN_DICTIONARY_SIZE};
use crate::engine::{checked_record, decompress, missing_segment, Engine};
use crate::family::FamilyRef;
use crate::log::format::{
    RecordHeader, RecordKind, RECORD_HEADER_SIZE, SEGMENT_COMPACTED, SEGMENT_COMPRESSION_SHIFT, SEGMENT_HEADER_SIZE,
};
use crate::log::io;
use crate::log::manifest::{self, CompactedSegment, Manifest};
use crate::log::recovery::{scan_compacted, verify_records, Replayed, Sequence};
use crate::log::segment::Segment;
use crate::log::Location;
use crate::value::{Lease, Leases};
use crate::{Compression, Error, Result};

use super::{failed, Compaction, CompactionStats, Failpoint};

/// Keys read from the index per shared-lock section.
const READ_CHUNK: usize = 4096;
/// Keys switched to their copies per exclusive-lock section.
const SWITCH_CHUNK: usize = 1024;

/// The inputs step 1 chose.
pub(super) struct Seal {
    /// The ids of the input segments (the *victims*): every record in them that is
    /// still live is copied, and they are retired at the end.
    pub victims: HashSet<u32>,
    /// The first log segment id after the compaction: every log segment below it is
    /// a victim.
    pub log_start: u32,
    /// The manifest's sequence after the compaction: every record in the victims
    /// (and in every compacted segment) has a sequence at most this, and the log from
    /// `log_start` on runs on from it.
    pub sequence: u64,
    /// The manifest in force at the seal.
    pub manifest: Manifest,
    /// The writer's `dropped_bytes` at the seal: records of dropped families that all
    /// lie in the victims, gone once the compaction ends (0 for an incremental one).
    pub dropped_bytes: u64,
    /// Whether every segment is a victim: then no tombstone is needed any more.
    pub full: bool,
    /// The garbage bytes in the victims, which the compaction should give back.
    pub expected: u64,
}

/// An output segment being filled.
struct Output {
    segment: Arc<Segment>,
    /// Its first record's (family, key).
    first: (u16, i64),
    /// Its last record's (family, key).
    last: (u16, i64),
    records: u64,
    /// The keys copied, ascending by family and key.
    moves: Vec<Move>,
}

/// A compaction's zstd dictionary.
struct JobDictionary {
    /// The dictionary (its bytes are the first record of every output segment),
    /// prepared for reads of the outputs.
    prepared: Arc<Dictionary>,
    compressor: DictionaryCompressor,
    /// By input segment id: whether that segment holds this very dictionary (its
    /// values compressed with it then copy as they are).
    same: HashMap<u32, bool>,
}

/// Values sampled to train a dictionary: about this many...
const DICTIONARY_SAMPLES: usize = 8192;
/// ...each cut to at most this many bytes.
const DICTIONARY_SAMPLE_BYTES: usize = 1024;
/// Values longer than this are not sampled (decompressing them would cost more than
/// they teach).
const DICTIONARY_SAMPLE_STORED_MAX: usize = 64 << 10;

/// The value of the put of `key` of family `family` at `location` of `segment`,
/// decompressed and cut to [`DICTIONARY_SAMPLE_BYTES`]; `None` if it cannot be read.
fn sample(segment: &Segment, location: Location, family: u16, key: i64) -> Option<Vec<u8>> {
    let (header, record) = checked_record(segment, location, family, key).ok()?;
    let value = record.get(RECORD_HEADER_SIZE..)?;
    if value.len() > DICTIONARY_SAMPLE_STORED_MAX {
        return None;
    }
    let mut value = match header.compression() {
        compression::RAW => value.to_vec(),
        // Not decompressed when it would be long (a few stored bytes may stand for a
        // gigabyte of zeros).
        _ if compression::original_len(value)? > DICTIONARY_SAMPLE_STORED_MAX as u64 => return None,
        _ => decompress(segment, location, header, value).ok()?.to_vec(),
    };
    value.truncate(DICTIONARY_SAMPLE_BYTES);
    Some(value)
}

/// A record copied into an output.
#[derive(Clone, Copy)]
struct Move {
    family: u16,
    key: i64,
    /// Location copied.
    old: u64,
    /// Location of the copy.
    new: u64,
    /// Bytes the copy is longer than the record copied (negative: shorter), when
    /// compaction rewrote it with another compression.
    grown: i64,
}

/// The state of one compaction.
pub(super) struct Job<'a> {
    engine: &'a Engine,
    compaction: &'a Compaction,
    /// See [`Seal::victims`].
    victims: HashSet<u32>,
    /// See [`Seal::log_start`].
    log_start: u32,
    /// See [`Seal::sequence`].
    sequence: u64,
    /// Whether every segment is a victim.
    full: bool,
    /// The manifest in force.
    manifest: Manifest,
    /// See [`Seal::dropped_bytes`].
    dropped_bytes: u64,
    /// The compacted victims not yet retired.
    remaining: Vec<CompactedSegment>,
    /// The compacted segments that are not victims: listed by every manifest.
    untouched: Vec<CompactedSegment>,
    /// The tombstones (family, key) -> sequence to carry into the outputs: those in
    /// the victims whose key a compacted segment that stays may hold an older put of.
    tombstones: BTreeMap<(u16, i64), u64>,
    /// Outputs committed so far.
    committed: Vec<CompactedSegment>,
    output: Option<Output>,
    stats: CompactionStats,
    /// Room for a value being recompressed.
    scratch: Vec<u8>,
    /// The zstd dictionary every output segment starts with, if the setting is zstd
    /// and one pays (`prepare_dictionary`).
    dictionary: Option<JobDictionary>,
    removed_bytes: u64,
    written_bytes: u64,
    /// A failpoint fired: leave everything as a dead process would.
    crashed: bool,
}

impl<'a> Job<'a> {
    /// A compaction of the inputs `seal` left.
    pub fn new(engine: &'a Engine, compaction: &'a Compaction, seal: Seal) -> Job<'a> {
        let (remaining, untouched) = seal.manifest.compacted.iter().partition(|entry| seal.victims.contains(&entry.id));
        Job {
            engine,
            compaction,
            victims: seal.victims,
            log_start: seal.log_start,
            sequence: seal.sequence,
            full: seal.full,
            remaining,
            untouched,
            tombstones: BTreeMap::new(),
            dropped_bytes: seal.dropped_bytes,
            manifest: seal.manifest,
            committed: Vec::new(),
            output: None,
            stats: CompactionStats::default(),
            scratch: Vec::new(),
            dictionary: None,
            removed_bytes: 0,
            written_bytes: 0,
            crashed: false,
        }
    }

    /// Steps 2 to 5: copies, commits, switches and retires. Returns what it did and
    /// whether it finished (`false`: cancelled, the uncommitted output dropped).
    pub fn run(mut self, cancel: &AtomicBool) -> Result<(CompactionStats, bool)> {
        let outcome = match self.copy_all(cancel) {
            Ok(true) => self.commit(true).map(|()| true),
            other => other,
        };
        match outcome {
            Ok(true) => {
                let mut stats = self.stats;
                stats.bytes_reclaimed = self.removed_bytes.saturating_sub(self.written_bytes);
                Ok((stats, true))
            }
            Ok(false) => {
                self.abandon();
                Ok((self.stats, false))
            }
            Err(error) => {
                self.abandon();
                Err(error)
            }
        }
    }

    /// Whether the armed failpoint is `point`; if so the job stops as if it crashed.
    fn fails_at(&mut self, point: Failpoint) -> Result<()> {
        if self.compaction.fails_at(point) {
            self.crashed = true;
            return Err(failed(point));
        }
        Ok(())
    }
}

impl Job<'_> {
    /// Copies every key whose record lies in an input, in (family, key) order: the
    /// default family, then each named family by ascending id. `Ok(false)` if
    /// cancelled.
    fn copy_all(&mut self, cancel: &AtomicBool) -> Result<bool> {
        let families: Vec<FamilyRef> = {
            let view = self.engine.read_view();
            std::iter::once(FamilyRef::default_family().clone()).chain(view.families.refs()).collect()
        };
        if !self.full {
            self.tombstones = self.tombstones_to_carry()?;
        }
        if let Compression::Zstd(level) = self.engine.options.compression {
            self.prepare_dictionary(&families, level, cancel)?;
        }
        for family in &families {
            if !self.copy_family(family, cancel)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Chooses the dictionary the outputs are compressed with under zstd at `level`:
    /// the one compacted segments already hold (their records then copy as they
    /// are), or else one trained on values sampled evenly across `families`, if it
    /// stores values it was not trained on in at most nine tenths of what plain zstd
    /// takes. A dictionary starts every output, so it is at most a sixteenth of a
    /// segment.
    fn prepare_dictionary(&mut self, families: &[FamilyRef], level: i32, cancel: &AtomicBool) -> Result<()> {
        let size = usize::try_from(self.engine.options.segment_size / 16).unwrap_or(usize::MAX).min(DICTIONARY_SIZE);
        if size < MIN_DICTIONARY_SIZE {
            return Ok(());
        }
        let holders: Vec<Arc<Segment>> = {
            let writer = self.engine.writer.lock();
            let holders = writer.log.segments().filter(|segment| segment.dictionary_bytes() > 0).cloned().collect();
            holders
        };
        // Loaded through the checksum: a damaged one is never spread.
        let existing = holders
            .iter()
            .filter_map(|segment| segment.dictionary().ok())
            .find(|dictionary| dictionary.bytes().len() <= size);
        let prepared = match existing {
            Some(dictionary) => dictionary,
            None => {
                let keys = self.key_count(families) as u64;
                let declined = self.compaction.dictionary_declined.load(Ordering::Relaxed);
                if declined > 0 && keys < declined.saturating_mul(2) {
                    return Ok(());
                }
                let samples = self.sample_values(families, cancel);
                if cancel.load(Ordering::Acquire) {
                    return Ok(());
                }
                let views: Vec<&[u8]> = samples.iter().map(|sample| &sample[..]).collect();
                let Some(bytes) = compression::train(&views, size, level) else {
                    self.compaction.dictionary_declined.store(keys.max(1), Ordering::Relaxed);
                    return Ok(());
                };
                match Dictionary::new(&bytes) {
                    Ok(dictionary) => Arc::new(dictionary),
                    Err(_) => return Ok(()),
                }
            }
        };
        let Some(compressor) = DictionaryCompressor::new(prepared.bytes(), level) else { return Ok(()) };
        self.dictionary = Some(JobDictionary { prepared, compressor, same: HashMap::new() });
        Ok(())
    }

    /// The keys of `families`.
    fn key_count(&self, families: &[FamilyRef]) -> usize {
        let view = self.engine.read_view();
        families.iter().filter_map(|family| view.index_of(family)).map(|index| index.len()).sum()
    }

    /// About [`DICTIONARY_SAMPLES`] values, evenly spaced in (family, key) order over
    /// `families`, decompressed, each cut to its first [`DICTIONARY_SAMPLE_BYTES`]
    /// (what a dictionary learns is what small values share). Values that cannot be
    /// read are skipped: training needs no particular one. The index is walked in
    /// chunks, so that writers wait for no more than one.
    fn sample_values(&self, families: &[FamilyRef], cancel: &AtomicBool) -> Vec<Vec<u8>> {
        let stride = (self.key_count(families) / DICTIONARY_SAMPLES).max(1);
        let mut samples = Vec::new();
        let mut position = 0usize;
        for family in families {
            let mut lo = Bound::Unbounded;
            loop {
                if cancel.load(Ordering::Acquire) {
                    return samples;
                }
                let chunk: Vec<(i64, Location, Option<Arc<Lease>>)> = {
                    let view = self.engine.read_view();
                    let Some(index) = view.index_of(family) else { break };
                    let mut chunk = Vec::new();
                    let mut last = None;
                    for (key, at) in index.range((lo, Bound::Unbounded)).take(READ_CHUNK) {
                        if position % stride == 0 {
                            chunk.push((key, Location(at), view.slot(Location(at)).lease));
                        }
                        position += 1;
                        last = Some(key);
                    }
                    let Some(last) = last else { break };
                    lo = Bound::Excluded(last);
                    chunk
                };
                for (key, location, lease) in chunk {
                    // A key overwritten since it was located still has this record,
                    // which the lease keeps readable.
                    let Some(lease) = lease else { continue };
                    if let Some(sample) = sample(lease.segment(), location, family.id, key) {
                        samples.push(sample);
                    }
                }
            }
        }
        samples
    }

    /// The tombstones in the victims that the outputs must carry, newest of each key:
    /// those whose key lies in the range of a compacted segment that is not a victim,
    /// which may hold an older put of it (dropping the tombstone with its victim
    /// would bring that put back at the next recovery). Whether the key is still
    /// deleted is decided as the outputs are written ([`Job::copy_family`]).
    fn tombstones_to_carry(&self) -> Result<BTreeMap<(u16, i64), u64>> {
        let mut tombstones = BTreeMap::new();
        if self.untouched.is_empty() {
            return Ok(tombstones);
        }
        let victims: Vec<Arc<Segment>> = {
            let writer = self.engine.writer.lock();
            let victims =
                writer.log.segments().filter(|segment| self.victims.contains(&segment.id())).cloned().collect();
            victims
        };
        let mut note = |write: Replayed| {
            if let Replayed::Delete { column_family, key, sequence } = write {
                let at = (column_family, key);
                if self.untouched.iter().any(|entry| entry.first() <= at && at <= entry.last()) {
                    let newest = tombstones.entry(at).or_insert(sequence);
                    *newest = (*newest).max(sequence);
                }
            }
        };
        for segment in &victims {
            let end = segment.published();
            let contents = usize::try_from(end).ok().and_then(|end| segment.read(0, end));
            let contents =
                contents.ok_or_else(|| Error::corruption(segment.path(), 0, "segment shorter than its records"))?;
            let scanned = match self.manifest.entry(segment.id()) {
                Some(entry) => scan_compacted(contents, segment.version(), entry, u64::MAX, &mut note),
                None => verify_records(contents, segment.id(), &mut Sequence::at_most(u64::MAX), &mut note),
            };
            scanned.map_err(|(offset, reason)| Error::corruption(segment.path(), offset as u64, reason))?;
        }
        Ok(tombstones)
    }

    /// Copies the keys of `family` whose record lies in a victim, in key order, and
    /// the tombstones to carry of the keys that are not in the index (a key in the
    /// index was written after its tombstone, which is then no longer needed); a
    /// family dropped meanwhile is left (its records are garbage). `Ok(false)` if
    /// cancelled.
    fn copy_family(&mut self, family: &FamilyRef, cancel: &AtomicBool) -> Result<bool> {
        let mut tombstones: Vec<(i64, u64)> = self
            .tombstones
            .range((family.id, i64::MIN)..=(family.id, i64::MAX))
            .map(|(&(_, key), &sequence)| (key, sequence))
            .collect();
        tombstones.reverse();
        let mut lo = Bound::Unbounded;
        loop {
            if cancel.load(Ordering::Acquire) {
                return Ok(false);
            }
            let chunk: Vec<(i64, Location, Option<Arc<Lease>>)> = {
                let view = self.engine.read_view();
                let Some(index) = view.index_of(family) else { return Ok(true) };
                index
                    .range((lo, Bound::Unbounded))
                    .take(READ_CHUNK)
                    .map(|(key, at)| {
                        let location = Location(at);
                        let victim = self.victims.contains(&location.segment());
                        let lease = if victim { view.slot(location).lease } else { None };
                        (key, location, lease)
                    })
                    .collect()
            };
            let Some(&(last, _, _)) = chunk.last() else { break };
            lo = Bound::Excluded(last);
            for (key, location, lease) in chunk {
                // Tombstones of keys below this one, which the index did not hold
                // when the chunk was read: still deleted then.
                while let Some(&(deleted, sequence)) = tombstones.last().filter(|(deleted, _)| *deleted <= key) {
                    tombstones.pop();
                    if deleted < key {
                        self.carry_tombstone(family.id, deleted, sequence)?;
                    }
                }
                if self.victims.contains(&location.segment()) {
                    self.copy(family.id, key, location, lease)?;
                }
            }
        }
        while let Some((deleted, sequence)) = tombstones.pop() {
            self.carry_tombstone(family.id, deleted, sequence)?;
        }
        Ok(true)
    }

    /// Writes a tombstone of `key` of family `family` at `sequence` into the output.
    fn carry_tombstone(&mut self, family: u16, key: i64, sequence: u64) -> Result<()> {
        let header = RecordHeader::new(RecordKind::Delete, family, key, sequence, 0);
        self.emit(family, key, &header.encode(&[]))?;
        self.stats.tombstones += 1;
        self.stats.bytes_written += RECORD_HEADER_SIZE as u64;
        Ok(())
    }

    /// Copies the record of `key` of family `family` at `location` into the output.
    fn copy(&mut self, family: u16, key: i64, location: Location, lease: Option<Arc<Lease>>) -> Result<()> {
        let Some(lease) = lease else { return Err(missing_segment(&self.engine.path, location)) };
        let (header, stored) = checked_record(lease.segment(), location, family, key)?;
        let old_len = stored.len() as u64;
        let rewritten = self.recompress(lease.segment(), location, header, stored)?;
        let record: &[u8] = rewritten.as_deref().unwrap_or(stored);
        let len = record.len() as u64;
        let at = self.emit(family, key, record)?;
        if let Some(output) = self.output.as_mut() {
            let copy = Location::new(output.segment.id(), at as u32).0;
            output.moves.push(Move { family, key, old: location.0, new: copy, grown: len as i64 - old_len as i64 });
        }
        self.stats.bytes_read += old_len;
        self.stats.bytes_written += len;
        self.stats.records += 1;
        Ok(())
    }

    /// Appends `record`, of `key` of family `family` (the next in key order), to the
    /// output, committing a full one and starting the next as needed. Returns its
    /// offset in the output.
    fn emit(&mut self, family: u16, key: i64, record: &[u8]) -> Result<u64> {
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
                let dictionary_len = self
                    .dictionary
                    .as_ref()
                    .map_or(0, |dictionary| (RECORD_HEADER_SIZE + dictionary.prepared.bytes().len()) as u64);
                // Room for the dictionary beyond the records' share, within the 4 GiB a
                // segment may span.
                let capacity = (self.engine.options.segment_size + dictionary_len)
                    .min(u64::from(u32::MAX))
                    .max(SEGMENT_HEADER_SIZE as u64 + dictionary_len + len);
                let id = self.engine.writer.lock().log.allocate_id()?;
                let flags = SEGMENT_COMPACTED
                    | u32::from(compression::flag_of(self.engine.options.compression)) << SEGMENT_COMPRESSION_SHIFT;
                let segment = Arc::new(Segment::create_with_flags(&self.engine.path, id, capacity, flags)?);
                self.stats.segments_written += 1;
                let with_dictionary = match &self.dictionary {
                    Some(dictionary) => segment.append_dictionary(Arc::clone(&dictionary.prepared)),
                    None => Ok(true),
                };
                let appended = match with_dictionary {
                    Ok(true) => segment.append(&[record]),
                    Ok(false) => Ok(None),
                    Err(error) => Err(error),
                };
                let at = match appended {
                    Ok(Some(at)) => at,
                    failed => {
                        // Not yet the job's output: delete it here (a full disk needs
                        // the space back now, not at the next open).
                        remove_file(segment.path());
                        failed?;
                        return Err(Error::InvalidArgument(format!("a record of {len} bytes does not fit a segment")));
                    }
                };
                let first = (family, key);
                self.output = Some(Output { segment, first, last: first, records: 0, moves: Vec::new() });
                self.fails_at(Failpoint::Copying)?;
                at
            }
        };
        if let Some(output) = self.output.as_mut() {
            output.last = (family, key);
            output.records += 1;
        }
        Ok(at)
    }

    /// The record `stored` (with `header`, at `location` of `segment`) rewritten with
    /// the store's compression setting, or `None` to copy it as it is: its value is
    /// already stored the way the setting stores it (Zstd at another level counts as
    /// the same), or raw where the setting is off. A raw value under a compressing
    /// setting is tried again (it may have been written before the setting changed).
    fn recompress(
        &mut self,
        segment: &Segment,
        location: Location,
        header: RecordHeader,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let setting = self.engine.options.compression;
        let wanted = match &self.dictionary {
            Some(_) => compression::ZSTD_DICTIONARY,
            None => compression::flag_of(setting),
        };
        let value = stored.get(RECORD_HEADER_SIZE..).unwrap_or(&[]);
        let raw_and_short = header.compression() == compression::RAW && value.len() < compression::MIN_COMPRESSED_LEN;
        // A value compressed with a dictionary copies as it is only into outputs that
        // start with that very dictionary.
        let same_dictionary = header.compression() != compression::ZSTD_DICTIONARY
            || self.dictionary.as_mut().is_some_and(|ours| {
                let prepared = &ours.prepared;
                *ours.same.entry(segment.id()).or_insert_with(|| {
                    segment
                        .dictionary()
                        .is_ok_and(|theirs| Arc::ptr_eq(&theirs, prepared) || theirs.bytes() == prepared.bytes())
                })
            });
        if (header.compression() == wanted && same_dictionary) || raw_and_short {
            return Ok(None);
        }
        let decompressed;
        let raw = if header.compression() == compression::RAW {
            value
        } else {
            decompressed = decompress(segment, location, header, value)?;
            &decompressed[..]
        };
        let mut flag = match self.dictionary.as_mut() {
            Some(dictionary) => dictionary.compressor.compress(raw, &mut self.scratch),
            None => compression::RAW,
        };
        if flag == compression::RAW {
            // Without the dictionary (or where it did not save an eighth).
            flag = compression::compress(setting, raw, &mut self.scratch);
        }
        if flag == compression::RAW && header.compression() == compression::RAW {
            // Raw, and still does not shrink.
            return Ok(None);
        }
        let new_value = if flag == compression::RAW { raw } else { &self.scratch[..] };
        let new_header = RecordHeader { value_len: new_value.len() as u32, ..header }.with_compression(flag);
        let mut record = Vec::with_capacity(RECORD_HEADER_SIZE + new_value.len());
        record.extend_from_slice(&new_header.encode(new_value));
        record.extend_from_slice(new_value);
        Ok(Some(record))
    }

    /// Commits the current output (if any): finishes it, makes a manifest listing it
    /// durable, switches its keys to it, and retires the segments no longer needed.
    /// The `last` commit also retires every input.
    fn commit(&mut self, last: bool) -> Result<()> {
        let mut output = self.output.take();
        let entry = match &output {
            Some(output) => Some(self.finish(output)?),
            None => None,
        };
        if entry.is_some() {
            self.output = output;
            self.fails_at(Failpoint::Finished)?;
            output = self.output.take();
        }
        // Compacted victims whose every key the outputs now cover, and whose range no
        // victim kept listed overlaps.
        let covered = entry.map(|entry| entry.last());
        let (passed, kept) = passed_victims(&self.remaining, covered, last);
        if last || !passed.is_empty() {
            // The segments this commit retires may hold the only durable version of a
            // key whose newer version (written after the seal, which is why it was
            // not copied) may not be durable yet: make it so first, or a power loss
            // could lose both.
            self.sync_newer_log()?;
        }
        let next = self.next_manifest(entry, &kept, last);
        if let Err(error) = manifest::write(&self.engine.path, &next) {
            // Whether the rename happened is unknown: leave every file as it is
            // (recovery sorts them out by the manifest it finds) and refuse writes
            // until a reopen has done so.
            self.engine.poison(format!("writing the manifest failed: {error}"));
            return Err(error);
        }
        self.manifest = next.clone();
        self.committed.extend(entry);
        self.remaining = kept;
        self.fails_at(Failpoint::Committed)?;
        {
            let mut writer = self.engine.writer.lock();
            writer.log.set_manifest(next);
            if last {
                // The inputs go now, and with them every dropped family's records below
                // the boundary.
                writer.dropped_bytes = writer.dropped_bytes.saturating_sub(self.dropped_bytes);
            }
        }
        if let Some(output) = output {
            self.install(output);
        }
        self.fails_at(Failpoint::Switched)?;
        let mut retiring: HashSet<u32> = passed.iter().map(|entry| entry.id).collect();
        if last {
            retiring.extend(&self.victims);
        }
        self.retire(|segment| retiring.contains(&segment.id()));
        self.fails_at(Failpoint::Retired)
    }

    /// Finishes `output` (synced, cut to its records): its manifest entry. On failure
    /// the file, listed nowhere yet, is deleted.
    fn finish(&mut self, output: &Output) -> Result<CompactedSegment> {
        if let Err(error) = output.segment.finish() {
            remove_file(output.segment.path());
            return Err(error);
        }
        let end = output.segment.published();
        self.written_bytes += end;
        Ok(CompactedSegment {
            id: output.segment.id(),
            end,
            first_family: output.first.0,
            last_family: output.last.0,
            first_key: output.first.1,
            last_key: output.last.1,
            records: output.records,
        })
    }

    /// The manifest a commit makes durable: the outputs so far (with `entry`, the one
    /// being committed), the compacted victims still needed (`kept`), the compacted
    /// segments that are not victims, and, at the `last` commit, the log starting
    /// after the victims.
    fn next_manifest(&self, entry: Option<CompactedSegment>, kept: &[CompactedSegment], last: bool) -> Manifest {
        let mut compacted: Vec<CompactedSegment> =
            self.committed.iter().chain(&entry).chain(kept).chain(&self.untouched).copied().collect();
        compacted.sort_by_key(|entry| entry.id);
        Manifest {
            generation: self.manifest.generation + 1,
            sequence: self.sequence,
            log_start: if last { self.log_start } else { self.manifest.log_start },
            compacted,
        }
    }

    /// Syncs the log segments that are not victims (those written since the seal, and
    /// after an incremental compaction's choice); a failure poisons the store, like
    /// any failed sync.
    fn sync_newer_log(&self) -> Result<()> {
        let newer: Vec<Arc<Segment>> = self
            .engine
            .writer
            .lock()
            .log
            .segments()
            .filter(|segment| !segment.is_compacted() && !self.victims.contains(&segment.id()))
            .cloned()
            .collect();
        self.engine.sync_or_poison(&newer)
    }

    /// Makes a committed output readable and points its keys at it.
    fn install(&mut self, output: Output) {
        let segment = output.segment;
        // The writer's table first: a writer that overwrites a switched key reads the
        // old record's length through it.
        self.engine.writer.lock().log.insert_compacted(Arc::clone(&segment));
        self.engine.write_view().segments.insert(segment.id(), Leases::new(segment));
        for chunk in output.moves.chunks(SWITCH_CHUNK) {
            // A record rewritten with another compression changed length: the live
            // bytes must follow the records the index points to, in the same section
            // as the switch (the writer's, then the view's, the lock order), so that
            // no write superseding a switched key, family drop or checkpoint capture
            // sees one without the other.
            let mut writer = chunk.iter().any(|moved| moved.grown != 0).then(|| self.engine.writer.lock());
            let mut view = self.engine.write_view();
            for &Move { family, key, old, new, grown } in chunk {
                // A key written since it was copied keeps its newer record; a family
                // dropped since has no index (and one created since under its id
                // holds only newer records).
                let Some(index) = view.index_by_id_mut(family) else { continue };
                if index.get(key) == Some(old) {
                    index.insert(key, new);
                    if let Some(writer) = writer.as_mut() {
                        writer.resize_live(family, grown);
                    }
                }
            }
        }
    }

    /// Removes the segments `retire` picks from the store's tables and deletes their
    /// files. Nothing in the index points into them: their keys were switched to
    /// copies or written anew.
    fn retire(&mut self, retire: impl FnMut(&Segment) -> bool) {
        let retired = {
            let mut writer = self.engine.writer.lock();
            let retired = writer.log.remove_segments(retire);
            self.engine.pressure.assess(&self.engine.options, &writer);
            retired
        };
        if retired.is_empty() {
            return;
        }
        {
            let mut view = self.engine.write_view();
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

/// Splits the compacted victims `remaining` into those a commit whose outputs cover
/// every (family, key) up to `covered` retires (all of them at the `last` commit) and
/// those it keeps listed. A victim is retired early only if its whole range is
/// covered and no victim kept listed overlaps it: a victim may hold a tombstone of a
/// key that an overlapping one holds an older put of, and no output carries that
/// tombstone (the compaction drops tombstones its own victims alone needed), so the
/// two must go together.
fn passed_victims(
    remaining: &[CompactedSegment],
    covered: Option<(u16, i64)>,
    last: bool,
) -> (Vec<CompactedSegment>, Vec<CompactedSegment>) {
    if last {
        return (remaining.to_vec(), Vec::new());
    }
    let (mut passed, mut kept): (Vec<CompactedSegment>, Vec<CompactedSegment>) =
        remaining.iter().partition(|old| covered.is_some_and(|covered| old.last() <= covered));
    loop {
        let (blocked, free): (Vec<CompactedSegment>, Vec<CompactedSegment>) = passed
            .iter()
            .partition(|old| kept.iter().any(|other| other.first() <= old.last() && old.first() <= other.last()));
        if blocked.is_empty() {
            return (free, kept);
        }
        passed = free;
        kept.extend(blocked);
    }
}

/// Deletes a file no manifest lists; a failure leaves a leftover the next open
/// deletes.
fn remove_file(path: &Path) {
    if let Err(error) = io::remove(path) {
        tracing::warn!(file = %path.display(), "could not delete a retired segment: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, first: i64, last: i64) -> CompactedSegment {
        CompactedSegment { id, end: 0, first_family: 0, last_family: 0, first_key: first, last_key: last, records: 1 }
    }

    fn ids(entries: &[CompactedSegment]) -> Vec<u32> {
        let mut ids: Vec<u32> = entries.iter().map(|entry| entry.id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_victim_overlapping_one_kept_listed_is_not_retired_early() {
        // 1 and 2 are disjoint slices of one run; 3 overlaps 2 and reaches past the
        // outputs; 4 lies inside 2 and 3, and is covered.
        let remaining = [entry(1, 0, 9), entry(2, 10, 19), entry(3, 15, 40), entry(4, 16, 17)];
        let (passed, kept) = passed_victims(&remaining, Some((0, 20)), false);
        assert_eq!((ids(&passed), ids(&kept)), (vec![1], vec![2, 3, 4]));
        // A kept victim's overlap holds back a covered one that overlaps only another
        // covered one that it holds back.
        let remaining = [entry(1, 0, 9), entry(2, 5, 12), entry(3, 11, 30)];
        let (passed, kept) = passed_victims(&remaining, Some((0, 20)), false);
        assert_eq!((ids(&passed), ids(&kept)), (vec![], vec![1, 2, 3]));
        let (passed, kept) = passed_victims(&remaining, None, false);
        assert_eq!((ids(&passed), ids(&kept)), (vec![], vec![1, 2, 3]));
        let (passed, kept) = passed_victims(&remaining, None, true);
        assert_eq!((ids(&passed), ids(&kept)), (vec![1, 2, 3], vec![]));
        // Sharing one boundary key is overlapping: a tombstone and an older put of key
        // 10 may lie one in each.
        let remaining = [entry(1, 0, 10), entry(2, 10, 30)];
        let (passed, kept) = passed_victims(&remaining, Some((0, 10)), false);
        assert_eq!((ids(&passed), ids(&kept)), (vec![], vec![1, 2]));
        // Ranges span families: (0, 5)..(1, 3) overlaps (1, 0)..(1, 9), not (1, 4)..(1, 9).
        let spanning = CompactedSegment { last_family: 1, last_key: 3, ..entry(1, 5, 0) };
        let later = |id, first| CompactedSegment { first_family: 1, last_family: 1, ..entry(id, first, 9) };
        let (passed, _) = passed_victims(&[spanning, later(2, 0)], Some((1, 3)), false);
        assert!(passed.is_empty());
        let (passed, _) = passed_victims(&[spanning, later(2, 4)], Some((1, 3)), false);
        assert_eq!(ids(&passed), vec![1]);
    }
}
