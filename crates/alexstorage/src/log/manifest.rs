//! The manifest: which compacted segments are live, and where the log starts.
//!
//! Compaction writes the live records of a set of segments, in key order, into new
//! *compacted* segments. The manifest is how the switch from the old segments to the
//! new ones becomes durable in one atomic step: it is written to a temporary file,
//! synced, renamed over `MANIFEST`, and the directory synced. Until the rename, the old
//! manifest (or none) describes the store and the new segments are leftovers; after
//! it, the new manifest does and the old segments are. Recovery deletes leftovers.
//!
//! A segment file is live when
//! - the manifest lists it: a compacted segment (its header carries the compacted
//!   flag); or
//! - it is an ordinary log segment (no flag) with an id of at least `log_start`.
//!
//! Every other segment file is a leftover of a compaction that finished (its inputs)
//! or never committed (its outputs). The layout is in `docs/FORMAT.md`.

use std::path::Path;

use super::io;
use crate::{Error, Result};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Magic number at the start of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"ALEXMANF";
/// Format version of manifests this build writes (version 1, which predates column
/// families and holds zeros where version 2 names them, is read too).
pub const MANIFEST_VERSION: u32 = 2;
/// Size of the manifest header.
pub const MANIFEST_HEADER_SIZE: usize = 40;
/// Size of one compacted segment's entry.
pub const MANIFEST_ENTRY_SIZE: usize = 40;

/// One compacted segment the manifest lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactedSegment {
    /// Segment id.
    pub id: u32,
    /// End of its records (the file's length).
    pub end: u64,
    /// The column family of its first record (records are in strictly ascending
    /// (family, key) order).
    pub first_family: u16,
    /// The column family of its last record.
    pub last_family: u16,
    /// Its first and last key (within their families).
    pub first_key: i64,
    /// See `first_key`.
    pub last_key: i64,
    /// Number of records.
    pub records: u64,
}

impl CompactedSegment {
    /// Its first record's (family, key).
    pub fn first(&self) -> (u16, i64) {
        (self.first_family, self.first_key)
    }

    /// Its last record's (family, key).
    pub fn last(&self) -> (u16, i64) {
        (self.last_family, self.last_key)
    }
}

/// A decoded manifest. The default (no file) means: no compacted segments, every
/// segment file is a log segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Incremented by every manifest written; an index checkpoint is used only with the
    /// generation it was written under.
    pub generation: u64,
    /// Every record in a listed compacted segment has a sequence number at most this.
    pub sequence: u64,
    /// Log segments with a smaller id are not live (compaction consumed them).
    pub log_start: u32,
    /// The live compacted segments, ascending by id.
    pub compacted: Vec<CompactedSegment>,
}

impl Manifest {
    /// Whether segment `id` is a live log segment (not compacted, not consumed).
    pub fn is_log(&self, id: u32) -> bool {
        id >= self.log_start && !self.lists(id)
    }

    /// The entry of compacted segment `id`, if listed.
    pub fn entry(&self, id: u32) -> Option<&CompactedSegment> {
        self.compacted.iter().find(|entry| entry.id == id)
    }

    /// Whether the manifest lists `id` as a compacted segment.
    pub fn lists(&self, id: u32) -> bool {
        self.entry(id).is_some()
    }

