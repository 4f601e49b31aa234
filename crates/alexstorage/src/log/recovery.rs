//! Opening the log: every segment is scanned, every record's checksum checked, and
//! every record replayed to the caller in log order.
//!
//! # The rule for a bad record
//! A record that fails to decode is a *torn tail* when no valid record follows it
//! anywhere in the log: the writer appends strictly in order, so a crash can only
//! leave a prefix of the last record (or batch) it was writing. Recovery then
//! discards it (zeroing its bytes, so that later scans and appends start clean). A bad
//! record that is followed by a valid one is *corruption*: `open` fails with
//! [`Error::Corruption`] naming the file and offset, and nothing is dropped silently.
//! A batch counts as one unit: if any of its records is bad, the whole batch is the
//! bad record, starting at its header. The bytes a bad record claims (its stated
//! length, a batch's stated body) are its own: a valid-looking record inside them is
//! part of its value, not a later write (`docs/FORMAT.md` has the exact rule).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint::Checkpoint;
use super::format::{
    BatchDescriptor, Decoded, DurableMark, RecordHeader, RecordKind, COMPACTED_TOMBSTONES_VERSION, DURABLE_MARK_SIZE,
    RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE,
};
use super::io;
use super::manifest::{self, CompactedSegment, Manifest};
use super::segment::{self, Opened, Segment};
use super::{Location, Log};
use crate::compression;
use crate::{Error, Result};

/// One replayed write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// `key` was set to the value of the record at `location`.
    Put {
        /// Column family id.
        column_family: u16,
        /// The key.
        key: i64,
        /// Sequence number of the write.
        sequence: u64,
        /// The record.
        location: Location,
        /// The record's length in bytes, header included.
        len: u32,
    },
    /// `key` was deleted.
    Delete {
        /// Column family id.
        column_family: u16,
        /// The key.
        key: i64,
        /// Sequence number of the write.
        sequence: u64,
    },
}

/// How far past a segment's last record recovery looks for leftovers of a torn write.
/// Reading further would fault in the whole reserved-but-unwritten rest of the file;
/// leftovers beyond the window are harmless because appends always leave a zero
/// record header after the last record when a segment is sealed ([`Segment::seal`]).
const TAIL_CHECK_BYTES: usize = 4 << 20;

/// How a segment's scan ended.
enum ScanEnd {
    /// At zeros, after `end`.
    Clean { end: usize },
    /// At a record that does not decode. Records of sequence `floor` or below found
    /// after it are leftovers of the same write (a torn batch), not later writes.
    Bad { offset: usize, reason: String, floor: u64 },
    /// At a complete record that breaks the log's rules: never a torn tail.
    Corrupt { offset: usize, reason: String },
}

