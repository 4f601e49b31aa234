//! Byte layouts of every on-disk item, each with `encode`/`decode`. The prose
//! specification, with diagrams, is `docs/FORMAT.md`; the constants and `const`
//! assertions here pin the same sizes and offsets. All integers are little-endian.

use crate::compression;
use crate::options::Compression;

/// Current format version of every file this build writes. Version 6 lets compacted
/// segments hold tombstones (delete records, in key order with the puts): an
/// incremental compaction that leaves older compacted segments in place must carry a
/// deleted key's tombstone while one of them may still hold an older put of it (a
/// writable open of an older store raises its identity file to 6, so that an older
/// build, which refuses a delete in a compacted segment, refuses the store). Version 5 added value
/// compression (record flags bits 0-1, see `compression.rs`; a writable open of an older
/// store raises its identity file to 5, so that an older build, which cannot read a
/// compressed value, refuses it). Version 4 added column
/// families: the `FAMILIES` catalog, checkpoint sections per family, manifest entries
/// that name families (a writable open of an older store raises its identity file to
/// 4, so that an older build, which would skip other families' records, refuses it).
/// Version 3 added durable
/// marks ([`RecordKind::Durable`]) to log segments, which let recovery tell bytes
/// that never reached the disk from bytes that did and were damaged; version 2 added
/// compacted segments (segment header flag [`SEGMENT_COMPACTED`]) and the `MANIFEST`
/// that lists them. Version 1 to 3 files are still read.
pub const FORMAT_VERSION: u32 = 6;
/// The first version whose log segments carry durable marks.
pub const DURABLE_MARKS_VERSION: u32 = 3;
/// The first version whose compacted segments may hold tombstones.
pub const COMPACTED_TOMBSTONES_VERSION: u32 = 6;

/// Segment header flag: the segment was written by compaction (puts, and from version
/// 6 tombstones, in key order) and is live only while the manifest lists it.
pub const SEGMENT_COMPACTED: u32 = 1;
/// Segment header flag bits 1-2 (version 5): in a compacted segment, the value
/// compression its compaction wrote with (a `compression.rs` flag: 0 none, 1 LZ4, 2
/// zstd), so that a compaction knows whether a store already compacted matches the
/// current setting.
pub const SEGMENT_COMPRESSION_BITS: u32 = 0b110;
/// Shift of [`SEGMENT_COMPRESSION_BITS`].
pub const SEGMENT_COMPRESSION_SHIFT: u32 = 1;
/// Every segment header flag this build knows.
const KNOWN_SEGMENT_FLAGS: u32 = SEGMENT_COMPACTED | SEGMENT_COMPRESSION_BITS;

/// Magic number at the start of the store identity file.
pub const STORE_MAGIC: [u8; 8] = *b"ALEXSTOR";
/// Magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ALEXSSEG";

/// Size of the store identity file.
pub const STORE_HEADER_SIZE: usize = 32;
/// Size of a segment file's header; the first record starts here.
pub const SEGMENT_HEADER_SIZE: usize = 64;
/// Size of a record header; the value follows it.
pub const RECORD_HEADER_SIZE: usize = 28;
/// Size of a batch record's value: record count (u32) and body length (u64).
pub const BATCH_DESCRIPTOR_SIZE: usize = 12;
/// Size of a durable mark: a record header and the segment id (u32).
pub const DURABLE_MARK_SIZE: usize = RECORD_HEADER_SIZE + 4;

const _: () = assert!(RECORD_HEADER_SIZE == 4 + 1 + 1 + 2 + 4 + 8 + 8);
const _: () = assert!(SEGMENT_HEADER_SIZE % 8 == 0 && STORE_HEADER_SIZE % 8 == 0);

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A key and its new value.
    Put = 1,
    /// A key's deletion (tombstone); no value.
    Delete = 2,
    /// The header of an atomic batch: its value is a `BatchDescriptor`, and the
    /// batch's records follow it.
    Batch = 3,
    /// A durable mark (format version 3): not a write. It says that the segment's
    /// bytes before a given offset were on stable storage when it was appended; see
    /// `DurableMark`.
    Durable = 4,
    /// A zstd dictionary (format version 5): the first record of a compacted segment
    /// whose values with compression flag 3 were compressed with it. Not a write:
    /// family 0, key the dictionary's id, sequence 0, the dictionary as its value.
    Dictionary = 5,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::Batch),
            4 => Some(RecordKind::Durable),
            5 => Some(RecordKind::Dictionary),
            _ => None,
        }
    }
}

