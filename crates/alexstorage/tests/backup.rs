//! Online backup (`Db::backup_to`): a copy taken while threads write holds a prefix of
//! each writer's acknowledged writes (all those acknowledged before the call) and
//! nothing torn; a quiet store's copy equals it in every family, after compactions and
//! drops; sealed segments are shared by hard links, and the copy and the store then go
//! their own ways; targets that exist are refused; a backup that fails at any I/O
//! operation leaves no store at the target and nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use alexstorage::{BackupStage, Db, Durability, Error, Options};

type Contents = BTreeMap<String, BTreeMap<i64, Vec<u8>>>;

/// Every family's keys and values, the default family as `""`.
fn contents(db: &Db) -> Contents {
    let read = |range: alexstorage::Range| {
        range.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect::<BTreeMap<_, _>>()
    };
    let mut all = BTreeMap::from([(String::new(), read(db.iter()))]);
    for name in db.column_families() {
        all.insert(name.clone(), read(db.column_family(&name).unwrap().iter()));
    }
    all
}

fn small_segments() -> Options {
    Options::new().segment_size(64 << 10)
}

/// The files of `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn a_backup_taken_under_writers_holds_every_write_acknowledged_before_it() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let db = small_segments().durability(durability).open(dir.path()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Writer `t` writes keys t * 1_000_000 + 0, 1, 2, ... in order; `acked[t]` is
        // how many it had acknowledged.
        let acked: Arc<Vec<AtomicI64>> = Arc::new((0..3).map(|_| AtomicI64::new(0)).collect());
        let writers: Vec<_> = (0..3i64)
            .map(|thread| {
                let (db, stop, acked) = (db.clone(), Arc::clone(&stop), Arc::clone(&acked));
                let family = db.column_family(if thread == 2 { "other" } else { "default" }).unwrap();
                std::thread::spawn(move || {
                    let mut next = 0i64;
                    while !stop.load(Ordering::Relaxed) && next < 200_000 {
                        family.put(thread * 1_000_000 + next, next.to_le_bytes().repeat(8)).unwrap();
                        next += 1;
                        acked[thread as usize].store(next, Ordering::Release);
                    }
                })
            })
            .collect();
        while acked.iter().any(|count| count.load(Ordering::Acquire) < 500) {
            std::thread::yield_now();
        }
        let before: Vec<i64> = acked.iter().map(|count| count.load(Ordering::Acquire)).collect();
        let target = backups.path().join("copy");
        let stats = db.backup_with_stats(&target).unwrap();
        let after: Vec<i64> = acked.iter().map(|count| count.load(Ordering::Acquire)).collect();
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().unwrap();
        }
        let copy = Db::open(&target).unwrap();
        assert!(copy.stats().opened_from_checkpoint, "the copy opens from its own checkpoint");
        copy.verify().unwrap();
        let found = contents(&copy);
        for thread in 0..3i64 {
            let family = if thread == 2 { "other" } else { "" };
            let keys: Vec<i64> = found[family]
                .keys()
                .copied()
                .filter(|key| key / 1_000_000 == thread)
                .map(|key| key % 1_000_000)
                .collect();
            let count = keys.len() as i64;
            assert_eq!(keys, (0..count).collect::<Vec<_>>(), "{durability:?}: writer {thread} holds a prefix");
            let (low, high) = (before[thread as usize], after[thread as usize] + 1);
            assert!((low..=high).contains(&count), "{durability:?}: writer {thread}: {count} not in {low}..={high}");
            for (key, value) in &found[family] {
                if key / 1_000_000 == thread {
                    assert_eq!(value, &(key % 1_000_000).to_le_bytes().repeat(8), "key {key}");
                }
            }
        }
        // Every write is a put of a new key with its own sequence number: the copy holds
        // exactly the writes up to the capture's sequence, in every family together.
        let total: usize = found.values().map(BTreeMap::len).sum();
        assert_eq!(total as u64, stats.sequence, "{durability:?}: the copy is the state at one sequence");
        println!("{durability:?}: {stats:?}, writers at {before:?} before and {after:?} after");
    }
}

