//! The engine's API end to end: writes, reads, batches, deletes, reopen, and every
//! refusal the issue lists (too large, locked, read-only, wrong directory, newer
//! format version, corrupted bytes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use alexstorage::{Db, Durability, Error, Options, WriteBatch};

fn value_for(key: i64, round: u64) -> Vec<u8> {
    let len = (key.unsigned_abs() % 97) as usize + (round % 5) as usize;
    (0..len).map(|index| (key as u64).wrapping_add(round).wrapping_add(index as u64) as u8).collect()
}

#[test]
fn put_get_delete_len_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut model = BTreeMap::new();
    {
        let db = Db::open(&path).unwrap();
        assert!(db.is_empty());
        for key in (-500..500).map(|k| k * 7919) {
            db.put(key, value_for(key, 0)).unwrap();
            model.insert(key, value_for(key, 0));
        }
        db.put(i64::MIN, b"").unwrap();
        db.put(i64::MAX, b"max").unwrap();
        model.insert(i64::MIN, Vec::new());
        model.insert(i64::MAX, b"max".to_vec());
        for key in (-500..0).map(|k| k * 7919) {
            db.delete(key).unwrap();
            model.remove(&key);
        }
        db.delete(123_456_789).unwrap(); // absent: fine
        for key in (0..250).map(|k| k * 7919) {
            db.put(key, value_for(key, 1)).unwrap();
            model.insert(key, value_for(key, 1));
        }
        assert_eq!(db.len(), model.len());
        for (key, value) in &model {
            let got = db.get(*key).unwrap().unwrap();
            assert_eq!(got, *value);
            assert!(got.is_zero_copy());
        }
        assert_eq!(db.get(-7919).unwrap(), None);
        assert!(db.contains_key(i64::MIN).unwrap());
        assert!(!db.contains_key(-7919).unwrap());
        let report = db.verify().unwrap();
        assert!(report.records > 1000);
        assert!(report.corrupt.is_empty());
    }
    let db = Db::open(&path).unwrap();
    assert_eq!(db.len(), model.len());
    for (key, value) in &model {
        assert_eq!(db.get(*key).unwrap().unwrap(), *value);
    }
    assert_eq!(db.get(-7919).unwrap(), None);
    let stats = db.stats();
    assert_eq!(stats.keys, model.len());
    assert!(stats.sequence >= 1750);
}

#[test]
fn values_outlive_overwrites_segments_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(8192).open(dir.path()).unwrap();
    db.put(1, b"first").unwrap();
    let held = db.get(1).unwrap().unwrap();
    for round in 0..500u64 {
        db.put(1, round.to_le_bytes()).unwrap();
    }
    db.delete(1).unwrap();
    db.compact().unwrap();
    // The held value's segment (the first) is deleted: it held only garbage.
    assert!(!dir.path().join("00000001.seg").exists(), "{:?}", db.stats());
    let other = std::thread::spawn(move || held.to_vec());
    drop(db);
    assert_eq!(other.join().unwrap(), b"first");
}

#[test]
fn batches_are_atomic_and_checked_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().max_value_size(100).open(dir.path()).unwrap();
    db.put(5, b"five").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(1, b"one").put(2, b"two").delete(5);
    batch.put(3, vec![0u8; 100]);
    db.write(batch).unwrap();
    assert_eq!(db.get(1).unwrap().unwrap(), b"one");
    assert_eq!(db.get(5).unwrap(), None);
    assert_eq!(db.len(), 3);
    let mut too_big = WriteBatch::new();
    too_big.put(7, b"seven").put(8, vec![0u8; 101]);
    assert!(matches!(db.write(too_big), Err(Error::ValueTooLarge { size: 101, max: 100 })));
    assert_eq!(db.get(7).unwrap(), None);
    assert!(matches!(db.put(9, [0u8; 101]), Err(Error::ValueTooLarge { .. })));
    let sequence = db.stats().sequence;
    db.write(WriteBatch::new()).unwrap();
    assert_eq!(db.stats().sequence, sequence);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.len(), 3);
    assert_eq!(db.get(2).unwrap().unwrap(), b"two");
}

