//! Column-family ids are reused (a new family takes the lowest free id) and told apart
//! by incarnation and by the sequence each family was created after. Each test drops a
//! family and creates another on the same id, then reads through every path that could
//! confuse the two: a checkpoint written while the old family held the id (its section
//! must not be used), a full replay of a log that still holds the old family's
//! records, compacted segments holding them, snapshots that kept versions of the old
//! family, and handles of another store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use alexstorage::{ColumnFamily, Db, Error, Options, Value, WriteBatch};

/// What a family holds, read whole through `handle`.
fn contents(handle: &ColumnFamily) -> BTreeMap<i64, Vec<u8>> {
    handle.iter().map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect()
}

fn values(range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) -> Vec<(i64, Vec<u8>)> {
    range.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect()
}

/// Opens without background compaction, so that what is compacted is what a test says.
fn open(dir: &Path) -> Db {
    Options::new().background_compaction(false).open(dir).unwrap()
}

/// How a test reopens the store.
#[derive(Clone, Copy, Debug)]
enum Reopen {
    /// A clean close (which writes a checkpoint of the new family).
    Clean,
    /// A crash: the checkpoint is the one written while the old family held the id.
    Crash,
    /// A crash, and the checkpoint deleted: the whole log is replayed.
    Replay,
}

fn reopen(db: Db, dir: &Path, how: Reopen) -> Db {
    match how {
        Reopen::Clean => drop(db),
        Reopen::Crash => db.simulate_crash(),
        Reopen::Replay => {
            db.simulate_crash();
            std::fs::remove_file(dir.join("CHECKPOINT")).unwrap();
        }
    }
    let db = open(dir);
    assert_eq!(db.stats().opened_from_checkpoint, !matches!(how, Reopen::Replay), "{how:?}");
    db
}

/// `a` (id 1) holds keys 0..50, checkpointed by a clean close; it is dropped and `b`
/// (id 1 again) gets key 7; after every kind of reopen `b` holds exactly key 7.
#[test]
fn a_checkpoint_section_of_a_dropped_family_is_not_used_for_its_successor() {
    for how in [Reopen::Clean, Reopen::Crash, Reopen::Replay] {
        for same_name in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path());
            let a = db.column_family("a").unwrap();
            for key in 0..50 {
                a.put(key, format!("old {key}")).unwrap();
            }
            drop(db); // the checkpoint now has a section for `a` on id 1
            let db = open(dir.path());
            assert!(db.stats().opened_from_checkpoint);
            db.drop_column_family("a").unwrap();
            let name = if same_name { "a" } else { "b" };
            let b = db.column_family(name).unwrap();
            assert!(b.is_empty());
            b.put(7, b"new").unwrap();
            let db = reopen(db, dir.path(), how);
            let b = db.column_family(name).unwrap();
            let expected = BTreeMap::from([(7, b"new".to_vec())]);
            assert_eq!(contents(&b), expected, "{how:?}, same name {same_name}");
            assert_eq!(b.len(), 1);
            assert_eq!(db.column_families(), [name]);
            db.verify().unwrap();
        }
    }
}

/// The same with compaction: the old family's records in compacted segments (and the
/// checkpoint the compaction wrote) must not leak into the family that takes its id,
/// whichever comes first, the compaction or the drop.
#[test]
fn compacted_records_of_a_dropped_family_stay_dropped() {
    for how in [Reopen::Clean, Reopen::Crash, Reopen::Replay] {
        for compact_first in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path());
            let a = db.column_family("a").unwrap();
            for key in 0..200 {
                a.put(key, vec![1u8; 100]).unwrap();
                db.put(key, b"default").unwrap();
            }
            if compact_first {
                db.compact().unwrap();
            }
            db.drop_column_family("a").unwrap();
            let b = db.column_family("b").unwrap();
            for key in 100..110 {
                b.put(key, b"b").unwrap();
            }
            if !compact_first {
                db.compact().unwrap();
            }
            let db = reopen(db, dir.path(), how);
            let b = db.column_family("b").unwrap();
            let expected: BTreeMap<i64, Vec<u8>> = (100..110).map(|key| (key, b"b".to_vec())).collect();
            assert_eq!(contents(&b), expected, "{how:?}, compact first {compact_first}");
            assert_eq!(db.len(), 200);
            db.verify().unwrap();
        }
    }
}