    /// The encoded bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(MANIFEST_HEADER_SIZE + self.compacted.len() * MANIFEST_ENTRY_SIZE + 4);
        bytes.extend_from_slice(&MANIFEST_MAGIC);
        bytes.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&self.generation.to_le_bytes());
        bytes.extend_from_slice(&self.sequence.to_le_bytes());
        bytes.extend_from_slice(&self.log_start.to_le_bytes());
        bytes.extend_from_slice(&(self.compacted.len() as u32).to_le_bytes());
        for entry in &self.compacted {
            bytes.extend_from_slice(&entry.id.to_le_bytes());
            bytes.extend_from_slice(&entry.first_family.to_le_bytes());
            bytes.extend_from_slice(&entry.last_family.to_le_bytes());
            bytes.extend_from_slice(&entry.end.to_le_bytes());
            bytes.extend_from_slice(&entry.first_key.to_le_bytes());
            bytes.extend_from_slice(&entry.last_key.to_le_bytes());
            bytes.extend_from_slice(&entry.records.to_le_bytes());
        }
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes manifest bytes; `Err` with the offset and reason of what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Manifest, (usize, String)> {
        let body_len = bytes.len().checked_sub(4).ok_or((0, "file shorter than a checksum".to_string()))?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if stored != crc32c::crc32c(body) {
            return Err((body_len, "manifest checksum mismatch".into()));
        }
        let header = body.get(..MANIFEST_HEADER_SIZE).ok_or((0, "manifest shorter than its header".to_string()))?;
        if header[..8] != MANIFEST_MAGIC {
            return Err((0, "not a manifest (bad magic number)".into()));
        }
        let u32_at =
            |bytes: &[u8], at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let u64_at = |bytes: &[u8], at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let version = u32_at(header, 8);
        if version != MANIFEST_VERSION && version != 1 {
            return Err((8, format!("unsupported manifest version {version}")));
        }
        let count = u32_at(header, 36) as usize;
        if body.len() != MANIFEST_HEADER_SIZE + count * MANIFEST_ENTRY_SIZE {
            return Err((36, format!("manifest of {} bytes cannot hold {count} entries", bytes.len())));
        }
        let mut compacted: Vec<CompactedSegment> = Vec::with_capacity(count);
        for (index, entry) in body[MANIFEST_HEADER_SIZE..].chunks_exact(MANIFEST_ENTRY_SIZE).enumerate() {
            let families = u32_at(entry, 4);
            let entry = CompactedSegment {
                id: u32_at(entry, 0),
                first_family: families as u16,
                last_family: (families >> 16) as u16,
                end: u64_at(entry, 8),
                first_key: u64_at(entry, 16) as i64,
                last_key: u64_at(entry, 24) as i64,
                records: u64_at(entry, 32),
            };
            let offset = MANIFEST_HEADER_SIZE + index * MANIFEST_ENTRY_SIZE;
            if compacted.last().is_some_and(|previous| previous.id >= entry.id) || entry.first() > entry.last() {
                return Err((offset, format!("manifest entry {index} is out of order")));
            }
            if version == 1 && families != 0 {
                return Err((offset + 4, format!("manifest entry {index}: reserved bytes are not zero")));
            }
            compacted.push(entry);
        }
        Ok(Manifest {
            generation: u64_at(header, 16),
            sequence: u64_at(header, 24),
            log_start: u32_at(header, 32),
            compacted,
        })
    }
}

/// Reads the manifest in `dir`: `Manifest::default()` if there is none, and
/// `Error::Corruption` if it is damaged (without it, recovery could not tell live
/// segments from leftovers).
pub fn read(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    match io::read_if_present(&path)? {
        Some(bytes) => {
            Manifest::decode(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset as u64, reason))
        }
        None => Ok(Manifest::default()),
    }
}

