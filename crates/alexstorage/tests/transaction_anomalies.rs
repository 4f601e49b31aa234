//! The classic anomalies of weaker isolation, one test each, that an optimistic
//! transaction serializable for what it read must rule out (lost update, write skew,
//! phantoms, a read-only transaction seeing a state that never existed), and the
//! cases that must not conflict (blind writes, read-only transactions, reads of keys
//! nobody wrote). Each conflict names the key, and the range for a range read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::Bound;

use alexstorage::{Db, Error};

fn store() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    (dir, db)
}

fn number(value: Option<alexstorage::Value>) -> i64 {
    value.map_or(0, |value| std::str::from_utf8(&value).unwrap().parse().unwrap())
}

/// A range of keys, as a conflict names it.
type Interval = (Bound<i64>, Bound<i64>);

/// The key a conflict names, and its range.
fn conflict(result: alexstorage::Result<()>) -> (i64, Option<Interval>) {
    match result {
        Err(Error::Conflict { family, key, range }) => {
            assert_eq!(family, "default");
            (key, range)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn lost_update() {
    let (_dir, db) = store();
    db.put(1, b"100").unwrap();
    let mut first = db.transaction();
    let mut second = db.transaction();
    let a = number(first.get(1).unwrap());
    let b = number(second.get(1).unwrap());
    first.put(1, (a + 10).to_string());
    second.put(1, (b + 20).to_string());
    first.commit().unwrap();
    // The second read 100, which is no longer the value: its +20 would erase the +10.
    assert_eq!(conflict(second.commit()), (1, None));
    assert_eq!(number(db.get(1).unwrap()), 110);
}

#[test]
fn write_skew() {
    // Two doctors on call; each may go off call if the other is still on. Under
    // snapshot isolation both go, and nobody is on call.
    let (_dir, db) = store();
    db.put(1, b"1").unwrap();
    db.put(2, b"1").unwrap();
    let mut alice = db.transaction();
    let mut bob = db.transaction();
    assert_eq!(number(alice.get(1).unwrap()) + number(alice.get(2).unwrap()), 2);
    assert_eq!(number(bob.get(1).unwrap()) + number(bob.get(2).unwrap()), 2);
    alice.put(2, b"0");
    bob.put(1, b"0");
    alice.commit().unwrap();
    assert_eq!(conflict(bob.commit()), (2, None), "bob read key 2, which alice changed");
    assert_eq!(number(db.get(1).unwrap()) + number(db.get(2).unwrap()), 1);
}

#[test]
fn read_only_anomaly() {
    // Fekete, O'Neil and O'Neil's read-only anomaly: under snapshot isolation, a
    // withdrawal that read (checking 0, savings 0) commits after a deposit to savings
    // committed, while a reader that began between them saw the deposit and not the
    // withdrawal: no serial order gives the reader's view. Serializable: the
    // withdrawal, which read savings, conflicts; the reader never does.
    let (_dir, db) = store();
    db.put(1, b"0").unwrap(); // checking
    db.put(2, b"0").unwrap(); // savings
    let mut withdraw = db.transaction();
    let total = number(withdraw.get(1).unwrap()) + number(withdraw.get(2).unwrap());
    assert_eq!(total, 0);
    // Overdraft: a penalty of 1, since checking + savings would go negative.
    withdraw.put(1, (-10 - 1).to_string());
    let mut deposit = db.transaction();
    deposit.put(2, (number(deposit.get(2).unwrap()) + 20).to_string());
    deposit.commit().unwrap();
    let reader = db.transaction();
    assert_eq!((number(reader.get(1).unwrap()), number(reader.get(2).unwrap())), (0, 20));
    assert_eq!(conflict(withdraw.commit()), (2, None));
    // The reader sees one state, whole, and commits without a check.
    let range: Vec<i64> = reader.range(..).map(|entry| number(Some(entry.unwrap().1))).collect();
    assert_eq!(range, [0, 20]);
    db.put(1, b"5").unwrap();
    reader.commit().unwrap();
}

#[test]
fn a_key_read_then_deleted_conflicts() {
    let (_dir, db) = store();
    db.put(4, b"here").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get(4).unwrap().unwrap(), b"here");
    tx.put(5, b"derived");
    db.delete(4).unwrap();
    assert_eq!(conflict(tx.commit()), (4, None));
}

#[test]
fn a_conflicting_commit_writes_nothing_also_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for key in 0..5 {
        db.put(key, b"old").unwrap();
    }
    let mut tx = db.transaction();
    assert_eq!(tx.get(0).unwrap().unwrap(), b"old");
    for key in 10..20 {
        tx.put(key, b"new");
    }
    tx.delete(3);
    tx.put(4, b"new");
    db.put(0, b"theirs").unwrap();
    assert_eq!(conflict(tx.commit()), (0, None));
    let check = |db: &Db| {
        let all: Vec<(i64, Vec<u8>)> = db.iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect();
        let mut expected: Vec<(i64, Vec<u8>)> = (0..5).map(|key| (key, b"old".to_vec())).collect();
        expected[0].1 = b"theirs".to_vec();
        assert_eq!(all, expected);
    };
    check(&db);
    drop(db);
    check(&Db::open(dir.path()).unwrap());
}

#[test]
fn phantom_insert_into_a_read_range() {
    let (_dir, db) = store();
    for key in [10, 20, 30] {
        db.put(key, b"1").unwrap();
    }
    let mut tx = db.transaction();
    let count = tx.range(10..=30).count();
    assert_eq!(count, 3);
    tx.put(100, count.to_string());
    // Someone inserts into the range the transaction counted.
    db.put(25, b"1").unwrap();
    assert_eq!(conflict(tx.commit()), (25, Some((Bound::Included(10), Bound::Included(30)))));
    assert_eq!(db.get(100).unwrap(), None);
}

#[test]
fn phantom_delete_from_a_read_range() {
    let (_dir, db) = store();
    for key in [10, 20, 30] {
        db.put(key, b"1").unwrap();
    }
    let mut tx = db.transaction();
    let sum: i64 = tx.range(..).map(|entry| number(Some(entry.unwrap().1))).sum();
    tx.put(100, sum.to_string());
    db.delete(20).unwrap();
    assert_eq!(conflict(tx.commit()), (20, Some((Bound::Unbounded, Bound::Unbounded))));
    assert_eq!(db.get(100).unwrap(), None);
}

#[test]
fn a_key_found_absent_conflicts_when_inserted() {
    let (_dir, db) = store();
    let mut tx = db.transaction();
    assert_eq!(tx.get(7).unwrap(), None);
    tx.put(7, b"mine");
    db.put(7, b"theirs").unwrap();
    assert_eq!(conflict(tx.commit()), (7, None));
    assert_eq!(db.get(7).unwrap().unwrap(), b"theirs");
}

#[test]
fn blind_writes_and_untouched_reads_do_not_conflict() {
    let (_dir, db) = store();
    db.put(1, b"a").unwrap();
    db.put(2, b"b").unwrap();
    // Only writes: no check.
    let mut blind = db.transaction();
    blind.put(1, b"blind");
    blind.delete(2);
    db.put(1, b"meanwhile").unwrap();
    db.put(2, b"meanwhile").unwrap();
    blind.commit().unwrap();
    assert_eq!(db.get(1).unwrap().unwrap(), b"blind");
    assert_eq!(db.get(2).unwrap(), None);
    // Reads of keys nobody wrote, and a range nobody wrote into: no conflict.
    db.put(50, b"x").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get(50).unwrap().unwrap(), b"x");
    assert_eq!(tx.range(40..60).count(), 1);
    tx.put(51, b"y");
    db.put(1, b"elsewhere").unwrap();
    db.put(60, b"just past the range").unwrap();
    db.put(39, b"just before it").unwrap();
    tx.commit().unwrap();
    assert_eq!(db.get(51).unwrap().unwrap(), b"y");
}

