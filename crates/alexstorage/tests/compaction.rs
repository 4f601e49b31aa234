//! Compaction: reclaimed space, key order, readers across a compaction, crashes at
//! every step, and the background thread's bound on disk use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alexstorage::testing::format::{Decoded, RecordHeader, SegmentHeader, SEGMENT_COMPACTED, SEGMENT_HEADER_SIZE};
use alexstorage::{Db, Error, Failpoint, Options, WriteBatch};

use common::versioned_value as value;

/// Bytes allocated on disk for the files in `dir` (`du`).
fn disk_usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.blocks() * 512)
        .sum()
}

/// The user's live data: key and value bytes of every live key.
fn live_data(model: &BTreeMap<i64, Vec<u8>>) -> u64 {
    model.values().map(|value| 8 + value.len() as u64).sum()
}

/// Every key reads its model value, and a full scan (both directions) is the model.
fn check(db: &Db, model: &BTreeMap<i64, Vec<u8>>) {
    assert_eq!(db.len(), model.len());
    for (key, expected) in model {
        assert_eq!(db.get(*key).unwrap().as_deref(), Some(&expected[..]), "key {key}");
    }
    let scanned: Vec<(i64, Vec<u8>)> = db.iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
    let expected: Vec<(i64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
    assert_eq!(scanned, expected);
    let backwards = db.iter().rev().map(|entry| entry.unwrap().0);
    assert!(backwards.eq(model.keys().rev().copied()));
    db.verify().unwrap();
}

/// Writes `version` to every key in one batch.
fn write_version(db: &Db, keys: &[i64], version: u32) {
    let mut batch = WriteBatch::new();
    for &key in keys {
        batch.put(key, version.to_le_bytes());
    }
    db.write(batch).unwrap();
}

/// The version a full scan reads for each key (values from [`write_version`]).
fn scanned_versions(db: &Db) -> Vec<u32> {
    db.iter().map(|entry| u32::from_le_bytes(entry.unwrap().1[..4].try_into().unwrap())).collect()
}

/// Keys in a scattered order, so that the log holds them out of key order.
fn scattered(count: i64) -> Vec<i64> {
    (0..count).map(|index| (index * 7919) % count * 10 - count * 5).collect()
}

/// Overwrites every key `rounds` times and deletes every third one.
fn churn(db: &Db, model: &mut BTreeMap<i64, Vec<u8>>, keys: &[i64], rounds: u32, len: usize) {
    for round in 0..rounds {
        for &key in keys {
            let bytes = value(key, round, len + (key.unsigned_abs() % 7) as usize);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
        }
    }
    for &key in keys.iter().step_by(3) {
        db.delete(key).unwrap();
        model.remove(&key);
    }
}

/// The keys of every compacted segment file in `dir`, per file in id order; checks
/// that each file's keys strictly ascend.
fn compacted_keys(dir: &Path) -> Vec<Vec<i64>> {
    let mut runs = Vec::new();
    for path in common::segment_files(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let header = SegmentHeader::decode(&bytes).unwrap();
        if header.flags & SEGMENT_COMPACTED == 0 {
            continue;
        }
        let mut keys = Vec::new();
        let mut at = SEGMENT_HEADER_SIZE;
        while let Decoded::Record { header, len } = RecordHeader::decode(&bytes[at..]) {
            keys.push(header.key);
            at += len;
        }
        assert_eq!(at, bytes.len(), "{} ends in something other than records", path.display());
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{} is not in key order", path.display());
        runs.push(keys);
    }
    runs
}

#[test]
fn compact_reclaims_space_and_rewrites_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::new().segment_size(64 << 10).background_compaction(false);
    let db = options().open(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    let keys = scattered(3000);
    churn(&db, &mut model, &keys, 4, 120);
    let before = db.stats();
    assert!(before.log_bytes > 3 * before.live_bytes, "{before:?}");
    let disk_before = disk_usage(dir.path());

    let stats = db.compact().unwrap();
    assert_eq!(stats.records, model.len() as u64);
    assert_eq!(stats.bytes_written, before.live_bytes);
    assert_eq!(stats.bytes_read, stats.bytes_written);
    assert!(stats.segments_removed >= before.segments as u64 - 1, "{stats:?} {before:?}");
    assert!(stats.segments_written > 1, "outputs roll over at segment_size: {stats:?}");
    assert!(stats.bytes_reclaimed > 0);
    let after = db.stats();
    assert_eq!(after.log_bytes, after.live_bytes, "nothing but live records is left");
    assert_eq!(after.live_bytes, before.live_bytes);
    assert_eq!(after.compactions, 1);
    check(&db, &model);
    let disk = disk_usage(dir.path());
    let live = live_data(&model);
    assert!(disk < disk_before / 2);
    assert!((disk as f64) <= 1.3 * live as f64, "{disk} bytes on disk for {live} bytes of data");

    // One run in key order across the files, holding exactly the live keys.
    let runs = compacted_keys(dir.path());
    let all: Vec<i64> = runs.concat();
    assert!(all.iter().copied().eq(model.keys().copied()));

    // A second compaction with nothing to do does nothing.
    assert_eq!(db.compact().unwrap(), alexstorage::CompactionStats::default());

    // Reopen: fast (from the checkpoint written after compaction) and identical.
    drop(db);
    let db = options().open(dir.path()).unwrap();
    assert!(db.stats().opened_from_checkpoint);
    assert_eq!(db.stats().live_bytes, after.live_bytes);
    check(&db, &model);
    // And with no checkpoint at all: the compacted segments are replayed.
    drop(db);
    std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    let db = options().open(dir.path()).unwrap();
    assert!(!db.stats().opened_from_checkpoint);
    assert_eq!(db.stats().live_bytes, after.live_bytes);
    check(&db, &model);

    // Writes after a compaction, then another one: deletes of compacted keys stick.
    churn(&db, &mut model, &keys[..1000], 1, 40);
    let deleted: Vec<i64> = keys[1000..].iter().step_by(5).copied().collect();
    for key in &deleted {
        db.delete(*key).unwrap();
        model.remove(key);
    }
    db.compact().unwrap();
    check(&db, &model);
    drop(db);
    let db = options().open(dir.path()).unwrap();
    check(&db, &model);
    assert_eq!(db.stats().log_bytes, db.stats().live_bytes);
}

#[test]
fn compaction_keeps_what_values_snapshots_and_ranges_read() {
    readers_outlive_compactions(|db| {
        assert!(db.compact().unwrap().full);
    });
}

#[test]
fn incremental_compaction_keeps_what_values_snapshots_and_ranges_read() {
    let removed = std::cell::Cell::new(0);
    readers_outlive_compactions(|db| {
        let stats = db.compact_incremental().unwrap();
        assert!(!stats.full, "{stats:?}");
        removed.set(removed.get() + stats.segments_removed);
    });
    assert!(removed.get() > 0, "no incremental compaction retired a segment");
}

/// Values, a snapshot and ranges taken before two rounds of overwrites, deletes and
/// `compact`ions read what they read before.
fn readers_outlive_compactions(compact: impl Fn(&Db)) {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    let keys = scattered(2000);
    let mut model = BTreeMap::new();
    churn(&db, &mut model, &keys, 2, 100);
    let frozen = model.clone();
    let held: Vec<(i64, alexstorage::Value)> =
        model.keys().step_by(97).map(|&key| (key, db.get(key).unwrap().unwrap())).collect();
    let snapshot = db.snapshot();
    let mut range = db.range(..);
    let mut reverse = snapshot.range(-5000..5000).rev();
    let first = range.next().unwrap();
    let last = reverse.next().unwrap();

    // Overwrite and delete everything, and compact twice: the old segments are
    // retired (their files deleted) while these readers hold them.
    churn(&db, &mut model, &keys, 1, 60);
    for key in keys.iter().step_by(2) {
        db.delete(*key).unwrap();
        model.remove(key);
    }
    compact(&db);
    churn(&db, &mut model, &keys[..500], 1, 30);
    compact(&db);
    assert!(db.stats().retained_versions > 0, "the snapshot keeps superseded versions");

    for (key, value) in &held {
        assert_eq!(&value[..], &frozen[key][..], "a held value changed");
    }
    for (key, expected) in &frozen {
        assert_eq!(snapshot.get(*key).unwrap().as_deref(), Some(&expected[..]), "snapshot key {key}");
    }
    let rest: Vec<(i64, Vec<u8>)> = std::iter::once(first)
        .chain(range)
        .map(|entry| entry.map(|(k, v)| (k, v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(rest.iter().map(|(k, v)| (k, v)).eq(frozen.iter()), "a range taken before compaction changed");
    let backwards: Vec<i64> = std::iter::once(last).chain(reverse).map(|entry| entry.unwrap().0).collect();
    assert!(backwards.iter().eq(frozen.range(-5000..5000).rev().map(|(k, _)| k)));
    assert_eq!(snapshot.len(), frozen.len());
    check(&db, &model);

    drop(snapshot);
    assert_eq!(db.stats().retained_versions, 0);
    drop(held);
    check(&db, &model);
}

#[test]
fn a_crash_at_every_compaction_step_loses_nothing_and_resurrects_nothing() {
    for point in Failpoint::ALL {
        // Sealing happens once per compaction; every later step once per output
        // segment: skip 0 stops at the first output, 1 and 2 at later ones.
        let skips = if point == Failpoint::Sealed { 0..1 } else { 0..3 };
        for skip in skips {
            let dir = tempfile::tempdir().unwrap();
            let options = || Options::new().segment_size(16 << 10).background_compaction(false);
            let db = options().open(dir.path()).unwrap();
            let mut model = BTreeMap::new();
            let keys = scattered(1200);
            churn(&db, &mut model, &keys, 2, 80);
            // A first compaction, so that later ones also retire compacted segments.
            db.compact().unwrap();
            churn(&db, &mut model, &keys[..700], 1, 50);
            let mut batch = WriteBatch::new();
            for key in keys.iter().skip(1).step_by(4) {
                batch.delete(*key);
                model.remove(key);
            }
            db.write(batch).unwrap();
            db.set_compaction_failpoint(Some(point), skip);
            // The live data spans at least three output segments: every failpoint fires.
            match db.compact() {
                Err(Error::InvalidArgument(message)) => assert!(message.contains("failpoint"), "{message}"),
                other => panic!("{point:?}/{skip}: the failpoint did not fire: {other:?}"),
            }
            db.simulate_crash();
            let db = options().open(dir.path()).unwrap();
            check(&db, &model);
            // No leftovers survive recovery, and the store compacts and reopens.
            db.compact().unwrap();
            check(&db, &model);
            drop(db);
            let db = options().open(dir.path()).unwrap();
            check(&db, &model);
            assert_eq!(db.stats().log_bytes, db.stats().live_bytes, "{point:?}/{skip}");
        }
    }
}

#[test]
fn background_compaction_keeps_disk_use_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Default options but small segments: the live data spans many of them.
    let db = Options::new().segment_size(64 << 10).open(dir.path()).unwrap();
    let keys = scattered(20_000);
    let mut model = BTreeMap::new();
    let mut peak = 0f64;
    // Deleting half the keys doubles the ratio at once (their records are still on
    // disk): samples wait for the next compaction after the deletes.
    let mut compactions_at_delete = None;
    for round in 0..16u32 {
        for (index, &key) in keys.iter().enumerate() {
            let bytes = value(key, round, 100);
            db.put(key, &bytes).unwrap();
            model.insert(key, bytes);
            let settled = compactions_at_delete.is_none_or(|at| db.stats().compactions > at);
            if index % 1000 == 0 && round > 0 && settled {
                let ratio = disk_usage(dir.path()) as f64 / live_data(&model) as f64;
                peak = peak.max(ratio);
            }
        }
        if round == 8 {
            for key in keys.iter().step_by(2) {
                db.delete(*key).unwrap();
                model.remove(key);
            }
            compactions_at_delete = Some(db.stats().compactions);
        }
    }
    let stats = db.stats();
    eprintln!("peak disk use {peak:.2}x the live data; {stats:?}");
    assert!(stats.compactions >= 5, "{stats:?}");
    assert!(peak <= 2.0, "disk use reached {peak:.2}x the live data");
    check(&db, &model);
}

#[test]
fn readers_and_writers_run_through_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    // Each key's value is its version; writers bump versions, so a reader's snapshot
    // must see every key at the version of one moment: all keys of a batch equal.
    let keys: Vec<i64> = scattered(800);
    write_version(&db, &keys, 0);
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let compactor = scope.spawn(|| {
            let mut compactions = 0;
            while !stop.load(Ordering::Relaxed) {
                db.compact().unwrap();
                compactions += 1;
            }
            compactions
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut scans = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let versions = scanned_versions(&db);
                        assert_eq!(versions.len(), keys.len());
                        assert!(versions.iter().all(|version| *version == versions[0]), "a scan saw two versions");
                        scans += 1;
                    }
                    scans
                })
            })
            .collect();
        for version in 1..300u32 {
            write_version(&db, &keys, version);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(compactor.join().unwrap() > 0);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    let model: BTreeMap<i64, Vec<u8>> = keys.iter().map(|&key| (key, 299u32.to_le_bytes().to_vec())).collect();
    check(&db, &model);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    check(&db, &model);
}

