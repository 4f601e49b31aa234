//! Value compression (`Options::compression`): every write path stores compressible
//! values compressed and reads them back byte for byte; values that do not shrink
//! stay raw and zero-copy; a store reopened with another setting reads its old
//! records, and a compaction rewrites them with the new one (live-byte accounting
//! included); recovery by replay and from a checkpoint reads compressed records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alexstorage::{Compression, Db, Error, Options, WriteBatch};
use common::segment_files;

const SETTINGS: [Compression; 4] = [Compression::None, Compression::Lz4, Compression::Zstd(3), Compression::Zstd(-3)];

fn options(compression: Compression) -> Options {
    Options::new().compression(compression).background_compaction(false).segment_size(1 << 20)
}

/// A JSON-like document: repetitive, compresses well with any codec.
fn document(key: i64, len: usize) -> Vec<u8> {
    let mut doc = String::new();
    let mut field = 0;
    while doc.len() < len {
        doc.push_str(&format!("{{\"id\":{key},\"field\":{field},\"status\":\"active\",\"region\":\"eu-west\"}},"));
        field += 1;
    }
    doc.truncate(len);
    doc.into_bytes()
}

/// Bytes no codec shrinks by an eighth.
fn noise(key: i64, len: usize) -> Vec<u8> {
    let mut state = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every shape of value: empty, short, compressible of several sizes, incompressible.
fn value(key: i64) -> Vec<u8> {
    match key.rem_euclid(6) {
        0 => Vec::new(),
        1 => b"short".to_vec(),
        2 => document(key, 100),
        3 => document(key, 4000),
        4 => noise(key, 500),
        // One value past LZ4's 64 KiB window and a 3-byte length varint.
        _ if key == 5 => document(key, 70_000),
        _ => document(key, 7_000),
    }
}

fn fill(db: &Db, model: &mut BTreeMap<i64, Vec<u8>>, keys: std::ops::Range<i64>) {
    for key in keys.clone() {
        if key % 3 == 0 {
            let mut batch = WriteBatch::new();
            batch.put(key, value(key));
            batch.put(-key - 1_000_000, value(key + 1));
            db.write(batch).unwrap();
            model.insert(-key - 1_000_000, value(key + 1));
        } else {
            db.put(key, value(key)).unwrap();
        }
        model.insert(key, value(key));
    }
}

fn check(db: &Db, model: &BTreeMap<i64, Vec<u8>>, context: &str) {
    for (key, expected) in model {
        let got = db.get(*key).unwrap().unwrap_or_else(|| panic!("{context}: key {key} missing"));
        assert_eq!(&*got, &expected[..], "{context}: key {key}");
    }
    let scanned: Vec<(i64, Vec<u8>)> = db.iter().map(|entry| entry.unwrap()).map(|(k, v)| (k, v.to_vec())).collect();
    let expected: Vec<(i64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(scanned, expected, "{context}: scan");
}

/// The segment files whose first record is a dictionary (record kind 5 at offset 64).
fn segments_with_dictionary(path: &Path) -> Vec<PathBuf> {
    segment_files(path).into_iter().filter(|segment| std::fs::read(segment).unwrap().get(64 + 4) == Some(&5)).collect()
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path).unwrap().map(|entry| entry.unwrap().metadata().unwrap().len()).sum()
}

#[test]
fn every_setting_round_trips_every_kind_of_value_through_every_write_path() {
    for compression in SETTINGS {
        let dir = tempfile::tempdir().unwrap();
        let db = options(compression).open(dir.path()).unwrap();
        let mut model = BTreeMap::new();
        fill(&db, &mut model, 0..120);
        // A transaction and a named family take the same path.
        let mut txn = db.transaction();
        txn.put(5_000, document(5_000, 3000));
        assert_eq!(&*txn.get(5_000).unwrap().unwrap(), &document(5_000, 3000)[..]);
        txn.commit().unwrap();
        model.insert(5_000, document(5_000, 3000));
        let family = db.column_family("docs").unwrap();
        family.put(1, document(1, 2000)).unwrap();
        let context = format!("{compression:?}");
        check(&db, &model, &context);
        assert_eq!(&*family.get(1).unwrap().unwrap(), &document(1, 2000)[..]);
        let snapshot = db.snapshot();
        db.put(3, b"overwritten").unwrap();
        assert_eq!(&*snapshot.get(3).unwrap().unwrap(), &value(3)[..], "{context}: snapshot");
        db.put(3, value(3)).unwrap();
        drop(snapshot);

        // Compressed values are owned copies; raw ones (short, incompressible, or
        // compression off) stay zero-copy views. Key 3 was put, key 9 written by a
        // batch, key 5000 by a transaction, key 1 of "docs" by a family's put.
        let compressed = compression != Compression::None;
        for key in [3, 9, 5_000] {
            assert_eq!(db.get(key).unwrap().unwrap().is_zero_copy(), !compressed, "{context}: key {key}");
        }
        assert_eq!(family.get(1).unwrap().unwrap().is_zero_copy(), !compressed, "{context}");
        assert!(db.get(-3 - 1_000_000).unwrap().unwrap().is_zero_copy(), "{context}: batch's noise");
        // A transaction reads a committed compressed value.
        assert_eq!(&*db.transaction().get(9).unwrap().unwrap(), &value(9)[..], "{context}");
        for key in [1, 4] {
            assert!(db.get(key).unwrap().unwrap().is_zero_copy(), "{context}: key {key}");
        }
        db.verify().unwrap();
        drop((db, family));

        // Recovery from the close's checkpoint, and by replay without it.
        let db = options(compression).open(dir.path()).unwrap();
        check(&db, &model, &format!("{context}, reopened"));
        drop(db);
        std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
        let db = options(compression).open(dir.path()).unwrap();
        check(&db, &model, &format!("{context}, replayed"));
        assert_eq!(&*db.column_family("docs").unwrap().get(1).unwrap().unwrap(), &document(1, 2000)[..]);
    }
}

#[test]
fn compression_shrinks_compressible_values_on_disk() {
    let mut sizes = BTreeMap::new();
    for compression in SETTINGS {
        let dir = tempfile::tempdir().unwrap();
        let db = options(compression).open(dir.path()).unwrap();
        for key in 0..2000 {
            db.put(key, document(key, 1000)).unwrap();
        }
        sizes.insert(format!("{compression:?}"), db.stats().live_bytes);
    }
    let raw = sizes["None"];
    assert!(raw >= 2000 * 1000, "{sizes:?}");
    for setting in ["Lz4", "Zstd(3)", "Zstd(-3)"] {
        assert!(sizes[setting] * 3 < raw, "{setting} saves less than two thirds: {sizes:?}");
    }
    assert!(sizes["Zstd(3)"] < sizes["Lz4"], "{sizes:?}");
}

#[test]
fn incompressible_values_are_stored_as_given() {
    for compression in SETTINGS {
        let dir = tempfile::tempdir().unwrap();
        let db = options(compression).open(dir.path()).unwrap();
        for key in 0..100 {
            db.put(key, noise(key, 1000)).unwrap();
        }
        // Header (28 bytes) plus the value, nothing more.
        assert_eq!(db.stats().live_bytes, 100 * (28 + 1000), "{compression:?}");
        for key in 0..100 {
            let value = db.get(key).unwrap().unwrap();
            assert!(value.is_zero_copy());
            assert_eq!(&*value, &noise(key, 1000)[..]);
        }
    }
}

/// A store written with one setting, reopened with each other: it reads the old
/// records, writes new ones the new way, and a compaction rewrites the old ones
/// (shrinking or growing the store) with the live bytes matching the records.
#[test]
fn reopening_with_another_setting_reads_old_records_and_compaction_rewrites_them() {
    for first in SETTINGS {
        for second in SETTINGS {
            let context = format!("{first:?} then {second:?}");
            let dir = tempfile::tempdir().unwrap();
            let db = options(first).open(dir.path()).unwrap();
            let mut model = BTreeMap::new();
            fill(&db, &mut model, 0..90);
            let family = db.column_family("f").unwrap();
            for key in 0..50 {
                family.put(key, document(key, 800)).unwrap();
            }
            // One compaction under the first setting: the second must rewrite
            // compacted segments too, not only log segments.
            db.compact().unwrap();
            drop((db, family));

            let db = options(second).open(dir.path()).unwrap();
            check(&db, &model, &format!("{context}, before compaction"));
            fill(&db, &mut model, 90..120);
            let before = db.stats();
            let stats = db.compact().unwrap();
            let after = db.stats();
            check(&db, &model, &format!("{context}, after compaction"));
            let family = db.column_family("f").unwrap();
            for key in 0..50 {
                assert_eq!(&*family.get(key).unwrap().unwrap(), &document(key, 800)[..], "{context}");
            }
            // After a full compaction the log is exactly the live records.
            assert_eq!(after.log_bytes, after.live_bytes, "{context}");
            assert!(stats.records > 0, "{context}");
            let (was, now) = (first != Compression::None, second != Compression::None);
            match (was, now) {
                (false, true) => assert!(after.live_bytes * 2 < before.live_bytes, "{context}: {before:?} {after:?}"),
                (true, false) => assert!(after.live_bytes > before.live_bytes * 2, "{context}: {before:?} {after:?}"),
                // LZ4 to zstd shrinks the documents, zstd to LZ4 grows them.
                _ if first == Compression::Lz4 && second != Compression::Lz4 => {
                    assert!(stats.bytes_written < stats.bytes_read, "{context}: {stats:?}")
                }
                _ if first != Compression::Lz4 && second == Compression::Lz4 => {
                    assert!(stats.bytes_written > stats.bytes_read, "{context}: {stats:?}")
                }
                _ => {}
            }
            // The values now read as the second setting stores them.
            assert_eq!(db.get(3).unwrap().unwrap().is_zero_copy(), second == Compression::None, "{context}");
            db.verify().unwrap();
            // Each family's live bytes as a full replay counts them from the records.
            let families = |db: &Db| -> Vec<(String, u64)> {
                db.stats().families.into_iter().map(|family| (family.name, family.live_bytes)).collect()
            };
            let counted = families(&db);
            drop((db, family));
            std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
            let db = options(second).open(dir.path()).unwrap();
            check(&db, &model, &format!("{context}, replayed"));
            assert_eq!(families(&db), counted, "{context}: live bytes against a replay");
        }
    }
}

/// A compacted store is rewritten by `compact()` when the setting changed between
/// any two codecs, and only then.
#[test]
fn every_change_of_setting_rewrites_a_compacted_store() {
    for first in SETTINGS {
        for second in SETTINGS {
            let dir = tempfile::tempdir().unwrap();
            let db = options(first).open(dir.path()).unwrap();
            for key in 0..40 {
                db.put(key, document(key, 900)).unwrap();
            }
            db.compact().unwrap();
            assert_eq!(db.compact().unwrap().records, 0, "{first:?}: rewritten again");
            drop(db);
            let db = options(second).open(dir.path()).unwrap();
            let same = compression_kind(first) == compression_kind(second);
            assert_eq!(db.compact().unwrap().records, if same { 0 } else { 40 }, "{first:?} then {second:?}");
            assert_eq!(db.compact().unwrap().records, 0, "{first:?} then {second:?}: rewritten again");
            for key in 0..40 {
                assert_eq!(&*db.get(key).unwrap().unwrap(), &document(key, 900)[..]);
            }
        }
    }
}

fn compression_kind(compression: Compression) -> u8 {
    match compression {
        Compression::None => 0,
        Compression::Lz4 => 1,
        Compression::Zstd(_) => 2,
    }
}

/// A value whose compressed form is shorter than the 32-byte minimum is still
/// rewritten raw when compression is switched off.
#[test]
fn tiny_compressed_records_are_rewritten_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::Lz4).open(dir.path()).unwrap();
    db.put(1, vec![0u8; 1000]).unwrap();
    assert!(db.stats().live_bytes < 28 + 32, "{:?}", db.stats());
    drop(db);
    let db = options(Compression::None).open(dir.path()).unwrap();
    db.compact().unwrap();
    let value = db.get(1).unwrap().unwrap();
    assert!(value.is_zero_copy());
    assert_eq!(&*value, &[0u8; 1000][..]);
    assert_eq!(db.stats().live_bytes, 28 + 1000);
}

