//! Index checkpoints: written on clean close and after roll-overs, used on open with a
//! replay of only the later log, and ignored (falling back to a full replay) when
//! damaged or inconsistent with the segment files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alexstorage::{Db, Options};

fn fill(db: &Db, model: &mut BTreeMap<i64, Vec<u8>>, keys: std::ops::Range<i64>, round: u8) {
    for key in keys {
        let value = vec![round; (key % 50) as usize];
        db.put(key, &value).unwrap();
        model.insert(key, value);
    }
}

fn check(db: &Db, model: &BTreeMap<i64, Vec<u8>>) {
    assert_eq!(db.len(), model.len());
    for (key, value) in model {
        assert_eq!(db.get(*key).unwrap().unwrap(), *value, "key {key}");
    }
}

#[test]
fn clean_close_writes_a_checkpoint_and_open_replays_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Db::open(dir.path()).unwrap();
    fill(&db, &mut model, 0..5000, 1);
    drop(db);
    assert!(dir.path().join("CHECKPOINT").exists());
    let db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "{stats:?}");
    assert_eq!(stats.replayed_keys, 0);
    check(&db, &model);
    // Writes after the checkpoint, then a crash: the checkpoint plus the replay.
    fill(&db, &mut model, 4000..4100, 2);
    for key in 0..100 {
        db.delete(key).unwrap();
        model.remove(&key);
    }
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "{stats:?}");
    assert_eq!(stats.replayed_keys, 200);
    check(&db, &model);
}

#[test]
fn a_damaged_or_stale_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Db::open(dir.path()).unwrap();
    fill(&db, &mut model, 0..1000, 1);
    drop(db);
    let path = dir.path().join("CHECKPOINT");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert!(!db.stats().opened_from_checkpoint);
    check(&db, &model);
    drop(db);
    // A valid checkpoint of the current generation lists only segments that were
    // durable when it was written: one listing a log segment that does not exist
    // means writes were lost (the contract of issue 13; this once fell back to a
    // full replay that silently served the store without them).
    let good = std::fs::read(&path).unwrap();
    let mut stale = good.clone();
    let table = alexstorage::testing::format::CHECKPOINT_HEADER_SIZE;
    stale[table..table + 4].copy_from_slice(&7u32.to_le_bytes());
    let body = stale.len() - 4;
    let crc = common::crc32c(&stale[..body]);
    stale[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &stale).unwrap();
    match Db::open(dir.path()) {
        Err(alexstorage::Error::Corruption { file, reason, .. }) => {
            assert!(file.ends_with("00000007.seg"), "{}: {reason}", file.display());
        }
        other => panic!("expected corruption naming segment 7, got {other:?}"),
    }
}

#[test]
fn roll_overs_write_checkpoints_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Options::new().segment_size(64 << 10).open(dir.path()).unwrap();
    fill(&db, &mut model, 0..3000, 3);
    assert!(db.stats().segments > 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("CHECKPOINT").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(dir.path().join("CHECKPOINT").exists());
    fill(&db, &mut model, 2500..2600, 4);
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "{stats:?}");
    assert!(stats.replayed_keys < 3000, "{stats:?}");
    check(&db, &model);
}

/// A segment file cut short after a checkpoint was written (damage, a bad copy): the
/// checkpoint's end for it lies past the file, so it is not trusted; the replay finds
/// where the records stop, and no read returns a wrong value.
#[test]
fn a_checkpoint_is_not_trusted_past_a_segment_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Db::open(dir.path()).unwrap();
    fill(&db, &mut model, 0..3000, 1);
    drop(db);
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(64 * 1024).unwrap();
    drop(file);
    let db = Db::open(dir.path()).unwrap();
    assert!(!db.stats().opened_from_checkpoint);
    let mut kept = 0;
    for (key, expected) in &model {
        if let Some(value) = db.get(*key).unwrap() {
            assert_eq!(&value[..], &expected[..], "key {key}");
            kept += 1;
        }
    }
    assert!(kept > 0 && kept < model.len(), "{kept} of {} keys", model.len());
    db.verify().unwrap();
    // And the store goes on: a write after the cut lands where the records stop.
    db.put(1_000_000, b"after").unwrap();
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get(1_000_000).unwrap().unwrap(), b"after");
    db.verify().unwrap();
}

/// A compaction changes where keys live without writing anything new: its checkpoint
/// must be written even when a checkpoint at the same sequence exists (from the
/// roll-over that the last write caused), or the next open finds only a checkpoint of
/// the previous manifest generation, which it must ignore.
#[test]
fn a_compaction_checkpoints_even_at_an_already_checkpointed_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    db.put(-1, b"first").unwrap();
    model.insert(-1, b"first".to_vec());
    // Write until a put rolls the log over: that put is the last write, so the
    // roll-over's background checkpoint covers the final sequence.
    let segments = db.stats().segments;
    let mut key = 0;
    while db.stats().segments == segments {
        let value = vec![key as u8; 200];
        db.put(key % 100, &value).unwrap();
        model.insert(key % 100, value);
        key += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.stats().checkpoints == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(db.stats().checkpoints, 1, "the roll-over's checkpoint was not written");
    assert!(db.compact().unwrap().segments_removed > 0);
    assert_eq!(db.stats().checkpoints, 2, "the compaction wrote no checkpoint");
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "{stats:?}");
    assert_eq!(stats.replayed_keys, 0, "{stats:?}");
    check(&db, &model);
}

