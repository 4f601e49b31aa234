//! Transactions across column families: a commit spanning families is atomic (its
//! writes seen by nobody before it, by everyone together after it, and after reopen);
//! a conflict names the family of its key ("default" for the store's own keys), and a
//! write to the same key number in another family is no conflict; a phantom in a range
//! read of one family conflicts; blind writes across families never conflict; a
//! transaction touching a family dropped before its commit fails with
//! `ColumnFamilyNotFound` and writes nothing; and bank transfers between accounts in
//! two families from 4 threads (`Db::transact`) conserve the total, audited through
//! snapshots and read-only transactions, and across reopen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use alexstorage::{ColumnFamily, Db, Durability, Error, Options, Snapshot, Value, WriteBatch};

type Entries = Vec<(i64, Vec<u8>)>;
/// A range of keys, as a conflict names it.
type Interval = (Bound<i64>, Bound<i64>);

fn store() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    (dir, db)
}

/// Families "a" and "b".
fn families(db: &Db) -> (ColumnFamily, ColumnFamily) {
    (db.column_family("a").unwrap(), db.column_family("b").unwrap())
}

fn entries(range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) -> Entries {
    range.map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect()
}

fn keys(range: impl Iterator<Item = alexstorage::Result<(i64, Value)>>) -> Vec<i64> {
    range.map(|entry| entry.unwrap().0).collect()
}

/// The family, key and range a conflict names.
fn conflict(result: alexstorage::Result<()>) -> (String, i64, Option<Interval>) {
    match result {
        Err(Error::Conflict { family, key, range }) => (family, key, range),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: alexstorage::Result<T>) {
    assert!(matches!(result, Err(Error::ColumnFamilyNotFound(_))), "expected ColumnFamilyNotFound, got {result:?}");
}

#[test]
fn a_commit_spanning_families_is_atomic_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let (a, b) = families(&db);
    a.put(2, b"old a2").unwrap();
    b.put(1, b"old b1").unwrap();
    let mut tx = db.transaction();
    tx.put_cf(&a, 1, b"a1");
    tx.delete_cf(&a, 2);
    tx.put_cf(&b, 1, b"b1");
    tx.put_cf(&b, 5, b"b5");
    tx.put(1, b"d1");
    // The transaction reads its own writes, each in its family.
    assert_eq!(tx.get_cf(&a, 1).unwrap().unwrap(), b"a1");
    assert_eq!(tx.get_cf(&a, 2).unwrap(), None);
    assert!(!tx.contains_key_cf(&a, 2).unwrap());
    assert!(!tx.contains_key_cf(&a, 5).unwrap());
    assert_eq!(tx.get_cf(&b, 1).unwrap().unwrap(), b"b1");
    assert_eq!(tx.get(1).unwrap().unwrap(), b"d1");
    assert_eq!(tx.get(5).unwrap(), None);
    assert_eq!(entries(tx.range_cf(&a, ..)), [(1, b"a1".to_vec())]);
    assert_eq!(keys(tx.range_cf(&b, ..).rev()), [5, 1]);
    assert_eq!(entries(tx.range_cf(&b, 2..)), [(5, b"b5".to_vec())]);
    // Nobody else sees them before the commit.
    assert_eq!(a.get(1).unwrap(), None);
    assert_eq!(a.get(2).unwrap().unwrap(), b"old a2");
    assert_eq!(b.get(1).unwrap().unwrap(), b"old b1");
    assert_eq!(db.get(1).unwrap(), None);
    let before = db.snapshot();
    tx.commit().unwrap();
    let check = |db: &Db, a: &ColumnFamily, b: &ColumnFamily| {
        assert_eq!(entries(a.iter()), [(1, b"a1".to_vec())]);
        assert_eq!(entries(b.iter()), [(1, b"b1".to_vec()), (5, b"b5".to_vec())]);
        assert_eq!(entries(db.iter()), [(1, b"d1".to_vec())]);
    };
    check(&db, &a, &b);
    assert_eq!(entries(before.range_cf(&a, ..)), [(2, b"old a2".to_vec())]);
    assert_eq!(entries(before.range_cf(&b, ..)), [(1, b"old b1".to_vec())]);
    assert_eq!(before.get(1).unwrap(), None);
    drop(before);
    drop((a, b));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    let (a, b) = families(&db);
    check(&db, &a, &b);
    drop((a, b));
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    let (a, b) = families(&db);
    check(&db, &a, &b);
}

