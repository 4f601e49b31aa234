//! Power cuts around the creation and the drop of column families, on the simulated
//! disk (`testing::disk`): after the process dies, the disk loses every page and every
//! directory entry change the store had not synced. A creation or a drop is durable
//! when it returns, and durable only together with the writes acknowledged before it
//! (the store keeps a prefix of its history): a family that survives the cut brings
//! the earlier writes with it, and so does a drop. Faults on each I/O operation of a
//! creation or a drop, followed by such a cut, keep the same order. A family written
//! in `Sync` mode keeps every acknowledged write. Every cut is chosen, not random.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use alexstorage::testing::disk::{watch, Cut, Watched};
use alexstorage::testing::faults::{arm, disarm_in, Fault, Plan};
use alexstorage::{ColumnFamily, Db, Durability, Error, Options, WriteBatch};

fn options(durability: Durability) -> Options {
    Options::new().durability(durability).background_compaction(false)
}

fn value(key: i64) -> Vec<u8> {
    format!("value of key {key} ").repeat(4).into_bytes()
}

/// A power cut that keeps nothing unsynced: no unsynced directory entry change (the
/// in-order mode keeping none), every changed file at its synced length, every
/// unsynced page lost.
fn full_cut(disk: &Watched) -> Cut {
    disk.cut(&mut std::iter::once(0).chain(std::iter::repeat(1))).unwrap()
}

fn has_family(db: &Db, name: &str) -> bool {
    db.column_families().iter().any(|family| family == name)
}

fn get(db: &Db, key: i64) -> Option<Vec<u8>> {
    db.get(key).unwrap().map(|value| value.to_vec())
}

/// The simulated disk does lose what was not synced: otherwise the checks below would
/// hold whatever the store did.
#[test]
fn a_full_cut_loses_unsynced_writes_and_keeps_synced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let disk = watch(dir.path()).unwrap();
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    db.put(0, value(0)).unwrap();
    db.flush().unwrap();
    db.put(1, value(1)).unwrap();
    db.simulate_crash();
    let cut = full_cut(&disk);
    assert!(cut.pages_lost >= 1, "{cut:?}");
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    assert_eq!(get(&db, 0), Some(value(0)), "a flushed write was lost");
    assert_eq!(get(&db, 1), None, "an unsynced write survived a cut losing every unsynced page ({cut:?})");
}

/// put(1), not flushed; create "f"; the process dies and the power is cut: "f" is
/// there (its creation returned) and so is key 1 (written before it).
#[test]
fn a_creation_is_durable_with_the_writes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let disk = watch(dir.path()).unwrap();
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    db.put(0, value(0)).unwrap();
    db.flush().unwrap();
    db.put(1, value(1)).unwrap();
    let family = db.column_family("f").unwrap();
    // A write to the new family, never synced: it may be lost, not the family.
    family.put(100, value(100)).unwrap();
    drop(family);
    db.simulate_crash();
    let cut = full_cut(&disk);
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    assert!(has_family(&db, "f"), "a created family was lost ({cut:?})");
    assert_eq!(get(&db, 1), Some(value(1)), "the family survived but key 1, written before it, did not ({cut:?})");
    assert_eq!(get(&db, 0), Some(value(0)));
    let family = db.column_family("f").unwrap();
    assert!(family.get(100).unwrap().is_none_or(|found| found == value(100)[..]));
    db.verify().unwrap();
}

/// "g" created with a key and flushed; put(2), not flushed; drop "g"; the process dies
/// and the power is cut: "g" is gone (its drop returned) and key 2 (written before
/// the drop) is there.
#[test]
fn a_drop_is_durable_with_the_writes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let disk = watch(dir.path()).unwrap();
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    let family = db.column_family("g").unwrap();
    family.put(10, value(10)).unwrap();
    db.flush().unwrap();
    db.put(2, value(2)).unwrap();
    db.drop_column_family("g").unwrap();
    assert!(matches!(family.get(10), Err(Error::ColumnFamilyNotFound(_))));
    drop(family);
    db.simulate_crash();
    let cut = full_cut(&disk);
    let db = options(Durability::Buffered).open(dir.path()).unwrap();
    assert!(!has_family(&db, "g"), "a dropped family came back ({cut:?})");
    assert_eq!(get(&db, 2), Some(value(2)), "the drop survived but key 2, written before it, did not ({cut:?})");
    // A family created again under the name starts empty: the dropped one's records
    // (still in the log) do not count.
    let again = db.column_family("g").unwrap();
    assert!(again.is_empty() && again.get(10).unwrap().is_none());
    db.verify().unwrap();
}