/// The 32-byte minimum and the level: 32 compressible bytes are compressed, 31 are
/// not; higher zstd levels store less.
#[test]
fn the_minimum_length_and_the_zstd_level_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::Lz4).open(dir.path().join("lz4")).unwrap();
    db.put(1, [0u8; 32]).unwrap();
    db.put(2, [0u8; 31]).unwrap();
    assert!(!db.get(1).unwrap().unwrap().is_zero_copy());
    assert!(db.get(2).unwrap().unwrap().is_zero_copy());
    let mut sizes = Vec::new();
    for level in [-5, 1, 19] {
        let db = options(Compression::Zstd(level)).open(dir.path().join(format!("zstd{level}"))).unwrap();
        for key in 0..300 {
            db.put(key, document(key, 3000)).unwrap();
        }
        sizes.push(db.stats().live_bytes);
    }
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "levels -5, 1, 19: {sizes:?}");
}

/// The store remembers its setting: an open that chooses none writes as the store
/// did, one that chooses another changes it; read-only opens and backups read
/// compressed stores, and a backup keeps the setting.
#[test]
fn the_setting_is_remembered_and_travels_with_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let db = options(Compression::Zstd(3)).open(&path).unwrap();
    db.put(1, document(1, 2000)).unwrap();
    drop(db);
    let db = Options::new().background_compaction(false).open(&path).unwrap();
    db.put(2, document(2, 2000)).unwrap();
    assert!(!db.get(2).unwrap().unwrap().is_zero_copy(), "a plain reopen stopped compressing");
    assert_eq!(db.compact().unwrap().records, 2);
    assert_eq!(db.compact().unwrap().records, 0, "a plain reopen's compaction changed the setting");
    let reader = Options::new().read_only(true).open(&path).unwrap();
    assert_eq!(&*reader.get(1).unwrap().unwrap(), &document(1, 2000)[..]);
    drop(reader);
    let backup = dir.path().join("backup");
    db.backup_to(&backup).unwrap();
    drop(db);
    let copy = Options::new().background_compaction(false).open(&backup).unwrap();
    assert_eq!(&*copy.get(2).unwrap().unwrap(), &document(2, 2000)[..]);
    copy.put(4, document(4, 2000)).unwrap();
    copy.compact().unwrap();
    for key in [1, 2, 4] {
        assert!(!copy.get(key).unwrap().unwrap().is_zero_copy(), "the backup lost the setting (key {key})");
    }
    drop(copy);
    // Choosing None changes the store's setting for later plain opens too.
    drop(options(Compression::None).open(&path).unwrap());
    let db = Options::new().background_compaction(false).open(&path).unwrap();
    db.put(3, document(3, 2000)).unwrap();
    assert!(db.get(3).unwrap().unwrap().is_zero_copy());
    assert_eq!(db.compact().unwrap().records, 3);
}

