//! Many threads at once: bank transfers in batches against snapshot readers, a
//! snapshot frozen under every kind of write and read from another thread, kept
//! versions released with their snapshot, and concurrent `Sync` writers sharing syncs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alexstorage::{Db, Durability, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const ACCOUNTS: i64 = 64;
const START_BALANCE: u64 = 1_000;

fn balance(db_value: &[u8]) -> u64 {
    u64::from_le_bytes(db_value.try_into().expect("a balance is 8 bytes"))
}

/// The total of every account as `snapshot` saw it, read key by key and by range;
/// both must agree.
fn totals(snapshot: &alexstorage::Snapshot) -> (u64, u64) {
    let by_key: u64 = (0..ACCOUNTS).map(|account| balance(&snapshot.get(account).unwrap().unwrap())).sum();
    let by_range: u64 = snapshot.range(..).map(|entry| balance(&entry.unwrap().1)).sum();
    (by_key, by_range)
}

/// Writers move money between accounts they own, one `WriteBatch` per transfer;
/// readers check that every snapshot (and every plain range) sees the same total,
/// and that a snapshot read twice answers the same. Writers own disjoint accounts, so
/// their read-modify-write needs no transaction.
fn bank(writers: usize, readers: usize, transfers: usize) {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: transfers cross roll-overs and background checkpoints.
    let db = Options::new().segment_size(64 << 10).open(dir.path()).unwrap();
    for account in 0..ACCOUNTS {
        db.put(account, START_BALANCE.to_le_bytes()).unwrap();
    }
    let total = START_BALANCE * ACCOUNTS as u64;
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let mut writer_threads = Vec::new();
        for writer in 0..writers {
            let db = db.clone();
            writer_threads.push(scope.spawn(move || {
                let mine: Vec<i64> = (0..ACCOUNTS).filter(|account| *account as usize % writers == writer).collect();
                let mut random = SplitMix64::new(writer as u64 + 1);
                for _ in 0..transfers {
                    if mine.len() < 2 {
                        break;
                    }
                    let from = mine[random.below(mine.len() as u64) as usize];
                    let to = mine[random.below(mine.len() as u64) as usize];
                    if from == to {
                        continue;
                    }
                    let from_balance = balance(&db.get(from).unwrap().unwrap());
                    let to_balance = balance(&db.get(to).unwrap().unwrap());
                    let amount = random.below(from_balance + 1);
                    let mut batch = WriteBatch::new();
                    batch.put(from, (from_balance - amount).to_le_bytes());
                    batch.put(to, (to_balance + amount).to_le_bytes());
                    db.write(batch).unwrap();
                }
            }));
        }
        let mut reader_threads = Vec::new();
        for _ in 0..readers {
            let db = db.clone();
            let done = Arc::clone(&done);
            reader_threads.push(scope.spawn(move || {
                let mut checks = 0u64;
                while !done.load(Ordering::Relaxed) || checks < 3 {
                    let snapshot = db.snapshot();
                    let first = totals(&snapshot);
                    assert_eq!(first, (total, total), "a snapshot saw money appear or vanish");
                    assert_eq!(totals(&snapshot), first, "a snapshot changed between two reads");
                    let by_range: u64 = db.range(..).map(|entry| balance(&entry.unwrap().1)).sum();
                    assert_eq!(by_range, total, "a plain range saw half a transfer");
                    assert_eq!(snapshot.len(), ACCOUNTS as usize);
                    checks += 1;
                }
                checks
            }));
        }
        for thread in writer_threads {
            thread.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        for thread in reader_threads {
            assert!(thread.join().unwrap() >= 3);
        }
    });
    assert_eq!(totals(&db.snapshot()), (total, total));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(totals(&db.snapshot()), (total, total), "the total changed across a reopen");
    assert_eq!(db.stats().retained_versions, 0);
}

#[test]
fn bank_transfers_two_threads() {
    bank(1, 1, 3_000);
}

#[test]
fn bank_transfers_four_threads() {
    bank(2, 2, 2_000);
}

#[test]
fn bank_transfers_eight_threads() {
    bank(4, 4, 1_000);
}