#[test]
fn a_conflict_names_the_family_of_its_key() {
    let (_dir, db) = store();
    let (a, b) = families(&db);
    a.put(5, b"a5").unwrap();
    // A key read in "a", changed by a plain write.
    let mut tx = db.transaction();
    assert_eq!(tx.get_cf(&a, 5).unwrap().unwrap(), b"a5");
    tx.put_cf(&b, 9, b"derived");
    a.put(5, b"changed").unwrap();
    assert_eq!(conflict(tx.commit()), ("a".to_owned(), 5, None));
    assert_eq!(b.get(9).unwrap(), None, "a conflicting commit wrote");
    // A key found absent in "b", inserted by a batch.
    let mut tx = db.transaction();
    assert_eq!(tx.get_cf(&b, 7).unwrap(), None);
    tx.put_cf(&a, 7, b"mine");
    let mut batch = WriteBatch::new();
    batch.put_cf(&b, 7, b"theirs");
    db.write(batch).unwrap();
    assert_eq!(conflict(tx.commit()), ("b".to_owned(), 7, None));
    assert_eq!(a.get(7).unwrap(), None);
    // A key read in "a", deleted by another transaction.
    let mut tx = db.transaction();
    assert!(tx.contains_key_cf(&a, 5).unwrap());
    tx.put_cf(&a, 6, b"six");
    let mut other = db.transaction();
    other.delete_cf(&a, 5);
    other.commit().unwrap();
    assert_eq!(conflict(tx.commit()), ("a".to_owned(), 5, None));
    assert_eq!(a.get(6).unwrap(), None);
    // The default family is named "default", read through the transaction's own calls
    // or through its handle.
    db.put(3, b"d3").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get(3).unwrap().unwrap(), b"d3");
    tx.put_cf(&a, 3, b"x");
    db.put(3, b"changed").unwrap();
    assert_eq!(conflict(tx.commit()), ("default".to_owned(), 3, None));
    let default = db.column_family("default").unwrap();
    let mut tx = db.transaction();
    assert!(tx.contains_key_cf(&default, 3).unwrap());
    tx.put_cf(&b, 3, b"x");
    default.delete(3).unwrap();
    assert_eq!(conflict(tx.commit()), ("default".to_owned(), 3, None));
    assert_eq!((a.get(3).unwrap(), b.get(3).unwrap()), (None, None));
}

#[test]
fn a_write_to_the_same_key_in_another_family_is_no_conflict() {
    let (_dir, db) = store();
    let (a, b) = families(&db);
    for key in [5, 10, 20, 30] {
        a.put(key, b"a").unwrap();
        b.put(key, b"b").unwrap();
        db.put(key, b"default").unwrap();
    }
    let mut tx = db.transaction();
    assert_eq!(tx.get_cf(&a, 5).unwrap().unwrap(), b"a");
    assert_eq!(tx.get_cf(&a, 7).unwrap(), None);
    assert_eq!(tx.range_cf(&a, 10..=30).count(), 3);
    tx.put_cf(&a, 6, b"mine");
    // Every key the transaction read, and keys in the range it read, written in the
    // other families: by plain writes, a batch and another transaction.
    b.put(5, b"changed").unwrap();
    db.delete(5).unwrap();
    b.put(7, b"inserted").unwrap();
    db.put(7, b"inserted").unwrap();
    let mut batch = WriteBatch::new();
    batch.put_cf(&b, 15, b"phantom elsewhere").put(25, b"phantom elsewhere").delete_cf(&b, 20);
    db.write(batch).unwrap();
    let mut other = db.transaction();
    other.put_cf(&b, 10, b"changed");
    other.put(30, b"changed");
    other.commit().unwrap();
    // And keys of "a" outside what it read.
    a.put(31, b"past the range").unwrap();
    a.put(9, b"before the range").unwrap();
    tx.commit().unwrap();
    assert_eq!(a.get(6).unwrap().unwrap(), b"mine");
}

