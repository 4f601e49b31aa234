//! One segment file: a fixed-capacity, append-only run of records, mapped into memory
//! once and never remapped.
//!
//! # Write path
//! A segment is mapped at its full capacity, but its file's blocks are reserved
//! (`fallocate`) in steps of [`RESERVE_STEP`] as records reach them, so that a segment
//! being filled occupies little more than its records. Records are copied into the
//! shared, writable mapping of the file, only ever below the reserved end (inside the
//! file, on allocated blocks). The copy lands in the page cache, so an
//! acknowledged `Buffered` write survives `kill -9` without a `write()` system call per
//! record (a system call would cost more than a whole put, which takes about 0.3 µs
//! in the store benchmark): one `fallocate` per step. Because the blocks are reserved
//! before a store reaches them, a full disk shows up as an error from the append that
//! needed the next step (it writes nothing), never as `SIGBUS` on a store into the
//! mapping or a read past the file's end. `Sync` writes `msync` the records they wrote.
//! What we rely on: Linux's unified page cache (the mapping and the file are the same
//! pages), `fallocate` reservations, and that nobody else truncates the file while it
//! is open (the store's lock file keeps other AlexStorage writers out).
//!
//! # Concurrency and the published end
//! Bytes below `published` are complete records that are never written again; readers
//! may slice them freely, from any thread, for as long as they hold the segment. The
//! single appender writes only at or above `published` (under the segment's tail
//! lock) and then moves `published` past what it wrote with a release store. The
//! mapping is unmapped only when the last `Arc<Segment>` is dropped, so a slice handed
//! out earlier can never dangle.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use super::format::{
    Decoded, DurableMark, HeaderError, RecordHeader, RecordKind, SegmentHeader, DURABLE_MARKS_VERSION,
    DURABLE_MARK_SIZE, FORMAT_VERSION, RECORD_HEADER_SIZE, SEGMENT_COMPACTED, SEGMENT_COMPRESSION_BITS,
    SEGMENT_COMPRESSION_SHIFT, SEGMENT_HEADER_SIZE,
};
use super::io;
use crate::compression::{Dictionary, MAX_DICTIONARY_LEN};
use crate::{Error, Result};

/// The writers taking part in group commit: counted by the store, read by the leader.
#[derive(Debug, Default)]
pub struct GroupCommit {
    /// `Sync` writes between their start and their return.
    pub active: AtomicUsize,
    /// `Sync` writes that have published their records (a running count).
    pub published: AtomicU64,
    /// Of those, how many the syncs so far covered (a running count).
    pub synced: AtomicU64,
}

/// How far a segment's reservation grows at a time.
pub const RESERVE_STEP: u64 = 4 << 20;

/// How long a sync leader waits at most for writers that are about to publish.
const GATHER: Duration = Duration::from_micros(200);

/// A segment file and its mapping.
#[derive(Debug)]
pub struct Segment {
    id: u32,
    path: PathBuf,
    /// The open file, while appends may still need it (to reserve blocks, to cut a
    /// compacted segment to its records, to fsync after recovery). A sealed, finished
    /// or read-only segment lets it go: its mapping outlives the descriptor, and a
    /// store of many segments then holds one descriptor per segment being written,
    /// not one per segment (a leaf lock, taken under the tail lock).
    file: Mutex<Option<File>>,
    map: MmapRaw,
    /// End of the complete, immutable records.
    published: AtomicU64,
    /// End of what has been made durable.
    synced: AtomicU64,
    /// Serializes appends; holds the write tail (equal to `published` between appends).
    tail: Mutex<u64>,
    /// The file's length: bytes with blocks reserved (changed under the tail lock).
    reserved: AtomicU64,
    /// Serializes syncs, and remembers a failed one: Linux reports a writeback error
    /// once per open file, so after a failure every later sync must fail too, or a
    /// caller could be told its data is durable when it was dropped.
    sync_failure: Mutex<Option<String>>,
    /// With `sync_done`: where followers sleep until a sync ends (std's condition
    /// variable wakes them all at once).
    sync_wait: std::sync::Mutex<()>,
    sync_done: std::sync::Condvar,
    writable: bool,
    /// Set by [`Segment::finish`], [`Segment::seal`], and recovery for every segment
    /// but the last: no more appends, durable marks included.
    finished: std::sync::atomic::AtomicBool,
    /// Written by compaction: puts in key order, never appended to once finished.
    compacted: bool,
    /// Its header's flags.
    flags: u32,
    /// Bytes of its dictionary record, if it has one (a compacted segment's first
    /// record): bytes of the segment that hold no write.
    dictionary_bytes: AtomicU64,
    /// Its dictionary, read and prepared at the first read that needs it (or set by
    /// the compaction that wrote it).
    dictionary: OnceLock<std::result::Result<Arc<Dictionary>, String>>,
    /// The format version of its header.
    version: u32,
    /// Whether a sync appends a durable mark ([`DurableMark`]): a writable log
    /// segment of format version 3 or later.
    marks: bool,
    /// Where the last durable mark appended starts (`u64::MAX`: none yet). A mark at
    /// the very end of what is published, right at the synced end, is all that is
    /// unsynced: it holds no write, so it needs no sync of its own.
    mark_at: AtomicU64,
    /// The furthest end a durable mark appended so far claims. Every call that
    /// returns because bytes are durable (a `Sync` write, a flush) first makes sure a
    /// mark claims them: a process killed right after still leaves a mark saying so.
    claimed: AtomicU64,
    /// End of the bytes handed to the kernel's writeback ahead of their sync
    /// ([`Segment::start_writeback`]).
    written_back: AtomicU64,
    /// Whether [`Segment::wants_writeback`] asked for an early writeback that has not
    /// started yet (so that writers ask once, not at every write).
    writeback_asked: std::sync::atomic::AtomicBool,
}

/// The page size early writeback rounds to: the kernel's (4 KiB on x86_64, 64 KiB on
/// some arm64 and ppc64 kernels), so that the page being written is never handed over.
fn page_size() -> u64 {
    (rustix::param::page_size() as u64).max(4096)
}