#[test]
fn one_writer_many_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(1, b"x").unwrap();
    db.flush().unwrap();
    assert!(matches!(Db::open(dir.path()), Err(Error::Locked { .. })));
    let reader = Options::new().read_only(true).open(dir.path()).unwrap();
    assert_eq!(reader.get(1).unwrap().unwrap(), b"x");
    assert!(matches!(reader.put(2, b"y"), Err(Error::ReadOnly)));
    assert!(matches!(reader.delete(1), Err(Error::ReadOnly)));
    assert!(matches!(reader.write(WriteBatch::new()), Err(Error::ReadOnly)));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.len(), 1);
}

#[test]
fn refuses_paths_that_are_not_stores() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"hello").unwrap();
    assert!(matches!(Db::open(&file), Err(Error::InvalidArgument(_))));
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"mine").unwrap();
    assert!(matches!(Db::open(&other), Err(Error::InvalidArgument(_))));
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"mine");
    let missing = dir.path().join("missing");
    assert!(matches!(Options::new().read_only(true).open(&missing), Err(Error::InvalidArgument(_))));
    assert!(!missing.exists());
    for level in [23, i32::MIN] {
        assert!(matches!(
            Options::new().compression(alexstorage::Compression::Zstd(level)).open(dir.path().join("c")),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn refuses_a_newer_format_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Db::open(dir.path()).unwrap());
    let identity = dir.path().join("ALEXSTORAGE");
    let mut bytes = std::fs::read(&identity).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = common::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&identity, &bytes).unwrap();
    assert!(matches!(Db::open(dir.path()), Err(Error::UnsupportedVersion { found: 99, .. })));
}