#[test]
fn a_phantom_in_a_family_range_conflicts() {
    let (_dir, db) = store();
    let (a, b) = families(&db);
    for key in [10, 20, 30] {
        a.put(key, b"1").unwrap();
    }
    // An insert into a range read.
    let mut tx = db.transaction();
    let count = tx.range_cf(&a, 10..=30).count();
    assert_eq!(count, 3);
    tx.put_cf(&b, 100, count.to_string());
    a.put(25, b"1").unwrap();
    assert_eq!(conflict(tx.commit()), ("a".to_owned(), 25, Some((Bound::Included(10), Bound::Included(30)))));
    assert_eq!(b.get(100).unwrap(), None);
    // A delete, by a batch, from a range read backwards to its end.
    let mut tx = db.transaction();
    assert_eq!(keys(tx.range_cf(&a, ..).rev()), [30, 25, 20, 10]);
    tx.put(100, b"4");
    let mut batch = WriteBatch::new();
    batch.delete_cf(&a, 20);
    db.write(batch).unwrap();
    assert_eq!(conflict(tx.commit()), ("a".to_owned(), 20, Some((Bound::Unbounded, Bound::Unbounded))));
    assert_eq!(db.get(100).unwrap(), None);
    // An insert into the same range of another family: no conflict.
    let mut tx = db.transaction();
    assert_eq!(keys(tx.range_cf(&a, 10..=30)), [10, 25, 30]);
    tx.put_cf(&a, 100, b"3");
    b.put(15, b"1").unwrap();
    db.put(15, b"1").unwrap();
    tx.commit().unwrap();
    assert_eq!(a.get(100).unwrap().unwrap(), b"3");
}

#[test]
fn blind_writes_across_families_do_not_conflict() {
    let (_dir, db) = store();
    let (a, b) = families(&db);
    a.put(1, b"a").unwrap();
    b.put(2, b"b").unwrap();
    let mut blind = db.transaction();
    blind.put_cf(&a, 1, b"blind");
    blind.delete_cf(&b, 2);
    blind.put_cf(&b, 3, b"blind");
    blind.put(4, b"blind");
    a.put(1, b"meanwhile").unwrap();
    b.put(2, b"meanwhile").unwrap();
    b.put(3, b"meanwhile").unwrap();
    db.put(4, b"meanwhile").unwrap();
    blind.commit().unwrap();
    assert_eq!(a.get(1).unwrap().unwrap(), b"blind");
    assert_eq!(b.get(2).unwrap(), None);
    assert_eq!(b.get(3).unwrap().unwrap(), b"blind");
    assert_eq!(db.get(4).unwrap().unwrap(), b"blind");
}

