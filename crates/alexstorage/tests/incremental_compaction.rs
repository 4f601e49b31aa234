//! Incremental compaction (`Db::compact_incremental`, what the background compactor
//! runs): it rewrites only some segments and leaves older compacted ones in place, so
//! a deleted key's tombstone must outlive its log segment while an older put of the
//! key may remain. Checked here: deleted keys stay deleted through crashes and full
//! replays (no checkpoint), a crash at every step loses and resurrects nothing, a
//! random workload matches a `BTreeMap` across compactions of both kinds, reopens and
//! crashes, and overwrites in write order are reclaimed without copying.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use alexstorage::testing::format::{
    Decoded, RecordHeader, RecordKind, SegmentHeader, SEGMENT_COMPACTED, SEGMENT_HEADER_SIZE,
};
use alexstorage::{Db, Error, Failpoint, Options, WriteBatch};

fn options() -> Options {
    Options::new().segment_size(16 << 10).background_compaction(false)
}

use common::versioned_value as value;

/// Every key reads its model value, a full scan is the model, and `verify` passes.
fn check(db: &Db, model: &BTreeMap<i64, Vec<u8>>, context: &str) {
    assert_eq!(db.len(), model.len(), "{context}");
    for (key, expected) in model {
        assert_eq!(db.get(*key).unwrap().as_deref(), Some(&expected[..]), "{context}: key {key}");
    }
    let scanned: Vec<(i64, Vec<u8>)> = db.iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
    let expected: Vec<(i64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    assert!(scanned == expected, "{context}: a scan differs from the model");
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
}

/// Reopens after a crash, with the checkpoint removed if `replay` (so that every
/// compacted segment, tombstones included, is replayed), and checks the model.
fn crash_and_check(db: Db, dir: &Path, model: &BTreeMap<i64, Vec<u8>>, replay: bool, context: &str) -> Db {
    db.simulate_crash();
    if replay {
        let _ = std::fs::remove_file(dir.join("CHECKPOINT"));
    }
    let db = options().open(dir).unwrap_or_else(|error| panic!("{context}: reopen: {error}"));
    check(&db, model, context);
    db
}

/// (puts, tombstones) in the compacted segment files of `dir`, each file's records
/// checked to ascend strictly by key.
fn compacted_records(dir: &Path) -> (usize, usize) {
    let (mut puts, mut tombstones) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if SegmentHeader::decode(&bytes).unwrap().flags & SEGMENT_COMPACTED == 0 {
            continue;
        }
        let mut at = SEGMENT_HEADER_SIZE;
        let mut previous = None;
        while let Decoded::Record { header, len } = RecordHeader::decode(&bytes[at..]) {
            match header.kind {
                RecordKind::Put => puts += 1,
                RecordKind::Delete => tombstones += 1,
                _ => {}
            }
            if header.kind != RecordKind::Dictionary {
                assert!(previous < Some(header.key), "{} is not in key order", path.display());
                previous = Some(header.key);
            }
            at += len;
        }
    }
    (puts, tombstones)
}

/// A store of the keys `0..keys`, 100 bytes each, compacted: every key in compacted
/// segments, each holding a slice of the keys.
fn compacted_store(dir: &Path, keys: i64) -> (Db, BTreeMap<i64, Vec<u8>>) {
    let db = options().open(dir).unwrap();
    let mut model = BTreeMap::new();
    for key in 0..keys {
        let bytes = value(key, 0, 100);
        db.put(key, &bytes).unwrap();
        model.insert(key, bytes);
    }
    db.compact().unwrap();
    (db, model)
}