#[test]
fn a_partly_iterated_range_counts_only_what_was_read() {
    let (_dir, db) = store();
    for key in 0..100 {
        db.put(key, b"v").unwrap();
    }
    let mut tx = db.transaction();
    let mut range = tx.range(..);
    let first: Vec<i64> = range.by_ref().take(3).map(|entry| entry.unwrap().0).collect();
    let last = range.next_back().unwrap().unwrap().0;
    drop(range);
    assert_eq!((first, last), (vec![0, 1, 2], 99));
    tx.put(1_000, b"w");
    // Between what was read from either end: no conflict.
    db.put(50, b"changed").unwrap();
    db.delete(3).unwrap();
    db.put(98, b"changed").unwrap();
    tx.commit().unwrap();
    // At the edge of what was read: a conflict.
    let mut tx = db.transaction();
    assert_eq!(tx.range(..).next().unwrap().unwrap().0, 0);
    tx.put(1_001, b"w");
    db.put(0, b"changed").unwrap();
    assert_eq!(conflict(tx.commit()), (0, Some((Bound::Unbounded, Bound::Included(0)))));
    // At the edge of what was read from the high end: a conflict there too.
    let mut tx = db.transaction();
    assert_eq!(tx.range(..1_000).next_back().unwrap().unwrap().0, 99);
    tx.put(1_002, b"w");
    db.put(99, b"changed").unwrap();
    assert_eq!(conflict(tx.commit()), (99, Some((Bound::Included(99), Bound::Excluded(1_000)))));
    // Inside a part read from the low end, and from the high end of an excluded bound.
    let mut tx = db.transaction();
    let mut range = tx.range(..95);
    assert_eq!(range.nth(2).unwrap().unwrap().0, 2);
    assert_eq!(range.next_back().unwrap().unwrap().0, 94);
    drop(range);
    tx.put(1_003, b"w");
    db.put(1, b"changed").unwrap();
    assert_eq!(conflict(tx.commit()), (1, Some((Bound::Unbounded, Bound::Included(2)))));
    let mut tx = db.transaction();
    assert_eq!(tx.range(..95).next_back().unwrap().unwrap().0, 94);
    tx.put(1_004, b"w");
    db.put(95, b"past the range: no conflict").unwrap();
    tx.commit().unwrap();
}

