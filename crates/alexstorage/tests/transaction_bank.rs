//! Bank transfers in transactions: 8 threads move money between 16 accounts with
//! `Db::transact` (read two balances, write two), while an auditor sums every balance
//! through snapshots and through read-only transactions. Every sum is the starting
//! total, each balance ends exactly where the committed transfers put it (no lost
//! update), none goes negative, and all survive a reopen. Run in `Sync` mode, so
//! commits group-commit like plain writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use alexstorage::{Db, Durability, Options};

const ACCOUNTS: i64 = 16;
const START: i64 = 60;
const THREADS: u64 = 8;
const TRANSFERS: u64 = 150;

fn balance(value: Option<alexstorage::Value>) -> i64 {
    i64::from_le_bytes(value.unwrap()[..8].try_into().unwrap())
}

fn total_through_snapshot(db: &Db) -> i64 {
    let snapshot = db.snapshot();
    snapshot.range(..).map(|entry| i64::from_le_bytes(entry.unwrap().1[..8].try_into().unwrap())).sum()
}

#[test]
fn transfers_conserve_the_total_under_contention_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().durability(Durability::Sync);
    let db = options.clone().open(dir.path()).unwrap();
    for account in 0..ACCOUNTS {
        db.put(account, START.to_le_bytes()).unwrap();
    }
    let total = ACCOUNTS * START;
    let attempts = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let auditor = {
        let (db, stop) = (db.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut audits = 0u64;
            while !stop.load(Ordering::Acquire) {
                assert_eq!(total_through_snapshot(&db), total, "a snapshot saw money appear or vanish");
                let tx = db.transaction();
                let sum: i64 =
                    tx.range(..).map(|entry| i64::from_le_bytes(entry.unwrap().1[..8].try_into().unwrap())).sum();
                assert_eq!(sum, total, "a transaction saw money appear or vanish");
                tx.commit().unwrap();
                audits += 1;
            }
            audits
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (db, attempts) = (db.clone(), Arc::clone(&attempts));
            std::thread::spawn(move || {
                let mut random = alexstorage_keygen::SplitMix64::new(thread + 1);
                // What this thread's committed transfers moved, per account.
                let mut net = vec![0i64; ACCOUNTS as usize];
                let mut refused = 0u64;
                for _ in 0..TRANSFERS {
                    let from = random.below(ACCOUNTS as u64) as i64;
                    let to = (from + 1 + random.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
                    let amount = 1 + random.below(50) as i64;
                    let moved = db
                        .transact(|tx| {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let (a, b) = (balance(tx.get(from)?), balance(tx.get(to)?));
                            if a < amount {
                                return Ok(false);
                            }
                            tx.put(from, (a - amount).to_le_bytes());
                            tx.put(to, (b + amount).to_le_bytes());
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
    let mut net = vec![0i64; ACCOUNTS as usize];
    let mut refused = 0;
    for worker in workers {
        let (moved, declined) = worker.join().unwrap();
        for (account, amount) in moved.into_iter().enumerate() {
            net[account] += amount;
        }
        refused += declined;
    }
    stop.store(true, Ordering::Release);
    let audits = auditor.join().unwrap();
    let attempts = attempts.load(Ordering::Relaxed);
    println!(
        "{} transfers ({refused} declined for funds) in {attempts} attempts ({audits} audits)",
        THREADS * TRANSFERS
    );
    assert!(attempts > THREADS * TRANSFERS, "8 threads over 16 accounts never conflicted: the check is not running");
    assert!(audits > 0 && refused > 0, "the auditor never ran, or no balance ever ran short");
    assert_eq!(total_through_snapshot(&db), total);
    // Each balance is exactly what the committed transfers made it: a lost update
    // would show here even when the total is right.
    let balances: Vec<i64> = (0..ACCOUNTS).map(|account| balance(db.get(account).unwrap())).collect();
    let expected: Vec<i64> = net.iter().map(|moved| START + moved).collect();
    assert_eq!(balances, expected);
    assert!(balances.iter().all(|&balance| balance >= 0));
    drop(db);
    let db = options.open(dir.path()).unwrap();
    let reopened: Vec<i64> = (0..ACCOUNTS).map(|account| balance(db.get(account).unwrap())).collect();
    assert_eq!(reopened, balances, "after reopen");
    assert_eq!(db.len(), ACCOUNTS as usize);
}