impl Log {
    /// Opens the log in `dir`, replaying to `apply` every record not covered by
    /// `checkpoint` (all of them when it is `None` or does not match the files):
    /// first the compacted segments the manifest lists (records in key order, of
    /// sequences up to the manifest's), then the log segments oldest first. A key's
    /// records may thus arrive out of sequence order; the caller keeps the highest.
    /// Leftover segment files (of a finished or abandoned compaction, or an
    /// interrupted segment creation) are deleted on a writable open and ignored on a
    /// read-only one. Returns the log, the highest sequence number, and whether the
    /// checkpoint was used.
    pub fn open(
        dir: &Path,
        segment_size: u64,
        writable: bool,
        checkpoint: Option<&Checkpoint>,
        mut apply: impl FnMut(Replayed),
    ) -> Result<(Log, u64, bool)> {
        let (manifest, files) = consistent_files(dir, writable)?;
        let mut next_id = manifest.log_start.max(1);
        let mut compacted = Vec::new();
        let mut logs = Vec::new();
        let mut leftovers = Vec::new();
        for (id, path, opened) in files {
            next_id = next_id.max(id.saturating_add(1));
            match opened {
                Opened::Segment(segment) if segment.id() != id => {
                    let reason = format!("header names segment {} but the file is {}", segment.id(), id);
                    return Err(Error::corruption(&path, 0, reason));
                }
                Opened::Segment(segment) if manifest.lists(id) => {
                    if !segment.is_compacted() {
                        let reason = "the manifest lists this segment as compacted, its header does not";
                        return Err(Error::corruption(&path, 0, reason));
                    }
                    compacted.push((path, segment));
                }
                Opened::Segment(segment) if segment.is_compacted() || !manifest.is_log(id) => leftovers.push(path),
                Opened::Segment(segment) => logs.push((path, segment)),
                Opened::Blank { records: true } => {
                    return Err(Error::corruption(&path, 0, "blank segment header in front of records"));
                }
                // Created but never initialized: it never held a record.
                Opened::Blank { records: false } if manifest.lists(id) => {
                    return Err(Error::corruption(&path, 0, "the manifest lists this segment, its header is blank"));
                }
                Opened::Blank { records: false } => leftovers.push(path),
            }
        }
        for entry in &manifest.compacted {
            next_id = next_id.max(entry.id.saturating_add(1));
            if !compacted.iter().any(|(_, segment)| segment.id() == entry.id) {
                let path = dir.join(segment::file_name(entry.id));
                return Err(Error::corruption(path, 0, "segment listed in the manifest is missing"));
            }
        }
        let checkpoint = checkpoint.filter(|checkpoint| checkpoint.generation == manifest.generation);
        if let Some(checkpoint) = checkpoint {
            missing_listed_segment(dir, checkpoint, &manifest, &logs)?;
        }
        let live = compacted.iter().map(|(_, segment)| segment).chain(logs.iter().map(|(_, segment)| segment));
        // A checkpoint covers compacted segments whole (they are complete before a
        // manifest lists them); one that does not is not trusted at all.
        let starts = checkpoint.and_then(|checkpoint| checkpoint_starts(checkpoint, live)).filter(|starts| {
            manifest.compacted.iter().all(|entry| starts.get(&entry.id).is_some_and(|&end| end as u64 == entry.end))
        });
        let used_checkpoint = starts.is_some();
        let starts = starts.unwrap_or_default();
        let mut segments = BTreeMap::new();
        for (path, mut segment) in compacted {
            let Some(entry) = manifest.entry(segment.id()).copied() else { continue };
            let start = starts.get(&segment.id()).copied().unwrap_or(SEGMENT_HEADER_SIZE);
            if (start as u64) < entry.end {
                let version = segment.version();
                let contents = segment.contents();
                scan_compacted(contents, version, &entry, manifest.sequence, &mut apply)
                    .map_err(|(offset, reason)| Error::corruption(&path, offset as u64, reason))?;
            }
            segment.set_recovered_end(entry.end, entry.end, entry.end, false)?;
            segment.note_dictionary();
            segments.insert(segment.id(), Arc::new(segment));
        }
        // The first log record follows the checkpoint's last write; without one, the
        // first write of a never-compacted store is 1, and after compactions the log
        // starts at most one past the manifest's sequence (at the last seal).
        let sequence = match checkpoint.filter(|_| used_checkpoint) {
            Some(checkpoint) => Sequence::after(checkpoint.sequence),
            None if manifest.sequence == 0 => Sequence::after(0),
            None => Sequence::at_most(manifest.sequence.saturating_add(1)),
        };
        let mut progress = Progress { sequence, torn_bytes: 0 };
        let last = logs.len().checked_sub(1);
        for (position, (path, mut segment)) in logs.into_iter().enumerate() {
            let is_last = Some(position) == last;
            let start = starts.get(&segment.id()).copied().unwrap_or(SEGMENT_HEADER_SIZE);
            // A read-only open may race a writer appending to the last segment: there,
            // a bad record just ends the view (a writer's recovery decides the rest).
            let tail_only = is_last && !writable;
            recover_segment(&mut segment, &path, start, is_last, tail_only, &mut progress, &mut apply)?;
            segments.insert(segment.id(), Arc::new(segment));
        }
        // Only once the log read back whole: a leftover may be the evidence of what
        // recovery just reported.
        if writable && !leftovers.is_empty() {
            for path in &leftovers {
                io::remove(path)?;
            }
            segment::sync_directory(dir)?;
        }
        let active = if writable { segments.values().rfind(|segment| !segment.is_compacted()).cloned() } else { None };
        if let Some(active) = &active {
            active.mark_recovered();
        }
        // Only the segment being appended to needs its file descriptor.
        for segment in segments.values() {
            if active.as_ref().is_none_or(|active| active.id() != segment.id()) {
                segment.release_file();
            }
        }
        let log = Log {
            dir: dir.to_path_buf(),
            segments,
            active,
            segment_size,
            writable,
            rollovers: 0,
            torn_bytes: progress.torn_bytes,
            next_id,
            manifest: manifest.clone(),
        };
        Ok((log, progress.sequence.last.max(manifest.sequence), used_checkpoint))
    }
}