#[test]
fn a_quiet_stores_backup_equals_it_and_shares_its_sealed_segments() {
    let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = small_segments().background_compaction(false).open(dir.path()).unwrap();
    let users = db.column_family("users").unwrap();
    let doomed = db.column_family("doomed").unwrap();
    for key in 0..3000i64 {
        db.put(key, vec![key as u8; 60]).unwrap();
        users.put(-key, format!("user {key}")).unwrap();
        doomed.put(key, b"doomed").unwrap();
    }
    db.compact().unwrap();
    db.drop_column_family("doomed").unwrap();
    for key in (0..3000i64).step_by(7) {
        db.delete(key).unwrap();
        users.put(-key, b"again").unwrap();
    }
    let target = backups.path().join("copy");
    let stats = db.backup_with_stats(&target).unwrap();
    assert!(stats.segments_linked > 0 && stats.segments_copied == 1, "{stats:?}");
    let copy = Db::open(&target).unwrap();
    assert_eq!(contents(&copy), contents(&db));
    assert_eq!(copy.column_families(), ["users"]);
    copy.verify().unwrap();
    // Shared files do not tie the two together: each writes and compacts on its own.
    let expected = contents(&db);
    for key in 0..500i64 {
        copy.put(key, b"only in the copy").unwrap();
    }
    copy.drop_column_family("users").unwrap();
    copy.compact().unwrap();
    db.put(-1, b"only in the store").unwrap();
    assert_eq!(db.get(0).unwrap(), None, "key 0 was deleted in the store");
    let mut store_now = expected.clone();
    store_now.get_mut("").unwrap().insert(-1, b"only in the store".to_vec());
    assert_eq!(contents(&db), store_now);
    assert_eq!(copy.get(-1).unwrap(), None);
    drop((users, db, copy));
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(contents(&db), store_now, "the store after its copy was compacted");
    db.verify().unwrap();
}

#[test]
fn an_existing_target_or_a_missing_parent_is_refused() {
    let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = Db::open(dir.path()).unwrap();
    db.put(1, b"one").unwrap();
    let empty = backups.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(db.backup_to(&empty), Err(Error::InvalidArgument(_))));
    let file = backups.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(db.backup_to(&file), Err(Error::InvalidArgument(_))));
    assert!(matches!(db.backup_to(backups.path().join("no/such/parent")), Err(Error::InvalidArgument(_))));
    assert!(matches!(db.backup_to(dir.path()), Err(Error::InvalidArgument(_))), "the store itself");
    assert_eq!(names(backups.path()), ["empty", "file"], "nothing left behind");
}

/// A fault at each I/O operation of a backup in turn: the backup fails, nothing is
/// at the target, no temporary is left, and the store goes on (or, where the fault hit
/// a hard link, the segment is copied instead and the backup is whole).
#[test]
fn a_backup_failing_at_any_operation_leaves_nothing() {
    use alexstorage::testing::faults::{self, Fault, Plan};
    let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = small_segments().background_compaction(false).open(dir.path()).unwrap();
    let family = db.column_family("f").unwrap();
    for key in 0..2000i64 {
        db.put(key, [3u8; 80]).unwrap();
        family.put(key, b"f").unwrap();
    }
    db.compact().unwrap();
    db.put(-1, b"in the log").unwrap();
    let target = backups.path().join("copy");
    let (mut failed, mut linked_failed) = (0, 0);
    for operation in 0.. {
        faults::arm(Plan::at(operation, Fault::Io).in_dir(backups.path()));
        let result = db.backup_to(&target);
        let fired = faults::disarm_in(Some(backups.path())).1;
        match (result, fired) {
            (Err(_), Some(_)) => {
                failed += 1;
                assert!(names(backups.path()).is_empty(), "after a fault at operation {operation}");
            }
            (Ok(()), None) => break,
            (Ok(()), Some((faults::Op::Create, path))) if path.extension().is_some_and(|ext| ext == "seg") => {
                // A hard link that failed: the segment was copied instead.
                linked_failed += 1;
                assert_eq!(contents(&Db::open(&target).unwrap()), contents(&db));
                std::fs::remove_dir_all(&target).unwrap();
            }
            (result, fired) => panic!("operation {operation}: {result:?} with fault {fired:?}"),
        }
    }
    assert!(failed > 5 && linked_failed > 0, "only {failed} operations, {linked_failed} links");
    let copy = Db::open(&target).unwrap();
    assert_eq!(contents(&copy), contents(&db));
    println!("a fault at each of {failed} operations of a backup left nothing behind ({linked_failed} failed links were copies)");
}