/// The same two checks when the writes before the creation span several segments
/// (sealed ones and the one being written).
#[test]
fn a_creation_after_segment_roll_overs_keeps_every_earlier_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = watch(dir.path()).unwrap();
    let db = options(Durability::Buffered).segment_size(16 << 10).open(dir.path()).unwrap();
    for key in 0..500 {
        db.put(key, value(key)).unwrap();
    }
    assert!(db.stats().segments >= 3, "{:?}", db.stats());
    let family = db.column_family("f").unwrap();
    family.put(1, value(1)).unwrap();
    drop(family);
    db.simulate_crash();
    let cut = full_cut(&disk);
    let db = options(Durability::Buffered).segment_size(16 << 10).open(dir.path()).unwrap();
    assert!(has_family(&db, "f"), "{cut:?}");
    for key in 0..500 {
        assert_eq!(get(&db, key), Some(value(key)), "key {key} ({cut:?})");
    }
    db.verify().unwrap();
}

/// What a run with a fault left before the power cut.
struct Outcome {
    /// Whether the operation under test returned `Ok`.
    returned: bool,
    /// Whether the fault fired.
    fired: bool,
}

/// Runs `change` with a fault on I/O operation `fail_at` in `dir` (after `setup`),
/// then the process dies and the power is cut.
fn with_fault(
    dir: &Path,
    fail_at: u64,
    setup: impl FnOnce(&Db),
    change: impl FnOnce(&Db) -> alexstorage::Result<()>,
) -> (Outcome, Cut) {
    let disk = watch(dir).unwrap();
    let db = options(Durability::Buffered).open(dir).unwrap();
    setup(&db);
    arm(Plan::at(fail_at, Fault::Io).in_dir(dir));
    let returned = change(&db).is_ok();
    let (_, failed) = disarm_in(Some(dir));
    db.simulate_crash();
    let cut = full_cut(&disk);
    (Outcome { returned, fired: failed.is_some() }, cut)
}

/// A fault on each I/O operation of a creation in turn, then a full power cut: the
/// family never survives without key 1, written before it; it survives whenever the
/// creation returned.
#[test]
fn a_failed_creation_never_keeps_the_family_without_the_writes_before_it() {
    let mut fail_at = 0;
    let mut survived_failed = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let (outcome, cut) = with_fault(
            dir.path(),
            fail_at,
            |db| {
                db.put(0, value(0)).unwrap();
                db.flush().unwrap();
                db.put(1, value(1)).unwrap();
            },
            |db| db.column_family("f").map(drop),
        );
        let context = format!("fault at operation {fail_at} (returned: {}, {cut:?})", outcome.returned);
        let db = options(Durability::Buffered).open(dir.path()).unwrap_or_else(|error| panic!("{context}: {error}"));
        let exists = has_family(&db, "f");
        if exists {
            assert_eq!(get(&db, 1), Some(value(1)), "{context}: the family survived without key 1");
            survived_failed += usize::from(!outcome.returned);
        }
        if outcome.returned {
            assert!(exists, "{context}: a creation that returned was lost");
        }
        assert_eq!(get(&db, 0), Some(value(0)), "{context}: a flushed write was lost");
        db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
        if !outcome.fired {
            assert!(outcome.returned, "{context}: failed with no fault");
            break;
        }
        fail_at += 1;
    }
    assert!(fail_at >= 3, "a creation did only {fail_at} I/O operations");
    println!("{fail_at} faults, {survived_failed} failed creations survived the cut");
}