/// A segment file: its id, path, and what opening it found.
type SegmentFile = (u32, PathBuf, Opened);

/// The manifest and every segment file, opened, as of one moment. A writer's lock
/// keeps compactions out; a read-only open may race a writer's compaction, which
/// commits a new manifest and then deletes files: it reads the manifest, opens every
/// file (an open file stays readable once deleted), and rereads the manifest, and
/// tries again if the manifest changed or a file vanished meanwhile.
fn consistent_files(dir: &Path, writable: bool) -> Result<(Manifest, Vec<SegmentFile>)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let manifest = manifest::read(dir)?;
        let opened = open_files(dir, writable);
        if writable || attempt >= 20 {
            return Ok((manifest, opened?));
        }
        let settled = match &opened {
            Err(Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => false,
            _ => manifest::read(dir)?.generation == manifest.generation,
        };
        if settled {
            return Ok((manifest, opened?));
        }
    }
}

/// Opens every segment file in `dir`, ascending by id.
fn open_files(dir: &Path, writable: bool) -> Result<Vec<SegmentFile>> {
    let mut files: Vec<(u32, PathBuf)> = Vec::new();
    for entry in io::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(segment::parse_file_name) {
            files.push((id, entry.path()));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(id, path)| {
            let opened = Segment::open(&path, writable)?;
            Ok((id, path, opened))
        })
        .collect()
}

/// A checkpoint of the manifest's generation names only segments that were durable
/// when it was written (it syncs them first, and their directory entries were synced
/// when they were created), and only a compaction, which changes the generation,
/// removes log segments: one it lists that is gone (or holds no header) means lost
/// writes, reported as corruption.
fn missing_listed_segment(
    dir: &Path,
    checkpoint: &Checkpoint,
    manifest: &Manifest,
    logs: &[(PathBuf, Segment)],
) -> Result<()> {
    for &(id, _) in &checkpoint.segments {
        let is_log = !manifest.lists(id) && id >= manifest.log_start;
        if is_log && !logs.iter().any(|(_, segment)| segment.id() == id) {
            let reason = "log segment listed in the checkpoint is missing or blank";
            return Err(Error::corruption(dir.join(segment::file_name(id)), 0, reason));
        }
    }
    Ok(())
}

/// Where to resume each segment's scan after `checkpoint`, if the checkpoint matches
/// the files: every segment it lists exists and is long enough, and every segment up
/// to the last one it lists is listed.
fn checkpoint_starts<'a>(
    checkpoint: &Checkpoint,
    live: impl Iterator<Item = &'a Segment>,
) -> Option<HashMap<u32, usize>> {
    let listed: HashMap<u32, u64> = checkpoint.segments.iter().copied().collect();
    let last_listed = checkpoint.segments.iter().map(|&(id, _)| id).max();
    let mut starts = HashMap::new();
    for segment in live {
        match listed.get(&segment.id()) {
            Some(&end) => {
                // Records end inside the file: a file cut short since the checkpoint
                // is not trusted (the replay then finds where its records stop).
                if end < SEGMENT_HEADER_SIZE as u64 || end > segment.file_len() {
                    return None;
                }
                starts.insert(segment.id(), usize::try_from(end).ok()?);
            }
            None if last_listed.is_some_and(|last| segment.id() <= last) => return None,
            None => {}
        }
    }
    (starts.len() == listed.len()).then_some(starts)
}