/// A durable mark: appended to a log segment after a sync of it completed, it records
/// how far the segment was durable. It is a record of kind [`RecordKind::Durable`]
/// whose header fields are bound to where it lies, so that bytes copied from elsewhere
/// (a value holding another store's marks) never pass for one:
///
/// ```text
/// header: kind 4, flags 0, column family 0, value len 4,
///         sequence = the durable end (offset), key = the mark's own offset
/// value:  the segment id (u32)
/// ```
///
/// Valid only if its CRC matches, it lies at the offset its key states, in the segment
/// its value names, and the end it claims lies at or before itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableMark {
    /// The segment it lies in.
    pub segment: u32,
    /// Its own offset in the segment.
    pub at: u64,
    /// Bytes of the segment before this offset were durable when it was appended.
    pub durable: u64,
}

impl DurableMark {
    /// The mark's bytes.
    pub fn encode(&self) -> [u8; DURABLE_MARK_SIZE] {
        let value = self.segment.to_le_bytes();
        let header = RecordHeader::new(RecordKind::Durable, 0, self.at as i64, self.durable, 4).encode(&value);
        let mut bytes = [0u8; DURABLE_MARK_SIZE];
        bytes[..RECORD_HEADER_SIZE].copy_from_slice(&header);
        bytes[RECORD_HEADER_SIZE..].copy_from_slice(&value);
        bytes
    }

    /// The mark a decoded record of kind `Durable` at `at` of `segment` is, if it is a
    /// valid one there (`record` holds its header and value).
    pub fn check(header: &RecordHeader, record: &[u8], segment: u32, at: u64) -> Option<DurableMark> {
        let value = record.get(RECORD_HEADER_SIZE..)?;
        let named = u32::from_le_bytes(value.try_into().ok()?);
        let valid = header.kind == RecordKind::Durable
            && header.flags == 0
            && header.column_family == 0
            && named == segment
            && header.key as u64 == at
            && header.sequence <= at
            && header.sequence >= SEGMENT_HEADER_SIZE as u64;
        valid.then_some(DurableMark { segment, at, durable: header.sequence })
    }
}

/// The fixed part of a record.
///
/// ```text
/// 0       4      5       6        8           12         20     28
/// +-------+------+-------+--------+-----------+----------+------+=========+
/// | crc32c| kind | flags | column | value len | sequence | key  | value   |
/// |  u32  |  u8  |  u8   | family |    u32    |   u64    | i64  | (len B) |
/// |       |      |       |  u16   |           |          |      |         |
/// +-------+------+-------+--------+-----------+----------+------+=========+
/// ```
///
/// The CRC-32C covers bytes 4..28 and the value. A record counts as broken when the
/// kind is unknown, the value would run past the end of the segment, or the CRC does
/// not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the record is.
    pub kind: RecordKind,
    /// Bit flags; bits 0-1 give the value's compression (0 none, 1 LZ4, 2 zstd, 3
    /// zstd with the segment's dictionary).
    pub flags: u8,
    /// Column family id; 0 is the default family.
    pub column_family: u16,
    /// Length of the value bytes that follow.
    pub value_len: u32,
    /// Sequence number of the write (a batch's records share their batch's).
    pub sequence: u64,
    /// The key (0 for batch headers).
    pub key: i64,
}

/// The outcome of reading a record header at some offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed record whose checksum matches; `len` is header plus value.
    Record {
        /// The header.
        header: RecordHeader,
        /// Total bytes of the record.
        len: usize,
    },
    /// Only zero bytes: the end of the written part of the segment.
    End,
    /// Not a valid record.
    Invalid(String),
}

impl RecordHeader {
    /// The header of a record of `kind` with no flags.
    pub fn new(kind: RecordKind, column_family: u16, key: i64, sequence: u64, value_len: u32) -> Self {
        RecordHeader { kind, flags: 0, column_family, value_len, sequence, key }
    }