/// A snapshot taken while `a` held id 1 keeps versions of `a`'s keys; once `a` is
/// dropped and `b` takes id 1, the snapshot reads nothing of `b` (created after it)
/// and nothing of `a` (dropped), and no kept version of `a` shows through.
#[test]
fn kept_versions_of_a_dropped_family_never_show_in_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let a = db.column_family("a").unwrap();
    for key in 0..20 {
        a.put(key, format!("a{key}")).unwrap();
    }
    let snapshot = db.snapshot();
    for key in 0..20 {
        a.put(key, b"overwritten").unwrap(); // the snapshot keeps the old versions
    }
    let kept = db.stats().retained_versions;
    assert!(kept >= 20, "{kept} versions kept");
    db.drop_column_family("a").unwrap();
    assert!(db.stats().retained_versions <= kept - 20, "the dropped family's versions are let go");
    let b = db.column_family("b").unwrap();
    for key in 0..20 {
        b.put(key, b"b").unwrap();
    }
    for key in 0..20 {
        assert_eq!(snapshot.get_cf(&b, key).unwrap(), None, "key {key}");
    }
    assert!(values(snapshot.range_cf(&b, ..)).is_empty());
    assert!(values(snapshot.range_cf(&b, ..).rev()).is_empty());
    assert!(matches!(snapshot.get_cf(&a, 1), Err(Error::ColumnFamilyNotFound(_))));
    // A transaction begun before the re-creation reads nothing of `b` either.
    let tx = db.transaction();
    db.drop_column_family("b").unwrap();
    let c = db.column_family("c").unwrap();
    c.put(3, b"c").unwrap();
    assert_eq!(tx.get_cf(&c, 3).unwrap(), None);
    assert!(values(tx.range_cf(&c, ..)).is_empty());
    assert_eq!(c.get(3).unwrap().unwrap(), b"c");
}

/// A handle names a family of its own store only: used with another store, whose
/// family has the same id and incarnation, it finds nothing there.
#[test]
fn a_handle_of_another_store_names_no_family_there() {
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (open(first_dir.path()), open(second_dir.path()));
    let mine = first.column_family("users").unwrap();
    let theirs = second.column_family("users").unwrap(); // same id, same incarnation
    theirs.put(1, b"theirs").unwrap();
    let mut batch = WriteBatch::new();
    batch.put_cf(&mine, 1, b"mine").put(2, b"default");
    assert!(matches!(second.write(batch), Err(Error::ColumnFamilyNotFound(_))));
    assert_eq!(second.get(2).unwrap(), None, "the batch wrote nothing");
    assert!(matches!(second.snapshot().get_cf(&mine, 1), Err(Error::ColumnFamilyNotFound(_))));
    let mut tx = second.transaction();
    tx.put_cf(&mine, 1, b"mine");
    assert!(matches!(tx.commit(), Err(Error::ColumnFamilyNotFound(_))));
    assert_eq!(theirs.get(1).unwrap().unwrap(), b"theirs");
    assert_eq!(mine.get(1).unwrap(), None);
}

/// Dropping a family makes its bytes garbage at once: on a compacted store, a
/// compaction after the drop rewrites the rest and gives the family's space back,
/// also when the live bytes were restored from a checkpoint or a full replay.
#[test]
fn a_drop_on_a_compacted_store_is_reclaimed_by_the_next_compaction() {
    for how in [None, Some(Reopen::Clean), Some(Reopen::Replay)] {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        for key in 0..100 {
            db.put(key, [2u8; 50]).unwrap();
        }
        let before_family = db.stats().live_bytes;
        let bulk = db.column_family("bulk").unwrap();
        for key in 0..2000 {
            bulk.put(key, [1u8; 500]).unwrap();
        }
        db.compact().unwrap();
        let stats = db.stats();
        assert_eq!(stats.live_bytes, stats.log_bytes, "a compacted store is all live");
        drop(bulk);
        let db = match how {
            Some(how) => reopen(db, dir.path(), how),
            None => db,
        };
        let compacted = db.stats().log_bytes;
        db.drop_column_family("bulk").unwrap();
        assert_eq!(db.stats().live_bytes, before_family, "{how:?}: the family's bytes are garbage");
        let reclaimed = db.compact().unwrap();
        assert!(reclaimed.segments_removed > 0, "{how:?}: {reclaimed:?}");
        let stats = db.stats();
        assert_eq!(stats.live_bytes, stats.log_bytes);
        assert!(stats.log_bytes * 10 < compacted, "{how:?}: {} of {compacted} bytes left", stats.log_bytes);
        assert_eq!(db.len(), 100);
    }
}

