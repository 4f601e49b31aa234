//! Kill -9 of a child committing transactions: 4 threads move money between 16
//! accounts with `Db::transact` in `Sync` mode, each transfer also counting itself in
//! its thread's ledger key in the same transaction, and reporting each acknowledged
//! commit. The parent kills the child at random moments and reopens: the total is
//! what it was (no transaction half-applied), no balance is negative, and every
//! thread's ledger holds its last acknowledged count, or one more (the commit in
//! flight). Then the next child goes on from the recovered store.
//!
//! `ALEXSTORAGE_TRANSACTION_KILLS` sets the rounds (default 10, what CI runs):
//! `ALEXSTORAGE_TRANSACTION_KILLS=500 cargo test --release -p alexstorage --test crash_transactions`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use alexstorage::{Db, Durability, Options};

const ACCOUNTS: i64 = 16;
const START: i64 = 1_000;
const THREADS: u64 = 4;
/// Ledger keys: how many transfers each thread committed.
const LEDGER: i64 = 1_000;

fn options() -> Options {
    Options::new().durability(Durability::Sync).segment_size(64 << 10)
}

fn number(value: Option<alexstorage::Value>) -> i64 {
    value.map_or(0, |value| i64::from_le_bytes(value[..8].try_into().unwrap()))
}

/// The child: transfers until killed (or, as a safeguard, 60 s).
#[test]
#[ignore = "run by transactions_survive_kill9 as its child process"]
fn crash_transactions_child() {
    let Ok(dir) = std::env::var("ALEXSTORAGE_CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CRASH_SEED").unwrap().parse().unwrap();
    let db = options().open(&dir).unwrap();
    if db.is_empty() {
        for account in 0..ACCOUNTS {
            db.put(account, START.to_le_bytes()).unwrap();
        }
    }
    println!("READY");
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let db: Db = db.clone();
            std::thread::spawn(move || {
                let mut random = alexstorage_keygen::SplitMix64::new(seed * 16 + thread);
                while started.elapsed() < Duration::from_secs(60) {
                    let from = random.below(ACCOUNTS as u64) as i64;
                    let to = (from + 1 + random.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
                    let amount = 1 + random.below(40) as i64;
                    let count = db
                        .transact(|tx| {
                            let (a, b) = (number(tx.get(from)?), number(tx.get(to)?));
                            let count = number(tx.get(LEDGER + thread as i64)?) + 1;
                            if a >= amount {
                                tx.put(from, (a - amount).to_le_bytes());
                                tx.put(to, (b + amount).to_le_bytes());
                            }
                            tx.put(LEDGER + thread as i64, count.to_le_bytes());
                            Ok(count)
                        })
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {thread} {count}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn transactions_survive_kill9() {
    let kills: u64 =
        std::env::var("ALEXSTORAGE_TRANSACTION_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let mut random = alexstorage_keygen::SplitMix64::new(5);
    let mut acknowledged = vec![0i64; THREADS as usize];
    let mut commits = 0u64;
    for kill in 0..kills {
        let envs = [
            ("ALEXSTORAGE_CRASH_CHILD_DIR", dir.path().display().to_string()),
            ("ALEXSTORAGE_CRASH_SEED", (kill + 1).to_string()),
        ];
        let lines =
            common::run_and_kill("crash_transactions_child", &envs, Duration::from_millis(10 + random.below(80)));
        for line in &lines {
            if let ["ACK", thread, count] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
                let (thread, count): (usize, i64) = (thread.parse().unwrap(), count.parse().unwrap());
                assert!(count > acknowledged[thread], "kill {kill}: thread {thread} acknowledged {count} twice");
                acknowledged[thread] = count;
                commits += 1;
            }
        }
        let db = options().open(dir.path()).unwrap_or_else(|error| panic!("kill {kill}: reopen: {error}"));
        let balances: Vec<i64> = (0..ACCOUNTS).map(|account| number(db.get(account).unwrap())).collect();
        assert_eq!(balances.iter().sum::<i64>(), ACCOUNTS * START, "kill {kill}: a transfer was half-applied");
        assert!(balances.iter().all(|&balance| balance >= 0), "kill {kill}: {balances:?}");
        for (thread, count) in acknowledged.iter_mut().enumerate() {
            let ledger = number(db.get(LEDGER + thread as i64).unwrap());
            assert!(
                ledger == *count || ledger == *count + 1,
                "kill {kill}: thread {thread} has {ledger} transfers; {count} were acknowledged"
            );
            // The commit in flight may have landed: the next child counts from it.
            *count = ledger;
        }
        db.verify().unwrap();
    }
    println!("{kills} kills: {commits} transaction commits acknowledged, none lost or half-applied");
    assert!(commits > kills, "too few commits to mean anything: {commits}");
}
