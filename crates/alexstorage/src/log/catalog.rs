//! The column-family catalog: which named families exist, with the id their records
//! carry, the incarnation that tells one creation of a name from the next, and the
//! sequence number they were created after. The layout is in `docs/FORMAT.md`.
//!
//! The catalog is one small file, replaced whole (temporary file, fsync, rename,
//! directory fsync) by every creation and every drop, so a crash leaves the old
//! catalog or the new one: after recovery a family is wholly there or wholly gone. A
//! family's records are written only once the catalog naming it is durable; a dropped
//! family's records stay in the log until compaction, and recovery skips them: a
//! record counts only if its family is in the catalog and its sequence is above the
//! family's `created_after` (records of a reused id at or below it belong to a family
//! dropped before).

use std::collections::HashSet;
use std::path::Path;

use super::io;
use crate::family::MAX_NAME_LEN;
use crate::{Error, Result};

/// The catalog's file name.
pub const CATALOG_FILE: &str = "FAMILIES";
/// Magic number at the start of the catalog.
pub const CATALOG_MAGIC: [u8; 8] = *b"ALEXFAMS";
/// Format version of the catalog.
pub const CATALOG_VERSION: u32 = 1;
/// Size of the catalog header.
pub const CATALOG_HEADER_SIZE: usize = 32;
/// Size of the fixed part of an entry (the name follows).
pub const CATALOG_ENTRY_SIZE: usize = 24;

const _: () = assert!(CATALOG_HEADER_SIZE == 8 + 4 + 4 + 8 + 8);
const _: () = assert!(CATALOG_ENTRY_SIZE == 2 + 2 + 4 + 8 + 8);

/// One named family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The id its records carry (1 to 65535; 0 is the default family).
    pub id: u16,
    /// Unique to this creation: no two families ever created in the store share one.
    pub incarnation: u64,
    /// The last sequence number assigned when it was created.
    pub created_after: u64,
    /// Its name (1 to 255 bytes of UTF-8).
    pub name: String,
}

/// The decoded catalog. The default (no file) is a store with only the default family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The incarnation the next family created gets (at least 1).
    pub next_incarnation: u64,
    /// The named families, ascending by id.
    pub families: Vec<CatalogEntry>,
}

impl Catalog {
    /// The family with id `id`.
    pub fn entry(&self, id: u16) -> Option<&CatalogEntry> {
        let index = self.families.binary_search_by_key(&id, |entry| entry.id).ok()?;
        self.families.get(index)
    }

    /// Whether a record of family `id` with `sequence` belongs to a live family.
    pub fn holds(&self, id: u16, sequence: u64) -> bool {
        id == 0 || self.entry(id).is_some_and(|entry| sequence > entry.created_after)
    }

    /// The lowest id no live family has, if any is left.
    pub fn free_id(&self) -> Option<u16> {
        // Ids ascend: the first gap (or the end) is free.
        let mut candidate: u16 = 1;
        for entry in &self.families {
            if entry.id != candidate {
                break;
            }
            candidate = candidate.checked_add(1)?;
        }
        Some(candidate)
    }