/// Threads racing to create the same family all get it, once.
#[test]
fn racing_creations_of_one_name_make_one_family() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let threads: Vec<_> = (0..8i64)
        .map(|thread| {
            let db = db.clone();
            std::thread::spawn(move || {
                let family = db.column_family("x").unwrap();
                family.put(thread, thread.to_le_bytes()).unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(db.column_families(), ["x"]);
    assert_eq!(db.column_family("x").unwrap().len(), 8);
    let stats = db.stats();
    assert_eq!((stats.column_families, stats.column_family_keys, stats.keys), (1, 8, 0));
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.column_families(), ["x"]);
    assert_eq!(db.column_family("x").unwrap().len(), 8);
}

/// A read-only open lists and reads families, and creates or drops none (a name it
/// does not have is not found).
#[test]
fn a_read_only_open_reads_families_and_changes_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.column_family("kept").unwrap().put(1, b"one").unwrap();
    let reader = Options::new().read_only(true).open(dir.path()).unwrap();
    assert_eq!(reader.column_families(), ["kept"]);
    assert_eq!(reader.column_family("kept").unwrap().get(1).unwrap().unwrap(), b"one");
    assert!(matches!(reader.column_family("new"), Err(Error::ColumnFamilyNotFound(_))));
    assert!(matches!(reader.drop_column_family("kept"), Err(Error::ReadOnly)));
    assert!(matches!(reader.column_family("kept").unwrap().put(2, b"two"), Err(Error::ReadOnly)));
}

/// `WriteBatch::clear` forgets the families the batch named: a cleared batch reused
/// after its family was dropped writes.
#[test]
fn a_cleared_batch_forgets_its_families() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let doomed = db.column_family("doomed").unwrap();
    let mut batch = WriteBatch::new();
    batch.put_cf(&doomed, 1, b"x");
    db.drop_column_family("doomed").unwrap();
    batch.clear();
    batch.put(1, b"default");
    db.write(batch).unwrap();
    assert_eq!(db.get(1).unwrap().unwrap(), b"default");
}

/// A failed catalog replacement leaves it unknown whether the new catalog took the
/// old one's place: the store refuses writes until a reopen reads the disk, so no
/// write is acknowledged into a family the disk may no longer list.
#[test]
fn a_failed_catalog_write_refuses_writes_until_reopened() {
    use alexstorage::testing::faults::{self, Fault, Op, Plan};
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let family = db.column_family("f").unwrap();
    family.put(1, b"one").unwrap();
    let mut plan = Plan::at(0, Fault::Io).in_dir(dir.path());
    plan.ops = vec![Op::Rename];
    faults::arm(plan);
    let dropped = db.drop_column_family("f");
    let fired = faults::disarm_in(Some(dir.path())).1;
    assert!(matches!(fired, Some((Op::Rename, _))), "the catalog's rename failed: {fired:?}");
    assert!(dropped.is_err());
    assert!(matches!(family.put(2, b"two"), Err(Error::Poisoned(_))));
    assert!(matches!(db.put(2, b"two"), Err(Error::Poisoned(_))));
    drop(family);
    drop(db);
    // The rename failed: the old catalog is in force, with the family and its write.
    let db = open(dir.path());
    assert_eq!(db.column_families(), ["f"]);
    assert_eq!(db.column_family("f").unwrap().get(1).unwrap().unwrap(), b"one");
    db.drop_column_family("f").unwrap();
    assert!(db.column_families().is_empty());
}
