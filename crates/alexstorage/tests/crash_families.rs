//! Kill -9 of a child using column families: in `Sync` mode, 3 threads commit
//! transactions (`Db::transact`) that move money between 24 accounts living in 3
//! families, each also counting itself in its thread's ledger key (default family),
//! while the main thread over and over creates a scratch family, writes a few keys
//! into it and drops it. The child reports each transaction attempt's transfer before
//! it commits, each acknowledged commit, and each acknowledged scratch step. The
//! parent kills it at random moments and reopens: every thread's ledger holds its last
//! acknowledged count or one more (the commit in flight); every balance is exactly
//! what the committed transfers made it (so the total is conserved and no transaction
//! was half-applied); the scratch family is wholly present with its acknowledged keys
//! (plus at most the one in flight) or wholly absent (only if its drop was in flight
//! or acknowledged); `verify` passes. The parent then drops any scratch family left,
//! and the next child goes on from the recovered store.
//!
//! `ALEXSTORAGE_FAMILY_KILLS` sets the rounds (default 10, what CI runs):
//! `ALEXSTORAGE_FAMILY_KILLS=500 cargo test --release -p alexstorage --test crash_families`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use alexstorage::{ColumnFamily, Db, Durability, Options, Value, WriteBatch};
use alexstorage_keygen::SplitMix64;

/// The families holding the accounts.
const FAMILIES: [&str; 3] = ["checking", "loans", "savings"];
const ACCOUNTS: i64 = 8;
/// Accounts in all: slot `s` is account `s % ACCOUNTS` of family `s / ACCOUNTS`.
const SLOTS: usize = FAMILIES.len() * ACCOUNTS as usize;
const START: i64 = 1_000;
const THREADS: usize = 3;
/// Ledger keys (default family): how many transfers each thread committed.
const LEDGER: i64 = 1_000;
/// The family created, written and dropped over and over.
const SCRATCH: &str = "scratch";

fn options() -> Options {
    Options::new().durability(Durability::Sync).segment_size(64 << 10)
}

fn number(value: Option<Value>) -> i64 {
    value.map_or(0, |value| i64::from_le_bytes(value[..8].try_into().unwrap()))
}

fn slot(index: usize) -> (usize, i64) {
    (index / ACCOUNTS as usize, (index % ACCOUNTS as usize) as i64)
}

fn scratch_value(round: u64, key: i64) -> Vec<u8> {
    let mut bytes = format!("scratch round {round} key {key} ").into_bytes();
    bytes.resize(200, b'.');
    bytes
}

/// One line to stdout, flushed: the parent reads what the child acknowledged.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn account_families(db: &Db) -> Vec<ColumnFamily> {
    FAMILIES.iter().map(|name| db.column_family(name).unwrap()).collect()
}