/// A store already compacted (one run of live records) is compacted again when the
/// setting changed, so that `compact()` after switching compression on shrinks it;
/// with the setting unchanged, there is nothing to do.
#[test]
fn a_compacted_store_is_rewritten_only_when_the_setting_changed() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::None).open(dir.path()).unwrap();
    for key in 0..500 {
        db.put(key, document(key, 2000)).unwrap();
    }
    db.compact().unwrap();
    assert_eq!(db.compact().unwrap().records, 0, "an unchanged compacted store was rewritten");
    drop(db);
    let raw = dir_bytes(dir.path());

    let db = options(Compression::Zstd(3)).open(dir.path()).unwrap();
    let stats = db.compact().unwrap();
    assert_eq!(stats.records, 500);
    assert!(stats.bytes_written * 4 < stats.bytes_read, "{stats:?}");
    assert_eq!(db.compact().unwrap().records, 0, "a compacted store with the same setting was rewritten");
    drop(db);
    assert!(dir_bytes(dir.path()) * 3 < raw, "{} against {raw}", dir_bytes(dir.path()));
    // Zstd at another level stores the same way: nothing to rewrite.
    let db = options(Compression::Zstd(9)).open(dir.path()).unwrap();
    assert_eq!(db.compact().unwrap().records, 0);
    for key in 0..500 {
        assert_eq!(&*db.get(key).unwrap().unwrap(), &document(key, 2000)[..]);
    }
}