/// Replays a compacted segment's records, checking what compaction guarantees: puts
/// only, and tombstones (without a value) if `version` (the segment's format version)
/// allows them, (family, key) strictly ascending within the entry's range, sequences
/// at most `sequence`, exactly `entry.records` records ending at `entry.end`. Returns
/// the records read, or the offset and reason of the first violation.
pub fn scan_compacted(
    contents: &[u8],
    version: u32,
    entry: &CompactedSegment,
    sequence: u64,
    apply: &mut impl FnMut(Replayed),
) -> std::result::Result<u64, (usize, String)> {
    let tombstones = version >= COMPACTED_TOMBSTONES_VERSION;
    let end = usize::try_from(entry.end).map_err(|_| (0, "implausible end of records".to_string()))?;
    let contents = contents.get(..end).ok_or((contents.len(), "file shorter than the manifest says".to_string()))?;
    let mut at = SEGMENT_HEADER_SIZE;
    let mut previous: Option<(u16, i64)> = None;
    let mut records = 0u64;
    let mut dictionary = false;
    while at < end {
        let (header, len) = match RecordHeader::decode(&contents[at..]) {
            Decoded::Record { header, len } => (header, len),
            Decoded::End => return Err((at, "zero bytes before the end the manifest gives".into())),
            Decoded::Invalid(reason) => return Err((at, reason)),
        };
        if header.kind == RecordKind::Dictionary {
            // Only as the first record; not a write.
            if at != SEGMENT_HEADER_SIZE
                || header.column_family != 0
                || header.sequence != 0
                || header.value_len == 0
                || header.value_len as usize > compression::MAX_DICTIONARY_LEN
            {
                return Err((at, "a dictionary record out of place".into()));
            }
            dictionary = true;
            at += len;
            continue;
        }
        let at_key = (header.column_family, header.key);
        let in_order = previous.is_none_or(|previous| previous < at_key);
        let problem = if header.kind != RecordKind::Put && (header.kind != RecordKind::Delete || !tombstones) {
            Some(format!("a {:?} record in a compacted segment", header.kind))
        } else if header.kind == RecordKind::Delete && (header.value_len != 0 || header.flags != 0) {
            Some("a tombstone with a value or flags in a compacted segment".into())
        } else if header.compression() == compression::ZSTD_DICTIONARY && !dictionary {
            Some("a value compressed with a dictionary in a segment without one".into())
        } else if !in_order || at_key < entry.first() || at_key > entry.last() {
            Some(format!(
                "key {} of family {} out of order or outside the segment's range",
                header.key, header.column_family
            ))
        } else if header.sequence > sequence {
            Some(format!("sequence {} is newer than the compaction ({sequence})", header.sequence))
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err((at, reason));
        }
        apply(replayed(&header, Location::new(entry.id, at as u32), len));
        previous = Some(at_key);
        records += 1;
        at += len;
    }
    if records != entry.records {
        return Err((end, format!("{records} records, the manifest says {}", entry.records)));
    }
    Ok(records)
}

/// Where the log's sequence numbers stand during a scan. Every write takes the next
/// sequence number (a batch one for all its records) and the log holds writes in
/// order, so from one record to the next, and from one log segment's last record to
/// the next segment's first, the sequence rises by exactly one: a jump means writes
/// are missing (a segment gone from the middle of the log, one emptied or cut to
/// nothing), which is corruption, not a torn tail.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequence {
    /// The last sequence number read (or covered by the checkpoint).
    pub last: u64,
    /// Whether the next record must carry `last + 1` exactly; until the first record
    /// of a log whose start is not known it may carry anything up to `bound`.
    pub exact: bool,
    /// With `exact` unset: the highest sequence the first record may carry.
    pub bound: u64,
}

impl Sequence {
    /// A scan that knows the sequence of the write just before it.
    pub fn after(last: u64) -> Sequence {
        Sequence { last, exact: true, bound: u64::MAX }
    }

