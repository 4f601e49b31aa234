//! `multi_get` on a store, a column family and a snapshot: one result per key, in
//! order, equal to `get` of each (present, absent, repeated and extreme keys, batches
//! larger than a lookup group, compressed values, after compaction), from one
//! consistent view (a batch written atomically is seen whole or not at all).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use alexstorage::{Compression, Db, Error, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

fn value(key: i64, round: u64) -> Vec<u8> {
    format!("key {key} round {round} ").repeat(1 + (key.unsigned_abs() % 5) as usize).into_bytes()
}

/// A store whose keys `0..keys` hold round 0 in the default family and round 1 in
/// family "f", with a snapshot of that state.
fn store_with_family(dir: &std::path::Path, keys: i64) -> (Db, alexstorage::ColumnFamily, alexstorage::Snapshot) {
    let db = Db::open(dir).unwrap();
    let family = db.column_family("f").unwrap();
    for key in 0..keys {
        db.put(key, value(key, 0)).unwrap();
        family.put(key, value(key, 1)).unwrap();
    }
    let snapshot = db.snapshot();
    (db, family, snapshot)
}

/// `multi_get` of `keys` against `get` of each and against the model.
fn check(db: &Db, keys: &[i64], model: &BTreeMap<i64, Vec<u8>>, context: &str) {
    let values = db.multi_get(keys).unwrap();
    assert_eq!(values.len(), keys.len(), "{context}");
    for (key, value) in keys.iter().zip(&values) {
        assert_eq!(value.as_deref(), model.get(key).map(|value| &value[..]), "{context}: key {key}");
        assert_eq!(value.as_deref(), db.get(*key).unwrap().as_deref(), "{context}: key {key} against get");
    }
}

#[test]
fn multi_get_matches_get_for_every_kind_of_key() {
    for compression in [Compression::None, Compression::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new().compression(compression).segment_size(1 << 16).open(dir.path()).unwrap();
        let mut model = BTreeMap::new();
        let mut random = SplitMix64::new(3);
        for round in 0..3 {
            for _ in 0..3000 {
                let key = (random.next_u64() % 5000) as i64 - 2500;
                db.put(key, value(key, round)).unwrap();
                model.insert(key, value(key, round));
            }
            for _ in 0..300 {
                let key = (random.next_u64() % 5000) as i64 - 2500;
                db.delete(key).unwrap();
                model.remove(&key);
            }
            for extreme in [i64::MIN, i64::MAX, 0] {
                db.put(extreme, value(extreme, round)).unwrap();
                model.insert(extreme, value(extreme, round));
            }
            let context = format!("{compression:?} round {round}");
            assert!(db.multi_get(&[]).unwrap().is_empty());
            for len in [1, 7, 16, 17, 64, 257, 1000] {
                // Present, absent, repeated and extreme keys, in no order.
                let keys: Vec<i64> = (0..len)
                    .map(|index| match index % 11 {
                        0 => i64::MIN,
                        1 => i64::MAX,
                        2 => 7_000_000 + index as i64,
                        _ => (random.next_u64() % 5200) as i64 - 2600,
                    })
                    .collect();
                check(&db, &keys, &model, &format!("{context}, {len} keys"));
            }
            if round == 1 {
                db.compact().unwrap();
            }
        }
        // Values are zero-copy where a get's are.
        let keys: Vec<i64> = model.keys().copied().take(100).collect();
        for (key, value) in keys.iter().zip(db.multi_get(&keys).unwrap()) {
            let value = value.unwrap();
            assert_eq!(value.is_zero_copy(), db.get(*key).unwrap().unwrap().is_zero_copy());
        }
    }
}