#[test]
fn deleted_keys_stay_deleted_while_their_old_segments_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = compacted_store(dir.path(), 4000);
    // One key in twenty deleted: each compacted segment stays 95 % live.
    for key in (7..4000i64).step_by(20) {
        db.delete(key).unwrap();
        model.remove(&key);
    }
    // The first 200 keys overwritten ten times: the log's oldest segments and the
    // compacted segment of those keys become mostly garbage.
    for version in 1..=10 {
        for key in 0..200i64 {
            let bytes = value(key, version, 100);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
        }
    }
    let before = db.stats();
    let stats = db.compact_incremental().unwrap();
    assert!(!stats.full, "{stats:?}");
    assert!(stats.bytes_reclaimed > 0 && stats.segments_removed > 0, "{stats:?}");
    assert!(stats.tombstones > 0, "the deletes' tombstones are carried: {stats:?}");
    // Far less copied than the live data: most compacted segments stayed.
    assert!(stats.bytes_written * 4 < before.live_bytes, "{stats:?} against {before:?}");
    check(&db, &model, "after the incremental compaction");
    let (_, tombstones) = compacted_records(dir.path());
    assert_eq!(tombstones as u64, stats.tombstones, "the tombstones are in the compacted segments");
    // Replayed without a checkpoint, the tombstones keep the old puts deleted.
    let db = crash_and_check(db, dir.path(), &model, true, "replayed after a crash");
    let db = crash_and_check(db, dir.path(), &model, false, "from the checkpoint after a crash");
    // A full compaction drops every tombstone and all garbage.
    let stats = db.compact().unwrap();
    assert!(stats.full && stats.tombstones == 0, "{stats:?}");
    assert_eq!(compacted_records(dir.path()), (model.len(), 0));
    assert_eq!(db.stats().log_bytes, db.stats().live_bytes);
    crash_and_check(db, dir.path(), &model, true, "replayed after the full compaction");
}

#[test]
fn overwrites_in_write_order_are_reclaimed_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    let keys: Vec<i64> = (0..3000i64).map(|index| (index * 7919) % 3000).collect();
    let mut model = BTreeMap::new();
    let (mut written, mut copied, mut compactions) = (0u64, 0u64, 0);
    for pass in 0..4u32 {
        for (index, &key) in keys.iter().enumerate() {
            let bytes = value(key, pass, 100);
            db.put(key, &bytes).unwrap();
            written += 108;
            model.insert(key, bytes);
            if index % 500 == 499 {
                let stats = db.compact_incremental().unwrap();
                assert!(!stats.full, "pass {pass}: {stats:?}");
                copied += stats.bytes_written;
                compactions += u64::from(stats.segments_removed > 0);
            }
        }
    }
    // Each pass writes the keys in the same order: a segment's keys are all
    // overwritten by the time the next pass passes it, so the oldest segments go
    // whole; only the segment at each pass's edge has live records to copy.
    assert!(compactions >= 4, "{compactions} compactions removed segments");
    assert!(copied * 10 < written, "{copied} bytes copied for {written} written");
    let stats = db.stats();
    assert!((stats.log_bytes as f64) < 2.0 * stats.live_bytes as f64, "{stats:?}");
    check(&db, &model, "after the passes");
    crash_and_check(db, dir.path(), &model, true, "replayed after a crash");
}

/// A store whose compacted segments of negative keys are all overwritten and those of
/// the others only thinned by deletes (they stay: too live to pay), with the deletes
/// at the start of the log.
fn half_overwritten(dir: &Path) -> (Db, BTreeMap<i64, Vec<u8>>) {
    let db = options().open(dir).unwrap();
    let mut model = BTreeMap::new();
    let keys: Vec<i64> = (0..3000i64).map(|index| (index * 7919) % 3000 * 10 - 15000).collect();
    for &key in &keys {
        let bytes = value(key, 0, 80 + (key.unsigned_abs() % 7) as usize);
        db.put(key, &bytes).unwrap();
        model.insert(key, bytes);
    }
    db.compact().unwrap();
    let mut batch = WriteBatch::new();
    for key in keys.iter().skip(1).step_by(6) {
        batch.delete(*key);
        model.remove(key);
    }
    db.write(batch).unwrap();
    for (version, below) in [(1, 0), (2, -7500)] {
        for &key in keys.iter().filter(|&&key| key < below) {
            let bytes = value(key, version, 60 + version as usize * 10);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
        }
    }
    (db, model)
}

