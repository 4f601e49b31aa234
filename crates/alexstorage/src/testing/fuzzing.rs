//! Harnesses shared by the cargo-fuzz targets in `fuzz/` and their bounded property
//! test equivalents in `tests/fuzz_store.rs`: open a store whose files hold arbitrary
//! bytes, or a valid store with arbitrary damage, and read everything. Neither may
//! panic, and no read may return bytes other than those written.

use std::path::Path;

use crate::log::checkpoint::CHECKPOINT_FILE;
use crate::log::format::StoreHeader;
use crate::{Db, Options, Result};

/// The value the valid store holds for `key`.
pub fn expected_value(key: i64) -> Vec<u8> {
    let len = (key.unsigned_abs() % 61) as usize;
    (0..len).map(|index| (key as usize).wrapping_mul(13).wrapping_add(index) as u8).collect()
}

/// The keys the valid store's compressed variant also holds: small documents alike in
/// shape, which a zstd compaction compresses with a trained dictionary.
pub const DOCUMENT_KEYS: std::ops::Range<i64> = 2000..2300;

/// The document under `key` of [`DOCUMENT_KEYS`].
pub fn expected_document(key: i64) -> Vec<u8> {
    let pick =
        |salt: u64| ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 40;
    format!(
        "{{\"id\":{key},\"plan\":\"{}\",\"city\":\"{}\",\"logins\":{},\"verified\":{}}}",
        ["free", "pro", "team"][(pick(1) % 3) as usize],
        ["Lisbon", "Osaka", "Lima", "Oslo"][(pick(2) % 4) as usize],
        pick(3) % 10_000,
        pick(4) % 2 == 0
    )
    .into_bytes()
}

/// The value the valid store's column family `f` holds for `key` (never one of the
/// default family's: reading one where the other belongs is caught).
pub fn expected_family_value(key: i64) -> Vec<u8> {
    let mut value = expected_value(key);
    value.push(0xF0);
    value
}

/// Builds a store from arbitrary bytes: `data` is cut into a segment file, an optional
/// checkpoint, and an optional identity file (else a valid one), then opened and read.
pub fn open_arbitrary_store(dir: &Path, data: &[u8]) -> Result<()> {
    let (control, rest) = data.split_first().map_or((0u8, &[][..]), |(first, rest)| (*first, rest));
    let cut = rest.len() * usize::from(control >> 4) / 16;
    let (segment, checkpoint) = rest.split_at(cut);
    if control & 1 == 1 {
        std::fs::write(dir.join("ALEXSTORAGE"), checkpoint.get(..32).unwrap_or(checkpoint))?;
    } else {
        std::fs::write(dir.join("ALEXSTORAGE"), StoreHeader::current(crate::Compression::None).encode())?;
    }
    std::fs::write(dir.join("00000001.seg"), segment)?;
    if control & 2 == 2 {
        std::fs::write(dir.join(CHECKPOINT_FILE), checkpoint)?;
    }
    if control & 4 == 4 {
        std::fs::write(dir.join("00000002.seg"), checkpoint)?;
    }
    read_everything(dir, control & 8 == 8)
}

/// Writes a valid store (puts, overwrites, deletes, a batch, a column family `f` beside
/// the default one, a family `g` written and dropped, a clean close), applies
/// `damage` (pairs of offset and xor mask, or truncations), opens it and reads every
/// key: any value returned must be the one written. When bit 1 of the first damage
/// byte is set, the store compresses with zstd and also holds [`DOCUMENT_KEYS`],
/// compacted with a trained dictionary.
pub fn damage_valid_store(dir: &Path, damage: &[u8]) -> Result<()> {
    let compressed = damage.first().is_some_and(|first| first & 2 == 2);
    {
        let db = match compressed {
            true => Options::new().segment_size(32 << 10).compression(crate::Compression::Zstd(1)).open(dir)?,
            false => Options::new().segment_size(8192).open(dir)?,
        };
        if compressed {
            for key in DOCUMENT_KEYS {
                db.put(key, expected_document(key))?;
            }
            db.compact()?;
        }
        for key in -40..40 {
            db.put(key, expected_value(key))?;
        }
        for key in (-40..40).step_by(3) {
            db.delete(key)?;
        }
        let family = db.column_family("f")?;
        let dropped = db.column_family("g")?;
        let mut batch = crate::WriteBatch::new();
        for key in (-40..40).step_by(3) {
            batch.put(key, expected_value(key));
            batch.put_cf(&family, key, expected_family_value(key));
            batch.put_cf(&dropped, key, b"dropped");
        }
        db.write(batch)?;
        for key in (-40..40).step_by(2) {
            family.put(key, expected_family_value(key))?;
        }
        db.drop_column_family("g")?;
        if damage.first().is_some_and(|first| first & 1 == 1) {
            db.simulate_crash();
        }
    }
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    files.sort();
    for chunk in damage.chunks(6) {
        let [which, a, b, c, mask, kind] = *chunk else { break };
        let Some(file) = files.get(usize::from(which) % files.len().max(1)) else { break };
        let mut bytes = std::fs::read(file)?;
        if bytes.is_empty() {
            continue;
        }
        let offset = (usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16) % bytes.len();
        if kind % 8 == 0 {
            bytes.truncate(offset);
        } else {
            bytes[offset] ^= mask.max(1);
        }
        std::fs::write(file, bytes)?;
    }
    read_everything(dir, true)
}

/// Opens the store and reads all it can (checking values is the callers' job:
/// [`damage_valid_store_checked`] knows what was written).
fn read_everything(dir: &Path, write_after: bool) -> Result<()> {
    let db = Db::open(dir)?;
    let _ = db.len();
    let _ = db.stats();
    let _ = db.verify();
    for key in (-64..64).chain(DOCUMENT_KEYS).chain([i64::MIN, i64::MAX, 0x0123_4567]) {
        if let Ok(Some(value)) = db.get(key) {
            // A store built by damage_valid_store holds only expected values; an
            // arbitrary store may hold anything, but reading it must not fail.
            let _ = value.len();
        }
    }
    for name in db.column_families() {
        if let Ok(family) = db.column_family(&name) {
            let _ = family.iter().count();
        }
    }
    if write_after {
        db.put(1_000, b"after")?;
        drop(db);
        let db = Db::open(dir)?;
        let _ = db.get(1_000)?;
    }
    Ok(())
}

/// Like `damage_valid_store`, and checks that every value read is the one written.
pub fn damage_valid_store_checked(dir: &Path, damage: &[u8]) {
    let _ = damage_valid_store(dir, damage);
    if let Ok(db) = Db::open(dir) {
        for key in -40..40 {
            if let Ok(Some(value)) = db.get(key) {
                assert_eq!(value.to_vec(), expected_value(key), "key {key}: wrong bytes returned");
            }
        }
        for key in DOCUMENT_KEYS {
            if let Ok(Some(value)) = db.get(key) {
                assert_eq!(value.to_vec(), expected_document(key), "key {key}: wrong bytes returned");
            }
        }
        let names = db.column_families();
        assert!(names.iter().all(|name| name == "f"), "families {names:?}: only f was left");
        if let Some(family) = names.first().and_then(|name| db.column_family(name).ok()) {
            for entry in family.iter().flatten() {
                let (key, value) = entry;
                assert_eq!(value.to_vec(), expected_family_value(key), "key {key} of f: wrong bytes returned");
            }
        }
    }
}