    /// The total encoded length of the record (header and value).
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_SIZE + self.value_len as usize
    }

    /// The header's bytes with the CRC of the header and `value` filled in.
    pub fn encode(&self, value: &[u8]) -> [u8; RECORD_HEADER_SIZE] {
        let mut bytes = [0u8; RECORD_HEADER_SIZE];
        bytes[4] = self.kind as u8;
        bytes[5] = self.flags;
        bytes[6..8].copy_from_slice(&self.column_family.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.value_len.to_le_bytes());
        bytes[12..20].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[20..28].copy_from_slice(&self.key.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[4..]), value);
        bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads the record starting at `bytes[0]`; `bytes` runs to the end of the written
    /// region (so a value running past it is invalid).
    pub fn decode(bytes: &[u8]) -> Decoded {
        let Some(header) = bytes.get(..RECORD_HEADER_SIZE) else {
            return if bytes.iter().all(|&byte| byte == 0) {
                Decoded::End
            } else {
                Decoded::Invalid("record header cut short".into())
            };
        };
        if header.iter().all(|&byte| byte == 0) {
            return Decoded::End;
        }
        let kind = match RecordKind::from_byte(header[4]) {
            Some(kind) => kind,
            None => return Decoded::Invalid(format!("unknown record kind {}", header[4])),
        };
        let read_u32 = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let read_u64 = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let parsed = RecordHeader {
            kind,
            flags: header[5],
            column_family: u16::from_le_bytes([header[6], header[7]]),
            value_len: read_u32(8),
            sequence: read_u64(12),
            key: read_u64(20) as i64,
        };
        let len = parsed.record_len();
        let Some(record) = bytes.get(..len) else {
            return Decoded::Invalid(format!("value of {} bytes runs past the end of the segment", parsed.value_len));
        };
        let stored = read_u32(0);
        let computed = crc32c::crc32c(&record[4..]);
        if stored != computed {
            return Decoded::Invalid(format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
        }
        if let Some(reason) = parsed.flags_problem() {
            return Decoded::Invalid(reason);
        }
        Decoded::Record { header: parsed, len }
    }

    /// The header with its value's compression flag set to `flag` (a
    /// `compression.rs` flag).
    pub fn with_compression(mut self, flag: u8) -> Self {
        self.flags = (self.flags & !compression::COMPRESSION_BITS) | (flag & compression::COMPRESSION_BITS);
        self
    }

    /// The value's compression flag (`compression::RAW`, 0, for a value stored as given).
    #[inline]
    pub fn compression(&self) -> u8 {
        self.flags & compression::COMPRESSION_BITS
    }

    /// What is wrong with the flags, if anything: bits this build does not know, an
    /// unknown compression, or compression on a record that holds no user value.
    fn flags_problem(&self) -> Option<String> {
        let compression = self.compression();
        if self.flags & !compression::COMPRESSION_BITS != 0 {
            Some(format!("unknown record flags {:#04x}", self.flags))
        } else if compression != compression::RAW && self.kind != RecordKind::Put {
            Some(format!("a {:?} record with compression flags {:#04x}", self.kind, self.flags))
        } else {
            None
        }
    }
}

/// The value of a batch header record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDescriptor {
    /// Records in the batch.
    pub count: u32,
    /// Bytes of those records, which follow the batch header immediately.
    pub body_len: u64,
}

impl BatchDescriptor {
    /// Encoded bytes.
    pub fn encode(&self) -> [u8; BATCH_DESCRIPTOR_SIZE] {
        let mut bytes = [0u8; BATCH_DESCRIPTOR_SIZE];
        bytes[0..4].copy_from_slice(&self.count.to_le_bytes());
        bytes[4..12].copy_from_slice(&self.body_len.to_le_bytes());
        bytes
    }

    /// Decodes a batch header's value.
    pub fn decode(value: &[u8]) -> Option<BatchDescriptor> {
        if value.len() != BATCH_DESCRIPTOR_SIZE {
            return None;
        }
        let count = u32::from_le_bytes(value.get(0..4)?.try_into().ok()?);
        let body_len = u64::from_le_bytes(value.get(4..12)?.try_into().ok()?);
        Some(BatchDescriptor { count, body_len })
    }
}

