//! Reading one record at a known location: the checks every read path shares (gets,
//! snapshots, ranges, compaction's copy).

use std::path::Path;
use std::sync::Arc;

use crate::compression;
use crate::log::format::{Decoded, RecordHeader, RecordKind, RECORD_HEADER_SIZE};
use crate::log::segment::Segment;
use crate::log::Location;
use crate::value::Lease;
use crate::{Error, Result, Value};

/// The length (header included) of the record at `location` of `segment`.
#[inline]
pub(crate) fn record_len(segment: &Segment, location: Location) -> Option<u64> {
    let header = segment.read(u64::from(location.offset()), RECORD_HEADER_SIZE)?;
    let value_len = u32::from_le_bytes(header.get(8..12)?.try_into().ok()?);
    Some(RECORD_HEADER_SIZE as u64 + u64::from(value_len))
}

/// The sequence number in the header of the record at `location` of `segment`.
#[inline]
pub(crate) fn record_sequence(segment: &Segment, location: Location) -> Option<u64> {
    let header = segment.read(u64::from(location.offset()), RECORD_HEADER_SIZE)?;
    Some(u64::from_le_bytes(header.get(12..20)?.try_into().ok()?))
}

/// Reads and checks the record of `key` of the family with id `family` at
/// `location`: its sequence and its value.
#[inline]
pub(crate) fn read_record(
    store: &Path,
    location: Location,
    lease: Option<Arc<Lease>>,
    family: u16,
    key: i64,
) -> Result<(u64, Value)> {
    let (sequence, value) = read_record_up_to(store, location, lease, family, key, u64::MAX)?;
    match value {
        Some(value) => Ok((sequence, value)),
        None => Err(Error::corruption(store, u64::from(location.offset()), "record newer than every sequence")),
    }
}

/// As [`read_record`], but the value only if the record's sequence is at most
/// `newest` (a snapshot's): a newer record's value is neither decompressed nor
/// returned (`None`), so a snapshot never pays for, or fails on, a version it does
/// not see.
#[inline]
pub(crate) fn read_record_up_to(
    store: &Path,
    location: Location,
    lease: Option<Arc<Lease>>,
    family: u16,
    key: i64,
    newest: u64,
) -> Result<(u64, Option<Value>)> {
    let Some(lease) = lease else { return Err(missing_segment(store, location)) };
    let (header, record) = checked_record(lease.segment(), location, family, key)?;
    if header.sequence > newest {
        return Ok((header.sequence, None));
    }
    let value_len = record.len() - RECORD_HEADER_SIZE;
    if header.compression() != compression::RAW {
        let stored = record.get(RECORD_HEADER_SIZE..).unwrap_or(&[]);
        return Ok((header.sequence, Some(Value::owned(decompress(lease.segment(), location, header, stored)?))));
    }
    let offset = u64::from(location.offset()) + RECORD_HEADER_SIZE as u64;
    Ok((header.sequence, Some(Value::mapped(lease, offset, value_len))))
}

/// The value of the checked record with `header` at `location` of `segment`, stored
/// compressed as `stored`, decompressed; damage is `Error::Corruption` at the record.
#[cold]
pub(crate) fn decompress(
    segment: &Segment,
    location: Location,
    header: RecordHeader,
    stored: &[u8],
) -> Result<Arc<[u8]>> {
    let dictionary = match header.compression() {
        compression::ZSTD_DICTIONARY => Some(segment.dictionary()?),
        _ => None,
    };
    compression::decompress(header.compression(), stored, dictionary.as_deref())
        .map_err(|reason| Error::corruption(segment.path(), u64::from(location.offset()), reason))
}

/// The error for a location whose segment the store does not have.
pub(crate) fn missing_segment(store: &Path, location: Location) -> Error {
    let reason = format!("index points into segment {} which does not exist", location.segment());
    Error::corruption(store, u64::from(location.offset()), reason)
}