/// Every key read one by one, through each family's index (a range reads the same
/// index, but a checkpoint pointing into missing segments shows in gets too).
fn gets(db: &Db, expected: &Contents) {
    for (name, keys) in expected {
        let family = db.column_family(if name.is_empty() { "default" } else { name }).unwrap();
        for (key, value) in keys {
            assert_eq!(family.get(*key).unwrap().as_deref(), Some(&value[..]), "key {key} of {name:?}");
        }
    }
}

/// Writes, deletes and a family's drop landing after the capture (and while the copy's
/// checkpoint is written) are not in the copy; the dropped family is, whole.
#[test]
fn what_lands_after_the_capture_stays_out_of_the_copy() {
    let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = small_segments().background_compaction(false).open(dir.path()).unwrap();
    let users = db.column_family("users").unwrap();
    for key in 0..3000i64 {
        db.put(key, [5u8; 40]).unwrap();
        users.put(key, format!("user {key}")).unwrap();
    }
    let expected = contents(&db);
    let target = backups.path().join("copy");
    let stats = db
        .backup_with_hook(&target, |stage| {
            if stage == BackupStage::Captured {
                db.drop_column_family("users").unwrap();
                db.put(-1, b"after").unwrap();
                db.delete(0).unwrap();
            }
        })
        .unwrap();
    assert!(db.column_families().is_empty());
    let copy = Db::open(&target).unwrap();
    assert!(!copy.stats().opened_from_checkpoint, "no checkpoint once a family was dropped: the copy replays");
    assert_eq!(contents(&copy), expected, "{stats:?}");
    gets(&copy, &expected);
    copy.verify().unwrap();
}

/// A compaction between the copy's checkpoint and its segments moves every record and
/// deletes the files the copy links: the copy is still the state at the capture, read
/// through its checkpoint, and it compacts on its own.
#[test]
fn a_compaction_during_the_copy_changes_nothing_in_it() {
    let (dir, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = small_segments().background_compaction(false).open(dir.path()).unwrap();
    let family = db.column_family("f").unwrap();
    for round in 0..3u8 {
        for key in 0..2000i64 {
            db.put(key, [round; 50]).unwrap();
            family.put(-key, [round; 30]).unwrap();
        }
    }
    let expected = contents(&db);
    let target = backups.path().join("copy");
    let stats = db
        .backup_with_hook(&target, |stage| {
            if stage == BackupStage::Copying {
                let compacted = db.compact().unwrap();
                assert!(compacted.segments_removed > 0, "{compacted:?}");
                db.put(1, b"after").unwrap();
            }
        })
        .unwrap();
    let copy = Db::open(&target).unwrap();
    assert!(copy.stats().opened_from_checkpoint);
    assert_eq!(contents(&copy), expected, "{stats:?}");
    gets(&copy, &expected);
    copy.verify().unwrap();
    copy.compact().unwrap();
    gets(&copy, &expected);
    assert_eq!(db.get(1).unwrap().unwrap(), b"after");
}