#[test]
fn families_and_snapshots_have_their_own_multi_get() {
    let dir = tempfile::tempdir().unwrap();
    let (db, family, snapshot) = store_with_family(dir.path(), 100);
    for key in 0..50 {
        db.put(key, value(key, 2)).unwrap();
        db.delete(key + 50).unwrap();
    }
    let keys: Vec<i64> = (0..120).collect();
    let now = db.multi_get(&keys).unwrap();
    let then = snapshot.multi_get(&keys).unwrap();
    let named = family.multi_get(&keys).unwrap();
    for (&key, ((now, then), named)) in keys.iter().zip(now.iter().zip(&then).zip(&named)) {
        let expected_now = (key < 50).then(|| value(key, 2));
        let expected_then = (key < 100).then(|| value(key, 0));
        let expected_named = (key < 100).then(|| value(key, 1));
        assert_eq!(now.as_deref(), expected_now.as_deref(), "key {key}");
        assert_eq!(then.as_deref(), expected_then.as_deref(), "snapshot, key {key}");
        assert_eq!(named.as_deref(), expected_named.as_deref(), "family, key {key}");
        assert_eq!(then.as_deref(), snapshot.get(key).unwrap().as_deref(), "snapshot get, key {key}");
    }
    db.drop_column_family("f").unwrap();
    assert!(matches!(family.multi_get(&keys), Err(Error::ColumnFamilyNotFound(_))));
    let gets = db.stats().gets;
    db.multi_get(&keys).unwrap();
    assert_eq!(db.stats().gets, gets + keys.len() as u64, "each key counts as a get");
}

/// A writer sets every key of a set to one round in each atomic batch; every
/// `multi_get` of them sees one round for all (one view for the whole call), for a
/// batch inside one lock section and one spanning several (a snapshot's view).
#[test]
fn a_multi_get_sees_one_moment() {
    for (count, rounds) in [(40, 2000u64), (2500, 60)] {
        let dir = tempfile::tempdir().unwrap();
        let db = Options::new().segment_size(1 << 20).open(dir.path()).unwrap();
        let keys: Vec<i64> = (0..count).map(|key| key * 1_000_003).collect();
        let write_round = |round: u64| {
            let mut batch = WriteBatch::new();
            for &key in &keys {
                batch.put(key, round.to_le_bytes());
            }
            db.write(batch).unwrap();
        };
        write_round(0);
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 1..rounds {
                    write_round(round);
                }
                done.store(true, Ordering::Release);
            });
            let mut reads = 0;
            while !done.load(Ordering::Acquire) || reads < 20 {
                let values = db.multi_get(&keys).unwrap();
                let first = values[0].as_deref().unwrap().to_vec();
                assert!(values.iter().all(|value| value.as_deref() == Some(&first[..])), "{count} keys: a torn batch");
                reads += 1;
            }
        });
    }
}

/// Batches larger than a lock section (1,024 keys) give the same answers through
/// the store, a family and a snapshot, and count their value bytes.
#[test]
fn batches_larger_than_a_section_match_get() {
    let dir = tempfile::tempdir().unwrap();
    let (db, family, snapshot) = store_with_family(dir.path(), 3000);
    for key in (0..3000).step_by(3) {
        db.put(key, value(key, 2)).unwrap();
    }
    let keys: Vec<i64> = (0..5000).map(|index| (index * 7919) % 3500).collect();
    let before = db.stats().bytes_read;
    let now = db.multi_get(&keys).unwrap();
    let expected_bytes: u64 = now.iter().flatten().map(|value| value.len() as u64).sum();
    assert_eq!(db.stats().bytes_read - before, expected_bytes, "bytes read");
    let named = family.multi_get(&keys).unwrap();
    let then = snapshot.multi_get(&keys).unwrap();
    let then_named = snapshot.multi_get_cf(&family, &keys).unwrap();
    for (at, &key) in keys.iter().enumerate() {
        assert_eq!(now[at].as_deref(), db.get(key).unwrap().as_deref(), "key {key}");
        assert_eq!(named[at].as_deref(), family.get(key).unwrap().as_deref(), "family, key {key}");
        assert_eq!(then[at].as_deref(), snapshot.get(key).unwrap().as_deref(), "snapshot, key {key}");
        assert_eq!(then_named[at].as_deref(), snapshot.get_cf(&family, key).unwrap().as_deref(), "key {key}");
    }
}