    /// A scan whose first record may carry any sequence up to `bound`.
    pub fn at_most(bound: u64) -> Sequence {
        Sequence { last: 0, exact: false, bound }
    }

    /// Why a complete record of `sequence` cannot come next, if it cannot.
    fn refuses(&self, sequence: u64) -> Option<String> {
        if sequence <= self.last {
            Some(format!("sequence {sequence} does not follow {}", self.last))
        } else if self.exact && sequence != self.last + 1 {
            Some(format!("sequence {sequence} follows {}: the writes in between are missing", self.last))
        } else if !self.exact && sequence > self.bound {
            Some(format!("the log starts at sequence {sequence}, after {}: the writes before are missing", self.bound))
        } else {
            None
        }
    }

    fn advance(&mut self, sequence: u64) {
        *self = Sequence::after(sequence);
    }
}

/// What recovery has established so far.
struct Progress {
    /// The log's sequence numbers so far.
    sequence: Sequence,
    /// Bytes of torn tail discarded.
    torn_bytes: u64,
}

/// Scans one segment, replays its records, and settles its end.
fn recover_segment(
    segment: &mut Segment,
    path: &Path,
    start: usize,
    is_last: bool,
    tail_only: bool,
    progress: &mut Progress,
    apply: &mut impl FnMut(Replayed),
) -> Result<()> {
    let sequence = &mut progress.sequence;
    let id = segment.id();
    // Only the last log segment can hold bytes that never reached the disk (a segment
    // is synced whole when it is sealed); with durable marks, recovery knows how far
    // it was durable. What a checkpoint covers was synced before it was written.
    let marked = is_last && !tail_only && segment.has_durable_marks();
    let mut durable = start.max(SEGMENT_HEADER_SIZE) as u64;
    let contents = segment.contents();
    let scanned = scan(contents, start, id, sequence, &mut durable, apply);
    let (end, dirty_end) = match scanned {
        ScanEnd::Corrupt { offset, reason } => return Err(Error::corruption(path, offset as u64, reason)),
        ScanEnd::Clean { end } => {
            // With durable marks, the whole rest of the file: a power cut may have
            // lost more than the usual window of pages before later ones landed.
            let reach = if marked { contents.len() } else { (end + TAIL_CHECK_BYTES).min(contents.len()) };
            let window = contents.get(end..reach).unwrap_or(&[]);
            match window.iter().rposition(|&byte| byte != 0) {
                None => (end, end),
                Some(_) if tail_only => (end, end),
                Some(_) if marked => {
                    let reason = "zeroed record header in bytes that were durable";
                    (end, beyond_durable(contents, path, id, end, durable, reason, &mut progress.torn_bytes)?)
                }
                Some(last) => {
                    if valid_record_after(contents, end, sequence.last, Extent::Search) {
                        let reason = "zeroed record header followed by valid records";
                        return Err(Error::corruption(path, end as u64, reason));
                    }
                    (end, end + last + 1)
                }
            }
        }
        ScanEnd::Bad { offset, .. } if tail_only => (offset, offset),
        ScanEnd::Bad { offset, reason, .. } if marked => {
            (offset, beyond_durable(contents, path, id, offset, durable, &reason, &mut progress.torn_bytes)?)
        }
        ScanEnd::Bad { offset, reason, floor } => {
            if !is_last || valid_record_after(contents, offset, floor, Extent::Skip) {
                return Err(Error::corruption(path, offset as u64, reason));
            }
            // The torn write's leftovers: its claimed extent, plus the usual window.
            let reach = offset.saturating_add(claimed_extent(contents, offset)).saturating_add(TAIL_CHECK_BYTES);
            let window = contents.get(offset..reach.min(contents.len())).unwrap_or(&[]);
            let dirty = window.iter().rposition(|&byte| byte != 0).map_or(offset, |last| offset + last + 1);
            tracing::warn!(
                file = %path.display(),
                offset,
                discarded_bytes = dirty - offset,
                "recovery discarded a torn tail: {reason}"
            );
            progress.torn_bytes += (dirty - offset) as u64;
            (offset, dirty)
        }
    };
    segment.set_recovered_end(end as u64, dirty_end as u64, durable, is_last)
}