/// The child: transfers and scratch rounds until killed (or, as a safeguard, 60 s).
#[test]
#[ignore = "run by families_survive_kill9 as its child process"]
fn crash_families_child() {
    let Ok(dir) = std::env::var("ALEXSTORAGE_CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CRASH_SEED").unwrap().parse().unwrap();
    // The test harness's own "test ... " precedes the first line printed: let it be
    // this one.
    println!("STARTING");
    let db = options().open(&dir).unwrap();
    let families = account_families(&db);
    if families.iter().all(ColumnFamily::is_empty) {
        let mut batch = WriteBatch::new();
        for family in &families {
            for account in 0..ACCOUNTS {
                batch.put_cf(family, account, START.to_le_bytes());
            }
        }
        db.write(batch).unwrap();
    }
    // One whole scratch round before the clock starts, so that every run has at least
    // one (on a slow disk a round's syncs may take longer than a kill's delay).
    let mut random = SplitMix64::new(seed ^ 0x5C4A_7C11);
    let mut round = seed << 32;
    scratch_round(&db, &mut random, &mut round);
    println!("READY");
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (db, families) = (db.clone(), families.clone());
            std::thread::spawn(move || {
                let mut random = SplitMix64::new(seed * 16 + thread as u64);
                let ledger = LEDGER + thread as i64;
                while started.elapsed() < Duration::from_secs(60) {
                    let from = random.below(SLOTS as u64) as usize;
                    let to = (from + 1 + random.below(SLOTS as u64 - 1) as usize) % SLOTS;
                    let amount = 1 + random.below(40) as i64;
                    let ((from_family, from_account), (to_family, to_account)) = (slot(from), slot(to));
                    let count = db
                        .transact(|tx| {
                            let count = number(tx.get(ledger)?) + 1;
                            let source = number(tx.get_cf(&families[from_family], from_account)?);
                            let target = number(tx.get_cf(&families[to_family], to_account)?);
                            let moved = if source >= amount { amount } else { 0 };
                            if moved > 0 {
                                tx.put_cf(&families[from_family], from_account, (source - moved).to_le_bytes());
                                tx.put_cf(&families[to_family], to_account, (target + moved).to_le_bytes());
                            }
                            tx.put(ledger, count.to_le_bytes());
                            // Before the commit: if the kill lands after it, the parent
                            // knows what the commit in flight moved.
                            report(&format!("TRY {thread} {count} {from} {to} {moved}"));
                            Ok(count)
                        })
                        .unwrap();
                    report(&format!("ACK {thread} {count}"));
                }
            })
        })
        .collect();
    while started.elapsed() < Duration::from_secs(60) {
        scratch_round(&db, &mut random, &mut round);
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

/// Creates the scratch family, writes a few keys into it and drops it, reporting each
/// step once it is acknowledged.
fn scratch_round(db: &Db, random: &mut SplitMix64, round: &mut u64) {
    *round += 1;
    let round = *round;
    let keys = 1 + random.below(4) as i64;
    let scratch = db.column_family(SCRATCH).unwrap();
    report(&format!("SCRATCH {round} CREATED {keys}"));
    for key in 0..keys {
        scratch.put(key, scratch_value(round, key)).unwrap();
        report(&format!("SCRATCH {round} PUT {key}"));
    }
    drop(scratch);
    db.drop_column_family(SCRATCH).unwrap();
    report(&format!("SCRATCH {round} DROPPED"));
}

/// A transfer as the child reported it: its ledger count, the slots, what it moved.
#[derive(Clone, Copy, Debug)]
struct Transfer {
    count: i64,
    from: usize,
    to: usize,
    moved: i64,
}

impl Transfer {
    fn apply(self, balances: &mut [i64]) {
        balances[self.from] -= self.moved;
        balances[self.to] += self.moved;
    }
}

/// The scratch family as the child's acknowledgements left it.
#[derive(Clone, Copy, Debug)]
enum Scratch {
    /// Dropped (or never created).
    Absent,
    /// Created in `round` to hold `keys` keys, of which the first `written` were
    /// acknowledged.
    Present { round: u64, keys: i64, written: i64 },
}

#[test]
fn families_survive_kill9() {
    let kills: u64 = std::env::var("ALEXSTORAGE_FAMILY_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let mut random = SplitMix64::new(11);
    let mut balances = vec![START; SLOTS];
    let mut acknowledged = [0i64; THREADS];
    let (mut commits, mut scratch_rounds) = (0u64, 0u64);
    for kill in 0..kills {
        let envs = [
            ("ALEXSTORAGE_CRASH_CHILD_DIR", dir.path().display().to_string()),
            ("ALEXSTORAGE_CRASH_SEED", (kill + 1).to_string()),
        ];
        let lines = common::run_and_kill("crash_families_child", &envs, Duration::from_millis(20 + random.below(100)));
        // Each thread's last attempt not yet acknowledged: the commit in flight.
        let mut tried: Vec<Option<Transfer>> = vec![None; THREADS];
        let mut scratch = Scratch::Absent;
        for line in &lines {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["TRY", thread, count, from, to, moved] => {
                    let transfer = Transfer {
                        count: count.parse().unwrap(),
                        from: from.parse().unwrap(),
                        to: to.parse().unwrap(),
                        moved: moved.parse().unwrap(),
                    };
                    tried[thread.parse::<usize>().unwrap()] = Some(transfer);
                }
                ["ACK", thread, count] => {
                    let (thread, count): (usize, i64) = (thread.parse().unwrap(), count.parse().unwrap());
                    assert_eq!(
                        count,
                        acknowledged[thread] + 1,
                        "kill {kill}: thread {thread} skipped or repeated a count"
                    );
                    let transfer =
                        tried[thread].take().unwrap_or_else(|| panic!("kill {kill}: ACK {thread} {count} untried"));
                    assert_eq!(transfer.count, count, "kill {kill}: thread {thread}");
                    transfer.apply(&mut balances);
                    acknowledged[thread] = count;
                    commits += 1;
                }
                ["SCRATCH", round, "CREATED", keys] => {
                    assert!(matches!(scratch, Scratch::Absent), "kill {kill}: created twice: {scratch:?}");
                    scratch =
                        Scratch::Present { round: round.parse().unwrap(), keys: keys.parse().unwrap(), written: 0 };
                }
                ["SCRATCH", round, "PUT", key] => match &mut scratch {
                    Scratch::Present { round: current, written, .. } if current.to_string() == *round => {
                        assert_eq!(key.parse::<i64>().unwrap(), *written, "kill {kill}: scratch keys out of order");
                        *written += 1;
                    }
                    other => panic!("kill {kill}: {line} while the scratch family is {other:?}"),
                },
                ["SCRATCH", _, "DROPPED"] => {
                    assert!(
                        matches!(scratch, Scratch::Present { keys, written, .. } if keys == written),
                        "kill {kill}: {line} while the scratch family is {scratch:?}"
                    );
                    scratch = Scratch::Absent;
                    scratch_rounds += 1;
                }
                _ => {}
            }
        }

        let db = options().open(dir.path()).unwrap_or_else(|error| panic!("kill {kill}: reopen: {error}"));
        let families = account_families(&db);
        // The ledgers say whose commit in flight landed; a landed one moved what its
        // last attempt reported.
        for (thread, (count, in_flight)) in acknowledged.iter_mut().zip(tried.iter_mut()).enumerate() {
            let ledger = number(db.get(LEDGER + thread as i64).unwrap());
            if ledger == *count + 1 {
                let transfer = in_flight
                    .take()
                    .unwrap_or_else(|| panic!("kill {kill}: thread {thread}'s commit {ledger} landed, never tried"));
                assert_eq!(transfer.count, ledger, "kill {kill}: thread {thread}");
                transfer.apply(&mut balances);
                *count = ledger;
            } else {
                assert_eq!(ledger, *count, "kill {kill}: thread {thread} has {ledger} commits; {count} acknowledged");
            }
        }
        let found: Vec<i64> = (0..SLOTS)
            .map(|index| {
                let (family, account) = slot(index);
                number(families[family].get(account).unwrap())
            })
            .collect();
        assert_eq!(found.iter().sum::<i64>(), SLOTS as i64 * START, "kill {kill}: a transfer was half-applied");
        assert_eq!(found, balances, "kill {kill}: the balances are not what the committed transfers made them");
        assert!(found.iter().all(|&balance| balance >= 0), "kill {kill}: {found:?}");
        for family in &families {
            assert_eq!(family.len(), ACCOUNTS as usize, "kill {kill}: family {}", family.name());
        }
        // The default family holds the ledgers of the threads that committed.
        assert_eq!(db.len(), acknowledged.iter().filter(|count| **count > 0).count(), "kill {kill}");

        // The scratch family: all there (its acknowledged keys, and perhaps the one
        // in flight) or all gone, never a part.
        let listed = db.column_families();
        let scratch_listed = listed.iter().any(|name| name == SCRATCH);
        let accounts: Vec<&str> = listed.iter().map(String::as_str).filter(|name| *name != SCRATCH).collect();
        assert_eq!(accounts, FAMILIES, "kill {kill}");
        let found_scratch: Option<Vec<(i64, Vec<u8>)>> = scratch_listed.then(|| {
            let family = db.column_family(SCRATCH).unwrap();
            family.iter().map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect()
        });
        match (scratch, &found_scratch) {
            (Scratch::Absent, None) => {}
            // Its creation was in flight.
            (Scratch::Absent, Some(entries)) => {
                assert!(
                    entries.is_empty(),
                    "kill {kill}: a dropped scratch family came back with {} keys",
                    entries.len()
                );
            }
            // Its drop was in flight: only after every key.
            (Scratch::Present { keys, written, .. }, None) => {
                assert_eq!(
                    written, keys,
                    "kill {kill}: the scratch family vanished with {written} of {keys} keys written"
                );
            }
            (Scratch::Present { round, keys, written }, Some(entries)) => {
                let held = entries.len() as i64;
                assert!(
                    held == written || (held == written + 1 && held <= keys),
                    "kill {kill}: the scratch family holds {held} keys; {written} of {keys} were acknowledged"
                );
                let expected: Vec<(i64, Vec<u8>)> = (0..held).map(|key| (key, scratch_value(round, key))).collect();
                assert_eq!(entries, &expected, "kill {kill}: the scratch family's keys");
            }
        }
        let verified = db.verify().unwrap_or_else(|error| panic!("kill {kill}: verify: {error}"));
        assert!(verified.corrupt.is_empty(), "kill {kill}: {verified:?}");
        // The next child starts without a scratch family.
        if scratch_listed {
            db.drop_column_family(SCRATCH).unwrap();
        }
    }
    println!(
        "{kills} kills: {commits} transaction commits across families acknowledged, none lost or half-applied; \
         {scratch_rounds} scratch families created, written and dropped"
    );
    assert!(commits > kills, "too few commits to mean anything: {commits}");
    assert!(scratch_rounds > 0, "no scratch family was ever dropped");
}
