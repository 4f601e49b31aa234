//! Column families, one concern a test: created on first use and persisted (the list
//! and the data) across reopen and crash; handles shared between threads and keeping
//! the store open; families independent of each other and of the default family; ranges
//! with every kind of bound in both directions; name validation; the `"default"` handle
//! as the store's own keys; dropping (the list, dead handles whose range returns one
//! error, re-creation starting empty, refusals), durable across reopen and crash;
//! batches spanning families, and one naming a dropped family writing nothing;
//! snapshots of every family at once; compaction keeping every family and reclaiming a
//! dropped family's space; 200 families; `verify` with families.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use alexstorage::{ColumnFamily, Db, Error, Options, Value, WriteBatch};

type Entries = Vec<(i64, Vec<u8>)>;
type Model = BTreeMap<i64, Vec<u8>>;

fn store() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    (dir, db)
}

/// Every entry a range returns, in the order it returns them.
fn entries(range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) -> Entries {
    range.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect()
}

/// The keys a range returns, in the order it returns them.
fn keys(range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) -> Vec<i64> {
    range.map(|entry| entry.unwrap().0).collect()
}

fn model_entries(model: &Model) -> Entries {
    model.iter().map(|(key, value)| (*key, value.clone())).collect()
}

/// A value that names its family, key and round, `len` bytes long.
fn value(family: u64, key: i64, round: u32, len: usize) -> Vec<u8> {
    let seed = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(round) << 40) ^ family;
    (0..len).map(|index| (seed >> (index % 8 * 8)) as u8 ^ index as u8).collect()
}

/// The operation failed as one on a dropped (or never created) family does.
fn assert_not_found<T: std::fmt::Debug>(result: alexstorage::Result<T>) {
    assert!(matches!(result, Err(Error::ColumnFamilyNotFound(_))), "expected ColumnFamilyNotFound, got {result:?}");
}

/// `ColumnFamilyNotFound` naming `expected`.
fn assert_not_found_named<T: std::fmt::Debug>(result: alexstorage::Result<T>, expected: &str) {
    match result {
        Err(Error::ColumnFamilyNotFound(name)) => assert_eq!(name, expected),
        other => panic!("expected ColumnFamilyNotFound({expected}), got {other:?}"),
    }
}

/// A range over a dropped family: one error, then the end.
fn assert_dead_range(mut range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) {
    assert_not_found(range.next().expect("a range over a dropped family returned nothing"));
    assert!(range.next().is_none(), "a range over a dropped family went on after its error");
}

/// A handle on a dropped family: every operation fails, and it counts no keys.
fn assert_dead(family: &ColumnFamily) {
    assert_not_found(family.get(1));
    assert_not_found(family.contains_key(1));
    assert_not_found(family.put(1, b"through a dead handle"));
    assert_not_found(family.delete(1));
    assert_dead_range(family.range(..));
    assert_dead_range(family.range(0..10));
    assert_dead_range(family.iter());
    assert_eq!(family.len(), 0);
    assert!(family.is_empty());
}

/// The family holds exactly `model`: `len`, a scan in both directions, and every get.
fn check_family(family: &ColumnFamily, model: &Model) {
    let name = family.name();
    assert_eq!(family.len(), model.len(), "family {name}");
    assert_eq!(family.is_empty(), model.is_empty(), "family {name}");
    assert_eq!(entries(family.iter()), model_entries(model), "family {name}");
    assert!(keys(family.iter().rev()).into_iter().eq(model.keys().rev().copied()), "family {name}, backwards");
    for (key, expected) in model {
        assert_eq!(family.get(*key).unwrap().as_deref(), Some(&expected[..]), "family {name}, key {key}");
        assert!(family.contains_key(*key).unwrap(), "family {name}, key {key}");
    }
}

/// The bytes of the store's segment files (`*.seg`), by file length.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