#[test]
fn read_only_opens_racing_compactions_see_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(32 << 10).background_compaction(false).open(dir.path()).unwrap();
    let keys = scattered(400);
    // Every batch rewrites all keys with one version: a reader sees all keys, at one
    // version, whatever the compactions deleted and renamed meanwhile.
    write_version(&db, &keys, 0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut opens = 0;
            while !stop.load(Ordering::Relaxed) {
                let snapshot = Options::new().read_only(true).open(dir.path()).unwrap();
                let versions = scanned_versions(&snapshot);
                assert_eq!(versions.len(), keys.len(), "a read-only open missed keys");
                assert!(versions.iter().all(|version| *version == versions[0]));
                opens += 1;
            }
            opens
        });
        // Full and incremental compactions by turns (an incremental one commits
        // manifests that keep some compacted segments and move the log's start).
        let mut incremental = 0;
        for version in 1..500u32 {
            write_version(&db, &keys, version);
            if version % 6 == 0 {
                db.compact().unwrap();
            } else if version % 6 == 3 {
                let stats = db.compact_incremental().unwrap();
                incremental += usize::from(!stats.full && stats.segments_removed > 0);
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert!(incremental > 0, "no incremental compaction did its work");
    });
}

#[test]
fn damaged_manifests_and_compacted_segments_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::new().segment_size(64 << 10).background_compaction(false);
    let db = options().open(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    churn(&db, &mut model, &scattered(1000), 2, 100);
    db.compact().unwrap();
    drop(db);
    let manifest = dir.path().join("MANIFEST");
    let good = std::fs::read(&manifest).unwrap();

    // A flipped byte in the manifest.
    let mut bad = good.clone();
    bad[45] ^= 1;
    std::fs::write(&manifest, &bad).unwrap();
    assert!(matches!(options().open(dir.path()), Err(Error::Corruption { .. })));
    std::fs::write(&manifest, &good).unwrap();

    // A listed segment whose record is damaged: open names the file and offset.
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.extension().is_some_and(|extension| extension == "seg")
                && SegmentHeader::decode(&std::fs::read(path).unwrap()).unwrap().flags & SEGMENT_COMPACTED != 0
        })
        .unwrap();
    let original = std::fs::read(&segment).unwrap();
    let mut damaged = original.clone();
    damaged[SEGMENT_HEADER_SIZE + 300] ^= 0x20;
    std::fs::write(&segment, &damaged).unwrap();
    std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    match options().open(dir.path()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, segment),
        other => panic!("expected corruption, got {other:?}"),
    }
    // With the checkpoint skipping the replay, the damage is found by verify() and by
    // the read that meets it, never returned as a value.
    std::fs::write(&segment, &original).unwrap();
    let db = options().open(dir.path()).unwrap();
    drop(db);
    std::fs::write(&segment, &damaged).unwrap();
    let db = options().open(dir.path()).unwrap();
    assert!(matches!(db.verify(), Err(Error::Corruption { .. })));
    let errors = db.iter().filter(|entry| entry.is_err()).count();
    assert!(errors >= 1);
    drop(db);

    // A listed segment that is missing.
    std::fs::remove_file(&segment).unwrap();
    assert!(matches!(options().open(dir.path()), Err(Error::Corruption { .. })));
}