#[test]
fn a_transaction_touching_a_dropped_family_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let kept = db.column_family("kept").unwrap();
    let doomed = db.column_family("doomed").unwrap();
    kept.put(1, b"old").unwrap();
    doomed.put(1, b"old").unwrap();
    db.put(1, b"old").unwrap();
    let unchanged = |db: &Db, kept: &ColumnFamily| {
        assert_eq!(entries(db.iter()), [(1, b"old".to_vec())], "the default family's writes landed");
        assert_eq!(entries(kept.iter()), [(1, b"old".to_vec())], "the live family's writes landed");
    };
    // It wrote the family, which was dropped before the commit.
    let mut tx = db.transaction();
    tx.put_cf(&kept, 1, b"new");
    tx.put_cf(&kept, 2, b"new");
    tx.put_cf(&doomed, 1, b"new");
    tx.put(2, b"new");
    db.drop_column_family("doomed").unwrap();
    assert_not_found(tx.commit());
    unchanged(&db, &kept);
    // Dropped and re-created before the commit: the transaction's handle names the
    // dropped family, and the new one gets nothing.
    let doomed = db.column_family("doomed").unwrap();
    let mut tx = db.transaction();
    tx.put_cf(&doomed, 2, b"new");
    tx.put_cf(&kept, 2, b"new");
    db.drop_column_family("doomed").unwrap();
    let recreated = db.column_family("doomed").unwrap();
    assert_not_found(tx.commit());
    unchanged(&db, &kept);
    assert!(recreated.is_empty());
    // It only read the family, and wrote another.
    recreated.put(5, b"five").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get_cf(&recreated, 5).unwrap().unwrap(), b"five");
    tx.put_cf(&kept, 3, b"new");
    db.drop_column_family("doomed").unwrap();
    assert_not_found(tx.commit());
    unchanged(&db, &kept);
    // `transact` returns the error at once: retrying cannot help.
    let runs = Cell::new(0);
    let result = db.transact(|tx| {
        runs.set(runs.get() + 1);
        tx.put(4, b"new");
        tx.put_cf(&recreated, 4, b"new");
        Ok(())
    });
    assert_not_found(result);
    assert_eq!(runs.get(), 1);
    unchanged(&db, &kept);
    drop((kept, doomed, recreated));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    let kept = db.column_family("kept").unwrap();
    unchanged(&db, &kept);
    assert_eq!(db.column_families(), ["kept"]);
}

const ACCOUNTS: i64 = 8;
const START: i64 = 100;
const THREADS: u64 = 4;
const TRANSFERS: u64 = 100;
/// Two families of `ACCOUNTS` accounts: slot `s` is account `s % ACCOUNTS` of
/// family `s / ACCOUNTS`, so every account number lives in both families.
const BANK: [&str; 2] = ["checking", "savings"];
const SLOTS: u64 = 2 * ACCOUNTS as u64;

fn slot(index: u64) -> (usize, i64) {
    ((index / ACCOUNTS as u64) as usize, (index % ACCOUNTS as u64) as i64)
}

fn balance(value: Option<Value>) -> i64 {
    i64::from_le_bytes(value.unwrap()[..8].try_into().unwrap())
}

fn total_through_snapshot(snapshot: &Snapshot, bank: &[ColumnFamily]) -> i64 {
    bank.iter().flat_map(|family| snapshot.range_cf(family, ..)).map(|entry| balance(Some(entry.unwrap().1))).sum()
}

fn balances(bank: &[ColumnFamily]) -> Vec<i64> {
    (0..SLOTS)
        .map(|index| {
            let (family, account) = slot(index);
            balance(bank[family].get(account).unwrap())
        })
        .collect()
}