/// The header of a segment file.
///
/// ```text
/// 0        8         12       16       20       24         32          60      64
/// +--------+---------+--------+--------+--------+----------+-----------+-------+
/// | magic  | version | header | segment| flags  | capacity | reserved  | crc32c|
/// |"ALEXSS"|   u32   |  size  |  id    |  u32   |   u64    | (zeros)   |  u32  |
/// |  "EG"  |         |  u32   |  u32   |        |          |           |       |
/// +--------+---------+--------+--------+--------+----------+-----------+-------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u32,
    /// The segment's id; its file is named after it.
    pub id: u32,
    /// Bit flags: [`SEGMENT_COMPACTED`].
    pub flags: u32,
    /// The file's size in bytes, header included (a compacted segment's file is
    /// truncated to its last record once written).
    pub capacity: u64,
}

/// Why a file header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Every byte is zero: the file was created but its header never written.
    Blank,
    /// The bytes are not such a header.
    Invalid(String),
    /// A valid header of a newer format version.
    NewerVersion(u32),
}

impl SegmentHeader {
    /// Encoded bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_SIZE] {
        let mut bytes = [0u8; SEGMENT_HEADER_SIZE];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[12..16].copy_from_slice(&(SEGMENT_HEADER_SIZE as u32).to_le_bytes());
        bytes[16..20].copy_from_slice(&self.id.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.flags.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and checks a segment header.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let header =
            bytes.get(..SEGMENT_HEADER_SIZE).ok_or(HeaderError::Invalid("file shorter than a header".into()))?;
        if header.iter().all(|&byte| byte == 0) {
            return Err(HeaderError::Blank);
        }
        if header[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Invalid("not a segment file (bad magic number)".into()));
        }
        let field = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        if field(60) != crc32c::crc32c(&header[..60]) {
            return Err(HeaderError::Invalid("segment header checksum mismatch".into()));
        }
        let version = field(8);
        if version > FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(version));
        }
        if version == 0 || field(12) as usize != SEGMENT_HEADER_SIZE {
            return Err(HeaderError::Invalid(format!("unsupported segment header (version {version})")));
        }
        let flags = field(20);
        let compression = (flags & SEGMENT_COMPRESSION_BITS) >> SEGMENT_COMPRESSION_SHIFT;
        if flags & !KNOWN_SEGMENT_FLAGS != 0
            || compression > u32::from(compression::ZSTD)
            || (compression != 0 && flags & SEGMENT_COMPACTED == 0)
        {
            return Err(HeaderError::Invalid(format!("unknown segment flags {flags:#x}")));
        }
        let mut capacity = [0u8; 8];
        capacity.copy_from_slice(&header[24..32]);
        Ok(SegmentHeader { version, id: field(16), flags, capacity: u64::from_le_bytes(capacity) })
    }
}

/// The store identity file, `ALEXSTORAGE`, which marks a directory as a store.
///
/// ```text
/// 0          8         12     13       17              28       32
/// +----------+---------+------+--------+---------------+--------+
/// |  magic   | version | comp-| zstd   | reserved      | crc32c |
/// |"ALEXSTOR"|   u32   | ress.| level  | (zeros)       |  u32   |
/// |          |         |  u8  |  i32   |               |        |
/// +----------+---------+------+--------+---------------+--------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreHeader {
    /// Format version of the store.
    pub version: u32,
    /// The value compression the store writes with (version 5; zeros before: none):
    /// kept for opens that do not choose one.
    pub compression: Compression,
}

impl StoreHeader {
    /// The header of a store of this build's version writing with `compression`.
    pub fn current(compression: Compression) -> StoreHeader {
        StoreHeader { version: FORMAT_VERSION, compression }
    }
}