/// The last log segment, with durable marks, is damaged at `offset` (a record that
/// does not decode, or a zeroed header with bytes after it). If a durable mark, before
/// the damage or anywhere after it, says the bytes at `offset` had reached the disk,
/// they rotted there: corruption. Otherwise they never reached it (a power cut: the
/// page cache writes pages back in any order, so later pages may have landed while
/// this one did not): the log ends at `offset`, everything after it in the segment is
/// discarded (valid records included: later writes may not be kept while an earlier
/// one is lost), and the discarded bytes, up to the last nonzero one in the file, are
/// returned to be zeroed.
fn beyond_durable(
    contents: &[u8],
    path: &Path,
    segment: u32,
    offset: usize,
    durable: u64,
    reason: &str,
    torn_bytes: &mut u64,
) -> Result<usize> {
    let durable = durable.max(marks_after(contents, segment, offset));
    if (offset as u64) < durable {
        let reason = format!("{reason} (the segment was durable through offset {durable})");
        return Err(Error::corruption(path, offset as u64, reason));
    }
    let rest = contents.get(offset..).unwrap_or(&[]);
    let dirty = rest.iter().rposition(|&byte| byte != 0).map_or(offset, |last| offset + last + 1);
    tracing::warn!(
        file = %path.display(),
        offset,
        discarded_bytes = dirty - offset,
        durable_through = durable,
        "recovery discarded writes that had not reached the disk: {reason}"
    );
    *torn_bytes += (dirty - offset) as u64;
    Ok(dirty)
}

/// The furthest end claimed by a valid durable mark lying after `offset` (0 if none).
/// A mark names its own offset and segment, so bytes copied from elsewhere never pass
/// for one.
fn marks_after(contents: &[u8], segment: u32, offset: usize) -> u64 {
    let mut durable = 0;
    let last = contents.len().saturating_sub(DURABLE_MARK_SIZE);
    for at in offset + 1..=last {
        // Cheap filters first: the kind byte, and the key holding this very offset.
        if contents.get(at + 4) != Some(&(RecordKind::Durable as u8)) {
            continue;
        }
        let Some(key) = contents.get(at + 20..at + 28) else { continue };
        if key != (at as u64).to_le_bytes() {
            continue;
        }
        if let Decoded::Record { header, len } = RecordHeader::decode(&contents[at..]) {
            let record = contents.get(at..at + len).unwrap_or(&[]);
            if let Some(mark) = DurableMark::check(&header, record, segment, at as u64) {
                durable = durable.max(mark.durable);
            }
        }
    }
    durable
}

/// Checks the records of `contents` (a segment's bytes from offset 0 up to its end of
/// records) exactly as recovery reads them: checksums, sequence numbers following on
/// from `sequence` by one, complete batches, and no end marker before the end. Returns
/// the writes (puts and deletes, batch members included) counted, each also given to
/// `apply`, or the offset and reason of the first bad record.
pub fn verify_records(
    contents: &[u8],
    segment: u32,
    sequence: &mut Sequence,
    apply: &mut impl FnMut(Replayed),
) -> std::result::Result<u64, (usize, String)> {
    let mut writes = 0u64;
    let mut count = |write: Replayed| {
        writes += 1;
        apply(write);
    };
    match scan(contents, SEGMENT_HEADER_SIZE, segment, sequence, &mut 0, &mut count) {
        ScanEnd::Clean { end } if end == contents.len() => Ok(writes),
        ScanEnd::Clean { end } => Err((end, "zero bytes inside the written log".into())),
        ScanEnd::Bad { offset, reason, .. } | ScanEnd::Corrupt { offset, reason } => Err((offset, reason)),
    }
}

