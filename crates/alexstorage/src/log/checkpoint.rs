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
/// Format version of checkpoints this build writes: version 3, a section per column
/// family. Version 2 checkpoints (the default family alone) are read too; version 1
/// checkpoints, which lack the manifest generation, are ignored (the next open
/// replays the log).
pub const CHECKPOINT_VERSION: u32 = 3;
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
    /// Every segment at checkpoint time: (id, end of its records then).
    pub segments: Vec<(u32, u64)>,
    /// Each column family's index, the default family's (id 0) first.
    pub families: Vec<FamilySection>,
}

/// One column family's index in a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FamilySection {
    /// The family's id (0: the default family).
    pub id: u16,
    /// Its incarnation: recovery uses the section only for the family the catalog
    /// lists with this id and this incarnation.
    pub incarnation: u64,
    /// Bytes of the family's live records at the checkpoint's sequence.
    pub live_bytes: u64,
    /// (key, location) pairs in ascending key order.
    pub entries: Vec<(i64, u64)>,
}

/// A family as of a checkpoint's point: what its section's header holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PointFamily {
    /// The family's id.
    pub id: u16,
    /// Its incarnation.
    pub incarnation: u64,
    /// Bytes of its live records.
    pub live_bytes: u64,
}

/// What a checkpoint describes besides its entries: the log as of one sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// Highest sequence number included.
    pub sequence: u64,
    /// Manifest generation.
    pub generation: u64,
    /// Every segment: (id, end of its records).
    pub segments: Vec<(u32, u64)>,
    /// Every family then, the default family first.
    pub families: Vec<PointFamily>,
}

/// Size of a family section's header.
pub const FAMILY_SECTION_HEADER_SIZE: usize = 32;
const _: () = assert!(FAMILY_SECTION_HEADER_SIZE == 2 + 2 + 4 + 8 + 8 + 8);

/// One family's entries, as a checkpoint writer reads them.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(i64, u64)>> + 'a>;

