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
    match io::read(&path) {
        Ok(bytes) => {
            Manifest::decode(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset as u64, reason))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(error) => Err(error.into()),
    }
}

/// Replaces the manifest in `dir` with `manifest` atomically and durably: a crash
/// leaves either the old one or the new one.
pub fn write(dir: &Path, manifest: &Manifest) -> Result<()> {
    let temporary = dir.join(format!("{MANIFEST_FILE}.tmp"));
    Ok(io::replace_file(dir, &dir.join(MANIFEST_FILE), &temporary, &manifest.encode())?)
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
}