#[test]
fn a_crash_at_every_incremental_step_loses_nothing_and_resurrects_nothing() {
    // The scenario copies records into at least two outputs (commits before the last,
    // and the last), carries tombstones, and leaves some compacted segments alone.
    let outputs = {
        let dir = tempfile::tempdir().unwrap();
        let (db, model) = half_overwritten(dir.path());
        let stats = db.compact_incremental().unwrap();
        assert!(!stats.full && stats.segments_written >= 2 && stats.tombstones > 0, "{stats:?}");
        check(&db, &model, "the scenario");
        stats.segments_written
    };
    // Every step of every commit, the last included, each recovered both from the
    // checkpoint (where it still matches the manifest) and by a full replay.
    for point in Failpoint::ALL {
        let skips = if point == Failpoint::Sealed { 0..1 } else { 0..outputs };
        for (skip, replay) in skips.flat_map(|skip| [(skip, false), (skip, true)]) {
            let context = format!("{point:?}/{skip}, replay {replay}");
            let dir = tempfile::tempdir().unwrap();
            let (db, mut model) = half_overwritten(dir.path());
            db.set_compaction_failpoint(Some(point), skip);
            match db.compact_incremental() {
                Err(Error::InvalidArgument(message)) => assert!(message.contains("failpoint"), "{message}"),
                other => panic!("{context}: the failpoint did not fire: {other:?}"),
            }
            let db = crash_and_check(db, dir.path(), &model, replay, &context);
            // The store goes on: more writes, compactions of both kinds, reopens.
            for key in (-15000..15000i64).step_by(170) {
                let bytes = value(key, 3, 50);
                db.put(key, &bytes).unwrap();
                model.insert(key, bytes);
            }
            db.compact_incremental().unwrap();
            check(&db, &model, &context);
            let db = crash_and_check(db, dir.path(), &model, true, &context);
            db.compact().unwrap();
            let stats = db.stats();
            assert_eq!(stats.log_bytes, stats.live_bytes, "{context}: garbage after a full compaction");
            assert_eq!(compacted_records(dir.path()), (model.len(), 0), "{context}");
            crash_and_check(db, dir.path(), &model, true, &context);
        }
    }
}

/// A small deterministic generator (xorshift).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn random_workloads_match_the_model_across_compactions_and_crashes() {
    for seed in 1..=6u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut db = options().open(dir.path()).unwrap();
        let mut model: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let mut incremental = 0;
        for step in 0..40u32 {
            // A burst of writes over a key space that shifts with the steps, so that
            // some compacted segments go cold while others are overwritten.
            let base = i64::from(step) * 40;
            for write in 0..300u32 {
                let key = base + random.below(1200) as i64;
                match random.below(10) {
                    0..=1 => {
                        db.delete(key).unwrap();
                        model.remove(&key);
                    }
                    2 => {
                        let mut batch = WriteBatch::new();
                        for offset in 0..4 {
                            let bytes = value(key + offset, step * 1000 + write, 30);
                            batch.put(key + offset, &bytes);
                            model.insert(key + offset, bytes);
                        }
                        batch.delete(key + 5);
                        model.remove(&(key + 5));
                        db.write(batch).unwrap();
                    }
                    _ => {
                        let bytes = value(key, step * 1000 + write, 20 + random.below(150) as usize);
                        db.put(key, &bytes).unwrap();
                        model.insert(key, bytes);
                    }
                }
            }
            let context = format!("seed {seed}, step {step}");
            match random.below(8) {
                0 => {
                    db.compact().unwrap();
                }
                1 => {
                    db = crash_and_check(db, dir.path(), &model, random.below(2) == 0, &context);
                }
                2 => {
                    drop(db);
                    db = options().open(dir.path()).unwrap();
                }
                _ => {
                    let stats = db.compact_incremental().unwrap();
                    incremental += u64::from(!stats.full && stats.segments_removed > 0);
                }
            }
            check(&db, &model, &context);
        }
        crash_and_check(db, dir.path(), &model, true, &format!("seed {seed}, at the end"));
        assert!(incremental >= 5, "seed {seed}: only {incremental} incremental compactions removed segments");
    }
}

#[test]
fn carried_tombstones_outlive_the_puts_they_delete_through_a_later_compaction() {
    // Compacted slices of 0..4000 stay in place (each thinned by deletes, too live to
    // pay); an incremental compaction copies large live values spread over the whole
    // key range, so its outputs split at keys inside those slices, and carries the
    // deletes' tombstones into them. A later compaction of everything must not retire
    // an output holding a tombstone while a slice holding the older put stays listed.
    let setup = |dir: &Path| {
        let (db, mut model) = compacted_store(dir, 4000);
        // Large values written twice each (so the log is half garbage), among the
        // deletes.
        let large: Vec<i64> = (5..4000i64).step_by(37).collect();
        for (index, key) in (0..4000i64).step_by(10).enumerate() {
            db.delete(key).unwrap();
            model.remove(&key);
            if let Some(&large) = large.get(index / 4).filter(|_| index % 4 == 0) {
                db.put(large, value(large, 1, 2000)).unwrap();
                let bytes = value(large, 2, 2000);
                db.put(large, &bytes).unwrap();
                model.insert(large, bytes);
            }
        }
        let stats = db.compact_incremental().unwrap();
        assert!(!stats.full && stats.tombstones > 0 && stats.segments_written >= 3, "{stats:?}");
        (db, model)
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, model) = setup(dir.path());
    let full = db.compact().unwrap();
    assert!(full.full && full.segments_written >= 4, "{full:?}");
    crash_and_check(db, dir.path(), &model, true, "after the full compaction");
    for skip in 0..full.segments_written - 1 {
        let context = format!("a crash after commit {skip} of the full compaction");
        let dir = tempfile::tempdir().unwrap();
        let (db, model) = setup(dir.path());
        db.set_compaction_failpoint(Some(Failpoint::Retired), skip);
        match db.compact() {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("failpoint"), "{message}"),
            other => panic!("{context}: the failpoint did not fire: {other:?}"),
        }
        crash_and_check(db, dir.path(), &model, true, &context);
    }
}