/// Overwrites and deletes of compressed records keep the live bytes equal to what a
/// compaction leaves, whether the superseded record was written by a put or
/// rewritten by a compaction with another setting.
#[test]
fn live_bytes_follow_overwrites_of_rewritten_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::None).open(dir.path()).unwrap();
    for key in 0..300 {
        db.put(key, document(key, 1500)).unwrap();
    }
    drop(db);
    let db = options(Compression::Lz4).open(dir.path()).unwrap();
    db.compact().unwrap();
    for key in (0..300).step_by(3) {
        db.put(key, document(key + 1, 1500)).unwrap();
    }
    for key in (1..300).step_by(7) {
        db.delete(key).unwrap();
    }
    let live = db.stats().live_bytes;
    db.compact().unwrap();
    let after = db.stats();
    assert_eq!(after.live_bytes, live, "compaction changed live bytes with the setting unchanged");
    assert_eq!(after.log_bytes, after.live_bytes);
}

/// A compressed value whose checksum matches but whose compressed bytes are damaged
/// (a bug, or a crafted file) is `Error::Corruption` naming the segment file and the
/// record's offset, through get, scans, snapshots, verify and compaction; nothing
/// panics.
#[test]
fn damaged_compressed_values_are_corruption_at_the_record() {
    use alexstorage::testing::format::{Decoded, RecordHeader, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};
    for compression in [Compression::Lz4, Compression::Zstd(3)] {
        let dir = tempfile::tempdir().unwrap();
        let db = options(compression).open(dir.path()).unwrap();
        for key in 0..10 {
            db.put(key, document(key, 3000)).unwrap();
        }
        drop(db);
        // Find key 7's record, make its length varint claim one byte more, and
        // forge the checksum over the changed bytes.
        let segment = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&segment).unwrap();
        let mut at = SEGMENT_HEADER_SIZE;
        let offset = loop {
            let Decoded::Record { header, len } = RecordHeader::decode(&bytes[at..]) else { panic!("no key 7") };
            if header.key == 7 {
                assert_ne!(header.flags, 0, "{compression:?}: not compressed");
                break at;
            }
            at += len;
        };
        bytes[offset + RECORD_HEADER_SIZE] ^= 1;
        let value_len = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap()) as usize;
        let crc = common::crc32c(&bytes[offset + 4..offset + RECORD_HEADER_SIZE + value_len]);
        bytes[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&segment, &bytes).unwrap();

        let at_record = |error: Error| match error {
            Error::Corruption { file, offset: found, .. } => file == segment && found == offset as u64,
            _ => false,
        };
        let db = options(compression).open(dir.path()).unwrap();
        assert!(at_record(db.get(7).unwrap_err()), "{compression:?}: get");
        assert_eq!(&*db.get(6).unwrap().unwrap(), &document(6, 3000)[..]);
        assert!(db.iter().any(|entry| entry.is_err_and(at_record)), "{compression:?}: scan");
        assert!(at_record(db.snapshot().get(7).unwrap_err()), "{compression:?}: snapshot");
        assert!(at_record(db.verify().unwrap_err()), "{compression:?}: verify");
        drop(db);
        // A compaction that must decompress it (another setting) stops there.
        let db = options(Compression::None).open(dir.path()).unwrap();
        assert!(at_record(db.compact().unwrap_err()), "{compression:?}: compaction");
    }
}