/// Replaces the manifest in `dir` with `manifest` atomically and durably: a crash
/// leaves either the old one or the new one.
pub fn write(dir: &Path, manifest: &Manifest) -> Result<()> {
    Ok(io::replace_in(dir, MANIFEST_FILE, &manifest.encode())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            generation: 3,
            sequence: 1000,
            log_start: 9,
            compacted: vec![
                CompactedSegment {
                    id: 7,
                    end: 4096,
                    first_family: 0,
                    last_family: 2,
                    first_key: -50,
                    last_key: -60,
                    records: 30,
                },
                CompactedSegment {
                    id: 10,
                    end: 999,
                    first_family: 3,
                    last_family: 3,
                    first_key: 11,
                    last_key: 11,
                    records: 1,
                },
            ],
        }
    }

    #[test]
    fn round_trip_classification_and_every_damaged_byte() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Manifest::default());
        let manifest = sample();
        write(dir.path(), &manifest).unwrap();
        assert_eq!(read(dir.path()).unwrap(), manifest);
        assert!(manifest.is_log(9) && manifest.is_log(11));
        assert!(!manifest.is_log(10) && !manifest.is_log(8) && !manifest.is_log(7));
        assert_eq!(manifest.entry(10).map(|entry| entry.records), Some(1));
        let bytes = manifest.encode();
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x10;
            assert!(Manifest::decode(&damaged).is_err(), "byte {index}");
        }
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Manifest::decode(&[]).is_err());
        std::fs::write(dir.path().join(MANIFEST_FILE), &bytes[..20]).unwrap();
        assert!(matches!(read(dir.path()), Err(Error::Corruption { .. })));
    }

    /// Replaces the trailing CRC-32C with the one of the bytes before it.
    fn fix_crc(bytes: &mut [u8]) {
        let body_len = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
    }

    /// `manifest` encoded as version 1 (which holds zeros where version 2 has the
    /// families), with a valid CRC.
    fn version_1(manifest: &Manifest) -> Vec<u8> {
        let mut bytes = manifest.encode();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        fix_crc(&mut bytes);
        bytes
    }

    /// `sample()` with every family 0, as a store before column families has it.
    fn default_family_only() -> Manifest {
        let mut manifest = sample();
        for entry in &mut manifest.compacted {
            (entry.first_family, entry.last_family) = (0, 0);
        }
        // Entry 7 ran from family 0 to family 2 with a lower last key: make it ascend.
        manifest.compacted[0].last_key = 60;
        manifest
    }

    #[test]
    fn a_version_1_manifest_with_zero_families_decodes() {
        let manifest = default_family_only();
        let decoded = Manifest::decode(&version_1(&manifest)).unwrap();
        assert_eq!(decoded, manifest);
        assert!(decoded.compacted.iter().all(|entry| entry.first_family == 0 && entry.last_family == 0));
        // Read from a file too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_FILE), version_1(&manifest)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), manifest);
        // An empty version-1 manifest (no compacted segment listed).
        let empty = Manifest { generation: 1, sequence: 5, log_start: 3, compacted: Vec::new() };
        assert_eq!(Manifest::decode(&version_1(&empty)), Ok(empty));
        // Versions 0 and 3 are refused.
        for version in [0u32, 3] {
            let mut bytes = manifest.encode();
            bytes[8..12].copy_from_slice(&version.to_le_bytes());
            fix_crc(&mut bytes);
            let error = Manifest::decode(&bytes).unwrap_err();
            assert_eq!(error.0, 8, "version {version}: {}", error.1);
        }
    }

    #[test]
    fn a_version_1_manifest_with_nonzero_family_bytes_is_refused() {
        let manifest = default_family_only();
        let zero = version_1(&manifest);
        // Every byte of bytes 4..8 of each entry, set alone (with the CRC fixed up).
        for entry in 0..manifest.compacted.len() {
            let at = MANIFEST_HEADER_SIZE + entry * MANIFEST_ENTRY_SIZE;
            for byte in 4..8 {
                let mut bytes = zero.clone();
                bytes[at + byte] = 1;
                fix_crc(&mut bytes);
                match Manifest::decode(&bytes) {
                    Err((offset, reason)) => {
                        assert!(!reason.contains("checksum"), "entry {entry} byte {byte}: {reason}");
                        // A first family above the last is out of order; otherwise the
                        // bytes are reserved.
                        assert!(offset == at || offset == at + 4, "entry {entry} byte {byte}: {offset} {reason}");
                    }
                    Ok(decoded) => panic!("entry {entry} byte {byte}: decoded {decoded:?}"),
                }
            }
            // Families that ascend (0 then 1, and 1 then 1): only the version tells.
            for families in [0x0001_0000u32, 0x0001_0001] {
                let mut bytes = zero.clone();
                bytes[at + 4..at + 8].copy_from_slice(&families.to_le_bytes());
                fix_crc(&mut bytes);
                let (offset, reason) = Manifest::decode(&bytes).unwrap_err();
                assert_eq!(offset, at + 4, "{reason}");
                assert!(reason.contains("reserved bytes are not zero"), "{reason}");
                // The same bytes in version 2 name families.
                bytes[8..12].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
                fix_crc(&mut bytes);
                let decoded = Manifest::decode(&bytes).unwrap();
                let decoded = decoded.compacted[entry];
                assert_eq!((decoded.first_family, decoded.last_family), (families as u16, (families >> 16) as u16));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = zero.clone();
        bytes[MANIFEST_HEADER_SIZE + 6] = 3;
        fix_crc(&mut bytes);
        std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
        match read(dir.path()) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert!(file.ends_with(MANIFEST_FILE));
                assert_eq!(offset, (MANIFEST_HEADER_SIZE + 4) as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_whose_first_record_is_above_its_last_is_refused() {
        let entry = |first_family, first_key, last_family, last_key| CompactedSegment {
            id: 4,
            end: 100,
            first_family,
            last_family,
            first_key,
            last_key,
            records: 2,
        };
        let decode = |entry: CompactedSegment| {
            let manifest = Manifest { generation: 1, sequence: 9, log_start: 5, compacted: vec![entry] };
            Manifest::decode(&manifest.encode())
        };
        // Ascending by (family, key): a higher family may have a lower key.
        for fine in [entry(0, 5, 0, 5), entry(0, 5, 0, 6), entry(0, 5, 1, -9), entry(3, i64::MIN, 3, i64::MAX)] {
            assert_eq!(decode(fine).unwrap().compacted, [fine]);
        }
        for bad in [
            entry(0, 6, 0, 5),
            entry(1, 5, 0, 5),
            entry(1, -9, 0, 5),
            entry(2, 0, 1, i64::MAX),
            entry(0, i64::MAX, 0, i64::MIN),
            entry(u16::MAX, 0, 0, 0),
        ] {
            let (offset, reason) = decode(bad).unwrap_err();
            assert_eq!(offset, MANIFEST_HEADER_SIZE, "{bad:?}: {reason}");
            assert!(reason.contains("out of order"), "{bad:?}: {reason}");
        }
        // Version 1 (families 0): the keys alone.
        let manifest = Manifest { generation: 1, sequence: 9, log_start: 5, compacted: vec![entry(0, 6, 0, 5)] };
        assert!(Manifest::decode(&version_1(&manifest)).is_err());
        // Ids that do not ascend are refused the same way.
        let manifest = Manifest {
            generation: 1,
            sequence: 9,
            log_start: 5,
            compacted: vec![entry(0, 1, 0, 2), entry(0, 3, 0, 4)],
        };
        let (offset, reason) = Manifest::decode(&manifest.encode()).unwrap_err();
        assert_eq!(offset, MANIFEST_HEADER_SIZE + MANIFEST_ENTRY_SIZE, "{reason}");
    }
}