/// The segment files of `dir` in id order, each with whether it is compacted.
fn segment_files(dir: &Path) -> Vec<(std::path::PathBuf, bool)> {
    common::segment_files(dir)
        .into_iter()
        .map(|path| {
            let compacted =
                SegmentHeader::decode(&std::fs::read(&path).unwrap()).unwrap().flags & SEGMENT_COMPACTED != 0;
            (path, compacted)
        })
        .collect()
}

#[test]
fn the_log_left_after_an_incremental_compaction_is_checked_for_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    for version in 0..2u32 {
        // The second round overwrites the first third: the log's oldest segments die.
        let keys = if version == 0 { 0..3000i64 } else { 0..1000 };
        for key in keys {
            let bytes = value(key, version, 100);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
        }
    }
    let logs_before = segment_files(dir.path()).iter().filter(|(_, compacted)| !compacted).count();
    let stats = db.compact_incremental().unwrap();
    assert!(!stats.full && stats.records == 0 && stats.segments_removed > 0, "{stats:?}");
    let logs: Vec<_> = segment_files(dir.path()).into_iter().filter(|(_, compacted)| !compacted).collect();
    assert!(logs.len() >= 2 && logs.len() < logs_before, "{} log segments of {logs_before} left", logs.len());
    let db = crash_and_check(db, dir.path(), &model, true, "replayed after the incremental compaction");
    db.simulate_crash();
    // The manifest says where the log starts and which write comes first: losing the
    // first log segment left is corruption, not a shorter log.
    let _ = std::fs::remove_file(dir.path().join("CHECKPOINT"));
    std::fs::remove_file(&logs[0].0).unwrap();
    match options().open(dir.path()) {
        Err(Error::Corruption { .. }) => {}
        other => panic!("a store missing its first log segment opened: {:?}", other.map(|db| db.len())),
    }
}

#[test]
fn a_failed_incremental_compaction_makes_the_next_one_full() {
    use alexstorage::testing::faults::{arm, disarm_in, Fault, Op, Plan};
    let dir = tempfile::tempdir().unwrap();
    let (db, model) = half_overwritten(dir.path());
    // Creating the first output fails (on this thread: the background checkpointer may
    // be writing): no sync failed, so the store stays usable.
    let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
    arm(Plan { ops: vec![Op::Create], ..Plan::at(0, Fault::NoSpace) }.in_dir(dir.path()).on_thread(&thread));
    let failed = db.compact_incremental();
    let (_, fired) = disarm_in(Some(dir.path()));
    let created = fired.map(|(_, path)| path.extension().is_some_and(|extension| extension == "seg"));
    assert!(created == Some(true) && matches!(failed, Err(Error::Io(_))), "{failed:?}");
    check(&db, &model, "after the failed compaction");
    let stats = db.compact_incremental().unwrap();
    assert!(stats.full, "the compaction after a failed incremental one is full: {stats:?}");
    check(&db, &model, "after the full fallback");
    // Then incremental again: after the full one there is nothing to do.
    let stats = db.compact_incremental().unwrap();
    assert!(!stats.full && stats.segments_written == 0, "{stats:?}");
    crash_and_check(db, dir.path(), &model, true, "replayed after the fallback");
}

#[test]
fn tombstones_in_compacted_segments_older_than_version_6_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _model) = half_overwritten(dir.path());
    let stats = db.compact_incremental().unwrap();
    assert!(stats.tombstones > 0, "{stats:?}");
    db.simulate_crash();
    std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    // A compacted segment holding a tombstone, relabelled as version 5.
    let (path, _) = segment_files(dir.path())
        .into_iter()
        .filter(|(_, compacted)| *compacted)
        .find(|(path, _)| {
            let bytes = std::fs::read(path).unwrap();
            let mut at = SEGMENT_HEADER_SIZE;
            while let Decoded::Record { header, len } = RecordHeader::decode(&bytes[at..]) {
                if header.kind == RecordKind::Delete {
                    return true;
                }
                at += len;
            }
            false
        })
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let mut header = SegmentHeader::decode(&bytes).unwrap();
    header.version = 5;
    bytes[..SEGMENT_HEADER_SIZE].copy_from_slice(&header.encode());
    std::fs::write(&path, &bytes).unwrap();
    match options().open(dir.path()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!("a version-5 compacted segment with a tombstone opened: {:?}", other.map(|db| db.len())),
    }
}