/// A fault on each I/O operation of a drop in turn, then a full power cut: the family
/// is never gone without key 2, written before the drop; it is gone whenever the drop
/// returned; while it is there, so is its flushed key.
#[test]
fn a_failed_drop_never_loses_the_family_without_the_writes_before_it() {
    let mut fail_at = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let (outcome, cut) = with_fault(
            dir.path(),
            fail_at,
            |db| {
                db.column_family("g").unwrap().put(10, value(10)).unwrap();
                db.flush().unwrap();
                db.put(2, value(2)).unwrap();
            },
            |db| db.drop_column_family("g"),
        );
        let context = format!("fault at operation {fail_at} (returned: {}, {cut:?})", outcome.returned);
        let db = options(Durability::Buffered).open(dir.path()).unwrap_or_else(|error| panic!("{context}: {error}"));
        if has_family(&db, "g") {
            assert!(!outcome.returned, "{context}: a drop that returned was undone");
            let family = db.column_family("g").unwrap();
            assert_eq!(family.get(10).unwrap().as_deref(), Some(&value(10)[..]), "{context}: flushed key lost");
        } else {
            assert_eq!(get(&db, 2), Some(value(2)), "{context}: the family is gone but key 2 is lost");
        }
        db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
        if !outcome.fired {
            assert!(outcome.returned, "{context}: failed with no fault");
            break;
        }
        fail_at += 1;
    }
    assert!(fail_at >= 3, "a drop did only {fail_at} I/O operations");
}

/// A fault on each I/O operation of a drop in turn, and no power cut: the process goes
/// on. A fault after the catalog's rename (its directory sync) leaves the new catalog
/// in the file system though the drop failed; the store must then not acknowledge a
/// write to the family it still shows, which the next open (reading that catalog)
/// would skip. Whatever it acknowledges after the failed drop is there after a crash.
#[test]
fn writes_acknowledged_after_a_failed_drop_are_kept() {
    let mut fail_at = 0;
    let mut acknowledged_after = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let db = options(Durability::Buffered).open(dir.path()).unwrap();
        let family = db.column_family("g").unwrap();
        family.put(10, value(10)).unwrap();
        db.flush().unwrap();
        arm(Plan::at(fail_at, Fault::Io).in_dir(dir.path()));
        let returned = db.drop_column_family("g").is_ok();
        let (_, failed) = disarm_in(Some(dir.path()));
        let context = format!("fault at operation {fail_at} ({failed:?}, returned: {returned})");
        // After a failed drop: a write to the family, one to the default family, a
        // flush. Each may be refused (the store poisoned); what is acknowledged stays.
        let family_write = !returned && family.put(20, value(20)).is_ok();
        let default_write = db.put(3, value(3)).is_ok();
        let flushed = db.flush().is_ok();
        drop(family);
        db.simulate_crash();
        let db = options(Durability::Buffered).open(dir.path()).unwrap_or_else(|error| panic!("{context}: {error}"));
        if returned {
            assert!(!has_family(&db, "g"), "{context}: a drop that returned was undone");
        }
        if family_write {
            acknowledged_after += 1;
            assert!(has_family(&db, "g"), "{context}: a write to g acknowledged after its failed drop, and no g");
            let family = db.column_family("g").unwrap();
            assert_eq!(family.get(20).unwrap().as_deref(), Some(&value(20)[..]), "{context}: acknowledged write lost");
        }
        if default_write {
            // A process crash keeps the page cache: every acknowledged write is there.
            assert_eq!(get(&db, 3), Some(value(3)), "{context} (flushed: {flushed})");
        }
        db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
        if failed.is_none() {
            assert!(returned, "{context}: failed with no fault");
            break;
        }
        fail_at += 1;
    }
    println!("{fail_at} faults, {acknowledged_after} writes to the family acknowledged after its failed drop");
}