/// Scans records from `start` on, replaying them; `durable` rises to the furthest end
/// a durable mark claims.
fn scan(
    contents: &[u8],
    start: usize,
    segment: u32,
    sequence: &mut Sequence,
    durable: &mut u64,
    apply: &mut impl FnMut(Replayed),
) -> ScanEnd {
    let mut at = start;
    let mut pending = Vec::new();
    loop {
        let bytes = contents.get(at..).unwrap_or(&[]);
        let (header, len) = match RecordHeader::decode(bytes) {
            Decoded::End => return ScanEnd::Clean { end: at },
            Decoded::Invalid(reason) => return ScanEnd::Bad { offset: at, reason, floor: sequence.last },
            Decoded::Record { header, len } => (header, len),
        };
        if header.kind == RecordKind::Durable {
            // Not a write: no sequence of its own, nothing to replay.
            let record = contents.get(at..at + len).unwrap_or(&[]);
            match DurableMark::check(&header, record, segment, at as u64) {
                Some(mark) => *durable = (*durable).max(mark.durable),
                None => return ScanEnd::Corrupt { offset: at, reason: "a durable mark out of place".into() },
            }
            at += len;
            continue;
        }
        if let Some(reason) = sequence.refuses(header.sequence) {
            // A record whose checksum matches was fully written: it cannot be a torn
            // tail, whatever follows it.
            return ScanEnd::Corrupt { offset: at, reason };
        }
        if header.kind == RecordKind::Dictionary || header.compression() == compression::ZSTD_DICTIONARY {
            // Dictionaries exist only in compacted segments; a checksummed record
            // was fully written, so this is no torn tail.
            return ScanEnd::Corrupt {
                offset: at,
                reason: "a dictionary or dictionary-compressed value in a log segment".into(),
            };
        }
        match header.kind {
            RecordKind::Put | RecordKind::Delete => {
                apply(replayed(&header, Location::new(segment, at as u32), len));
                sequence.advance(header.sequence);
                at += len;
            }
            RecordKind::Durable | RecordKind::Dictionary => {}
            RecordKind::Batch => {
                pending.clear();
                match scan_batch(contents, at, &header, len, segment, &mut pending) {
                    Ok(next) => {
                        for write in pending.drain(..) {
                            apply(write);
                        }
                        sequence.advance(header.sequence);
                        at = next;
                    }
                    Err(reason) => return ScanEnd::Bad { offset: at, reason, floor: header.sequence },
                }
            }
        }
    }
}

/// Checks the batch whose header (of `len` bytes) is at `at`; collects its writes and
/// returns the offset after it.
fn scan_batch(
    contents: &[u8],
    at: usize,
    header: &RecordHeader,
    len: usize,
    segment: u32,
    writes: &mut Vec<Replayed>,
) -> std::result::Result<usize, String> {
    let value = contents.get(at + RECORD_HEADER_SIZE..at + len).unwrap_or(&[]);
    let descriptor = BatchDescriptor::decode(value).ok_or("malformed batch descriptor")?;
    let body_start = at + len;
    let body_end = usize::try_from(descriptor.body_len)
        .ok()
        .and_then(|body| body_start.checked_add(body))
        .filter(|&end| end <= contents.len())
        .ok_or("batch body runs past the end of the segment")?;
    let mut inner = body_start;
    for index in 0..descriptor.count {
        let bytes = contents.get(inner..body_end).unwrap_or(&[]);
        match RecordHeader::decode(bytes) {
            Decoded::Record { header: record, len } => {
                if matches!(record.kind, RecordKind::Batch | RecordKind::Durable | RecordKind::Dictionary)
                    || record.compression() == compression::ZSTD_DICTIONARY
                    || record.sequence != header.sequence
                {
                    return Err(format!("batch record {index} does not belong to the batch"));
                }
                writes.push(replayed(&record, Location::new(segment, inner as u32), len));
                inner += len;
            }
            Decoded::End => return Err(format!("batch ends after {index} of {} records", descriptor.count)),
            Decoded::Invalid(reason) => return Err(format!("batch record {index}: {reason}")),
        }
    }
    if inner != body_end {
        return Err("batch body length does not match its records".into());
    }
    Ok(body_end)
}