/// Small documents that share their structure and vocabulary, not their values: what
/// a trained dictionary is for.
fn profile(key: i64) -> Vec<u8> {
    let pick =
        |salt: u64| ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 33;
    let cities = ["Lisbon", "Berlin", "Osaka", "Denver", "Nairobi", "Lima"];
    format!(
        "{{\"id\":{key},\"user\":\"user{}\",\"city\":\"{}\",\"plan\":\"{}\",\"verified\":{},\"logins\":{},\
         \"settings\":{{\"theme\":\"{}\",\"lang\":\"{}\"}},\"created\":\"2026-{:02}-{:02}\"}}",
        pick(1) % 100_000,
        cities[(pick(2) % 6) as usize],
        ["free", "pro", "team", "enterprise"][(pick(3) % 4) as usize],
        pick(4) % 2 == 0,
        pick(5) % 5000,
        ["dark", "light"][(pick(6) % 2) as usize],
        ["en", "de", "ja", "pt"][(pick(7) % 4) as usize],
        1 + pick(8) % 12,
        1 + pick(9) % 28,
    )
    .into_bytes()
}

/// Under zstd, compaction trains a dictionary on the store's values when one pays,
/// starts every compacted segment with it and compresses values with it: small
/// similar documents shrink far below what zstd stores per value alone. The
/// dictionary is read back after a reopen, a replay and in a backup; it is kept by
/// later compactions; another setting compacts it away; damage to it is corruption
/// at the dictionary's record.
#[test]
fn compaction_trains_a_dictionary_for_small_similar_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let db = options(Compression::Zstd(3)).open(&path).unwrap();
    for key in 0..4000 {
        db.put(key, profile(key)).unwrap();
    }
    let plain = db.stats().live_bytes;
    db.compact().unwrap();
    let trained = db.stats().live_bytes;
    assert!(trained * 10 < plain * 6, "a dictionary saves too little: {trained} against {plain}");
    assert_eq!(db.stats().log_bytes, trained, "the dictionary is counted as a write");
    let check = |db: &Db, context: &str| {
        let keys = db.len() as i64;
        assert!(keys == 4000 || keys == 4100, "{context}: {keys} keys");
        for key in 0..keys {
            let value = db.get(key).unwrap().unwrap();
            assert_eq!(&*value, &profile(key)[..], "{context}: key {key}");
        }
        assert_eq!(db.iter().count() as i64, keys, "{context}");
    };
    check(&db, "compacted");
    db.verify().unwrap();
    // A later compaction keeps the dictionary: the old records copy as they are.
    for key in 4000..4100 {
        db.put(key, profile(key)).unwrap();
    }
    db.put(0, profile(0)).unwrap();
    db.compact().unwrap();
    assert!(db.stats().live_bytes < trained + 100 * 200, "{:?}", db.stats());
    let backup = dir.path().join("backup");
    db.backup_to(&backup).unwrap();
    drop(db);
    let db = options(Compression::Zstd(3)).open(&path).unwrap();
    check(&db, "reopened");
    drop(db);
    std::fs::remove_file(path.join("CHECKPOINT")).unwrap();
    let db = options(Compression::Zstd(3)).open(&path).unwrap();
    check(&db, "replayed");
    drop(db);
    let copy = Options::new().read_only(true).open(&backup).unwrap();
    check(&copy, "backup");
    copy.verify().unwrap();
    drop(copy);

    // Damage to the dictionary (its id; checksum forged) is corruption in its
    // segment, for every read of a value compressed with it and for verify; values
    // are never decoded with a wrong dictionary.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for entry in std::fs::read_dir(&backup).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let segment = segments_with_dictionary(&damaged).into_iter().next().expect("a segment starting with a dictionary");
    let mut bytes = std::fs::read(&segment).unwrap();
    let dictionary_len = u32::from_le_bytes(bytes[64 + 8..64 + 12].try_into().unwrap()) as usize;
    // The zstd dictionary's id (bytes 4..8 of the dictionary) changes.
    bytes[64 + 28 + 5] ^= 0x40;
    let crc = common::crc32c(&bytes[64 + 4..64 + 28 + dictionary_len]);
    bytes[64..68].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segment, &bytes).unwrap();
    let db = Options::new().read_only(true).open(&damaged).unwrap();
    let mut corrupt = 0;
    for key in 0..4000 {
        match db.get(key) {
            Ok(Some(value)) => assert_eq!(&*value, &profile(key)[..]),
            // At the dictionary, or at the value whose frame names another one.
            Err(Error::Corruption { file, offset, .. }) => {
                assert!(file == segment && offset >= 64, "{}: {offset}", file.display());
                corrupt += 1;
            }
            other => panic!("key {key}: {other:?}"),
        }
    }
    assert!(corrupt > 3000, "{corrupt} values read as corrupt");
    assert!(matches!(db.verify(), Err(Error::Corruption { .. })));
    drop(db);

    // Another setting compacts the dictionary away.
    let db = options(Compression::Lz4).open(&path).unwrap();
    db.compact().unwrap();
    check(&db, "lz4");
    assert_eq!(db.stats().log_bytes, db.stats().live_bytes);
}

