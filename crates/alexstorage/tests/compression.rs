//! Value compression (`Options::compression`): every write path stores compressible
//! values compressed and reads them back byte for byte; values that do not shrink
//! stay raw and zero-copy; a store reopened with another setting reads its old
//! records, and a compaction rewrites them with the new one (live-byte accounting
//! included); recovery by replay and from a checkpoint reads compressed records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use alexstorage::{Compression, Db, Options, WriteBatch};

const SETTINGS: [Compression; 4] =
    [Compression::None, Compression::Lz4, Compression::Zstd(3), Compression::Zstd(-3)];

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
        _ => document(key, 70_000),
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
        // compression off) stay zero-copy views.
        let compressed = db.get(3).unwrap().unwrap();
        assert_eq!(compressed.is_zero_copy(), compression == Compression::None, "{context}");
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
            // After a full compaction the log is exactly the live records, and the
            // per-family live bytes add up to them.
            assert_eq!(after.log_bytes, after.live_bytes, "{context}");
            assert_eq!(after.families.iter().map(|f| f.live_bytes).sum::<u64>(), after.live_bytes, "{context}");
            assert!(stats.records > 0, "{context}");
            let (was, now) = (first != Compression::None, second != Compression::None);
            match (was, now) {
                (false, true) => assert!(after.live_bytes * 2 < before.live_bytes, "{context}: {before:?} {after:?}"),
                (true, false) => assert!(after.live_bytes > before.live_bytes * 2, "{context}: {before:?} {after:?}"),
                _ => {}
            }
            // The values now read as the second setting stores them.
            assert_eq!(db.get(3).unwrap().unwrap().is_zero_copy(), second == Compression::None, "{context}");
            db.verify().unwrap();
            drop((db, family));
            let db = options(second).open(dir.path()).unwrap();
            check(&db, &model, &format!("{context}, reopened"));
        }
    }
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