#[test]
fn kill_during_compactions_loses_nothing() {
    let kills: usize = std::env::var("ALEXSTORAGE_COMPACTION_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    // The model: each key's last acknowledged version (None: deleted), from the
    // child's output: "W key version" before a write ("-" for a delete), "A" after it
    // returned.
    let mut model: BTreeMap<i64, Option<u32>> = BTreeMap::new();
    let (mut compactions, mut incremental, mut carried) = (0, 0, 0);
    let version_of =
        |db: &Db, key: i64| db.get(key).unwrap().map(|value| u32::from_le_bytes(value[..4].try_into().unwrap()));
    for kill in 0..kills {
        let run = Duration::from_millis(150 + (kill as u64 * 37) % 400);
        let lines = common::run_and_kill(
            "compaction_child",
            &[("ALEXSTORAGE_CHILD_DIR", path.clone()), ("ALEXSTORAGE_CHILD_SEED", kill.to_string())],
            run,
        );
        let mut pending: Option<(i64, Option<u32>)> = None;
        for line in &lines {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["W", key, version] => pending = Some((key.parse().unwrap(), version.parse().ok())),
                ["A"] => {
                    let (key, version) = pending.take().unwrap();
                    model.insert(key, version);
                }
                ["C", full, tombstones] => {
                    compactions += 1;
                    incremental += usize::from(*full == "0");
                    carried += tombstones.parse::<u64>().unwrap();
                }
                _ => {}
            }
        }
        // Every other reopen replays every compacted segment (tombstones included).
        if kill % 2 == 1 {
            let _ = std::fs::remove_file(dir.path().join("CHECKPOINT"));
        }
        let db = Options::new().segment_size(32 << 10).background_compaction(false).open(dir.path()).unwrap();
        for (key, expected) in &model {
            let found = version_of(&db, *key);
            // The write in flight at the kill may or may not have landed.
            let in_flight = pending == Some((*key, found));
            assert!(
                found == *expected || in_flight,
                "kill {kill}: key {key} reads {found:?}, acknowledged {expected:?}"
            );
        }
        if let Some((key, version)) = pending {
            let found = version_of(&db, key);
            assert!(found == version || found == model.get(&key).copied().flatten(), "kill {kill}: key {key}");
            model.insert(key, found);
        }
        assert_eq!(db.len(), model.values().filter(|version| version.is_some()).count(), "kill {kill}");
        db.verify().unwrap();
    }
    // The children did compact (explicitly; background ones come on top), so the
    // kills landed among compactions, not only among writes.
    assert!(compactions >= kills, "{compactions} compactions in {kills} runs");
    eprintln!("{compactions} compactions, {incremental} of them incremental, carrying {carried} tombstones");
    assert!(incremental > 0, "no explicit incremental compaction in {compactions}");
}

