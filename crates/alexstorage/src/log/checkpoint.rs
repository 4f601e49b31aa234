//! Index checkpoints: an image of the index's (key, location) pairs at a known point
//! of the log, so that opening a large store replays only the log after it. The
//! layout is in `docs/FORMAT.md`; this module knows locations, not the index.

use std::path::Path;

use super::io;
use crate::Result;

/// The checkpoint's file name.
pub const CHECKPOINT_FILE: &str = "CHECKPOINT";
/// Magic number at the start of a checkpoint.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"ALEXCKPT";
/// Format version of checkpoints this build writes and reads (version 1 checkpoints,
/// which lack the manifest generation, are ignored: the next open replays the log).
pub const CHECKPOINT_VERSION: u32 = 2;
/// Size of the checkpoint header.
pub const CHECKPOINT_HEADER_SIZE: usize = 64;
const SEGMENT_ENTRY_SIZE: usize = 12;
/// Bytes reserved per entry up front (entries take 2 to 20 bytes).
const ENTRY_SIZE_HINT: usize = 10;

/// Maps keys to `u64` preserving order (so that sorted keys have small differences).
fn key_offset(key: i64) -> u64 {
    (key as u64) ^ (1 << 63)
}

/// Appends `value` as an LEB128 varint.
fn put_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// Reads an LEB128 varint at `*at`, advancing it; `None` if cut short or too long.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A decoded checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Highest sequence number included.
    pub sequence: u64,
    /// The manifest generation its locations belong to: a checkpoint is used only
    /// while the manifest still has it.
    pub generation: u64,
    /// Bytes of the live keys' records at `sequence` (for compaction's accounting).
    pub live_bytes: u64,
    /// Every segment at checkpoint time: (id, end of its records then).
    pub segments: Vec<(u32, u64)>,
    /// (key, location) pairs in ascending key order.
    pub entries: Vec<(i64, u64)>,
}

/// What a checkpoint describes besides its entries: the log as of one sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// Highest sequence number included.
    pub sequence: u64,
    /// Manifest generation.
    pub generation: u64,
    /// Bytes of live records.
    pub live_bytes: u64,
    /// Every segment: (id, end of its records).
    pub segments: Vec<(u32, u64)>,
}