#[test]
fn families_are_created_on_first_use_and_persist_across_reopen_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        assert!(db.column_families().is_empty());
        let users = db.column_family("users").unwrap();
        assert_eq!(users.name(), "users");
        assert!(users.is_empty());
        assert_eq!(db.column_families(), ["users"]);
        users.put(1, b"ada").unwrap();
        // A second handle on the name is the same family.
        let again = db.column_family("users").unwrap();
        assert_eq!(again.get(1).unwrap().unwrap(), b"ada");
        again.put(2, b"grace").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(db.column_families(), ["users"], "a second handle created nothing");
        let orders = db.column_family("orders").unwrap();
        orders.put(10, b"order ten").unwrap();
        // Created and never written: a family all the same.
        let _accounts = db.column_family("accounts").unwrap();
        assert_eq!(db.column_families(), ["accounts", "orders", "users"], "sorted by name");
        assert!(db.is_empty(), "nothing went to the default family");
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.column_families(), ["accounts", "orders", "users"]);
    let users = db.column_family("users").unwrap();
    assert_eq!(entries(users.iter()), [(1, b"ada".to_vec()), (2, b"grace".to_vec())]);
    let orders = db.column_family("orders").unwrap();
    assert_eq!(entries(orders.iter()), [(10, b"order ten".to_vec())]);
    assert!(db.column_family("accounts").unwrap().is_empty());
    assert_eq!(db.column_families(), ["accounts", "orders", "users"], "reopening handles created nothing");
    assert!(db.is_empty());

    // A family created and written just before a crash is there after recovery (a
    // creation is durable once it returns; a Buffered write survives a process crash).
    let late = db.column_family("late").unwrap();
    late.put(7, b"late").unwrap();
    users.put(3, b"barbara").unwrap();
    drop((late, users, orders));
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.column_families(), ["accounts", "late", "orders", "users"]);
    assert_eq!(entries(db.column_family("late").unwrap().iter()), [(7, b"late".to_vec())]);
    assert_eq!(keys(db.column_family("users").unwrap().iter()), [1, 2, 3]);
    assert!(db.is_empty());
}