    /// The encoded bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let names: usize = self.families.iter().map(|entry| entry.name.len()).sum();
        let mut bytes = Vec::with_capacity(CATALOG_HEADER_SIZE + self.families.len() * CATALOG_ENTRY_SIZE + names + 4);
        bytes.extend_from_slice(&CATALOG_MAGIC);
        bytes.extend_from_slice(&CATALOG_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(self.families.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.next_incarnation.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        for entry in &self.families {
            bytes.extend_from_slice(&entry.id.to_le_bytes());
            bytes.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&entry.incarnation.to_le_bytes());
            bytes.extend_from_slice(&entry.created_after.to_le_bytes());
            bytes.extend_from_slice(entry.name.as_bytes());
        }
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes catalog bytes; `Err` with the offset and reason of what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Catalog, (usize, String)> {
        let body_len = bytes.len().checked_sub(4).ok_or((0, "file shorter than a checksum".to_string()))?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = crc.try_into().map(u32::from_le_bytes).map_err(|_| (body_len, "no checksum".to_string()))?;
        if stored != crc32c::crc32c(body) {
            return Err((body_len, "catalog checksum mismatch".into()));
        }
        let mut reader = Reader { bytes: body, at: 0 };
        if reader.take(8)? != CATALOG_MAGIC {
            return Err((0, "not a column-family catalog (bad magic number)".into()));
        }
        let version = reader.u32()?;
        if version != CATALOG_VERSION {
            return Err((8, format!("unsupported catalog version {version}")));
        }
        let count = reader.u32()? as usize;
        let next_incarnation = reader.u64()?;
        reader.u64()?;
        let mut families: Vec<CatalogEntry> = Vec::with_capacity(count.min(body.len() / CATALOG_ENTRY_SIZE));
        let (mut names, mut incarnations) = (HashSet::new(), HashSet::new());
        for index in 0..count {
            let offset = reader.at;
            let id = reader.u16()?;
            let name_len = usize::from(reader.u16()?);
            let reserved = reader.u32()?;
            let incarnation = reader.u64()?;
            let created_after = reader.u64()?;
            let name = std::str::from_utf8(reader.take(name_len)?)
                .map_err(|_| (offset, format!("family {index}'s name is not UTF-8")))?
                .to_owned();
            let ordered = families.last().is_none_or(|previous| previous.id < id);
            let problem = if id == 0 || !ordered {
                Some("ids out of order")
            } else if reserved != 0 {
                Some("reserved bytes are not zero")
            } else if name.is_empty() || name.len() > MAX_NAME_LEN {
                Some("bad name length")
            } else if incarnation == 0 || incarnation >= next_incarnation {
                Some("incarnation not below the next one")
            } else if name == crate::family::DEFAULT_FAMILY_NAME {
                Some("the default family is not listed")
            } else if !names.insert(name.clone()) || !incarnations.insert(incarnation) {
                Some("name or incarnation repeated")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err((offset, format!("catalog entry {index}: {problem}")));
            }
            families.push(CatalogEntry { id, incarnation, created_after, name });
        }
        if reader.at != body.len() {
            return Err((reader.at, "bytes after the last entry".into()));
        }
        Ok(Catalog { next_incarnation, families })
    }
}

/// Reads fields front to back; running out is an error at the offset reached.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> std::result::Result<&'a [u8], (usize, String)> {
        let taken = self.at.checked_add(len).and_then(|end| self.bytes.get(self.at..end));
        let taken = taken.ok_or((self.at, "catalog cut short".to_string()))?;
        self.at += len;
        Ok(taken)
    }

    fn u16(&mut self) -> std::result::Result<u16, (usize, String)> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> std::result::Result<u32, (usize, String)> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> std::result::Result<u64, (usize, String)> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }
}

/// Reads the catalog in `dir`: an empty catalog if there is none (a store with only
/// the default family), `Error::Corruption` if it is damaged (without it, recovery
/// cannot tell which families' records count).
pub fn read(dir: &Path) -> Result<Catalog> {
    let path = dir.join(CATALOG_FILE);
    match io::read_if_present(&path)? {
        Some(bytes) => {
            Catalog::decode(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset as u64, reason))
        }
        None => Ok(Catalog { next_incarnation: 1, families: Vec::new() }),
    }
}