/// The child of `kill_during_compactions_loses_nothing`: overwrites and deletes keys
/// with compactions in between (and a background compactor with a low threshold),
/// printing each write before it starts and after it returns.
#[test]
#[ignore = "run by kill_during_compactions_loses_nothing"]
fn compaction_child() {
    let Ok(path) = std::env::var("ALEXSTORAGE_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CHILD_SEED").unwrap().parse().unwrap();
    let db = Options::new().segment_size(32 << 10).compaction_threshold(0.3).open(&path).unwrap();
    println!("READY");
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut version = (seed as u32) << 20;
    for round in 0u64.. {
        for _ in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let key = (state % 1500) as i64 - 700;
            version += 1;
            if state % 5 == 0 {
                println!("W {key} -");
                db.delete(key).unwrap();
            } else {
                println!("W {key} {version}");
                let mut bytes = value(key, version, 60 + (state % 90) as usize);
                bytes[..4].copy_from_slice(&version.to_le_bytes());
                db.put(key, &bytes).unwrap();
            }
            println!("A");
        }
        // Full and incremental compactions by turns (the background compactor runs
        // incremental ones too).
        let stats = if round % 2 == 0 { db.compact().unwrap() } else { db.compact_incremental().unwrap() };
        println!("C {} {}", u8::from(stats.full), stats.tombstones);
    }
}