/// Values that share nothing train no dictionary: the compaction stores them as
/// zstd alone would.
#[test]
fn no_dictionary_when_it_would_not_pay() {
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::Zstd(3)).open(dir.path()).unwrap();
    for key in 0..3000 {
        db.put(key, noise(key, 300)).unwrap();
    }
    let before = db.stats().live_bytes;
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!((stats.live_bytes, stats.log_bytes), (before, before));
    assert!(!segment_files(dir.path()).is_empty());
    assert_eq!(segments_with_dictionary(dir.path()), Vec::<PathBuf>::new(), "a dictionary was written");
}

/// The first record of the first compacted segment under `path`: (kind, value length).
fn first_record(path: &Path) -> Option<(u8, usize)> {
    segment_files(path).into_iter().find_map(|segment| {
        let bytes = std::fs::read(segment).unwrap();
        // Segment header flags bit 0: compacted.
        (bytes.len() > 92 && bytes[20] & 1 == 1)
            .then(|| (bytes[64 + 4], u32::from_le_bytes(bytes[64 + 8..64 + 12].try_into().unwrap()) as usize))
    })
}

/// A dictionary is at most a sixteenth of a segment (it starts every compacted
/// one), and segments too small for a useful one get none.
#[test]
fn dictionaries_are_bounded_by_the_segment_size() {
    for (segment_size, most) in [(64 << 10, Some(4 << 10)), (8 << 10, None)] {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new()
            .compression(Compression::Zstd(3))
            .background_compaction(false)
            .segment_size(segment_size)
            .open(dir.path())
            .unwrap();
        for key in 0..3000 {
            db.put(key, profile(key)).unwrap();
        }
        db.compact().unwrap();
        let stats = db.stats();
        assert_eq!(stats.log_bytes, stats.live_bytes);
        match (first_record(dir.path()), most) {
            (Some((5, len)), Some(most)) => assert!(len <= most, "{segment_size}: a dictionary of {len} bytes"),
            (Some((kind, _)), None) => assert_eq!(kind, 1, "{segment_size}: a dictionary in a small segment"),
            other => panic!("{segment_size}: {other:?}"),
        }
        for key in 0..3000 {
            assert_eq!(&*db.get(key).unwrap().unwrap(), &profile(key)[..]);
        }
    }
}

