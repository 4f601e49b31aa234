//! Crash test with concurrent `Sync` writers: a child process runs 4 writer threads,
//! each owning a disjoint set of keys, writing single puts, deletes and batches with
//! `Durability::Sync` and reporting each write before it starts and once it is
//! acknowledged. The parent `kill -9`s the child at random moments and checks, thread
//! by thread, that every acknowledged write survived and that the write in flight
//! (a batch included) is there entirely or not at all.
//!
//! `ALEXSTORAGE_CRASH_KILLS` sets the number of kills (default 20, what CI runs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use alexstorage::{Db, Durability, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const THREADS: u64 = 4;
const SLOTS_PER_THREAD: u64 = 64;

fn key(thread: u64, slot: u64) -> i64 {
    ((thread * SLOTS_PER_THREAD + slot) as i64 - 128).wrapping_mul(0x0123_4567_89AB)
}

fn value(slot: u64, len: u64, round: u64) -> Vec<u8> {
    (0..len).map(|index| (index.wrapping_mul(13) ^ slot ^ round) as u8).collect()
}

fn options() -> Options {
    Options::new().durability(Durability::Sync).segment_size(64 << 10)
}

/// (is_put, slot, len, round) writes of one thread.
type Writes = Vec<(bool, u64, u64, u64)>;

fn apply(model: &mut BTreeMap<i64, Vec<u8>>, thread: u64, writes: &Writes) {
    for &(put, slot, len, round) in writes {
        if put {
            model.insert(key(thread, slot), value(slot, len, round));
        } else {
            model.remove(&key(thread, slot));
        }
    }
}

/// The child: writer threads until killed (or, as a safeguard, for 60 s).
#[test]
#[ignore = "run by concurrent_sync_writers_survive_kill9 as its child process"]
fn crash_concurrent_child() {
    let Ok(dir) = std::env::var("ALEXSTORAGE_CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CRASH_SEED").unwrap().parse().unwrap();
    let db = options().open(&dir).unwrap();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY").unwrap();
        out.flush().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let db = db.clone();
            scope.spawn(move || {
                let mut random = SplitMix64::new(seed * 31 + thread);
                let mut round = (seed << 32) + (thread << 24);
                while Instant::now() < deadline {
                    round += 1;
                    let count = if random.below(3) == 0 { 2 + random.below(6) } else { 1 };
                    let writes: Writes = (0..count)
                        .map(|_| (random.below(5) != 0, random.below(SLOTS_PER_THREAD), random.below(300), round))
                        .collect();
                    let fields: Vec<String> = writes
                        .iter()
                        .map(|(put, slot, len, round)| format!("{} {slot} {len} {round}", u8::from(*put)))
                        .collect();
                    {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "BEGIN {thread} {}", fields.join(" ")).unwrap();
                        out.flush().unwrap();
                    }
                    if let [(put, slot, len, round)] = writes[..] {
                        if put {
                            db.put(key(thread, slot), value(slot, len, round)).unwrap();
                        } else {
                            db.delete(key(thread, slot)).unwrap();
                        }
                    } else {
                        let mut batch = WriteBatch::new();
                        for &(put, slot, len, round) in &writes {
                            if put {
                                batch.put(key(thread, slot), value(slot, len, round));
                            } else {
                                batch.delete(key(thread, slot));
                            }
                        }
                        db.write(batch).unwrap();
                    }
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {thread}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// The writes of a BEGIN line; `None` for a line the kill cut short (its write never
/// started: the line is flushed before the write begins).
fn parse(fields: &[&str]) -> Option<Writes> {
    let numbers: Vec<u64> = fields.iter().map(|field| field.parse().ok()).collect::<Option<_>>()?;
    if numbers.is_empty() || numbers.len() % 4 != 0 {
        return None;
    }
    Some(numbers.chunks(4).map(|chunk| (chunk[0] == 1, chunk[1], chunk[2], chunk[3])).collect())
}

fn thread_state(db: &Db, thread: u64) -> BTreeMap<i64, Vec<u8>> {
    (0..SLOTS_PER_THREAD)
        .filter_map(|slot| db.get(key(thread, slot)).unwrap().map(|value| (key(thread, slot), value.to_vec())))
        .collect()
}

#[test]
fn concurrent_sync_writers_survive_kill9() {
    let kills: u64 = std::env::var("ALEXSTORAGE_CRASH_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    // One model per writer thread: the threads own disjoint keys.
    let mut models: Vec<BTreeMap<i64, Vec<u8>>> = vec![BTreeMap::new(); THREADS as usize];
    let mut random = SplitMix64::new(77);
    let mut acknowledged = 0u64;
    for kill in 0..kills {
        let envs = [
            ("ALEXSTORAGE_CRASH_CHILD_DIR", dir.path().display().to_string()),
            ("ALEXSTORAGE_CRASH_SEED", (kill + 1).to_string()),
        ];
        let run = Duration::from_millis(5 + random.below(60));
        let lines = common::run_and_kill("crash_concurrent_child", &envs, run);
        let mut in_flight: Vec<Option<Writes>> = vec![None; THREADS as usize];
        for line in &lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["BEGIN", thread, rest @ ..] => {
                    if let (Ok(thread), Some(writes)) = (thread.parse::<usize>(), parse(rest)) {
                        in_flight[thread] = Some(writes);
                    }
                }
                ["ACK", thread] => {
                    let thread: usize = thread.parse().unwrap();
                    let writes = in_flight[thread].take().expect("ACK without BEGIN");
                    apply(&mut models[thread], thread as u64, &writes);
                    acknowledged += 1;
                }
                // A line cut by the kill, or test-harness output.
                _ => {}
            }
        }
        let db = options().open(dir.path()).unwrap_or_else(|error| panic!("kill {kill}: reopen: {error}"));
        let mut total = 0;
        for thread in 0..THREADS {
            let recovered = thread_state(&db, thread);
            let model = &models[thread as usize];
            let mut with = model.clone();
            if let Some(writes) = &in_flight[thread as usize] {
                apply(&mut with, thread, writes);
            }
            assert!(
                recovered == *model || recovered == with,
                "kill {kill}, thread {thread}: recovered keys are neither the acknowledged state nor it plus the \
                 write in flight ({:?})",
                in_flight[thread as usize]
            );
            total += recovered.len();
            models[thread as usize] = recovered;
        }
        assert_eq!(db.len(), total, "kill {kill}: len() disagrees with the contents");
        db.verify().unwrap();
    }
    assert!(acknowledged > kills, "too few writes were acknowledged to mean anything: {acknowledged}");
}