#[test]
fn transfers_between_families_conserve_the_total_under_contention_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().durability(Durability::Sync);
    let db = options.clone().open(dir.path()).unwrap();
    let bank: Vec<ColumnFamily> = BANK.iter().map(|name| db.column_family(name).unwrap()).collect();
    let mut batch = WriteBatch::new();
    for family in &bank {
        for account in 0..ACCOUNTS {
            batch.put_cf(family, account, START.to_le_bytes());
        }
    }
    db.write(batch).unwrap();
    let total = SLOTS as i64 * START;
    let attempts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let auditor = {
        let (db, bank, stop) = (db.clone(), bank.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut audits = 0u64;
            while !stop.load(Ordering::Acquire) {
                assert_eq!(
                    total_through_snapshot(&db.snapshot(), &bank),
                    total,
                    "a snapshot saw money appear or vanish"
                );
                let tx = db.transaction();
                let sum: i64 = bank
                    .iter()
                    .flat_map(|family| tx.range_cf(family, ..))
                    .map(|entry| balance(Some(entry.unwrap().1)))
                    .sum();
                assert_eq!(sum, total, "a transaction saw money appear or vanish");
                tx.commit().unwrap();
                audits += 1;
            }
            audits
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (db, bank, attempts) = (db.clone(), bank.clone(), Arc::clone(&attempts));
            std::thread::spawn(move || {
                let mut random = alexstorage_keygen::SplitMix64::new(thread + 1);
                // What this thread's committed transfers moved, per slot.
                let mut net = vec![0i64; SLOTS as usize];
                let mut refused = 0u64;
                for _ in 0..TRANSFERS {
                    let from = random.below(SLOTS);
                    let to = (from + 1 + random.below(SLOTS - 1)) % SLOTS;
                    let amount = 1 + random.below(60) as i64;
                    let ((from_family, from_account), (to_family, to_account)) = (slot(from), slot(to));
                    let moved = db
                        .transact(|tx| {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let source = balance(tx.get_cf(&bank[from_family], from_account)?);
                            let target = balance(tx.get_cf(&bank[to_family], to_account)?);
                            if source < amount {
                                return Ok(false);
                            }
                            tx.put_cf(&bank[from_family], from_account, (source - amount).to_le_bytes());
                            tx.put_cf(&bank[to_family], to_account, (target + amount).to_le_bytes());
                            Ok(true)
                        })
                        .unwrap();
                    if moved {
                        net[from as usize] -= amount;
                        net[to as usize] += amount;
                    } else {
                        refused += 1;
                    }
                }
                (net, refused)
            })
        })
        .collect();
    let mut net = vec![0i64; SLOTS as usize];
    let mut refused = 0;
    for worker in workers {
        let (moved, declined) = worker.join().unwrap();
        for (sum, amount) in net.iter_mut().zip(moved) {
            *sum += amount;
        }
        refused += declined;
    }
    stop.store(true, Ordering::Release);
    let audits = auditor.join().unwrap();
    let attempts = attempts.load(Ordering::Relaxed);
    println!(
        "{} transfers between 2 families ({refused} declined for funds) in {attempts} attempts ({audits} audits)",
        THREADS * TRANSFERS
    );
    assert!(attempts >= THREADS * TRANSFERS);
    assert_eq!(total_through_snapshot(&db.snapshot(), &bank), total);
    // Each balance is exactly what the committed transfers made it: a lost update
    // would show here even when the total is right.
    let found = balances(&bank);
    let expected: Vec<i64> = net.iter().map(|moved| START + moved).collect();
    assert_eq!(found, expected);
    assert!(found.iter().all(|&balance| balance >= 0));
    assert!(db.is_empty(), "the transfers wrote to the default family");
    drop(bank);
    drop(db);
    let db = options.open(dir.path()).unwrap();
    let bank: Vec<ColumnFamily> = BANK.iter().map(|name| db.column_family(name).unwrap()).collect();
    assert_eq!(balances(&bank), found, "after reopen");
    assert_eq!(total_through_snapshot(&db.snapshot(), &bank), total, "after reopen");
    assert_eq!(db.column_families(), BANK);
    assert!(bank.iter().all(|family| family.len() == ACCOUNTS as usize));
}

/// A family the transaction only began to read (a range made, nothing returned yet),
/// dropped before commit: the commit check finds nothing read that changed, and only
/// the requirement that read families still exist refuses the commit.
#[test]
fn a_commit_requires_the_families_it_read_to_exist() {
    let (_dir, db) = store();
    let (kept, doomed) = families(&db);
    doomed.put(1, b"one").unwrap();
    let mut tx = db.transaction();
    let unread = tx.range_cf(&doomed, ..);
    tx.put_cf(&kept, 1, b"written");
    db.drop_column_family(doomed.name()).unwrap();
    assert_not_found(tx.commit());
    drop(unread);
    assert_eq!(kept.get(1).unwrap(), None, "the refused commit wrote nothing");
}

/// Reads in three families, a write into one of them: the conflict names that one.
#[test]
fn a_conflict_among_several_families_read_names_the_right_one() {
    let (_dir, db) = store();
    let (a, b) = families(&db);
    for family in [&a, &b] {
        family.put(5, b"five").unwrap();
    }
    db.put(5, b"five").unwrap();
    let mut tx = db.transaction();
    tx.get_cf(&a, 5).unwrap();
    tx.get_cf(&b, 5).unwrap();
    tx.get(5).unwrap();
    tx.put(6, b"six");
    b.put(5, b"changed").unwrap();
    let (family, key, range) = conflict(tx.commit());
    assert_eq!((family.as_str(), key, range), (b.name(), 5, None));
}