/// A dictionary record damaged without its checksum forged (its length, or its
/// content) is not trusted: the store opens from its checkpoint with sane log bytes,
/// the values compressed with it are corruption, not panics, and a compaction stops
/// at them rather than spread the damage (no other copy is made from it).
#[test]
fn a_damaged_dictionary_is_never_trusted_or_spread() {
    for (at, damage) in [(64 + 11, 0x7f), (64 + 28 + 300, 0x55)] {
        let dir = tempfile::tempdir().unwrap();
        let db = options(Compression::Zstd(3)).open(dir.path()).unwrap();
        for key in 0..3000 {
            db.put(key, profile(key)).unwrap();
        }
        db.compact().unwrap();
        let healthy = db.stats().log_bytes;
        drop(db);
        let segment = segments_with_dictionary(dir.path()).into_iter().next().expect("a dictionary");
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[at] ^= damage;
        std::fs::write(&segment, &bytes).unwrap();
        let reads = |db: &Db| {
            let mut corrupt = 0;
            for key in 0..3000 {
                match db.get(key) {
                    Ok(value) => assert_eq!(&*value.unwrap(), &profile(key)[..]),
                    Err(Error::Corruption { .. }) => corrupt += 1,
                    Err(other) => panic!("{other}"),
                }
            }
            corrupt
        };
        let db = Options::new().read_only(true).open(dir.path()).unwrap();
        assert!(db.stats().log_bytes <= healthy + (1 << 20), "{:?}", db.stats());
        let corrupt = reads(&db);
        assert!(corrupt > 0, "damage at {at}");
        assert!(db.verify().is_err());
        drop(db);
        let db = options(Compression::Zstd(3)).open(dir.path()).unwrap();
        db.put(5000, profile(5000)).unwrap();
        assert!(matches!(db.compact(), Err(Error::Corruption { .. })), "damage at {at}: compacted");
        assert_eq!(reads(&db), corrupt, "damage at {at}: the compaction changed what reads");
    }
}