/// In `Sync` mode every acknowledged write of a named family (puts, deletes, batches
/// spanning families) survives a power cut, wherever it lies in the segments.
#[test]
fn sync_writes_to_a_family_survive_a_power_cut() {
    for segment_size in [64 << 20, 16 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let disk = watch(dir.path()).unwrap();
        let open = || options(Durability::Sync).segment_size(segment_size).open(dir.path()).unwrap();
        let db = open();
        let family = db.column_family("s").unwrap();
        let other = db.column_family("t").unwrap();
        for key in 0..300 {
            family.put(key, value(key)).unwrap();
            if key % 3 == 0 {
                db.put(key, value(-key)).unwrap();
            }
        }
        for key in (0..300).step_by(7) {
            family.delete(key).unwrap();
        }
        let mut batch = WriteBatch::new();
        batch.put_cf(&family, 1000, value(1000)).put_cf(&other, 1000, value(-1000)).delete_cf(&family, 1);
        db.write(batch).unwrap();
        drop((family, other));
        db.simulate_crash();
        let cut = full_cut(&disk);
        let context = format!("segment size {segment_size} ({cut:?})");
        let db = open();
        assert_eq!(db.column_families(), ["s", "t"], "{context}");
        let family = db.column_family("s").unwrap();
        let other = db.column_family("t").unwrap();
        let expected = |key: i64| (key % 7 != 0 && key != 1).then(|| value(key));
        for key in 0..300 {
            let found = family.get(key).unwrap().map(|found| found.to_vec());
            assert_eq!(found, expected(key), "{context}: family key {key}");
            let default = get(&db, key);
            assert_eq!(default, (key % 3 == 0).then(|| value(-key)), "{context}: default key {key}");
        }
        check_batch(&family, &other, &context);
        assert_eq!(family.len(), (0..300).filter(|&key| expected(key).is_some()).count() + 1, "{context}");
        db.verify().unwrap();
    }
}

/// A checkpoint taken while family "a" (id 1) existed; then "a" dropped and "b"
/// created, reusing id 1 with a new incarnation, and written; then a compaction, and
/// "c" created and dropped in the log after it; a crash and a full power cut. The
/// checkpoint's section of "a" must not be applied to "b", nor any record of "a" or
/// "c" count: "b" holds exactly its own keys.
#[test]
fn a_reused_family_id_gets_nothing_of_the_dropped_family_after_a_power_cut() {
    for compact in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let disk = watch(dir.path()).unwrap();
        let open = || options(Durability::Sync).open(dir.path()).unwrap();
        let db = open();
        let a = db.column_family("a").unwrap();
        for key in 0..100 {
            a.put(key, value(key)).unwrap();
        }
        drop(a);
        // A clean close: a checkpoint with a section for "a".
        drop(db);
        let db = open();
        assert!(db.stats().opened_from_checkpoint);
        db.drop_column_family("a").unwrap();
        let b = db.column_family("b").unwrap();
        for key in (50..150).step_by(2) {
            b.put(key, value(-key)).unwrap();
        }
        if compact {
            db.compact().unwrap();
        }
        let c = db.column_family("c").unwrap();
        c.put(7, value(7)).unwrap();
        drop(c);
        db.drop_column_family("c").unwrap();
        b.put(1000, value(1000)).unwrap();
        drop(b);
        db.simulate_crash();
        let cut = full_cut(&disk);
        let context = format!("compacted: {compact} ({cut:?})");
        let db = open();
        assert_eq!(db.column_families(), ["b"], "{context}");
        let b = db.column_family("b").unwrap();
        let keys: Vec<i64> = b.iter().map(|item| item.unwrap().0).collect();
        let expected: Vec<i64> = (50..150).step_by(2).chain([1000]).collect();
        assert_eq!(keys, expected, "{context}");
        for key in expected {
            let wanted = if key == 1000 { value(1000) } else { value(-key) };
            assert_eq!(b.get(key).unwrap().as_deref(), Some(&wanted[..]), "{context}: key {key}");
        }
        let c = db.column_family("c").unwrap();
        assert!(c.is_empty(), "{context}: a dropped family's key came back in a new family");
        db.verify().unwrap();
    }
}

fn check_batch(family: &ColumnFamily, other: &ColumnFamily, context: &str) {
    assert_eq!(family.get(1000).unwrap().as_deref(), Some(&value(1000)[..]), "{context}");
    assert_eq!(other.get(1000).unwrap().as_deref(), Some(&value(-1000)[..]), "{context}");
    assert!(family.get(1).unwrap().is_none(), "{context}");
}