/// Room a segment with durable marks keeps after its last record.
pub const MARKS_ROOM: u64 = 2 * DURABLE_MARK_SIZE as u64;

/// What opening a segment file found (made once per file at open: the size of the
/// segment variant costs nothing worth a box).
#[allow(clippy::large_enum_variant)]
pub enum Opened {
    /// A segment.
    Segment(Segment),
    /// A file with an all-zero header: a crash during its creation left it, unless
    /// `records` (bytes where its first record would start are not all zero), which
    /// means a header was lost.
    Blank {
        /// Whether the first record's place holds anything.
        records: bool,
    },
}

/// The file name of segment `id`.
pub fn file_name(id: u32) -> String {
    format!("{id:08x}.seg")
}

/// The segment id a file name denotes, if it is a segment file name.
pub fn parse_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 8 {
        return None;
    }
    u32::from_str_radix(stem, 16).ok()
}

/// The error for a file operation on a segment whose descriptor was released.
fn closed(path: &Path) -> Error {
    Error::Io(std::io::Error::other(format!("{}: the segment is sealed; its file is closed", path.display())))
}

/// Reserves the blocks of `file` up to `length` bytes (`fallocate`), extending it.
fn reserve(file: &File, path: &Path, length: u64) -> Result<()> {
    Ok(io::allocate(file, path, length)?)
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_directory(dir: &Path) -> Result<()> {
    Ok(io::sync_directory(dir)?)
}

impl Segment {
    /// Creates segment `id` in `dir` with `capacity` bytes reserved, durably; a
    /// `compacted` one carries the compacted flag in its header.
    pub fn create(dir: &Path, id: u32, capacity: u64, compacted: bool) -> Result<Segment> {
        Self::create_with_flags(dir, id, capacity, if compacted { SEGMENT_COMPACTED } else { 0 })
    }

    /// Creates segment `id` in `dir` with `capacity` bytes reserved, durably, with
    /// header `flags` (a compacted segment's compression included).
    pub fn create_with_flags(dir: &Path, id: u32, capacity: u64, flags: u32) -> Result<Segment> {
        let path = dir.join(file_name(id));
        let file = io::create_new(&path)?;
        let result =
            Self::initialize(&file, &path, dir, SegmentHeader { version: FORMAT_VERSION, id, flags, capacity });
        if let Err(error) = result {
            drop(file);
            // A segment that could not be set up holds no data: remove it so the
            // store stays as it was (and can retry once space is freed).
            let _ = io::remove(&path);
            return Err(error);
        }
        let map = MmapOptions::new().len(capacity as usize).map_raw(&file)?;
        let segment = Self::with_map(id, path, file, map, true, flags, FORMAT_VERSION);
        segment.reserved.store(capacity.min(RESERVE_STEP), Ordering::Release);
        Ok(segment)
    }

    /// A segment over `map` with no records yet published.
    fn with_map(id: u32, path: PathBuf, file: File, map: MmapRaw, writable: bool, flags: u32, version: u32) -> Segment {
        let start = SEGMENT_HEADER_SIZE as u64;
        let compacted = flags & SEGMENT_COMPACTED != 0;
        Segment {
            id,
            path,
            file: Mutex::new(Some(file)),
            map,
            published: AtomicU64::new(start),
            synced: AtomicU64::new(start),
            tail: Mutex::new(start),
            reserved: AtomicU64::new(start),
            sync_failure: Mutex::new(None),
            sync_wait: std::sync::Mutex::new(()),
            sync_done: std::sync::Condvar::new(),
            writable,
            finished: std::sync::atomic::AtomicBool::new(false),
            compacted,
            flags,
            dictionary_bytes: AtomicU64::new(0),
            dictionary: OnceLock::new(),
            version,
            marks: writable && !compacted && version >= DURABLE_MARKS_VERSION,
            mark_at: AtomicU64::new(u64::MAX),
            claimed: AtomicU64::new(0),
            written_back: AtomicU64::new(start),
            writeback_asked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn initialize(file: &File, path: &Path, dir: &Path, header: SegmentHeader) -> Result<()> {
        // The first step's blocks; appends reserve the next ones before using them.
        reserve(file, path, header.capacity.min(RESERVE_STEP))?;
        io::write_all_at(file, path, &header.encode(), 0)?;
        io::sync_file(file, path)?;
        sync_directory(dir)
    }

    /// Opens an existing segment file. Its records are not read; the caller scans
    /// them and then calls [`Segment::set_recovered_end`].
    pub fn open(path: &Path, writable: bool) -> Result<Opened> {
        let file = io::open(path, writable)?;
        let length = file.metadata()?.len();
        let mut header_bytes = [0u8; SEGMENT_HEADER_SIZE];
        let available = (length as usize).min(SEGMENT_HEADER_SIZE);
        file.read_exact_at(&mut header_bytes[..available], 0)?;
        let header = match SegmentHeader::decode(&header_bytes) {
            Ok(header) => header,
            Err(HeaderError::Blank) => {
                let mut first = [0u8; RECORD_HEADER_SIZE];
                let available = (length.saturating_sub(SEGMENT_HEADER_SIZE as u64) as usize).min(first.len());
                file.read_exact_at(&mut first[..available], SEGMENT_HEADER_SIZE as u64)?;
                return Ok(Opened::Blank { records: first.iter().any(|&byte| byte != 0) });
            }
            Err(HeaderError::NewerVersion(found)) => {
                return Err(Error::UnsupportedVersion { file: path.to_path_buf(), found, supported: FORMAT_VERSION })
            }
            Err(HeaderError::Invalid(reason)) => return Err(Error::corruption(path, 0, reason)),
        };
        let capacity = header.capacity;
        if capacity < SEGMENT_HEADER_SIZE as u64 || capacity > u64::from(u32::MAX) {
            return Err(Error::corruption(path, 0, format!("implausible segment capacity {capacity}")));
        }
        // The file holds what was reserved so far (recovery reads no further); a
        // writable open maps the whole capacity, so that appends can go on reserving.
        let length = capacity.min(length);
        let map = if writable {
            // A file restored sparse (copied, for instance) must get its blocks back:
            // a store into a hole on a full disk would be SIGBUS.
            reserve(&file, path, length)?;
            MmapOptions::new().len(capacity as usize).map_raw(&file)?
        } else {
            MmapOptions::new().len(length as usize).map_raw_read_only(&file)?
        };
        let segment = Self::with_map(header.id, path.to_path_buf(), file, map, writable, header.flags, header.version);
        segment.reserved.store(length, Ordering::Release);
        if !writable {
            segment.release_file();
        }
        Ok(Opened::Segment(segment))
    }

    /// Whether compaction wrote the segment (its header's compacted flag).
    pub fn is_compacted(&self) -> bool {
        self.compacted
    }

    /// The dictionary of this compacted segment (its first record), prepared once;
    /// `Error::Corruption` at that record if there is none or it is damaged.
    pub fn dictionary(&self) -> Result<Arc<Dictionary>> {
        let loaded = self.dictionary.get_or_init(|| self.load_dictionary().map(Arc::new));
        match loaded {
            Ok(dictionary) => Ok(Arc::clone(dictionary)),
            Err(reason) => Err(Error::corruption(&self.path, SEGMENT_HEADER_SIZE as u64, reason.clone())),
        }
    }

    fn load_dictionary(&self) -> std::result::Result<Dictionary, String> {
        if !self.compacted {
            return Err("a log segment holds no dictionary".into());
        }
        let start = SEGMENT_HEADER_SIZE as u64;
        let header = self.read(start, RECORD_HEADER_SIZE).ok_or("no dictionary record")?;
        let value_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if value_len > MAX_DICTIONARY_LEN {
            return Err(format!("a dictionary of {value_len} bytes"));
        }
        let record = self.read(start, RECORD_HEADER_SIZE + value_len).ok_or("dictionary record cut short")?;
        match RecordHeader::decode(record) {
            Decoded::Record { header, .. } if header.kind == RecordKind::Dictionary => {
                Dictionary::new(record.get(RECORD_HEADER_SIZE..).unwrap_or(&[]))
            }
            Decoded::Record { header, .. } => Err(format!("first record is a {:?}, not a dictionary", header.kind)),
            Decoded::Invalid(reason) => Err(reason),
            Decoded::End => Err("no dictionary record".into()),
        }
    }

    /// Appends `dictionary` as the first record of this new compacted segment, and
    /// keeps it prepared for reads. `Ok(false)` if it does not fit.
    pub fn append_dictionary(&self, dictionary: Arc<Dictionary>) -> Result<bool> {
        let (id, bytes) = (dictionary.id(), dictionary.bytes());
        if !self.compacted || self.published() != SEGMENT_HEADER_SIZE as u64 {
            return Err(Error::InvalidArgument("a dictionary goes first into a compacted segment".into()));
        }
        let len = u32::try_from(bytes.len()).map_err(|_| Error::InvalidArgument("dictionary too large".into()))?;
        let header = RecordHeader::new(RecordKind::Dictionary, 0, i64::from(id), 0, len);
        if self.append(&[&header.encode(bytes), bytes])?.is_none() {
            return Ok(false);
        }
        self.dictionary_bytes.store((RECORD_HEADER_SIZE + bytes.len()) as u64, Ordering::Release);
        let _ = self.dictionary.set(Ok(dictionary));
        Ok(true)
    }

    /// Notes the dictionary record of a recovered compacted segment, if its first
    /// record's header says it is one of a plausible length (within the written part
    /// and [`MAX_DICTIONARY_LEN`]), for [`Segment::dictionary_bytes`]. Its checksum is
    /// checked when the dictionary is first needed ([`Segment::dictionary`]), not on
    /// every open: a damaged one is then corruption, and never reused.
    pub fn note_dictionary(&self) {
        if !self.compacted {
            return;
        }
        let start = SEGMENT_HEADER_SIZE as u64;
        let Some(header) = self.read(start, RECORD_HEADER_SIZE) else { return };
        let value_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let len = (RECORD_HEADER_SIZE + value_len) as u64;
        if header[4] == RecordKind::Dictionary as u8
            && value_len <= MAX_DICTIONARY_LEN
            && start + len <= self.published()
        {
            self.dictionary_bytes.store(len, Ordering::Release);
        }
    }

    /// Bytes of the segment's dictionary record (0 without one): no write's.
    pub fn dictionary_bytes(&self) -> u64 {
        self.dictionary_bytes.load(Ordering::Acquire)
    }

    /// For a compacted segment, the value compression its compaction wrote with (a
    /// `compression` flag, from its header); 0 for a log segment.
    pub fn compacted_with(&self) -> u8 {
        ((self.flags & SEGMENT_COMPRESSION_BITS) >> SEGMENT_COMPRESSION_SHIFT) as u8
    }

    /// The format version of its header.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether the segment's format carries durable marks (version 3 on).
    pub fn has_durable_marks(&self) -> bool {
        self.version >= DURABLE_MARKS_VERSION && !self.compacted
    }

    /// Completes a compacted segment: makes its records durable and truncates the
    /// file to their end (the blocks reserved past it are given back). Nothing may be
    /// appended afterwards.
    pub fn finish(&self) -> Result<()> {
        self.sync()?;
        let tail = self.tail.lock();
        // From here on `append` refuses: the mapping may reach past the file's end,
        // and a store there would fault. Reads stop at `published`, which is `end`.
        self.finished.store(true, Ordering::Release);
        let end = *tail;
        if self.writable {
            let file = self.file.lock();
            let file = file.as_ref().ok_or_else(|| closed(&self.path))?;
            io::set_len(file, &self.path, end)?;
            self.reserved.store(end, Ordering::Release);
            drop(tail);
            io::sync_file(file, &self.path)?;
        }
        self.release_file();
        Ok(())
    }

    /// Closes the segment's file descriptor: nothing will be appended (it is sealed,
    /// finished, or opened read-only). The mapping stays valid.
    pub fn release_file(&self) {
        let file = self.file.lock().take();
        drop(file);
    }

    /// End of the bytes handed to an early writeback so far.
    #[cfg(test)]
    pub fn written_back(&self) -> u64 {
        self.written_back.load(Ordering::Acquire)
    }

    /// Whether the segment still holds its file descriptor.
    #[cfg(test)]
    pub fn holds_file(&self) -> bool {
        self.file.lock().is_some()
    }

    /// The segment's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes mapped (the capacity, or less for a short file opened read-only).
    pub fn capacity(&self) -> u64 {
        self.map.len() as u64
    }

    /// The file's length: how far records can reach so far (reads and recovery stop
    /// here; appends reserve further, up to the capacity).
    pub fn file_len(&self) -> u64 {
        self.reserved.load(Ordering::Acquire).min(self.capacity())
    }

    /// End of the complete records.
    #[inline]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Published bytes not yet made durable.
    pub fn unsynced(&self) -> u64 {
        if !self.writable {
            return 0;
        }
        let (synced, published) = (self.synced.load(Ordering::Acquire), self.published());
        if self.only_mark_unsynced(synced, published) {
            return 0;
        }
        published.saturating_sub(synced)
    }

    /// Whether all that lies between `synced` and `published` is the last durable
    /// mark (which holds no write).
    fn only_mark_unsynced(&self, synced: u64, published: u64) -> bool {
        self.mark_at.load(Ordering::Acquire) == synced && published == synced + DURABLE_MARK_SIZE as u64
    }

    /// The file's bytes (the mapping up to the reserved end), for recovery's scan.
    /// Exclusive access (`&mut self`) means no append can run concurrently.
    pub fn contents(&mut self) -> &[u8] {
        let len = (*self.reserved.get_mut()).min(self.map.len() as u64) as usize;
        // SAFETY: the mapping is valid for `map.len()` bytes for the life of `self`,
        // and the first `len` of them lie inside the file (the reserved end is the
        // file's length), so reading them cannot fault; `&mut self` guarantees no
        // other reference writes through the mapping meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), len) }
    }

    /// Declares `[header, end)` the segment's records after recovery scanned them, and
    /// zeroes what lies between `end` and `dirty_end` (a torn tail), durably. With
    /// `make_durable`, also fsyncs the file: after a crash its records may exist only
    /// in the page cache (sealed segments were synced when they were sealed, so only
    /// the last one needs this). `durable` is how far the segment was known durable
    /// (its durable marks' claim); the pages from there to `end` are made dirty again
    /// first, so the fsync writes them even if an earlier failed sync left them marked
    /// clean in the page cache but not on the disk.
    pub fn set_recovered_end(&mut self, end: u64, dirty_end: u64, durable: u64, make_durable: bool) -> Result<()> {
        let file_end = (*self.reserved.get_mut()).min(self.capacity());
        let end = end.clamp(SEGMENT_HEADER_SIZE as u64, file_end.max(SEGMENT_HEADER_SIZE as u64));
        let dirty_end = dirty_end.clamp(end, file_end.max(end));
        if dirty_end > end && self.writable {
            // SAFETY: [end, dirty_end) lies inside the mapping, and `&mut self` rules
            // out any concurrent reader or writer of these bytes.
            unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(end as usize), 0, (dirty_end - end) as usize) };
            io::flush_map(&self.map, &self.path, end, dirty_end - end)?;
        }
        if self.writable && make_durable {
            // What recovery read may exist only in the page cache (a process crash
            // loses nothing there, but a power loss would): make it durable before
            // anything is appended after it or a checkpoint points into it.
            let from = durable.clamp(SEGMENT_HEADER_SIZE as u64, end);
            // SAFETY: [from, end) lies inside the mapping and the file (`end` is at
            // most the reserved end, the file's length), and `&mut self` rules out any
            // other writer of these bytes.
            unsafe { io::redirty(&self.map, &self.path, from, end - from) };
            let file = self.file.get_mut().as_ref().ok_or_else(|| closed(&self.path))?;
            io::sync_file(file, &self.path)?;
        }
        self.published.store(end, Ordering::Release);
        self.synced.store(end, Ordering::Release);
        *self.tail.get_mut() = end;
        if !make_durable {
            // A segment before the last (or a compacted one) was complete on disk when
            // it was sealed: nothing may be appended to it, not even a durable mark,
            // which no sync would then cover (its `synced` is taken as its end).
            self.finished.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Appends the concatenation of `parts` and publishes it; returns its offset, or
    /// `Ok(None)` (writing nothing) when it does not fit. Fails, writing nothing, if
    /// the blocks it needs cannot be reserved (a full disk).
    pub fn append(&self, parts: &[&[u8]]) -> Result<Option<u64>> {
        if !self.writable {
            return Ok(None);
        }
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let mut tail = self.tail.lock();
        if self.finished.load(Ordering::Acquire) {
            // Sealed or finished: never appended to again.
            return Ok(None);
        }
        let start = *tail;
        // A segment with durable marks keeps room for two after its last record: the
        // one a sync running as the record was appended may leave (claiming less than
        // the record), and the one that claims the record; so the writes of a full
        // segment are claimed too.
        let limit = self.capacity().saturating_sub(if self.marks { MARKS_ROOM } else { 0 });
        let Some(end) = start.checked_add(total as u64).filter(|&end| end <= limit) else {
            return Ok(None);
        };
        self.ensure_reserved(end)?;
        let mut at = start as usize;
        for part in parts {
            // SAFETY: [at, at + part.len()) lies inside the mapping (end <= capacity)
            // and below the reserved end (inside the file, on allocated blocks, so the
            // store cannot fault), and at or above `published`, so no reader holds a
            // slice of it; the tail lock makes this the only writer; the source is a
            // distinct allocation.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.map.as_mut_ptr().add(at), part.len()) };
            at += part.len();
            // Each part is stored before the next one starts (the compiler may not
            // move the copies across this): a process killed mid-append leaves a
            // complete header in front of whatever value bytes it copied, which is
            // what lets recovery trust a torn record's claimed extent.
            std::sync::atomic::compiler_fence(Ordering::Release);
        }
        *tail = end;
        self.published.store(end, Ordering::Release);
        Ok(Some(start))
    }

    /// Seals the segment for good: appends (in a segment with durable marks) a last
    /// mark claiming every record, and after it a zero record header, so that a scan
    /// stops there whatever bytes an old torn write left further on, and syncs all of
    /// it in one sync. Nothing is appended to it afterwards, and once the sync
    /// succeeded its descriptor is closed (after a failed one the store is poisoned).
    pub fn seal(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        // The sync lock, held throughout: the records and the mark claiming them
        // become durable, and `synced` moves, only together, so that no writer waiting
        // for its record returns before a mark claims it.
        let mut failure = self.sync_failure.lock();
        if let Some(reason) = failure.as_ref() {
            return Err(Error::Io(std::io::Error::other(format!("an earlier sync of this segment failed: {reason}"))));
        }
        let mut tail = self.tail.lock();
        // From here on nothing is appended, not even a durable mark by a sync running
        // on another thread: what this writes below stays the last thing.
        self.finished.store(true, Ordering::Release);
        let start = *tail;
        let wants_mark = self.marks
            && self.unclaimed(start)
            && start + DURABLE_MARK_SIZE as u64 <= self.capacity()
            && self.ensure_reserved(start + DURABLE_MARK_SIZE as u64).is_ok();
        let file_end = self.reserved.load(Ordering::Acquire).min(self.map.len() as u64);
        let mut end = start;
        if wants_mark && start + DURABLE_MARK_SIZE as u64 <= file_end {
            let mark = DurableMark { segment: self.id, at: start, durable: start }.encode();
            // SAFETY: [start, start + mark) is inside the mapping and the file (below the
            // reserved end), at or above `published` (no reader slices it), and the
            // tail lock makes this the only writer.
            unsafe {
                std::ptr::copy_nonoverlapping(mark.as_ptr(), self.map.as_mut_ptr().add(start as usize), mark.len())
            };
            end += DURABLE_MARK_SIZE as u64;
            self.mark_at.store(start, Ordering::Release);
            self.claimed.fetch_max(start, Ordering::AcqRel);
        }
        let marker_end = (end + RECORD_HEADER_SIZE as u64).min(file_end);
        if end < marker_end {
            // SAFETY: as above, for the end marker's bytes after the mark.
            unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(end as usize), 0, (marker_end - end) as usize) };
        }
        *tail = end;
        self.published.store(end, Ordering::Release);
        drop(tail);
        // Records, mark and end marker in one sync.
        let synced = self.synced.load(Ordering::Acquire);
        let through = marker_end.max(end);
        if synced < through {
            let flushed = io::flush_map(&self.map, &self.path, synced, through - synced);
            if let Err(error) = flushed {
                *failure = Some(error.to_string());
                drop(failure);
                self.announce_sync();
                return Err(error.into());
            }
        }
        self.synced.fetch_max(end, Ordering::AcqRel);
        drop(failure);
        self.announce_sync();
        self.release_file();
        Ok(())
    }

    /// Whether a sync of this segment ever failed (the store must then refuse
    /// writes until it is reopened and recovered).
    pub fn sync_failed(&self) -> bool {
        self.sync_failure.lock().is_some()
    }

    /// `len` published bytes at `offset`, or `None` if they are not all published.
    #[inline]
    pub fn read(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len as u64)?;
        if end > self.published() {
            return None;
        }
        // SAFETY: [offset, end) is below `published`: complete bytes that no one
        // writes again, inside a mapping that lives as long as `self`.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) })
    }

    /// Hints the processor to fetch every cache line of the bytes `offset .. offset
    /// + len` (a record about to be read) that lies in the published part.
    #[inline]
    pub fn prefetch(&self, offset: u64, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let start = offset & !63;
            let end = offset.saturating_add(len as u64).min(self.published());
            let mut line = start;
            while line < end {
                if let Some(byte) = self.read(line, 1) {
                    // SAFETY: the intrinsic is `unsafe` only for its target feature
                    // (SSE, which every x86_64 has); a prefetch never faults (not even
                    // on a page not yet read in) and has no architectural effect, and
                    // the pointer comes from published bytes of the live mapping.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            byte.as_ptr().cast::<i8>(),
                        );
                    }
                }
                line += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, len);
    }

    /// Whether `step` bytes (at least a page) have been published past the last sync or
    /// early writeback, so that the kernel should start writing them back
    /// ([`Segment::start_writeback`]). `true` once per step: the writer that sees it
    /// hands the work to the writeback worker. Only a writable log segment asks; it
    /// costs three loads while nothing is due.
    #[inline]
    pub fn wants_writeback(&self, step: u64) -> bool {
        if !self.writable || self.compacted {
            return false;
        }
        let from = self.written_back.load(Ordering::Relaxed).max(self.synced.load(Ordering::Relaxed));
        self.published() >= from.saturating_add(step.max(page_size()))
            && !self.writeback_asked.load(Ordering::Relaxed)
            && !self.writeback_asked.swap(true, Ordering::AcqRel)
    }

    /// Starts the kernel writing back the complete pages published since the last
    /// sync or early writeback, without waiting for them (`sync_file_range`). The
    /// sync that later makes them durable, a seal in the writer's section above all,
    /// then finds them written or on their way, instead of a whole segment's dirty
    /// pages at once. It makes nothing durable and claims nothing: durability is still
    /// only what a sync and its durable mark say. A segment sealed meanwhile (synced
    /// whole, its descriptor let go) is left alone.
    pub fn start_writeback(&self) {
        self.writeback_asked.store(false, Ordering::Release);
        if !self.writable || self.compacted || self.finished.load(Ordering::Acquire) {
            return;
        }
        let page = page_size();
        let from = self.written_back.load(Ordering::Acquire).max(self.synced.load(Ordering::Acquire)) / page * page;
        // Whole pages only: the last one is still being written.
        let to = self.published() / page * page;
        if to <= from {
            return;
        }
        // A descriptor of its own (`dup`), so that appends reserving blocks never wait
        // on the file's lock while the kernel queues the pages.
        let Some(file) = self.file.lock().as_ref().and_then(|file| file.try_clone().ok()) else { return };
        if let Err(error) = io::start_writeback(&file, from, to - from) {
            // The next sync meets the same trouble and reports it.
            tracing::warn!(file = %self.path.display(), from, to, %error, "an early writeback did not start");
            return;
        }
        self.written_back.fetch_max(to, Ordering::AcqRel);
    }

    /// Makes everything published so far durable; returns whether anything was synced.
    pub fn sync(&self) -> Result<bool> {
        self.sync_through(u64::MAX, &GroupCommit::default())
    }

    /// Makes everything published durable, the last durable mark included (which a
    /// plain sync leaves, since it holds no write): for a checkpoint, whose recorded
    /// end may lie just past that mark, and for the close, so that the next open knows
    /// the whole segment was durable. Appends a new mark only after syncing writes.
    pub fn settle(&self) -> Result<bool> {
        let (synced, published) = (self.synced.load(Ordering::Acquire), self.published());
        if !self.writable || !self.only_mark_unsynced(synced, published) {
            return self.sync_range(u64::MAX, &GroupCommit::default());
        }
        let mut failure = self.sync_failure.lock();
        if let Some(reason) = failure.as_ref() {
            return Err(Error::Io(std::io::Error::other(format!("an earlier sync of this segment failed: {reason}"))));
        }
        let flushed = io::flush_map(&self.map, &self.path, synced, published - synced);
        if let Err(error) = flushed {
            *failure = Some(error.to_string());
            return Err(error.into());
        }
        self.synced.fetch_max(published, Ordering::AcqRel);
        drop(failure);
        self.announce_sync();
        Ok(true)
    }

    /// After recovery made the segment durable up to its end: appends a durable mark
    /// saying so, so that damage to those bytes is told from a write that never
    /// reached the disk even if the next crash comes before any sync.
    pub fn mark_recovered(&self) {
        self.append_mark(self.synced.load(Ordering::Acquire));
    }

    /// Appends a durable mark claiming the bytes before `durable` (which a sync just
    /// made durable). A mark is optional: one that does not fit, or whose blocks
    /// cannot be reserved, is skipped.
    fn append_mark(&self, durable: u64) {
        if !self.marks {
            return;
        }
        let mut tail = self.tail.lock();
        let at = *tail;
        let end = at + DURABLE_MARK_SIZE as u64;
        if durable <= self.claimed.load(Ordering::Acquire)
            || self.finished.load(Ordering::Acquire)
            || end > self.capacity()
            || self.ensure_reserved(end).is_err()
        {
            return;
        }
        let mark = DurableMark { segment: self.id, at, durable }.encode();
        // SAFETY: as in `append`: [at, end) lies inside the mapping and below the
        // reserved end, at or above `published`, and the tail lock makes this the only
        // writer.
        unsafe { std::ptr::copy_nonoverlapping(mark.as_ptr(), self.map.as_mut_ptr().add(at as usize), mark.len()) };
        *tail = end;
        self.mark_at.store(at, Ordering::Release);
        self.claimed.fetch_max(durable, Ordering::AcqRel);
        self.published.store(end, Ordering::Release);
    }

    /// Makes sure a durable mark claims the writes before `end`, which are durable.
    fn cover(&self, end: u64) {
        if self.marks && self.unclaimed(end) {
            self.append_mark(self.synced.load(Ordering::Acquire));
        }
    }

    /// Whether some write before `end` is claimed by no durable mark. (If the bytes
    /// before `end` end with the last mark, it is the writes before that mark that
    /// need a claim: a mark need not claim itself.)
    fn unclaimed(&self, end: u64) -> bool {
        let mark_at = self.mark_at.load(Ordering::Acquire);
        let needed = if mark_at.saturating_add(DURABLE_MARK_SIZE as u64) == end { mark_at } else { end };
        self.claimed.load(Ordering::Acquire) < needed
    }

    /// Reserves the file's blocks up to `end` if they are not yet (under the tail
    /// lock).
    fn ensure_reserved(&self, end: u64) -> Result<()> {
        if end > self.reserved.load(Ordering::Acquire) {
            let wanted = end.div_ceil(RESERVE_STEP).saturating_mul(RESERVE_STEP).min(self.capacity());
            reserve(self.file.lock().as_ref().ok_or_else(|| closed(&self.path))?, &self.path, wanted)?;
            self.reserved.store(wanted, Ordering::Release);
        }
        Ok(())
    }

    /// Makes the bytes below `end` durable (and, while at it, everything published);
    /// returns whether this call ran an `msync`.
    ///
    /// This is the group commit. The caller that finds no sync running becomes the
    /// leader: while some of the `Sync` writes in flight (`group`) have not published
    /// a record this sync would cover, it waits briefly for them, then syncs everything
    /// published so far, records from other writers included. Callers that arrive while a sync runs are followers: they wait for it
    /// without queueing on its lock (each checks the `synced` mark on its own, so they
    /// return together instead of waking one another in turn), and return at once if it
    /// covered their record, or one of them leads the next sync.
    pub fn sync_through(&self, end: u64, group: &GroupCommit) -> Result<bool> {
        self.sync_range(end, group)
    }

    /// [`Segment::sync_through`]; after a sync it ran, appends a durable mark.
    fn sync_range(&self, end: u64, group: &GroupCommit) -> Result<bool> {
        let mut waits = 0u32;
        loop {
            if !self.writable {
                return Ok(false);
            }
            if self.synced.load(Ordering::Acquire) >= end {
                // Made durable by another caller's sync, whose mark may not be there
                // yet.
                self.cover(end);
                return Ok(false);
            }
            if let Some(mut failure) = self.sync_failure.try_lock() {
                if let Some(reason) = failure.as_ref() {
                    return Err(Error::Io(std::io::Error::other(format!(
                        "an earlier sync of this segment failed: {reason}"
                    ))));
                }
                let synced = self.synced.load(Ordering::Acquire);
                if end <= synced {
                    drop(failure);
                    self.cover(end);
                    return Ok(false);
                }
                // Gather: while some `Sync` writes in flight have not yet published a
                // record that needs a sync (they are appending, or are followers of
                // the last sync that have not yet returned for their next write),
                // give them a moment to join this sync: up to `GATHER`, against an
                // msync that takes 100 us or more here.
                let started = Instant::now();
                let mut covers = group.published.load(Ordering::Acquire);
                while group.active.load(Ordering::Acquire) as u64
                    > covers.saturating_sub(group.synced.load(Ordering::Acquire))
                    && started.elapsed() < GATHER
                {
                    std::thread::yield_now();
                    covers = group.published.load(Ordering::Acquire);
                }
                let published = self.published();
                if published <= synced || self.only_mark_unsynced(synced, published) {
                    drop(failure);
                    self.cover(synced);
                    return Ok(false);
                }
                let flushed = io::flush_map(&self.map, &self.path, synced, published - synced);
                if let Err(error) = &flushed {
                    *failure = Some(error.to_string());
                } else {
                    self.synced.store(published, Ordering::Release);
                    group.synced.fetch_max(covers, Ordering::AcqRel);
                }
                drop(failure);
                self.announce_sync();
                flushed?;
                self.append_mark(published);
                return Ok(true);
            }
            // A follower: the leader's sync takes 100 us or more. Yield a few times
            // (writers that still have to append get the core), then sleep until a
            // sync ends. Never queue on the sync lock itself: the leader holds it while
            // it gathers, and a follower it already covered must be free to return and
            // come back with its next write; and all followers wake at once.
            waits += 1;
            if waits < 4 {
                std::thread::yield_now();
                continue;
            }
            let guard = self.sync_wait.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked under `sync_wait`, which the leader takes to announce the end of
            // its sync: no wake-up is lost between this check and the wait.
            if self.synced.load(Ordering::Acquire) < end && self.sync_failure.is_locked() {
                drop(self.sync_done.wait_timeout(guard, Duration::from_millis(1)));
            }
        }
    }

    /// Wakes the followers waiting for a sync (called by the leader once `synced`
    /// moved, or the sync failed, and the sync lock is released).
    fn announce_sync(&self) {
        let _guard = self.sync_wait.lock().unwrap_or_else(PoisonError::into_inner);
        self.sync_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::{Decoded, RecordHeader};

    #[test]
    fn early_writeback_is_asked_once_a_step_and_never_after_the_seal() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 3, 1 << 20, false).unwrap();
        let start = SEGMENT_HEADER_SIZE as u64;
        let first = segment.append(&[&[1u8; 3000]]).unwrap().unwrap() as usize;
        assert!(!segment.wants_writeback(4096), "less than a step published");
        segment.append(&[&[2u8; 2000]]).unwrap().unwrap();
        assert!(segment.wants_writeback(4096), "a step published");
        assert!(!segment.wants_writeback(4096), "asked once until the writeback runs");
        segment.start_writeback();
        // Whole pages only: the one being written stays.
        let page = page_size();
        assert_eq!(segment.written_back(), (start + 5000) / page * page);
        assert!(!segment.wants_writeback(4096));
        segment.append(&[&[3u8; 4000]]).unwrap().unwrap();
        assert!(segment.wants_writeback(4096), "the next step");
        // A sync covers what a writeback would have started.
        assert!(segment.sync().unwrap());
        segment.start_writeback();
        assert!(!segment.wants_writeback(4096));
        let last = segment.append(&[&[4u8; 9000]]).unwrap().unwrap() as usize;
        segment.seal().unwrap();
        let before = segment.written_back();
        assert!(!segment.wants_writeback(4096), "a sealed segment was synced whole");
        // (The seal synced everything, so nothing is left to hand over either way.)
        segment.start_writeback();
        assert_eq!(segment.written_back(), before, "nothing is written back after the seal");
        // The bytes are the ones written, whatever the writeback did.
        let bytes = std::fs::read(dir.path().join(file_name(3))).unwrap();
        assert!(bytes[first..first + 3000] == [1u8; 3000][..]);
        assert!(bytes[last..last + 9000] == [4u8; 9000][..]);
        // The call itself, on a real file (a range past the file's end is no error).
        let file = std::fs::File::open(dir.path().join(file_name(3))).unwrap();
        io::start_writeback(&file, 0, 1 << 20).unwrap();
        assert!(io::start_writeback(&file, u64::MAX, 1).is_err(), "an offset past i64 is refused");
        // A compacted segment never asks.
        let compacted = Segment::create(dir.path(), 4, 1 << 20, true).unwrap();
        compacted.append(&[&[5u8; 10000]]).unwrap().unwrap();
        assert!(!compacted.wants_writeback(4096));
    }

    #[test]
    fn append_publish_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 7, 4096, false).unwrap();
        assert_eq!(segment.read(SEGMENT_HEADER_SIZE as u64, 1), None);
        let offset = segment.append(&[b"hello ", b"world"]).unwrap().unwrap();
        assert_eq!(offset, SEGMENT_HEADER_SIZE as u64);
        assert_eq!(segment.read(offset, 11), Some(&b"hello world"[..]));
        assert_eq!(segment.read(offset, 12), None);
        assert!(segment.append(&[&[0u8; 5000]]).unwrap().is_none());
        assert!(segment.sync().unwrap());
        assert!(!segment.sync().unwrap());
        drop(segment);
        let path = dir.path().join(file_name(7));
        let Opened::Segment(mut reopened) = Segment::open(&path, true).unwrap() else { panic!("blank") };
        assert_eq!(reopened.id(), 7);
        assert_eq!(&reopened.contents()[64..75], b"hello world");
        // Known durable through the header only: the records are made dirty again
        // (unchanged) before the sync.
        reopened.set_recovered_end(70, 80, 64, true).unwrap();
        assert_eq!(reopened.read(64, 6), Some(&b"hello "[..]));
        assert_eq!(&reopened.contents()[70..75], &[0u8; 5]);
        assert_eq!(parse_file_name(&file_name(0xabc)), Some(0xabc));
        assert_eq!(parse_file_name("junk.seg"), None);
    }

    #[test]
    fn a_sealed_segment_closes_its_descriptor_and_takes_no_more_appends() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 3, 1 << 16, false).unwrap();
        let offset = segment.append(&[b"kept"]).unwrap().unwrap();
        assert!(segment.holds_file());
        segment.seal().unwrap();
        assert!(!segment.holds_file(), "a sealed segment keeps no descriptor");
        assert_eq!(segment.append(&[b"more"]).unwrap(), None, "a sealed segment is never appended to");
        // The mapping outlives the descriptor.
        assert_eq!(segment.read(offset, 4), Some(&b"kept"[..]));
        assert!(!segment.sync().unwrap(), "sealing made everything durable");
        segment.seal().unwrap();
        let path = dir.path().join(file_name(3));
        let Opened::Segment(read_only) = Segment::open(&path, false).unwrap() else { panic!("blank") };
        assert!(!read_only.holds_file(), "a read-only segment keeps no descriptor");
        let Opened::Segment(writable) = Segment::open(&path, true).unwrap() else { panic!("blank") };
        assert!(writable.holds_file(), "recovery may still need to fsync it");
    }

    #[test]
    fn durable_marks_follow_syncs_and_need_no_sync_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 4, 1 << 16, false).unwrap();
        let record = segment.append(&[&[5u8; 100]]).unwrap().unwrap();
        assert!(segment.sync().unwrap());
        // A mark claiming the record's end follows it, unsynced but holding no write.
        let end = record + 100;
        assert_eq!(segment.published(), end + DURABLE_MARK_SIZE as u64);
        assert_eq!(segment.unsynced(), 0, "a mark alone is nothing left to sync");
        let mark = segment.read(end, DURABLE_MARK_SIZE).unwrap();
        let Decoded::Record { header, .. } = RecordHeader::decode(mark) else { panic!("no mark after the sync") };
        assert_eq!(DurableMark::check(&header, mark, 4, end), Some(DurableMark { segment: 4, at: end, durable: end }));
        // Syncing again neither syncs the mark nor appends another.
        assert!(!segment.sync().unwrap());
        assert_eq!(segment.published(), end + DURABLE_MARK_SIZE as u64);
        assert_eq!(segment.synced.load(Ordering::Acquire), end);
        // Settling makes the mark itself durable, and appends none.
        assert!(segment.settle().unwrap());
        assert_eq!(segment.synced.load(Ordering::Acquire), segment.published());
        assert_eq!(segment.published(), end + DURABLE_MARK_SIZE as u64);
        assert!(!segment.settle().unwrap());
        // An idle segment synced and settled again and again does not grow.
        for _ in 0..3 {
            segment.sync().unwrap();
            segment.settle().unwrap();
        }
        assert_eq!(segment.published(), end + DURABLE_MARK_SIZE as u64, "idle syncs appended marks");
        // A sealed segment takes no mark, whoever syncs it afterwards.
        segment.append(&[&[6u8; 10]]).unwrap().unwrap();
        segment.seal().unwrap();
        let sealed = segment.published();
        assert_eq!(segment.synced.load(Ordering::Acquire), sealed);
        assert!(!segment.sync().unwrap());
        assert_eq!(segment.published(), sealed, "a mark was appended to a sealed segment");
        // Compacted segments carry none either.
        let compacted = Segment::create(dir.path(), 5, 1 << 16, true).unwrap();
        let at = compacted.append(&[&[7u8; 10]]).unwrap().unwrap();
        assert!(compacted.sync().unwrap());
        assert_eq!(compacted.published(), at + 10);
    }

    #[test]
    fn one_sync_covers_every_record_published_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 1, 1 << 16, false).unwrap();
        let group = GroupCommit::default();
        let first = segment.append(&[&[1u8; 100]]).unwrap().unwrap() + 100;
        let second = segment.append(&[&[2u8; 100]]).unwrap().unwrap() + 100;
        // The first writer's sync runs an msync that also covers the second record,
        // so the second writer finds its record durable without one: group commit.
        assert!(segment.sync_through(first, &group).unwrap());
        assert!(!segment.sync_through(second, &group).unwrap());
        assert_eq!(segment.unsynced(), 0);
        assert!(!segment.sync().unwrap(), "nothing left to sync");
    }

    #[test]
    fn a_finished_compacted_segment_is_truncated_and_reopens_as_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 3, 1 << 20, true).unwrap();
        let offset = segment.append(&[&[9u8; 100]]).unwrap().unwrap();
        segment.finish().unwrap();
        assert!(segment.append(&[b"more"]).unwrap().is_none(), "appended to a finished segment");
        assert_eq!(segment.read(offset, 100), Some(&[9u8; 100][..]));
        let path = dir.path().join(file_name(3));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_HEADER_SIZE as u64 + 100);
        drop(segment);
        let Opened::Segment(mut reopened) = Segment::open(&path, true).unwrap() else { panic!("blank") };
        assert!(reopened.is_compacted());
        assert_eq!(reopened.contents().len(), SEGMENT_HEADER_SIZE + 100);
    }

    #[test]
    fn blank_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join(file_name(1));
        std::fs::write(&blank, [0u8; 100]).unwrap();
        assert!(matches!(Segment::open(&blank, true).unwrap(), Opened::Blank { records: false }));
        let mut lost_header = vec![0u8; 100];
        lost_header[70] = 1;
        std::fs::write(&blank, lost_header).unwrap();
        assert!(matches!(Segment::open(&blank, true).unwrap(), Opened::Blank { records: true }));
        let foreign = dir.path().join(file_name(2));
        std::fs::write(&foreign, [1u8; 100]).unwrap();
        assert!(matches!(Segment::open(&foreign, true), Err(Error::Corruption { offset: 0, .. })));
    }
}