/// Writes a checkpoint durably (temporary file, fsync, rename, directory fsync). An
/// `Err` entry aborts before anything replaces the current checkpoint: a checkpoint
/// that lacked keys would lose them at the next open.
pub fn write(dir: &Path, at: &Point, entries: impl Iterator<Item = Result<(i64, u64)>>) -> Result<()> {
    let segments = &at.segments;
    let (count_hint, _) = entries.size_hint();
    let capacity = CHECKPOINT_HEADER_SIZE + segments.len() * SEGMENT_ENTRY_SIZE + count_hint * ENTRY_SIZE_HINT + 4;
    let mut bytes = Vec::with_capacity(capacity);
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&at.sequence.to_le_bytes());
    bytes.extend_from_slice(&(segments.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // entry count, filled in below
    bytes.extend_from_slice(&at.generation.to_le_bytes());
    bytes.extend_from_slice(&at.live_bytes.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 8]);
    debug_assert_eq!(bytes.len(), CHECKPOINT_HEADER_SIZE);
    for &(id, end) in segments {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&end.to_le_bytes());
    }
    // Entries: the key's distance from the previous key (the first: from i64::MIN),
    // and the location's zigzag-encoded difference from the previous location, both
    // as varints. After a compaction consecutive keys lie one record apart, so most
    // entries take a few bytes instead of 16.
    let mut count = 0u64;
    let (mut previous_key, mut previous_location) = (0u64, 0u64);
    for entry in entries {
        let (key, location) = entry?;
        let offset = key_offset(key);
        put_varint(&mut bytes, offset.wrapping_sub(previous_key));
        let difference = location.wrapping_sub(previous_location) as i64;
        put_varint(&mut bytes, ((difference << 1) ^ (difference >> 63)) as u64);
        (previous_key, previous_location) = (offset, location);
        count += 1;
    }
    if let Some(field) = bytes.get_mut(32..40) {
        field.copy_from_slice(&count.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let temporary = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    Ok(io::replace_file(dir, &dir.join(CHECKPOINT_FILE), &temporary, &bytes)?)
}

/// Reads the checkpoint in `dir`. A missing, damaged, unknown-version or inconsistent
/// checkpoint is `None`: recovery then replays the whole log, which is always correct.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    match io::read(&dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => Ok(decode(&bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Decodes checkpoint bytes; `None` if anything is off.
pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if u32::from_le_bytes(crc.try_into().ok()?) != crc32c::crc32c(body) {
        return None;
    }
    let header = body.get(..CHECKPOINT_HEADER_SIZE)?;
    let u32_at = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(header.get(at..at + 4)?.try_into().ok()?)) };
    let u64_at = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?)) };
    if header.get(..8)? != CHECKPOINT_MAGIC || u32_at(8)? != CHECKPOINT_VERSION {
        return None;
    }
    let sequence = u64_at(16)?;
    let generation = u64_at(40)?;
    let live_bytes = u64_at(48)?;
    let segment_count = usize::try_from(u64_at(24)?).ok()?;
    let entry_count = usize::try_from(u64_at(32)?).ok()?;
    let segments_bytes = segment_count.checked_mul(SEGMENT_ENTRY_SIZE)?;
    let table_end = CHECKPOINT_HEADER_SIZE.checked_add(segments_bytes)?;
    // Every entry takes at least two bytes.
    if table_end > body.len() || entry_count > (body.len() - table_end) / 2 {
        return None;
    }
    let segment_table = body.get(CHECKPOINT_HEADER_SIZE..CHECKPOINT_HEADER_SIZE + segments_bytes)?;
    let mut segments = Vec::with_capacity(segment_count);
    for chunk in segment_table.chunks_exact(SEGMENT_ENTRY_SIZE) {
        let id = u32::from_le_bytes(chunk.get(0..4)?.try_into().ok()?);
        let end = u64::from_le_bytes(chunk.get(4..12)?.try_into().ok()?);
        segments.push((id, end));
    }
    let mut entries = Vec::with_capacity(entry_count);
    let mut at = table_end;
    let (mut key, mut location) = (0u64, 0u64);
    for index in 0..entry_count {
        let distance = get_varint(body, &mut at)?;
        // Keys strictly ascend: every distance but the first is at least 1, and
        // none may run past the largest key.
        if index > 0 && distance == 0 {
            return None;
        }
        key = key.checked_add(distance)?;
        let zigzag = get_varint(body, &mut at)?;
        let difference = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        location = location.wrapping_add(difference as u64);
        entries.push(((key ^ (1 << 63)) as i64, location));
    }
    if at != body.len() {
        return None;
    }
    Some(Checkpoint { sequence, generation, live_bytes, segments, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let entries = vec![(i64::MIN, 0), (-5i64, 7u64), (3, 9), (4, u64::MAX), (i64::MAX, 1)];
        let at = Point { sequence: 42, generation: 5, live_bytes: 777, segments: vec![(1, 100), (2, 64)] };
        write(dir.path(), &at, entries.iter().copied().map(Ok)).unwrap();
        let checkpoint = read(dir.path()).unwrap().unwrap();
        let expected =
            Checkpoint { sequence: 42, generation: 5, live_bytes: 777, segments: vec![(1, 100), (2, 64)], entries };
        assert_eq!(checkpoint, expected);
        let mut bytes = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
        for index in 0..bytes.len() {
            bytes[index] ^= 0x40;
            assert_eq!(decode(&bytes), None, "byte {index}");
            bytes[index] ^= 0x40;
        }
        assert_eq!(decode(&bytes[..10]), None);
        assert_eq!(decode(&[]), None);
    }
}