#[test]
fn snapshot_is_frozen_under_every_write_and_moves_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(64 << 10).open(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    for key in (0..2_000i64).map(|key| key * 3 - 1_000) {
        let value = format!("v0-{key}").into_bytes();
        db.put(key, &value).unwrap();
        model.insert(key, value);
    }
    let snapshot = db.snapshot();
    // Overwrites, deletes, new keys, batches, and enough bytes to roll over segments.
    for key in (0..2_000i64).map(|key| key * 3 - 1_000) {
        match key.rem_euclid(4) {
            0 => db.put(key, vec![7u8; 300]).unwrap(),
            1 => db.delete(key).unwrap(),
            _ => {}
        }
        db.put(key + 1, b"new").unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.put(-1_000, b"batch").delete(-997).put(999_999, b"batch");
    db.write(batch).unwrap();
    assert!(db.stats().segments > 2, "the writes rolled over segments");
    assert!(db.stats().retained_versions > 0);

    let checker = std::thread::spawn(move || {
        assert_eq!(snapshot.len(), model.len());
        for (&key, value) in &model {
            assert_eq!(snapshot.get(key).unwrap().unwrap(), *value, "key {key}");
            assert!(snapshot.contains_key(key).unwrap());
            assert!(!snapshot.contains_key(key + 1).unwrap(), "key {} was written after the snapshot", key + 1);
        }
        assert_eq!(snapshot.get(999_999).unwrap(), None);
        let forward: Vec<(i64, Vec<u8>)> =
            snapshot.range(..).map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
        let expected: Vec<(i64, Vec<u8>)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert_eq!(forward, expected);
        let backward: Vec<i64> = snapshot.range(-500..=500).rev().map(|entry| entry.unwrap().0).collect();
        let expected: Vec<i64> = model.range(-500..=500).rev().map(|(k, _)| *k).collect();
        assert_eq!(backward, expected);
        snapshot
    });
    let snapshot = checker.join().unwrap();
    assert_eq!(db.get(-1_000).unwrap().unwrap(), b"batch");
    drop(snapshot);
    // Roll-overs started background checkpoints, each holding a snapshot while it runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.stats().snapshots > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats = db.stats();
    assert_eq!((stats.snapshots, stats.retained_versions), (0, 0), "versions outlived the snapshots that needed them");
}

#[test]
fn kept_versions_follow_the_snapshots_that_need_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..100 {
        db.put(key, b"a").unwrap();
    }
    assert_eq!(db.stats().retained_versions, 0, "no snapshot, nothing kept");
    let first = db.snapshot();
    for key in 0..100 {
        db.put(key, b"b").unwrap();
    }
    let second = db.snapshot();
    for key in 0..50 {
        db.delete(key).unwrap();
    }
    let stats = db.stats();
    assert_eq!(stats.snapshots, 2);
    assert_eq!(stats.retained_versions, 150, "100 versions for the first snapshot, 50 for the second");
    assert_eq!(first.get(10).unwrap().unwrap(), b"a");
    assert_eq!(second.get(10).unwrap().unwrap(), b"b");
    assert_eq!(db.get(10).unwrap(), None);
    drop(first);
    assert_eq!(db.stats().retained_versions, 50, "only the second snapshot's versions remain");
    assert_eq!(second.range(..).count(), 100);
    drop(second);
    let stats = db.stats();
    assert_eq!((stats.snapshots, stats.retained_versions), (0, 0));
    // A range holds its snapshot while it lives.
    let mut range = db.range(..);
    db.put(-1, b"later").unwrap();
    db.put(60, b"c").unwrap();
    assert_eq!(db.stats().retained_versions, 1);
    assert_eq!(range.next().unwrap().unwrap().0, 50, "the range does not see the later key -1");
    assert_eq!(range.find(|entry| entry.as_ref().unwrap().0 == 60).unwrap().unwrap().1, b"b");
    drop(range);
    assert_eq!(db.stats().retained_versions, 0);
}

#[test]
fn concurrent_sync_writers_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().durability(Durability::Sync).open(dir.path()).unwrap();
    let threads = 8;
    let per_thread = 100;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let db = db.clone();
            scope.spawn(move || {
                for index in 0..per_thread {
                    let key = (thread * per_thread + index) as i64;
                    db.put(key, key.to_le_bytes()).unwrap();
                }
            });
        }
    });
    let stats = db.stats();
    assert_eq!(stats.sync_writes, (threads * per_thread) as u64);
    assert!(stats.syncs >= 1 && stats.syncs <= stats.sync_writes, "{stats:?}");
    assert_eq!(stats.unsynced_bytes, 0, "every acknowledged Sync write is durable");
    eprintln!("{} Sync writes from {threads} threads took {} syncs", stats.sync_writes, stats.syncs);
    for key in 0..(threads * per_thread) as i64 {
        assert_eq!(db.get(key).unwrap().unwrap(), key.to_le_bytes());
    }
}

#[test]
fn handles_are_send_sync_and_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Db>();
    check::<alexstorage::Snapshot>();
    check::<alexstorage::Range>();
    check::<alexstorage::Value>();
}

#[test]
fn snapshots_and_ranges_outlive_the_store_handle() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..10 {
        db.put(key, [key as u8]).unwrap();
    }
    let snapshot = db.snapshot();
    let mut range = db.range(5..);
    drop(db);
    // The last handle closed the store: the lock is free again...
    let reopened = Db::open(dir.path()).unwrap();
    reopened.put(5, b"changed").unwrap();
    // ...and the snapshot and the range still read what they saw.
    assert_eq!(snapshot.get(5).unwrap().unwrap(), [5]);
    assert_eq!(range.next().unwrap().unwrap().1, [5]);
    assert_eq!(range.count(), 4);
}