impl StoreHeader {
    /// Encoded bytes.
    pub fn encode(&self) -> [u8; STORE_HEADER_SIZE] {
        let mut bytes = [0u8; STORE_HEADER_SIZE];
        bytes[0..8].copy_from_slice(&STORE_MAGIC);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[12] = compression::flag_of(self.compression);
        if let Compression::Zstd(level) = self.compression {
            bytes[13..17].copy_from_slice(&level.to_le_bytes());
        }
        let crc = crc32c::crc32c(&bytes[..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and checks a store identity file.
    pub fn decode(bytes: &[u8]) -> Result<StoreHeader, HeaderError> {
        if bytes.len() != STORE_HEADER_SIZE || bytes[0..8] != STORE_MAGIC {
            return Err(HeaderError::Invalid("not an AlexStorage identity file".into()));
        }
        let field = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        if field(28) != crc32c::crc32c(&bytes[..28]) {
            return Err(HeaderError::Invalid("identity file checksum mismatch".into()));
        }
        let version = match field(8) {
            0 => return Err(HeaderError::Invalid("format version 0".into())),
            version if version > FORMAT_VERSION => return Err(HeaderError::NewerVersion(version)),
            version => version,
        };
        let level = field(13) as i32;
        let compression = match bytes[12] {
            compression::RAW if level == 0 => Compression::None,
            compression::LZ4 if level == 0 => Compression::Lz4,
            compression::ZSTD if compression::zstd_levels().contains(&level) => Compression::Zstd(level),
            kind => return Err(HeaderError::Invalid(format!("unknown compression {kind} (level {level})"))),
        };
        if bytes[17..28].iter().any(|&byte| byte != 0) {
            return Err(HeaderError::Invalid("reserved bytes are not zero".into()));
        }
        Ok(StoreHeader { version, compression })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_marks_are_bound_to_their_place() {
        let mark = DurableMark { segment: 9, at: 4096, durable: 4000 };
        let bytes = mark.encode();
        let Decoded::Record { header, len } = RecordHeader::decode(&bytes) else { panic!("mark does not decode") };
        assert_eq!(len, DURABLE_MARK_SIZE);
        assert_eq!(DurableMark::check(&header, &bytes, 9, 4096), Some(mark));
        // Elsewhere, or in another segment: not a mark of this place.
        assert_eq!(DurableMark::check(&header, &bytes, 9, 4128), None);
        assert_eq!(DurableMark::check(&header, &bytes, 8, 4096), None);
        // A claim past itself is refused.
        let forward = DurableMark { segment: 9, at: 4096, durable: 5000 }.encode();
        let Decoded::Record { header, .. } = RecordHeader::decode(&forward) else { panic!("mark does not decode") };
        assert_eq!(DurableMark::check(&header, &forward, 9, 4096), None);
    }

    fn put(key: i64, value: &[u8]) -> Vec<u8> {
        let header = RecordHeader {
            kind: RecordKind::Put,
            flags: 0,
            column_family: 3,
            value_len: value.len() as u32,
            sequence: 77,
            key,
        };
        let mut bytes = header.encode(value).to_vec();
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn record_flags_other_than_a_known_compression_of_a_put_are_invalid() {
        let value = b"stored";
        let record = |kind: RecordKind, flags: u8| {
            let header = RecordHeader { kind, flags, column_family: 0, value_len: 6, sequence: 1, key: 2 };
            let mut bytes = header.encode(value).to_vec();
            bytes.extend_from_slice(value);
            bytes
        };
        for flags in [compression::RAW, compression::LZ4, compression::ZSTD, compression::ZSTD_DICTIONARY] {
            match RecordHeader::decode(&record(RecordKind::Put, flags)) {
                Decoded::Record { header, .. } => assert_eq!(header.compression(), flags),
                other => panic!("flags {flags}: {other:?}"),
            }
        }
        for flags in [4, 0x80, 0x05, 0x07] {
            assert!(matches!(RecordHeader::decode(&record(RecordKind::Put, flags)), Decoded::Invalid(_)), "{flags}");
        }
        for kind in [RecordKind::Delete, RecordKind::Batch, RecordKind::Durable] {
            assert!(matches!(RecordHeader::decode(&record(kind, compression::LZ4)), Decoded::Invalid(_)), "{kind:?}");
        }
        let header = RecordHeader::new(RecordKind::Put, 0, 1, 1, 0).with_compression(compression::ZSTD);
        assert_eq!((header.flags, header.with_compression(compression::RAW).flags), (2, 0));
    }

    #[test]
    fn record_round_trip_and_every_single_bit_flip_is_caught() {
        let bytes = put(-9, b"hello");
        match RecordHeader::decode(&bytes) {
            Decoded::Record { header, len } => {
                assert_eq!(len, bytes.len());
                assert_eq!((header.key, header.sequence, header.column_family), (-9, 77, 3));
                assert_eq!(header.kind, RecordKind::Put);
            }
            other => panic!("{other:?}"),
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(RecordHeader::decode(&flipped), Decoded::Invalid(_)), "bit {bit} went unnoticed");
        }
    }

    #[test]
    fn torn_records_and_zeros() {
        let bytes = put(1, &[7u8; 40]);
        for cut in 1..bytes.len() {
            assert!(matches!(RecordHeader::decode(&bytes[..cut]), Decoded::Invalid(_)), "cut at {cut}");
        }
        assert_eq!(RecordHeader::decode(&[0u8; 100]), Decoded::End);
        assert_eq!(RecordHeader::decode(&[0u8; 3]), Decoded::End);
        assert_eq!(RecordHeader::decode(&[]), Decoded::End);
    }

    #[test]
    fn headers_round_trip_and_refuse_newer_versions() {
        let segment = SegmentHeader { version: FORMAT_VERSION, id: 12, flags: SEGMENT_COMPACTED, capacity: 1 << 20 };
        assert_eq!(SegmentHeader::decode(&segment.encode()), Ok(segment));
        let newer = SegmentHeader { version: FORMAT_VERSION + 1, ..segment };
        assert_eq!(SegmentHeader::decode(&newer.encode()), Err(HeaderError::NewerVersion(FORMAT_VERSION + 1)));
        assert_eq!(SegmentHeader::decode(&[0u8; 64]), Err(HeaderError::Blank));
        let mut broken = segment.encode();
        broken[30] ^= 1;
        assert!(matches!(SegmentHeader::decode(&broken), Err(HeaderError::Invalid(_))));
        let unknown_flag = SegmentHeader { flags: 8, ..segment };
        assert!(matches!(SegmentHeader::decode(&unknown_flag.encode()), Err(HeaderError::Invalid(_))));
        let lz4 = SegmentHeader { flags: SEGMENT_COMPACTED | 1 << SEGMENT_COMPRESSION_SHIFT, ..segment };
        assert_eq!(SegmentHeader::decode(&lz4.encode()), Ok(lz4));
        let unknown_compression = SegmentHeader { flags: SEGMENT_COMPACTED | SEGMENT_COMPRESSION_BITS, ..segment };
        assert!(matches!(SegmentHeader::decode(&unknown_compression.encode()), Err(HeaderError::Invalid(_))));
        let log_with_compression = SegmentHeader { flags: 1 << SEGMENT_COMPRESSION_SHIFT, ..segment };
        assert!(matches!(SegmentHeader::decode(&log_with_compression.encode()), Err(HeaderError::Invalid(_))));
        assert!(matches!(SegmentHeader::decode(&unknown_flag.encode()), Err(HeaderError::Invalid(_))));
        let version_1 = SegmentHeader { version: 1, flags: 0, ..segment };
        assert_eq!(SegmentHeader::decode(&version_1.encode()), Ok(version_1));
        let store = StoreHeader::current(Compression::None);
        for compression in [Compression::Lz4, Compression::Zstd(-7), Compression::Zstd(19)] {
            let header = StoreHeader::current(compression);
            assert_eq!(StoreHeader::decode(&header.encode()), Ok(header));
        }
        let mut unknown = StoreHeader::current(Compression::Lz4).encode();
        unknown[12] = 3;
        let crc = crc32c::crc32c(&unknown[..28]);
        unknown[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(StoreHeader::decode(&unknown), Err(HeaderError::Invalid(_))));
        assert_eq!(StoreHeader::decode(&store.encode()), Ok(store));
        assert!(matches!(StoreHeader::decode(b"hello"), Err(HeaderError::Invalid(_))));
        let descriptor = BatchDescriptor { count: 3, body_len: 999 };
        assert_eq!(BatchDescriptor::decode(&descriptor.encode()), Some(descriptor));
        assert_eq!(BatchDescriptor::decode(&[1, 2]), None);
    }
}