#[test]
fn handles_are_shareable_values_that_do_not_keep_the_store_open() {
    fn assert_handle<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_handle::<ColumnFamily>();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let users = db.column_family("users").unwrap();
    assert!(!format!("{users:?}").is_empty());
    let writers: Vec<_> = (0..4i64)
        .map(|thread| {
            let users = users.clone();
            std::thread::spawn(move || {
                for index in 0..100 {
                    users.put(thread * 1000 + index, thread.to_le_bytes()).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(users.len(), 400);
    assert!(db.is_empty());
    // Unlike a Db clone, a family handle does not keep the store open: dropping the
    // last Db closes it (the store opens again at once), and the handle then fails.
    users.put(-1, b"before the close").unwrap();
    drop(db);
    let reopened = Db::open(dir.path()).unwrap();
    assert!(matches!(users.put(-2, b"after the close"), Err(Error::Closed)));
    assert!(matches!(users.get(-1), Err(Error::Closed)));
    assert!(matches!(users.delete(-1), Err(Error::Closed)));
    assert!(matches!(users.contains_key(-1), Err(Error::Closed)));
    let mut range = users.range(..);
    assert!(matches!(range.next(), Some(Err(Error::Closed))));
    assert!(range.next().is_none());
    assert_eq!(users.len(), 0);
    drop(users);
    let users = reopened.column_family("users").unwrap();
    assert_eq!(users.len(), 401);
    assert_eq!(users.get(-1).unwrap().unwrap(), b"before the close");
    assert_eq!(users.get(-2).unwrap(), None);
    assert_eq!(users.get(3 * 1000 + 99).unwrap().unwrap(), 3i64.to_le_bytes());
}

#[test]
fn families_are_independent_of_each_other_and_of_the_default() {
    let (dir, db) = store();
    let a = db.column_family("a").unwrap();
    let b = db.column_family("b").unwrap();
    // The same key in three families: three values.
    db.put(7, b"default seven").unwrap();
    a.put(7, b"a seven").unwrap();
    b.put(7, b"b seven").unwrap();
    a.put(8, b"a eight").unwrap();
    for key in 100..150 {
        b.put(key, key.to_le_bytes()).unwrap();
    }
    assert_eq!(db.get(7).unwrap().unwrap(), b"default seven");
    assert_eq!(a.get(7).unwrap().unwrap(), b"a seven");
    assert_eq!(b.get(7).unwrap().unwrap(), b"b seven");
    assert_eq!((db.len(), a.len(), b.len()), (1, 2, 51), "len counts one family; db.len() the default only");
    assert!(a.contains_key(8).unwrap());
    assert!(!b.contains_key(8).unwrap());
    assert!(!db.contains_key(8).unwrap());
    assert_eq!(db.get(8).unwrap(), None);
    assert_eq!(db.get(120).unwrap(), None);
    assert_eq!(a.get(120).unwrap(), None);
    assert_eq!(keys(db.iter()), [7]);
    assert_eq!(keys(a.iter()), [7, 8]);
    assert_eq!(keys(b.range(..101)), [7, 100]);

    // An overwrite or delete in one family leaves the others alone.
    a.put(7, b"a seven again").unwrap();
    assert_eq!(b.get(7).unwrap().unwrap(), b"b seven");
    a.delete(7).unwrap();
    assert_eq!(a.get(7).unwrap(), None);
    assert_eq!(db.get(7).unwrap().unwrap(), b"default seven");
    assert_eq!(b.get(7).unwrap().unwrap(), b"b seven");
    db.delete(7).unwrap();
    assert_eq!(b.get(7).unwrap().unwrap(), b"b seven");
    assert!(db.is_empty());
    assert!(!a.is_empty());
    // Deleting an absent key is no error, in a family as in the default one.
    a.delete(123_456).unwrap();
    a.delete(7).unwrap();
    assert_eq!((db.len(), a.len(), b.len()), (0, 1, 51));

    drop((a, b));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    let (a, b) = (db.column_family("a").unwrap(), db.column_family("b").unwrap());
    assert_eq!((db.len(), a.len(), b.len()), (0, 1, 51));
    assert_eq!(entries(a.iter()), [(8, b"a eight".to_vec())]);
    assert_eq!(b.get(7).unwrap().unwrap(), b"b seven");
    assert_eq!(b.get(149).unwrap().unwrap(), 149i64.to_le_bytes());
}

#[test]
fn ranges_read_one_family_in_both_directions_with_every_bound() {
    let (_dir, db) = store();
    let family = db.column_family("ranged").unwrap();
    let other = db.column_family("other").unwrap();
    let stored = [i64::MIN, -7, -1, 0, 3, 10, 11, i64::MAX];
    for key in stored {
        family.put(key, key.to_le_bytes()).unwrap();
    }
    // Keys in between in the default family and another family: no range of
    // `family` may show them.
    let between = [-8, -6, -2, 1, 2, 4, 9, 12];
    for key in between {
        db.put(key, b"default").unwrap();
        other.put(key, b"other").unwrap();
    }
    assert_eq!(keys(family.range(..)), stored);
    assert_eq!(keys(family.iter()), stored);
    assert_eq!(keys(family.range(0..)), [0, 3, 10, 11, i64::MAX]);
    assert_eq!(keys(family.range(..0)), [i64::MIN, -7, -1]);
    assert_eq!(keys(family.range(..=0)), [i64::MIN, -7, -1, 0]);
    assert_eq!(keys(family.range(-1..10)), [-1, 0, 3]);
    assert_eq!(keys(family.range(-1..=10)), [-1, 0, 3, 10]);
    assert_eq!(keys(family.range((Bound::Excluded(-1), Bound::Unbounded))), [0, 3, 10, 11, i64::MAX]);
    assert_eq!(keys(family.range((Bound::Excluded(-7), Bound::Excluded(10)))), [-1, 0, 3]);
    assert_eq!(keys(family.range((Bound::Excluded(-7), Bound::Included(10)))), [-1, 0, 3, 10]);
    assert_eq!(keys(family.range(i64::MIN..=i64::MIN)), [i64::MIN]);
    assert_eq!(keys(family.range(i64::MAX..)), [i64::MAX]);
    assert_eq!(entries(family.range(3..=3)), [(3, 3i64.to_le_bytes().to_vec())]);
    // Empty ranges.
    assert!(keys(family.range(5..5)).is_empty());
    assert!(keys(family.range(4..10)).is_empty());
    assert!(keys(family.range((Bound::Excluded(3), Bound::Excluded(4)))).is_empty());
    assert!(keys(family.range((Bound::Excluded(i64::MAX), Bound::Unbounded))).is_empty());
    assert!(keys(family.range((Bound::Unbounded, Bound::Excluded(i64::MIN)))).is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = family.range(10..3);
    assert!(keys(backwards).is_empty());
    assert!(family.range(5..5).next_back().is_none());
    // Backwards.
    let mut reversed = stored.to_vec();
    reversed.reverse();
    assert_eq!(keys(family.iter().rev()), reversed);
    assert_eq!(keys(family.range(-1..=10).rev()), [10, 3, 0, -1]);
    assert_eq!(keys(family.range(..0).rev()), [-1, -7, i64::MIN]);
    assert_eq!(keys(family.range((Bound::Excluded(0), Bound::Excluded(11))).rev()), [10, 3]);
    // From both ends at once.
    let mut range = family.range(-7..=11);
    assert_eq!(range.next().unwrap().unwrap().0, -7);
    assert_eq!(range.next_back().unwrap().unwrap().0, 11);
    assert_eq!(range.next_back().unwrap().unwrap().0, 10);
    assert_eq!(keys(range.by_ref()), [-1, 0, 3]);
    assert!(range.next().is_none() && range.next_back().is_none(), "a finished range stays finished");
    // An empty family, and the others' ranges.
    let empty = db.column_family("empty").unwrap();
    assert!(keys(empty.iter()).is_empty());
    assert!(empty.iter().next_back().is_none());
    assert_eq!(keys(db.iter()), between);
    assert_eq!(keys(other.range(-2..=4)), [-2, 1, 2, 4]);
    assert_eq!(entries(other.range(9..10)), [(9, b"other".to_vec())]);
}

#[test]
fn names_are_validated_and_any_other_name_is_a_family() {
    let (dir, db) = store();
    let invalid = |result: alexstorage::Result<ColumnFamily>| matches!(result, Err(Error::InvalidArgument(_)));
    assert!(invalid(db.column_family("")), "an empty name");
    let long = "x".repeat(256);
    assert!(invalid(db.column_family(long.as_str())), "a name of 256 bytes");
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    let wide = "é".repeat(128);
    assert_eq!(wide.len(), 256);
    assert!(invalid(db.column_family(wide.as_str())), "a name of 128 characters but 256 bytes");
    assert!(db.column_families().is_empty(), "a refused name created nothing");

    let longest = "y".repeat(255);
    let widest = format!("{}z", "é".repeat(127));
    assert_eq!(widest.len(), 255);
    let names: Vec<String> =
        ["with space", "ünïcødé", "Users", "users", "a.b-c_d", "a/b", longest.as_str(), widest.as_str()]
            .into_iter()
            .map(str::to_owned)
            .collect();
    for (index, name) in names.iter().enumerate() {
        let family = db.column_family(name.as_str()).unwrap();
        assert_eq!(family.name(), name.as_str());
        family.put(index as i64, name.as_bytes()).unwrap();
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(db.column_families(), sorted);
    // Names are case-sensitive: "Users" and "users" are two families.
    assert_eq!(db.column_family("Users").unwrap().len(), 1);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.column_families(), sorted);
    for (index, name) in names.iter().enumerate() {
        let family = db.column_family(name.as_str()).unwrap();
        assert_eq!(entries(family.iter()), [(index as i64, name.as_bytes().to_vec())], "family {name}");
    }
    assert!(db.is_empty());
}

#[test]
fn the_default_handle_is_the_dbs_own_keys() {
    let (dir, db) = store();
    let users = db.column_family("users").unwrap();
    users.put(1, b"a user").unwrap();
    db.put(1, b"one").unwrap();
    let default = db.column_family("default").unwrap();
    assert_eq!(default.name(), "default");
    assert_eq!(default.get(1).unwrap().unwrap(), b"one");
    default.put(2, b"two").unwrap();
    assert_eq!(db.get(2).unwrap().unwrap(), b"two");
    assert_eq!(default.len(), 2);
    assert_eq!(db.len(), 2);
    assert!(default.contains_key(2).unwrap());
    default.delete(1).unwrap();
    assert_eq!(db.get(1).unwrap(), None);
    assert_eq!(users.get(1).unwrap().unwrap(), b"a user");
    db.put(3, b"three").unwrap();
    assert_eq!(entries(default.iter()), entries(db.iter()));
    assert_eq!(keys(default.range(..).rev()), [3, 2]);
    // Through batches and snapshots too.
    let mut batch = WriteBatch::new();
    batch.put_cf(&default, 4, b"four").put(5, b"five").delete_cf(&default, 3);
    db.write(batch).unwrap();
    assert_eq!(keys(db.iter()), [2, 4, 5]);
    let snapshot = db.snapshot();
    assert_eq!(snapshot.get_cf(&default, 4).unwrap().unwrap(), b"four");
    assert!(snapshot.contains_key_cf(&default, 5).unwrap());
    assert_eq!(entries(snapshot.range_cf(&default, ..)), entries(snapshot.range(..)));
    // Never listed, never dropped.
    assert_eq!(db.column_families(), ["users"]);
    assert!(matches!(db.drop_column_family("default"), Err(Error::InvalidArgument(_))));
    assert_eq!(default.get(4).unwrap().unwrap(), b"four", "the refused drop changed nothing");
    assert_eq!(db.len(), 3);
    drop(snapshot);
    drop((default, users));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.column_families(), ["users"]);
    assert_eq!(keys(db.column_family("default").unwrap().iter()), [2, 4, 5]);
}

#[test]
fn a_dropped_family_is_gone_and_its_handles_stay_dead() {
    let (_dir, db) = store();
    let a = db.column_family("a").unwrap();
    let b = db.column_family("b").unwrap();
    for key in 0..50 {
        a.put(key, b"a").unwrap();
        b.put(key, b"b").unwrap();
        db.put(key, b"default").unwrap();
    }
    let clone = a.clone();
    db.drop_column_family("a").unwrap();
    assert_eq!(db.column_families(), ["b"]);
    assert_dead(&a);
    assert_dead(&clone);
    // The others are untouched.
    assert_eq!((b.len(), db.len()), (50, 50));
    assert_eq!(b.get(3).unwrap().unwrap(), b"b");
    assert_eq!(db.get(3).unwrap().unwrap(), b"default");

    // Dropping it again, a name never created, or the default family: refused.
    assert_not_found_named(db.drop_column_family("a"), "a");
    assert_not_found_named(db.drop_column_family("never"), "never");
    assert!(matches!(db.drop_column_family("default"), Err(Error::InvalidArgument(_))));
    assert_eq!(db.column_families(), ["b"]);

    // Re-created, the name starts empty; the old handles stay dead.
    let again = db.column_family("a").unwrap();
    assert!(again.is_empty());
    assert_eq!(again.get(3).unwrap(), None);
    assert!(keys(again.iter()).is_empty());
    assert_eq!(db.column_families(), ["a", "b"]);
    again.put(3, b"new").unwrap();
    assert_dead(&a);
    assert_dead(&clone);
    assert_eq!(entries(again.iter()), [(3, b"new".to_vec())]);
    assert_eq!(db.column_family("a").unwrap().get(3).unwrap().unwrap(), b"new", "a new handle is the new family");
    // Dropping the new one kills its handles in turn.
    db.drop_column_family("a").unwrap();
    assert_dead(&again);
    assert_eq!(db.column_families(), ["b"]);
    assert_eq!(b.len(), 50);
}

/// Builds a store holding a dropped family, a dropped-and-re-created one with one key,
/// a kept one and a default key; returns the store with every family handle dropped.
fn store_with_drops(path: &Path) -> Db {
    let db = Db::open(path).unwrap();
    let gone = db.column_family("gone").unwrap();
    let kept = db.column_family("kept").unwrap();
    let again = db.column_family("again").unwrap();
    for key in 0..200 {
        gone.put(key, b"gone").unwrap();
        kept.put(key, b"kept").unwrap();
        again.put(key, b"old").unwrap();
    }
    db.put(1, b"default").unwrap();
    db.drop_column_family("gone").unwrap();
    db.drop_column_family("again").unwrap();
    let again = db.column_family("again").unwrap();
    again.put(5, b"new").unwrap();
    db
}

fn check_drops(db: &Db, how: &str) {
    assert_eq!(db.column_families(), ["again", "kept"], "{how}");
    assert_eq!(entries(db.column_family("again").unwrap().iter()), [(5, b"new".to_vec())], "{how}");
    let kept = db.column_family("kept").unwrap();
    assert_eq!(kept.len(), 200, "{how}");
    assert_eq!(kept.get(199).unwrap().unwrap(), b"kept", "{how}");
    assert_eq!(entries(db.iter()), [(1, b"default".to_vec())], "{how}");
    let report = db.verify().unwrap();
    assert!(report.corrupt.is_empty(), "{how}: {report:?}");
}

#[test]
fn a_drop_is_durable_across_reopen_and_crash() {
    for crash in [false, true] {
        let how = if crash { "after a crash" } else { "after a clean reopen" };
        let dir = tempfile::tempdir().unwrap();
        let db = store_with_drops(dir.path());
        if crash {
            db.simulate_crash();
        } else {
            drop(db);
        }
        let db = Db::open(dir.path()).unwrap();
        check_drops(&db, how);
        // Replayed from the log alone, without the index checkpoint.
        drop(db);
        let checkpoint = dir.path().join("CHECKPOINT");
        if checkpoint.exists() {
            std::fs::remove_file(&checkpoint).unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        check_drops(&db, &format!("{how}, replayed without a checkpoint"));
        // The dropped name comes back empty when used again.
        assert!(db.column_family("gone").unwrap().is_empty(), "{how}");
        assert_eq!(db.column_families(), ["again", "gone", "kept"], "{how}");
    }
}

#[test]
fn a_batch_spanning_families_lands_whole() {
    let (dir, db) = store();
    let a = db.column_family("a").unwrap();
    let b = db.column_family("b").unwrap();
    a.put(2, b"doomed").unwrap();
    let before = db.snapshot();
    let mut batch = WriteBatch::new();
    batch.put_cf(&a, 1, b"a1").put_cf(&b, 1, b"b1").put(1, b"d1").delete_cf(&a, 2).delete_cf(&b, 99);
    db.write(batch).unwrap();
    assert_eq!(entries(a.iter()), [(1, b"a1".to_vec())]);
    assert_eq!(entries(b.iter()), [(1, b"b1".to_vec())]);
    assert_eq!(entries(db.iter()), [(1, b"d1".to_vec())]);
    assert_eq!(before.get_cf(&a, 2).unwrap().unwrap(), b"doomed");
    assert_eq!(before.get_cf(&a, 1).unwrap(), None);
    assert_eq!(before.get_cf(&b, 1).unwrap(), None);
    assert_eq!(before.get(1).unwrap(), None);
    drop(before);

    // Every batch writes one version to key 10 of three families: a reader never sees
    // two versions at once, whether through one snapshot or from a range.
    const VERSIONS: u32 = 300;
    let version = |value: Option<Value>| value.map(|value| u32::from_le_bytes(value[..4].try_into().unwrap()));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                let snapshot = db.snapshot();
                let seen = [
                    version(snapshot.get(10).unwrap()),
                    version(snapshot.get_cf(&a, 10).unwrap()),
                    version(snapshot.get_cf(&b, 10).unwrap()),
                    snapshot.range_cf(&b, 10..=10).next().map(|entry| version(Some(entry.unwrap().1)).unwrap()),
                ];
                assert!(seen.iter().all(|one| *one == seen[0]), "a snapshot saw part of a batch: {seen:?}");
                reads += 1;
                if finished {
                    assert_eq!(seen[0], Some(VERSIONS - 1));
                    return reads;
                }
            }
        });
        for round in 0..VERSIONS {
            let mut batch = WriteBatch::new();
            let bytes = round.to_le_bytes();
            batch.put(10, bytes).put_cf(&a, 10, bytes).put_cf(&b, 10, bytes);
            db.write(batch).unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
    });

    // And across a crash.
    drop((a, b));
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let (a, b) = (db.column_family("a").unwrap(), db.column_family("b").unwrap());
    let last = (VERSIONS - 1).to_le_bytes().to_vec();
    assert_eq!(entries(a.iter()), [(1, b"a1".to_vec()), (10, last.clone())]);
    assert_eq!(entries(b.iter()), [(1, b"b1".to_vec()), (10, last.clone())]);
    assert_eq!(entries(db.iter()), [(1, b"d1".to_vec()), (10, last)]);
}

#[test]
fn a_batch_naming_a_dropped_family_writes_nothing() {
    let (dir, db) = store();
    let kept = db.column_family("kept").unwrap();
    let doomed = db.column_family("doomed").unwrap();
    kept.put(1, b"old").unwrap();
    doomed.put(1, b"old").unwrap();
    db.put(1, b"old").unwrap();
    // Built before the drop, written after it.
    let mut batch = WriteBatch::new();
    batch.put(1, b"new").put(2, b"new").put_cf(&kept, 1, b"new").put_cf(&kept, 2, b"new").put_cf(&doomed, 1, b"new");
    db.drop_column_family("doomed").unwrap();
    assert_not_found(db.write(batch));
    let unchanged = |db: &Db, kept: &ColumnFamily| {
        assert_eq!(entries(db.iter()), [(1, b"old".to_vec())], "the default family's writes of the batch landed");
        assert_eq!(entries(kept.iter()), [(1, b"old".to_vec())], "the live family's writes of the batch landed");
    };
    unchanged(&db, &kept);
    // With the name re-created, the batch still names the dropped family.
    let recreated = db.column_family("doomed").unwrap();
    let mut batch = WriteBatch::new();
    batch.delete(1).delete_cf(&kept, 1).delete_cf(&doomed, 1).put_cf(&recreated, 1, b"new");
    assert_not_found(db.write(batch));
    unchanged(&db, &kept);
    assert!(recreated.is_empty());
    // A batch of the dead family's writes alone.
    let mut batch = WriteBatch::new();
    batch.put_cf(&doomed, 5, b"new");
    assert_not_found(db.write(batch));
    assert!(recreated.is_empty());
    // Nothing of it is in the log either.
    drop((kept, doomed, recreated));
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let kept = db.column_family("kept").unwrap();
    unchanged(&db, &kept);
    assert_eq!(db.column_families(), ["doomed", "kept"]);
    assert!(db.column_family("doomed").unwrap().is_empty());
    assert!(db.verify().unwrap().corrupt.is_empty());
}

#[test]
fn a_snapshot_holds_every_family_and_fails_for_one_dropped_since() {
    let (_dir, db) = store();
    let a = db.column_family("a").unwrap();
    let b = db.column_family("b").unwrap();
    for key in 0..20 {
        a.put(key, format!("a{key}")).unwrap();
        b.put(key, format!("b{key}")).unwrap();
        db.put(key, format!("d{key}")).unwrap();
    }
    let (frozen_a, frozen_b, frozen_default) = (entries(a.iter()), entries(b.iter()), entries(db.iter()));
    let snapshot = db.snapshot();
    // Later writes land...
    for key in 0..20 {
        if key % 2 == 0 {
            a.put(key, b"later").unwrap();
        } else {
            a.delete(key).unwrap();
        }
        b.put(key + 100, b"later").unwrap();
        db.delete(key).unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.put_cf(&a, 50, b"later").put_cf(&b, 0, b"later").put(0, b"later");
    db.write(batch).unwrap();
    assert_eq!((a.len(), b.len(), db.len()), (11, 40, 1));
    assert_eq!(b.get(0).unwrap().unwrap(), b"later");
    // ...but the snapshot reads every family as it was.
    assert_eq!(entries(snapshot.range_cf(&a, ..)), frozen_a);
    assert_eq!(entries(snapshot.range_cf(&b, ..)), frozen_b);
    assert_eq!(entries(snapshot.range(..)), frozen_default);
    for (key, expected) in &frozen_a {
        assert_eq!(snapshot.get_cf(&a, *key).unwrap().as_deref(), Some(&expected[..]), "key {key}");
        assert!(snapshot.contains_key_cf(&a, *key).unwrap());
    }
    assert_eq!(snapshot.get_cf(&a, 50).unwrap(), None);
    assert!(!snapshot.contains_key_cf(&a, 50).unwrap());
    assert_eq!(snapshot.get_cf(&b, 100).unwrap(), None);
    assert_eq!(snapshot.get_cf(&b, 0).unwrap().unwrap(), b"b0");
    assert_eq!(keys(snapshot.range_cf(&b, 5..10).rev()), [9, 8, 7, 6, 5]);
    assert_eq!(keys(snapshot.range_cf(&a, (Bound::Excluded(17), Bound::Unbounded))), [18, 19]);
    assert!(keys(snapshot.range_cf(&a, 20..)).is_empty());

    // Once a family is dropped, the snapshot's reads of it fail; of the others, go on.
    db.drop_column_family("a").unwrap();
    assert_not_found(snapshot.get_cf(&a, 0));
    assert_not_found(snapshot.contains_key_cf(&a, 0));
    assert_dead_range(snapshot.range_cf(&a, ..));
    assert_eq!(entries(snapshot.range_cf(&b, ..)), frozen_b);
    assert_eq!(entries(snapshot.range(..)), frozen_default);
    // A new family under the name is not the one the snapshot held.
    let recreated = db.column_family("a").unwrap();
    recreated.put(0, b"new").unwrap();
    assert_not_found(snapshot.get_cf(&a, 0));
    assert_dead_range(snapshot.range_cf(&a, 0..1));
    // A snapshot taken now reads the new family.
    assert_eq!(db.snapshot().get_cf(&recreated, 0).unwrap().unwrap(), b"new");
}

#[test]
fn compaction_keeps_every_familys_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::new().segment_size(64 << 10).background_compaction(false);
    let names = ["default", "a", "b", "c"];
    let mut models: Vec<Model> = vec![Model::new(); names.len()];
    // Every family's keys overwritten three times (different keys and lengths per
    // family), a third of them deleted; then written again after a compaction.
    let churn = |db: &Db, models: &mut [Model], keys: std::ops::Range<i64>, rounds: std::ops::Range<u32>| {
        for (index, (name, model)) in names.iter().copied().zip(models.iter_mut()).enumerate() {
            let family = db.column_family(name).unwrap();
            let family_keys = keys.clone().map(|key| key * (index as i64 + 1));
            for round in rounds.clone() {
                for key in family_keys.clone() {
                    let bytes = value(index as u64, key, round, 40 + (key.unsigned_abs() as usize + index * 13) % 90);
                    family.put(key, &bytes).unwrap();
                    model.insert(key, bytes);
                }
            }
            for key in family_keys.step_by(3) {
                family.delete(key).unwrap();
                model.remove(&key);
            }
        }
    };
    let check = |db: &Db, models: &[Model]| {
        for (name, model) in names.iter().copied().zip(models) {
            check_family(&db.column_family(name).unwrap(), model);
        }
        assert_eq!(entries(db.iter()), model_entries(&models[0]));
        assert_eq!(db.column_families(), ["a", "b", "c"]);
        assert!(db.verify().unwrap().corrupt.is_empty());
    };
    let db = options().open(dir.path()).unwrap();
    churn(&db, &mut models, -300..300, 0..3);
    db.compact().unwrap();
    check(&db, &models);
    drop(db);
    let db = options().open(dir.path()).unwrap();
    check(&db, &models);
    // Writes after a compaction, then another one: deletes of compacted keys stick.
    churn(&db, &mut models, 0..200, 3..4);
    db.compact().unwrap();
    check(&db, &models);
    drop(db);
    let db = options().open(dir.path()).unwrap();
    check(&db, &models);
    db.simulate_crash();
    let db = options().open(dir.path()).unwrap();
    check(&db, &models);
}

#[test]
fn compaction_reclaims_a_dropped_familys_space() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::new().segment_size(1 << 20).background_compaction(false);
    let db = options().open(dir.path()).unwrap();
    let bulk = db.column_family("bulk").unwrap();
    let small = db.column_family("small").unwrap();
    let mut model_default = Model::new();
    let mut model_small = Model::new();
    for key in 0..5_000 {
        bulk.put(key, value(1, key, 0, 1024)).unwrap();
    }
    for key in 0..100 {
        let bytes = value(0, key, 0, 100);
        db.put(key, &bytes).unwrap();
        model_default.insert(key, bytes);
        let bytes = value(2, key, 0, 100);
        small.put(key, &bytes).unwrap();
        model_small.insert(key, bytes);
    }
    let before = segment_bytes(dir.path());
    assert!(before > 5_000 * 1024, "{before} bytes of segment files for 5 MB of values");
    db.drop_column_family("bulk").unwrap();
    drop(bulk);
    db.compact().unwrap();
    let after = segment_bytes(dir.path());
    println!(
        "segment files: {before} bytes with the 5,000 x 1 KiB family, {after} bytes after dropping it and compacting"
    );
    assert!(after < before / 2, "dropping the family and compacting left {after} of {before} bytes");
    check_family(&small, &model_small);
    check_family(&db.column_family("default").unwrap(), &model_default);
    assert_eq!(db.column_families(), ["small"]);
    drop(small);
    drop(db);
    let db = options().open(dir.path()).unwrap();
    let reopened = segment_bytes(dir.path());
    println!("segment files after reopening: {reopened} bytes");
    assert!(reopened < before / 2, "{reopened} of {before} bytes after reopening");
    assert_eq!(db.column_families(), ["small"]);
    check_family(&db.column_family("small").unwrap(), &model_small);
    check_family(&db.column_family("default").unwrap(), &model_default);
    assert!(db.column_family("bulk").unwrap().is_empty(), "the dropped family's keys came back");
    assert!(db.verify().unwrap().corrupt.is_empty());
}

#[test]
fn two_hundred_families_reopen_with_all_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..200).map(|index| format!("family-{index:03}")).collect();
    let expected = |index: usize, name: &str| -> Entries {
        (0..(index % 7 + 1) as i64).map(|key| (key, format!("{name}/{key}").into_bytes())).collect()
    };
    {
        let db = Db::open(dir.path()).unwrap();
        for (index, name) in names.iter().enumerate() {
            let family = db.column_family(name.as_str()).unwrap();
            for (key, value) in expected(index, name.as_str()) {
                family.put(key, value).unwrap();
            }
        }
        assert_eq!(db.column_families(), names);
    }
    let check = |db: &Db| {
        assert_eq!(db.column_families(), names);
        for (index, name) in names.iter().enumerate() {
            let family = db.column_family(name.as_str()).unwrap();
            assert_eq!(entries(family.iter()), expected(index, name.as_str()), "family {name}");
            assert_eq!(family.len(), index % 7 + 1, "family {name}");
        }
        assert!(db.is_empty());
    };
    let db = Db::open(dir.path()).unwrap();
    check(&db);
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    check(&db);
    assert!(db.verify().unwrap().corrupt.is_empty());
}