#[test]
fn flipped_bit_in_a_middle_record_is_reported_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..100 {
        db.put(key, vec![key as u8; 50]).unwrap();
    }
    db.flush().unwrap();
    // Record 40 starts at 64 + 40 * (28 + 50); flip a bit in its value.
    let segment = dir.path().join("00000001.seg");
    let offset = 64 + 40 * 78 + 28 + 10;
    flip_bit(&segment, offset);
    match db.get(40) {
        Err(Error::Corruption { file, offset: at, .. }) => {
            assert_eq!(file, segment);
            assert_eq!(at, (64 + 40 * 78) as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(db.get(41).unwrap().unwrap(), vec![41u8; 50]);
    assert!(matches!(db.verify(), Err(Error::Corruption { .. })));
    drop(db);
    // The clean close wrote an index checkpoint, so open trusts the checkpointed part
    // of the log; reads and verify still check every checksum.
    let db = Db::open(dir.path()).unwrap();
    assert!(matches!(db.get(40), Err(Error::Corruption { .. })));
    assert!(matches!(db.verify(), Err(Error::Corruption { .. })));
    drop(db);
    // Without the checkpoint, open replays the whole log and meets the bad record.
    std::fs::remove_file(dir.path().join("CHECKPOINT")).unwrap();
    match Db::open(dir.path()) {
        Err(Error::Corruption { offset: at, .. }) => assert_eq!(at, (64 + 40 * 78) as u64),
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn flip_bit(path: &std::path::Path, offset: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset as u64).unwrap();
    byte[0] ^= 0x10;
    file.write_all_at(&byte, offset as u64).unwrap();
}

#[test]
fn durability_modes_and_flush() {
    for durability in
        [Durability::Buffered, Durability::Sync, Durability::Periodic(std::time::Duration::from_millis(5))]
    {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new().durability(durability).open(dir.path()).unwrap();
        for key in 0..50 {
            db.put(key, key.to_le_bytes()).unwrap();
        }
        db.flush().unwrap();
        if durability == Durability::Sync {
            assert!(db.stats().syncs >= 50, "{:?}", db.stats());
        }
        assert_eq!(db.stats().unsynced_bytes, 0);
        if let Durability::Periodic(_) = durability {
            db.put(99, b"later").unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while db.stats().unsynced_bytes > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(db.stats().unsynced_bytes, 0, "the periodic syncer did not run: {:?}", db.stats());
        }
        if durability == Durability::Buffered {
            db.put(99, b"later").unwrap();
            assert!(db.stats().unsynced_bytes > 0);
        }
        drop(db);
        assert!(Db::open(dir.path()).unwrap().len() >= 50);
    }
}

#[test]
fn handles_are_send_sync_and_static() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Db>();
    assert_traits::<alexstorage::Value>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || {
                for key in 0..200 {
                    db.put(thread * 1000 + key, key.to_le_bytes()).unwrap();
                    assert_eq!(db.get(thread * 1000 + key).unwrap().unwrap(), key.to_le_bytes());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(db.len(), 800);
}

#[test]
fn concurrent_sync_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().durability(Durability::Sync).open(dir.path()).unwrap();
    let threads = 8;
    let per_thread = 40;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || {
                for index in 0..per_thread {
                    let key = thread * 1000 + index;
                    db.put(key, key.to_le_bytes()).unwrap();
                    // Visible to its writer as soon as it is acknowledged.
                    assert!(db.get(key).unwrap().is_some());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = db.stats();
    // Every acknowledged Sync write is durable, and no write needed more than one
    // msync (writers covered by another's msync need none).
    assert_eq!(stats.unsynced_bytes, 0);
    assert!(stats.syncs <= stats.puts, "{stats:?}");
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.len(), (threads * per_thread) as usize);
    for thread in 0..threads {
        for index in 0..per_thread {
            let key = thread * 1000 + index;
            assert_eq!(db.get(key).unwrap().unwrap(), key.to_le_bytes());
        }
    }
}

/// A segment's blocks are reserved as records reach them: a small store with the
/// default 256 MiB segments occupies about its data, not a whole segment, and a
/// reopened store goes on appending to (and reserving in) its last segment.
#[test]
fn a_small_store_occupies_little_disk() {
    use std::os::unix::fs::MetadataExt;
    let usage = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().metadata().unwrap().blocks() * 512).sum()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..100 {
        db.put(key, value_for(key, 0)).unwrap();
    }
    assert!(usage(dir.path()) < 8 << 20, "{} bytes on disk for 100 keys", usage(dir.path()));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    // Past the first reservation step: the segment grows.
    let big = vec![5u8; 1 << 20];
    for key in 100..110 {
        db.put(key, &big).unwrap();
    }
    assert_eq!(db.stats().segments, 1);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    for key in 0..100 {
        assert_eq!(db.get(key).unwrap().unwrap(), value_for(key, 0));
    }
    for key in 100..110 {
        assert_eq!(&db.get(key).unwrap().unwrap()[..], &big[..]);
    }
    assert!(usage(dir.path()) < 20 << 20, "{} bytes on disk for 10 MiB", usage(dir.path()));
    db.verify().unwrap();
}

/// The periodic syncer keeps running: each round of unsynced writes is synced by it.
#[test]
fn the_periodic_syncer_syncs_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let interval = std::time::Duration::from_millis(5);
    let db = Options::new().durability(Durability::Periodic(interval)).open(dir.path()).unwrap();
    let mut syncs = db.stats().syncs;
    for round in 0..3i64 {
        db.put(round, b"round").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // The syncer counts a sync just after the segment records it (so unsynced bytes
        // may read 0 a moment before the count moves): wait for both.
        while (db.stats().unsynced_bytes > 0 || db.stats().syncs <= syncs) && std::time::Instant::now() < deadline {
            std::thread::sleep(interval);
        }
        let stats = db.stats();
        assert_eq!(stats.unsynced_bytes, 0, "round {round} was never synced: {stats:?}");
        assert!(stats.syncs > syncs, "round {round}: no sync counted: {stats:?}");
        syncs = stats.syncs;
    }
}