/// Replaces the catalog in `dir` atomically and durably: a crash leaves either the old
/// one or the new one.
pub fn write(dir: &Path, catalog: &Catalog) -> Result<()> {
    Ok(io::replace_in(dir, CATALOG_FILE, &catalog.encode())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalog {
        let entry = |id, incarnation, created_after, name: &str| CatalogEntry {
            id,
            incarnation,
            created_after,
            name: name.to_owned(),
        };
        Catalog { next_incarnation: 9, families: vec![entry(1, 4, 10, "users"), entry(3, 8, 77, "événements")] }
    }

    #[test]
    fn round_trip_free_ids_and_every_damaged_byte() {
        let dir = tempfile::tempdir().unwrap();
        let empty = read(dir.path()).unwrap();
        assert!(empty.families.is_empty() && empty.next_incarnation == 1);
        assert_eq!(empty.free_id(), Some(1));
        let catalog = sample();
        write(dir.path(), &catalog).unwrap();
        assert_eq!(read(dir.path()).unwrap(), catalog);
        assert_eq!(catalog.free_id(), Some(2));
        assert!(catalog.holds(0, 0) && catalog.holds(1, 11) && !catalog.holds(1, 10) && !catalog.holds(2, 100));
        let bytes = catalog.encode();
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            assert!(Catalog::decode(&damaged).is_err(), "byte {index}");
        }
        for len in 0..bytes.len() {
            assert!(Catalog::decode(&bytes[..len]).is_err(), "cut to {len}");
        }
        std::fs::write(dir.path().join(CATALOG_FILE), &bytes[..20]).unwrap();
        assert!(matches!(read(dir.path()), Err(Error::Corruption { .. })));
    }

    #[test]
    fn a_full_catalog_has_no_free_id() {
        let families = (1..=u16::MAX)
            .map(|id| CatalogEntry { id, incarnation: u64::from(id), created_after: 0, name: id.to_string() })
            .collect();
        let catalog = Catalog { next_incarnation: 1 << 20, families };
        assert_eq!(catalog.free_id(), None);
    }

    /// Replaces the trailing CRC-32C with the one of the bytes before it.
    fn fix_crc(bytes: &mut [u8]) {
        let body_len = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes `bytes` expecting a structural error (not the checksum's) with
    /// `reason` in its message, at `offset`.
    fn assert_refused(bytes: &[u8], offset: usize, reason: &str, context: &str) {
        match Catalog::decode(bytes) {
            Err((at, message)) => {
                assert!(!message.contains("checksum"), "{context}: refused by the checksum: {message}");
                assert!(message.contains(reason), "{context}: {message}");
                assert_eq!(at, offset, "{context}: {message}");
            }
            Ok(catalog) => panic!("{context}: decoded {catalog:?}"),
        }
    }

    /// Offset of entry `index` of `sample()` (entry 0 holds a 5-byte name).
    fn entry_at(index: usize) -> usize {
        CATALOG_HEADER_SIZE + index * (CATALOG_ENTRY_SIZE + 5)
    }

    #[test]
    fn a_fixed_up_checksum_without_other_changes_decodes() {
        // The fix-up the structural tests below rely on reaches the checks past the CRC.
        let mut bytes = sample().encode();
        fix_crc(&mut bytes);
        assert_eq!(Catalog::decode(&bytes), Ok(sample()));
        // A field no check constrains (created after) changed: still decodes, changed.
        bytes[entry_at(1) + 16..entry_at(1) + 24].copy_from_slice(&5u64.to_le_bytes());
        fix_crc(&mut bytes);
        let decoded = Catalog::decode(&bytes).unwrap();
        assert_eq!(decoded.families[1].created_after, 5);
    }

    #[test]
    fn structural_damage_behind_a_valid_checksum_is_refused() {
        let original = sample().encode();
        let mutate = |context: &str, change: &dyn Fn(&mut Vec<u8>), offset: usize, reason: &str| {
            let mut bytes = original.clone();
            change(&mut bytes);
            fix_crc(&mut bytes);
            assert_refused(&bytes, offset, reason, context);
        };
        let set_u16 = |bytes: &mut Vec<u8>, at: usize, value: u16| {
            bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        };
        let set_u64 = |bytes: &mut Vec<u8>, at: usize, value: u64| {
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        };
        let (first, second) = (entry_at(0), entry_at(1));
        // Ids: 0 (the default family's), equal, descending.
        mutate("id 0", &|bytes| set_u16(bytes, first, 0), first, "ids out of order");
        mutate("repeated id", &|bytes| set_u16(bytes, second, 1), second, "ids out of order");
        mutate("descending ids", &|bytes| set_u16(bytes, first, 5), second, "ids out of order");
        // Reserved bytes of an entry.
        mutate("reserved", &|bytes| bytes[second + 4] = 1, second, "reserved bytes are not zero");
        mutate("reserved high", &|bytes| bytes[first + 7] = 0x80, first, "reserved bytes are not zero");
        // Incarnations: 0, the next one, past it, and one repeated.
        mutate("incarnation 0", &|bytes| set_u64(bytes, first + 8, 0), first, "incarnation not below");
        mutate("incarnation = next", &|bytes| set_u64(bytes, second + 8, 9), second, "incarnation not below");
        mutate("incarnation > next", &|bytes| set_u64(bytes, first + 8, u64::MAX), first, "incarnation not below");
        mutate("next incarnation lowered", &|bytes| set_u64(bytes, 16, 8), second, "incarnation not below");
        mutate("repeated incarnation", &|bytes| set_u64(bytes, second + 8, 4), second, "repeated");
        // A name that is not UTF-8.
        mutate("bad UTF-8", &|bytes| bytes[first + CATALOG_ENTRY_SIZE] = 0xff, first, "not UTF-8");
        // An entry count that disagrees with the entries.
        let mut bytes = original.clone();
        bytes[12..16].copy_from_slice(&1u32.to_le_bytes());
        fix_crc(&mut bytes);
        assert_refused(&bytes, second, "bytes after the last entry", "count too small");
        let mut bytes = original.clone();
        bytes[12..16].copy_from_slice(&3u32.to_le_bytes());
        fix_crc(&mut bytes);
        assert!(Catalog::decode(&bytes).is_err(), "count too large");
        // Magic and version.
        let mut bytes = original.clone();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        fix_crc(&mut bytes);
        assert_refused(&bytes, 8, "unsupported catalog version", "version 2");
        let mut bytes = original.clone();
        bytes[0] = b'X';
        fix_crc(&mut bytes);
        assert_refused(&bytes, 0, "bad magic", "magic");
    }

    #[test]
    fn invalid_catalogs_encoded_with_a_valid_checksum_are_refused() {
        // `encode` checks nothing: each catalog below gets a correct CRC, and decoding
        // must refuse it for what it says.
        let entry = |id, incarnation, name: &str| CatalogEntry { id, incarnation, created_after: 0, name: name.into() };
        let cases: Vec<(&str, Vec<CatalogEntry>, &str)> = vec![
            ("id 0", vec![entry(0, 1, "a")], "ids out of order"),
            ("ids descending", vec![entry(2, 1, "a"), entry(1, 2, "b")], "ids out of order"),
            ("ids repeated", vec![entry(2, 1, "a"), entry(2, 2, "b")], "ids out of order"),
            ("empty name", vec![entry(1, 1, "")], "bad name length"),
            ("name too long", vec![entry(1, 1, &"n".repeat(MAX_NAME_LEN + 1))], "bad name length"),
            ("repeated name", vec![entry(1, 1, "a"), entry(2, 2, "a")], "repeated"),
            ("repeated incarnation", vec![entry(1, 3, "a"), entry(2, 3, "b")], "repeated"),
            ("incarnation 0", vec![entry(1, 0, "a")], "incarnation not below"),
            ("incarnation = next", vec![entry(1, 5, "a")], "incarnation not below"),
            ("the default family listed", vec![entry(1, 1, "default")], "the default family is not listed"),
        ];
        for (context, families, reason) in cases {
            let catalog = Catalog { next_incarnation: 5, families };
            let bytes = catalog.encode();
            match Catalog::decode(&bytes) {
                Err((_, message)) => assert!(message.contains(reason), "{context}: {message}"),
                Ok(decoded) => panic!("{context}: decoded {decoded:?}"),
            }
        }
        // The longest name is fine, and so is a catalog with no family and any next
        // incarnation.
        let longest = Catalog { next_incarnation: 2, families: vec![entry(1, 1, &"n".repeat(MAX_NAME_LEN))] };
        assert_eq!(Catalog::decode(&longest.encode()), Ok(longest));
        let empty = Catalog { next_incarnation: 0, families: Vec::new() };
        assert_eq!(Catalog::decode(&empty.encode()), Ok(empty));
    }
}