#[test]
fn verify_checks_every_familys_records() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::new().segment_size(16 << 10).background_compaction(false);
    let db = options().open(dir.path()).unwrap();
    let a = db.column_family("a").unwrap();
    let b = db.column_family("b").unwrap();
    for key in 0..500 {
        a.put(key, value(1, key, 0, 30)).unwrap();
        b.put(key, value(2, key, 0, 30)).unwrap();
    }
    let mut batch = WriteBatch::new();
    for key in 0..50 {
        batch.put_cf(&a, key, b"batch").delete_cf(&b, key).put(key, b"batch");
    }
    db.write(batch).unwrap();
    let report = db.verify().unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert!(report.records >= 1_150, "verify read {} records of at least 1,150 written", report.records);
    db.drop_column_family("b").unwrap();
    let report = db.verify().unwrap();
    assert!(report.corrupt.is_empty(), "after a drop: {report:?}");
    db.compact().unwrap();
    let report = db.verify().unwrap();
    assert!(report.corrupt.is_empty(), "after compaction: {report:?}");
    assert!(report.records >= 550, "after compaction verify read {} records of 550 live", report.records);
    drop((a, b));
    drop(db);
    let db = options().open(dir.path()).unwrap();
    assert!(db.verify().unwrap().corrupt.is_empty());
    assert_eq!(db.column_families(), ["a"]);
    assert_eq!(db.column_family("a").unwrap().len(), 500);
    assert_eq!(db.len(), 50);
}