#[test]
fn writers_and_deleters_run_through_incremental_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = compacted_store(dir.path(), 3000);
    let db = std::sync::Arc::new(db);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let compactor = {
        let (db, done, attempts) =
            (std::sync::Arc::clone(&db), std::sync::Arc::clone(&done), std::sync::Arc::clone(&attempts));
        std::thread::spawn(move || {
            let (mut incremental, mut tombstones) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                attempts.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                let stats = db.compact_incremental().unwrap();
                incremental += u64::from(!stats.full && stats.segments_removed > 0);
                tombstones += stats.tombstones;
            }
            (incremental, tombstones)
        })
    };
    // One writer: deletes and re-puts keys all over the compacted slices (the
    // tombstones an incremental compaction carries, and the keys written meanwhile),
    // and overwrites a hot range so that there is garbage to reclaim.
    let mut random = Random(0x5EED);
    for round in 0..60u32 {
        for _ in 0..200 {
            let key = random.below(3000) as i64;
            if random.below(2) == 0 {
                db.delete(key).unwrap();
                model.remove(&key);
            } else {
                let bytes = value(key, round + 1, 40 + random.below(100) as usize);
                db.put(key, &bytes).unwrap();
                model.insert(key, bytes);
            }
        }
        for key in 0..100i64 {
            let bytes = value(key, round + 1, 200);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
        }
        // However the threads are scheduled, compactions start all through the writes.
        while attempts.load(std::sync::atomic::Ordering::Acquire) < round / 3 {
            std::thread::yield_now();
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let (incremental, tombstones) = compactor.join().unwrap();
    assert!(incremental > 0 && tombstones > 0, "{incremental} incremental compactions, {tombstones} tombstones");
    check(&db, &model, "after the writes");
    let db = std::sync::Arc::try_unwrap(db).ok().unwrap();
    crash_and_check(db, dir.path(), &model, true, "replayed after a crash");
}

#[test]
fn column_families_keep_their_deletes_through_incremental_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = options().open(dir.path()).unwrap();
    let names = ["a", "b", "c"];
    let mut models: Vec<BTreeMap<i64, Vec<u8>>> = vec![BTreeMap::new(); names.len()];
    // The same keys in three families, compacted: compacted segments span families.
    for (index, name) in names.iter().enumerate() {
        let family = db.column_family(name).unwrap();
        for key in 0..1500i64 {
            let bytes = value(key, index as u32, 100);
            family.put(key, &bytes).unwrap();
            models[index].insert(key, bytes);
        }
    }
    db.compact().unwrap();
    // Family "b" loses one key in ten (its segments stay mostly live); family "a"
    // is overwritten twice (its segments, and the log's oldest, become garbage).
    let b = db.column_family("b").unwrap();
    for key in (3..1500i64).step_by(10) {
        b.delete(key).unwrap();
        models[1].remove(&key);
    }
    let a = db.column_family("a").unwrap();
    for version in 10..12 {
        for key in 0..1500i64 {
            let bytes = value(key, version, 100);
            a.put(key, &bytes).unwrap();
            models[0].insert(key, bytes);
        }
    }
    let stats = db.compact_incremental().unwrap();
    assert!(!stats.full && stats.tombstones > 0, "{stats:?}");
    let check_families = |db: &Db, context: &str| {
        for (index, name) in names.iter().enumerate() {
            let family = db.column_family(name).unwrap();
            let found: Vec<(i64, Vec<u8>)> =
                family.iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
            let expected: Vec<(i64, Vec<u8>)> = models[index].iter().map(|(k, v)| (*k, v.clone())).collect();
            assert!(found == expected, "{context}: family {name} differs from its model");
        }
        assert!(db.is_empty(), "{context}: the default family holds nothing");
        db.verify().unwrap();
    };
    check_families(&db, "after the incremental compaction");
    db.simulate_crash();
    std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    let db = options().open(dir.path()).unwrap();
    check_families(&db, "replayed after a crash");
}