#[test]
fn transact_retries_conflicts_only_and_gives_up_with_the_last() {
    use std::cell::Cell;
    let (_dir, db) = store();
    db.put(1, b"0").unwrap();
    // Every attempt conflicts (someone writes the key it read before it commits).
    let runs = Cell::new(0);
    let result = db.transact_with(4, |tx| {
        runs.set(runs.get() + 1);
        tx.get(1)?;
        tx.put(2, b"x");
        db.put(1, runs.get().to_string())?;
        Ok(())
    });
    assert!(matches!(result, Err(Error::Conflict { key: 1, .. })), "{result:?}");
    assert_eq!(runs.get(), 4);
    assert_eq!(db.get(2).unwrap(), None);
    // An error of the body ends it at once.
    let runs = Cell::new(0);
    let result: alexstorage::Result<()> = db.transact(|_| {
        runs.set(runs.get() + 1);
        Err(Error::InvalidArgument("no".into()))
    });
    assert!(matches!(result, Err(Error::InvalidArgument(_))));
    assert_eq!(runs.get(), 1);
    // So does a commit error other than a conflict.
    let dir = tempfile::tempdir().unwrap();
    let small = alexstorage::Options::new().max_value_size(4).open(dir.path()).unwrap();
    let runs = Cell::new(0);
    let result = small.transact(|tx| {
        runs.set(runs.get() + 1);
        tx.put(1, b"too large");
        Ok(())
    });
    assert!(matches!(result, Err(Error::ValueTooLarge { .. })), "{result:?}");
    assert_eq!(runs.get(), 1);
    // A conflict once, then success: two runs.
    let runs = Cell::new(0);
    db.transact(|tx| {
        runs.set(runs.get() + 1);
        tx.get(1)?;
        tx.put(3, b"y");
        if runs.get() == 1 {
            db.put(1, b"interfere")?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(runs.get(), 2);
    assert_eq!(db.get(3).unwrap().unwrap(), b"y");
}

#[test]
fn compaction_moves_records_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = alexstorage::Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    for round in 0..3 {
        for key in 0..500 {
            db.put(key, format!("{round}-{key}")).unwrap();
        }
    }
    let mut tx = db.transaction();
    assert_eq!(tx.get(7).unwrap().unwrap(), b"2-7");
    assert_eq!(tx.range(100..200).count(), 100);
    db.compact().unwrap();
    tx.put(7, b"after compaction");
    tx.commit().unwrap();
    assert_eq!(db.get(7).unwrap().unwrap(), b"after compaction");
}