/// A clean close after a compaction whose checkpoint covers everything writes no
/// second one (and the store still reopens from the checkpoint with nothing to replay).
#[test]
fn a_close_that_adds_nothing_skips_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Options::new().background_compaction(false).open(dir.path()).unwrap();
    fill(&db, &mut model, 0..500, 1);
    fill(&db, &mut model, 0..500, 2);
    db.compact().unwrap();
    assert_eq!(db.stats().checkpoints, 1);
    let written = std::fs::metadata(dir.path().join("CHECKPOINT")).unwrap().modified().unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join("CHECKPOINT")).unwrap());
    drop(db);
    let after = std::fs::metadata(dir.path().join("CHECKPOINT")).unwrap();
    // A new checkpoint is a new file renamed into place.
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&after), inode, "the close rewrote a covering checkpoint");
    assert_eq!(after.modified().unwrap(), written);
    let db = Db::open(dir.path()).unwrap();
    assert!(db.stats().opened_from_checkpoint);
    assert_eq!(db.stats().replayed_keys, 0);
    check(&db, &model);
}

/// Writes after the last roll-over's checkpoint are covered by the close's, so the
/// next open replays nothing; a background checkpoint stopped by the close leaves no
/// partial file behind.
#[test]
fn a_close_after_a_roll_over_checkpoints_what_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    fill(&db, &mut model, 0..2000, 1);
    assert!(db.stats().segments > 1);
    fill(&db, &mut model, 0..50, 2);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "{stats:?}");
    assert_eq!(stats.replayed_keys, 0, "{stats:?}");
    check(&db, &model);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The snapshot a roll-over's checkpoint holds is released once it is written: with
/// no snapshot of the user's left, no superseded version stays kept.
#[test]
fn roll_over_checkpoints_release_their_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    fill(&db, &mut model, 0..1000, 1);
    // It sees round 1, which rounds 2 and 3 overwrite: those versions are kept for it.
    let snapshot = db.snapshot();
    for round in 2..=3 {
        fill(&db, &mut model, 0..1000, round);
    }
    assert!(db.stats().segments > 2);
    assert!(db.stats().retained_versions > 0, "the user's snapshot keeps versions");
    drop(snapshot);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.stats().snapshots > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = db.stats();
    assert_eq!(stats.snapshots, 0, "a checkpoint's snapshot was never released: {stats:?}");
    assert!(stats.checkpoints >= 1, "{stats:?}");
    // The next overwrite (no snapshot live) drops any version left over (a write
    // racing the checkpointer's release may have kept one after it).
    db.put(0, b"x").unwrap();
    model.insert(0, b"x".to_vec());
    assert_eq!(db.stats().retained_versions, 0);
    check(&db, &model);
}

#[test]
fn a_close_after_no_write_keeps_the_checkpoint_the_open_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let options = || Options::new().background_compaction(false);
    let db = options().open(dir.path()).unwrap();
    fill(&db, &mut model, 0..2000, 1);
    drop(db);
    let path = dir.path().join("CHECKPOINT");
    let written = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Opened, read, closed: the checkpoint covers the store still; it is not rewritten.
    for _ in 0..2 {
        let db = options().open(dir.path()).unwrap();
        assert!(db.stats().opened_from_checkpoint && db.stats().replayed_keys == 0, "{:?}", db.stats());
        check(&db, &model);
        assert_eq!(db.stats().checkpoints, 0, "{:?}", db.stats());
        drop(db);
        assert_eq!(std::fs::read(&path).unwrap(), written);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
    }
    // A column family created and dropped, and a write to it: the store moved on, the
    // close writes a new checkpoint, and the next open replays nothing.
    let db = options().open(dir.path()).unwrap();
    db.column_family("temporary").unwrap().put(1, b"gone").unwrap();
    db.drop_column_family("temporary").unwrap();
    drop(db);
    assert_ne!(std::fs::read(&path).unwrap(), written, "the close after a write wrote a checkpoint");
    let db = options().open(dir.path()).unwrap();
    assert!(db.stats().opened_from_checkpoint && db.stats().replayed_keys == 0, "{:?}", db.stats());
    assert!(db.column_families().is_empty());
    check(&db, &model);
    // A write since the open: the close writes a new checkpoint, which the next open
    // uses with nothing to replay.
    fill(&db, &mut model, 100..200, 2);
    drop(db);
    let db = options().open(dir.path()).unwrap();
    assert!(db.stats().opened_from_checkpoint && db.stats().replayed_keys == 0, "{:?}", db.stats());
    check(&db, &model);
    // Writes after the checkpoint that recovery skips (their family was dropped before
    // a crash) replay nothing, yet the checkpoint does not cover them: the close
    // writes one.
    db.column_family("dropped").unwrap().put(1, b"gone").unwrap();
    db.drop_column_family("dropped").unwrap();
    db.simulate_crash();
    let before = std::fs::read(&path).unwrap();
    let db = options().open(dir.path()).unwrap();
    assert!(db.stats().opened_from_checkpoint && db.stats().replayed_keys == 0, "{:?}", db.stats());
    drop(db);
    assert_ne!(std::fs::read(&path).unwrap(), before, "the close wrote a checkpoint past the skipped writes");
    let db = options().open(dir.path()).unwrap();
    check(&db, &model);
}