/// A snapshot reads the version it sees even when the newer version's compressed
/// bytes are damaged (its checksum forged): it neither decompresses nor fails on a
/// version it does not see; the latest read reports the damage.
#[test]
fn a_snapshot_never_decodes_a_newer_version() {
    use std::os::unix::fs::FileExt;

    use alexstorage::testing::format::{Decoded, RecordHeader, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};
    let dir = tempfile::tempdir().unwrap();
    let db = options(Compression::Lz4).open(dir.path()).unwrap();
    db.put(7, document(7, 3000)).unwrap();
    let snapshot = db.snapshot();
    db.put(7, document(8, 3000)).unwrap();
    db.flush().unwrap();
    // The newer record of key 7: the one with the higher sequence.
    let segment = segment_files(dir.path()).remove(0);
    let bytes = std::fs::read(&segment).unwrap();
    let (mut at, mut newest) = (SEGMENT_HEADER_SIZE, None);
    while let Decoded::Record { header, len } = RecordHeader::decode(&bytes[at..]) {
        if header.key == 7 && header.flags != 0 {
            newest = Some((at, len));
        }
        at += len;
    }
    let (at, len) = newest.unwrap();
    let mut record = bytes[at..at + len].to_vec();
    record[RECORD_HEADER_SIZE] ^= 1; // the length prefix claims another length
    let crc = common::crc32c(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().write_all_at(&record, at as u64).unwrap();

    assert_eq!(&*snapshot.get(7).unwrap().unwrap(), &document(7, 3000)[..]);
    assert!(matches!(db.get(7), Err(Error::Corruption { .. })));
}