/// Writes a checkpoint durably (temporary file, fsync, rename, directory fsync), with
/// a section for each family of `at`, whose entries `entries` gives. An `Err` entry
/// aborts before anything replaces the current checkpoint: a checkpoint that lacked
/// keys would lose them at the next open.
pub fn write<'a>(dir: &Path, at: &Point, mut entries: impl FnMut(&PointFamily) -> Entries<'a>) -> Result<()> {
    let segments = &at.segments;
    let mut bytes = Vec::with_capacity(CHECKPOINT_HEADER_SIZE + segments.len() * SEGMENT_ENTRY_SIZE + 4);
    let live_bytes = at.families.iter().fold(0u64, |sum, family| sum.saturating_add(family.live_bytes));
    bytes.extend_from_slice(&CHECKPOINT_MAGIC);
    bytes.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&at.sequence.to_le_bytes());
    bytes.extend_from_slice(&(segments.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(at.families.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&at.generation.to_le_bytes());
    bytes.extend_from_slice(&live_bytes.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 8]);
    debug_assert_eq!(bytes.len(), CHECKPOINT_HEADER_SIZE);
    for &(id, end) in segments {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&end.to_le_bytes());
    }
    for family in &at.families {
        let section = bytes.len();
        bytes.extend_from_slice(&family.id.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 6]);
        bytes.extend_from_slice(&family.incarnation.to_le_bytes());
        bytes.extend_from_slice(&family.live_bytes.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes()); // entry count, filled in below
        let entries = entries(family);
        let (count_hint, _) = entries.size_hint();
        bytes.reserve(count_hint * ENTRY_SIZE_HINT);
        let count = put_entries(&mut bytes, entries)?;
        if let Some(field) = bytes.get_mut(section + 24..section + 32) {
            field.copy_from_slice(&count.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    Ok(io::replace_in(dir, CHECKPOINT_FILE, &bytes)?)
}

/// Appends `entries`: the key's distance from the previous key (the first: from
/// `i64::MIN`), and the location's zigzag-encoded difference from the previous
/// location, both as varints. After a compaction consecutive keys lie one record
/// apart, so most entries take a few bytes instead of 16. Returns how many.
fn put_entries(bytes: &mut Vec<u8>, entries: impl Iterator<Item = Result<(i64, u64)>>) -> Result<u64> {
    let mut count = 0u64;
    let (mut previous_key, mut previous_location) = (0u64, 0u64);
    for entry in entries {
        let (key, location) = entry?;
        let offset = key_offset(key);
        put_varint(bytes, offset.wrapping_sub(previous_key));
        let difference = location.wrapping_sub(previous_location) as i64;
        put_varint(bytes, ((difference << 1) ^ (difference >> 63)) as u64);
        (previous_key, previous_location) = (offset, location);
        count += 1;
    }
    Ok(count)
}

/// Reads `count` entries at `*at` (see [`put_entries`]); `None` if they do not decode
/// or do not strictly ascend.
fn get_entries(body: &[u8], at: &mut usize, count: usize) -> Option<Vec<(i64, u64)>> {
    // Every entry takes at least two bytes.
    if count > body.len().saturating_sub(*at) / 2 {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let (mut key, mut location) = (0u64, 0u64);
    for index in 0..count {
        let distance = get_varint(body, at)?;
        // Keys strictly ascend: every distance but the first is at least 1, and
        // none may run past the largest key.
        if index > 0 && distance == 0 {
            return None;
        }
        key = key.checked_add(distance)?;
        let zigzag = get_varint(body, at)?;
        let difference = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        location = location.wrapping_add(difference as u64);
        entries.push(((key ^ (1 << 63)) as i64, location));
    }
    Some(entries)
}

/// Reads the checkpoint in `dir`. A missing, damaged, unknown-version or inconsistent
/// checkpoint is `None`: recovery then replays the whole log, which is always correct.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    Ok(io::read_if_present(&dir.join(CHECKPOINT_FILE))?.and_then(|bytes| decode(&bytes)))
}

/// Decodes checkpoint bytes (version 3, or version 2: the default family alone);
/// `None` if anything is off.
pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if u32::from_le_bytes(crc.try_into().ok()?) != crc32c::crc32c(body) {
        return None;
    }
    let header = body.get(..CHECKPOINT_HEADER_SIZE)?;
    let u16_at =
        |bytes: &[u8], at: usize| -> Option<u16> { Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?)) };
    let u32_at =
        |bytes: &[u8], at: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    let u64_at =
        |bytes: &[u8], at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
    let version = u32_at(header, 8)?;
    if header.get(..8)? != CHECKPOINT_MAGIC || !(version == CHECKPOINT_VERSION || version == 2) {
        return None;
    }
    let sequence = u64_at(header, 16)?;
    let generation = u64_at(header, 40)?;
    let live_bytes = u64_at(header, 48)?;
    let segment_count = usize::try_from(u64_at(header, 24)?).ok()?;
    let count = usize::try_from(u64_at(header, 32)?).ok()?;
    let segments_bytes = segment_count.checked_mul(SEGMENT_ENTRY_SIZE)?;
    let table_end = CHECKPOINT_HEADER_SIZE.checked_add(segments_bytes)?;
    let segment_table = body.get(CHECKPOINT_HEADER_SIZE..table_end)?;
    let mut segments = Vec::with_capacity(segment_count);
    for chunk in segment_table.chunks_exact(SEGMENT_ENTRY_SIZE) {
        segments.push((u32_at(chunk, 0)?, u64_at(chunk, 4)?));
    }
    let mut at = table_end;
    let mut families: Vec<FamilySection> = Vec::new();
    if version == 2 {
        // One index, the default family's; the header's count is its entry count.
        let entries = get_entries(body, &mut at, count)?;
        families.push(FamilySection { id: 0, incarnation: 0, live_bytes, entries });
    } else {
        if count > body.len().saturating_sub(at) / FAMILY_SECTION_HEADER_SIZE {
            return None;
        }
        for index in 0..count {
            let section = body.get(at..at.checked_add(FAMILY_SECTION_HEADER_SIZE)?)?;
            let id = u16_at(section, 0)?;
            let ordered = families.last().is_none_or(|previous| previous.id < id);
            if (index == 0) != (id == 0) || !ordered || section.get(2..8)? != [0u8; 6] {
                return None;
            }
            let incarnation = u64_at(section, 8)?;
            let family_live_bytes = u64_at(section, 16)?;
            let entry_count = usize::try_from(u64_at(section, 24)?).ok()?;
            at += FAMILY_SECTION_HEADER_SIZE;
            let entries = get_entries(body, &mut at, entry_count)?;
            families.push(FamilySection { id, incarnation, live_bytes: family_live_bytes, entries });
        }
        if families.first().is_none_or(|first| first.id != 0) {
            return None;
        }
    }
    if at != body.len() {
        return None;
    }
    Some(Checkpoint { sequence, generation, segments, families })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let entries = vec![(i64::MIN, 0), (-5i64, 7u64), (3, 9), (4, u64::MAX), (i64::MAX, 1)];
        let named = vec![(-1i64, 5u64), (1, 4)];
        let families = vec![
            PointFamily { id: 0, incarnation: 0, live_bytes: 777 },
            PointFamily { id: 2, incarnation: 9, live_bytes: 0 },
            PointFamily { id: 7, incarnation: 3, live_bytes: 50 },
        ];
        let at = Point { sequence: 42, generation: 5, segments: vec![(1, 100), (2, 64)], families };
        let sections = |family: &PointFamily| -> Entries<'_> {
            match family.id {
                0 => Box::new(entries.clone().into_iter().map(Ok)),
                7 => Box::new(named.clone().into_iter().map(Ok)),
                _ => Box::new(std::iter::empty()),
            }
        };
        write(dir.path(), &at, sections).unwrap();
        let checkpoint = read(dir.path()).unwrap().unwrap();
        let section = |id, incarnation, live_bytes, entries| FamilySection { id, incarnation, live_bytes, entries };
        let expected = Checkpoint {
            sequence: 42,
            generation: 5,
            segments: vec![(1, 100), (2, 64)],
            families: vec![section(0, 0, 777, entries), section(2, 9, 0, Vec::new()), section(7, 3, 50, named)],
        };
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

    /// Replaces the trailing CRC-32C with the one of the bytes before it.
    fn fix_crc(bytes: &mut [u8]) {
        let body_len = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
    }

    /// The bytes `write` produces for `families` (ids and incarnations), each
    /// family's entries being `entries_of(id)`.
    fn encoded(families: &[(u16, u64)], entries_of: impl Fn(u16) -> Vec<(i64, u64)>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let families =
            families.iter().map(|&(id, incarnation)| PointFamily { id, incarnation, live_bytes: 10 }).collect();
        let at = Point { sequence: 9, generation: 1, segments: vec![(3, 4096)], families };
        write(dir.path(), &at, |family| -> Entries<'_> { Box::new(entries_of(family.id).into_iter().map(Ok)) })
            .unwrap();
        std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap()
    }

    fn some_entries(id: u16) -> Vec<(i64, u64)> {
        (0..5).map(|key| (key * 3 - 4, (1 << 32) | (64 + 40 * key as u64 + u64::from(id)))).collect()
    }

    /// Where the section after the segment table starts (one segment in `encoded`).
    const FIRST_SECTION: usize = CHECKPOINT_HEADER_SIZE + SEGMENT_ENTRY_SIZE;

    #[test]
    fn sections_out_of_order_behind_a_valid_checksum_are_refused() {
        // Control: the layouts below differ from this one only in their sections.
        let good = encoded(&[(0, 0), (2, 5), (7, 3)], some_entries);
        let decoded = decode(&good).unwrap();
        assert_eq!(decoded.families.iter().map(|section| section.id).collect::<Vec<_>>(), [0, 2, 7]);
        // `write` checks nothing: each of these has a correct CRC.
        let cases: [(&str, &[(u16, u64)]); 6] = [
            ("default family not first", &[(2, 5), (0, 0)]),
            ("no default family", &[(2, 5), (7, 3)]),
            ("no section at all", &[]),
            ("ids descending", &[(0, 0), (7, 3), (2, 5)]),
            ("id repeated", &[(0, 0), (2, 5), (2, 6)]),
            ("default family twice", &[(0, 0), (0, 0)]),
        ];
        for (context, families) in cases {
            let bytes = encoded(families, some_entries);
            assert_eq!(decode(&bytes), None, "{context}");
        }
    }

    #[test]
    fn damaged_section_headers_behind_a_valid_checksum_are_refused() {
        let original = encoded(&[(0, 0), (2, 5)], some_entries);
        let second = {
            // The first section's entries end where the second section's header starts.
            let mut at = FIRST_SECTION + FAMILY_SECTION_HEADER_SIZE;
            get_entries(&original, &mut at, 5).unwrap();
            at
        };
        let check = |context: &str, change: &dyn Fn(&mut Vec<u8>), accepted: bool| {
            let mut bytes = original.clone();
            change(&mut bytes);
            fix_crc(&mut bytes);
            assert_eq!(decode(&bytes).is_some(), accepted, "{context}");
        };
        // Control: a fixed-up CRC alone, and a live-bytes change (no check constrains
        // it), are accepted.
        check("nothing changed", &|_| {}, true);
        check("live bytes changed", &|bytes| bytes[second + 16] ^= 1, true);
        for byte in 2..8 {
            check(&format!("first section's reserved byte {byte}"), &|bytes| bytes[FIRST_SECTION + byte] = 1, false);
            check(&format!("second section's reserved byte {byte}"), &|bytes| bytes[second + byte] = 0x80, false);
        }
        check("default family's id made 1", &|bytes| bytes[FIRST_SECTION] = 1, false);
        check("second id made 0", &|bytes| bytes[second] = 0, false);
        check("family count 1", &|bytes| bytes[32] = 1, false);
        check("family count 3", &|bytes| bytes[32] = 3, false);
        check("an entry count one less", &|bytes| bytes[second + 24] = 4, false);
        check("an entry count one more", &|bytes| bytes[second + 24] = 6, false);
        check("a byte appended", &|bytes| bytes.insert(bytes.len() - 4, 0), false);
        check("version 1", &|bytes| bytes[8] = 1, false);
        check("version 4", &|bytes| bytes[8] = 4, false);
    }

    /// A version-2 checkpoint (`docs/FORMAT.md`): the header with the entry count at
    /// bytes 32..40, the segment table, and the default family's entries with no
    /// section header.
    fn version_2(at: &Point, live_bytes: u64, entries: &[(i64, u64)]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&CHECKPOINT_MAGIC);
        bytes.extend_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&at.sequence.to_le_bytes());
        bytes.extend_from_slice(&(at.segments.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&at.generation.to_le_bytes());
        bytes.extend_from_slice(&live_bytes.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 8]);
        for &(id, end) in &at.segments {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        put_entries(&mut bytes, entries.iter().copied().map(Ok)).unwrap();
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_version_2_checkpoint_decodes_into_one_default_family_section() {
        let entries = vec![(i64::MIN, 7u64), (-1, (2 << 32) | 64), (0, (2 << 32) | 100), (i64::MAX, 3)];
        let at = Point { sequence: 77, generation: 4, segments: vec![(2, 4096), (5, 64)], families: Vec::new() };
        let bytes = version_2(&at, 1234, &entries);
        let expected = Checkpoint {
            sequence: 77,
            generation: 4,
            segments: vec![(2, 4096), (5, 64)],
            families: vec![FamilySection { id: 0, incarnation: 0, live_bytes: 1234, entries: entries.clone() }],
        };
        assert_eq!(decode(&bytes), Some(expected));
        // No entries at all: one empty default section.
        let empty = decode(&version_2(&at, 0, &[])).unwrap();
        assert_eq!(empty.families, [FamilySection::default()]);
        // Its entry count is the header's (bytes 32..40): one more or one less, or a
        // byte after the entries, and it no longer decodes.
        for count in [entries.len() - 1, entries.len() + 1] {
            let mut damaged = bytes.clone();
            damaged[32..40].copy_from_slice(&(count as u64).to_le_bytes());
            fix_crc(&mut damaged);
            assert_eq!(decode(&damaged), None, "entry count {count}");
        }
        let mut longer = bytes.clone();
        longer.insert(longer.len() - 4, 0);
        fix_crc(&mut longer);
        assert_eq!(decode(&longer), None);
        // The same bytes as version 1 (unknown to this build) or 3 (whose sections
        // these are not) are refused.
        for version in [1u8, 3] {
            let mut other = bytes.clone();
            other[8] = version;
            fix_crc(&mut other);
            assert_eq!(decode(&other), None, "version {version}");
        }
        // A version-2 checkpoint holding keys out of order is refused like any.
        let mut unordered = version_2(&at, 0, &[(5, 1), (5, 2)]);
        fix_crc(&mut unordered);
        assert_eq!(decode(&unordered), None);
    }
}