/// The length (header included) the possibly damaged record at `offset` claims, or 0.
fn claimed_len(contents: &[u8], offset: usize) -> usize {
    match contents.get(offset + 8..offset + 12) {
        Some(&[a, b, c, d]) => RECORD_HEADER_SIZE.saturating_add(u32::from_le_bytes([a, b, c, d]) as usize),
        _ => 0,
    }
}

/// The bytes the possibly damaged write at `offset` claims: its record, or for a
/// batch whose descriptor reads, the batch header and its whole body. 0 if nothing
/// can be read there.
fn claimed_extent(contents: &[u8], offset: usize) -> usize {
    let len = claimed_len(contents, offset);
    let is_batch = contents.get(offset + 4) == Some(&(RecordKind::Batch as u8));
    let descriptor =
        contents.get(offset + RECORD_HEADER_SIZE..offset.saturating_add(len)).and_then(BatchDescriptor::decode);
    match descriptor {
        Some(descriptor) if is_batch => {
            usize::try_from(descriptor.body_len).map_or(usize::MAX, |body| len.saturating_add(body))
        }
        _ => len,
    }
}

fn replayed(header: &RecordHeader, location: Location, len: usize) -> Replayed {
    let (column_family, key, sequence) = (header.column_family, header.key, header.sequence);
    if header.kind == RecordKind::Delete {
        Replayed::Delete { column_family, key, sequence }
    } else {
        Replayed::Put { column_family, key, sequence, location, len: len as u32 }
    }
}

/// Whether [`valid_record_after`] searches inside the claimed extent of the bad
/// record at `offset`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// A record that fails its checksum: its header was written (a write copies its
    /// header before its value), so the bytes it claims are its own value, whatever
    /// they look like, as long as the claim fits the file (a torn write never
    /// claims more than the blocks it reserved). Only records past them count.
    Skip,
    /// A zeroed header claims nothing: search every byte after it.
    Search,
}

/// Whether a valid record of a sequence above `floor` starts after `offset`: first
/// where the bad record says the next one starts, then at every byte (past the bad
/// record's claimed extent, with [`Extent::Skip`]), up to a run of zeros longer than
/// any record could contain.
fn valid_record_after(contents: &[u8], offset: usize, floor: u64, extent: Extent) -> bool {
    // Sequences rise by one per write and a record takes at least a header, so a
    // later record at `at` has a sequence in (floor, floor + 1 + distance / header].
    // Checking that before the CRC rejects nearly every false candidate cheaply.
    let plausible_sequence = |at: usize| {
        let Some(bytes) = contents.get(at + 12..at + 20) else { return false };
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let sequence = u64::from_le_bytes(word);
        let reach = 1 + ((at - offset) / RECORD_HEADER_SIZE) as u64;
        sequence > floor && sequence <= floor.saturating_add(reach)
    };
    let decodes = |at: usize| {
        plausible_sequence(at)
            && match RecordHeader::decode(contents.get(at..).unwrap_or(&[])) {
                Decoded::Record { header, .. } => header.sequence > floor,
                _ => false,
            }
    };
    let claimed = claimed_extent(contents, offset);
    let next = offset.saturating_add(claimed);
    if claimed > 0 && next < contents.len() && decodes(next) {
        return true;
    }
    // Inside a claim that fits the file lie only the bad record's own bytes.
    let first = match extent {
        Extent::Skip if claimed > 0 && next <= contents.len() => next,
        _ => offset + 1,
    };
    // Past the bad record's claimed extent, a run of zeros this long means nothing
    // more was written.
    let zero_run_limit = TAIL_CHECK_BYTES.max(claimed_len(contents, offset));
    let mut zeros = 0usize;
    for at in first..contents.len().saturating_sub(RECORD_HEADER_SIZE) {
        let byte = contents.get(at).copied().unwrap_or(0);
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        if zeros > zero_run_limit && at > next {
            return false;
        }
        // Cheap filter first: a record's kind byte sits 4 bytes in.
        let kind = contents.get(at + 4).copied().unwrap_or(0);
        if (1..=3).contains(&kind) && decodes(at) {
            return true;
        }
    }
    false
}