/// The whole record of `key` of family `family` at `location` of `segment` (header
/// and value), checked: published, its checksum matching, a put of that key in that
/// family (its flags known: `RecordHeader::decode` checks them).
#[inline(always)]
pub(crate) fn checked_record(
    segment: &Segment,
    location: Location,
    family: u16,
    key: i64,
) -> Result<(RecordHeader, &[u8])> {
    let offset = u64::from(location.offset());
    let corrupt = |reason: String| Error::corruption(segment.path(), offset, reason);
    let header =
        segment.read(offset, RECORD_HEADER_SIZE).ok_or_else(|| corrupt("record header not in the log".into()))?;
    let value_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let record = segment
        .read(offset, RECORD_HEADER_SIZE + value_len)
        .ok_or_else(|| corrupt(format!("value of {value_len} bytes runs past the written log")))?;
    match RecordHeader::decode(record) {
        Decoded::Record { header, .. }
            if header.key == key && header.kind == RecordKind::Put && header.column_family == family =>
        {
            Ok((header, record))
        }
        Decoded::Record { header, .. } => Err(corrupt(format!(
            "index expects a put of key {key} in family {family}, record is a {:?} of {} in family {}",
            header.kind, header.key, header.column_family
        ))),
        Decoded::Invalid(reason) => Err(corrupt(reason)),
        Decoded::End => Err(corrupt("record is all zeros".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::format::SEGMENT_HEADER_SIZE;

    #[test]
    fn a_record_is_read_only_as_the_family_and_key_it_belongs_to() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 1, 1 << 16, false).unwrap();
        let header = RecordHeader::new(RecordKind::Put, 2, 5, 1, 3);
        let offset = segment.append(&[&header.encode(b"abc"), b"abc"]).unwrap().unwrap();
        assert_eq!(offset, SEGMENT_HEADER_SIZE as u64);
        let location = Location::new(1, offset as u32);
        let (found, record) = checked_record(&segment, location, 2, 5).unwrap();
        assert_eq!((found.column_family, found.key, &record[RECORD_HEADER_SIZE..]), (2, 5, &b"abc"[..]));
        for (family, key) in [(1, 5), (0, 5), (2, 6)] {
            let error = checked_record(&segment, location, family, key).unwrap_err();
            assert!(matches!(error, Error::Corruption { .. }), "read as ({family}, {key}): {error}");
        }
    }

    /// A compressed value is decompressed into an owned `Value`; one whose checksum
    /// matches but whose compressed bytes are damaged (a bug, or a crafted file) is
    /// `Error::Corruption` naming the segment and the record's offset.
    #[test]
    fn compressed_values_are_decompressed_and_damage_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let segment = Arc::new(Segment::create(dir.path(), 1, 1 << 16, false).unwrap());
        let leases = crate::value::Leases::new(Arc::clone(&segment));
        let original = b"compressible compressible compressible compressible".repeat(4);
        let mut stored = Vec::new();
        let flag = compression::compress(crate::Compression::Lz4, &original, &mut stored);
        assert_eq!(flag, compression::LZ4);
        let append = |key: i64, value: &[u8]| {
            let header = RecordHeader::new(RecordKind::Put, 0, key, 1, value.len() as u32).with_compression(flag);
            Location::new(1, segment.append(&[&header.encode(value), value]).unwrap().unwrap() as u32)
        };
        let good = append(1, &stored);
        let mut damaged = stored.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        damaged.truncate(last - 3);
        let bad = append(2, &damaged);

        let (sequence, value) = read_record(dir.path(), good, Some(leases.lease()), 0, 1).unwrap();
        assert_eq!((sequence, &*value), (1, &original[..]));
        assert!(!value.is_zero_copy());
        match read_record(dir.path(), bad, Some(leases.lease()), 0, 2) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!((file.as_path(), offset), (segment.path(), u64::from(bad.offset())));
            }
            other => panic!("{other:?}"),
        }
    }
}
