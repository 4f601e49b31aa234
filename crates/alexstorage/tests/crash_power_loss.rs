//! Kill -9 and then a power cut: a child process runs 3 `Sync` writer threads, each
//! owning a disjoint set of keys (single puts, deletes and batches, each reported
//! before it starts and once it is acknowledged), and a thread compacting now and
//! then. The parent kills it at a random moment and then plays the disk: `kill -9`
//! leaves unsynced pages in the page cache, so the parent drops them itself, every
//! page of the newest log segment past the end its durable marks claim lost, kept or
//! torn at a 512-byte sector (`testing::power_cuts::cut_power_after_kill`). It checks,
//! thread by thread, that every acknowledged write survived and that the write in
//! flight (a batch included) is there entirely or not at all, then lets the next
//! child go on from the recovered store.
//!
//! `ALEXSTORAGE_POWER_KILLS` sets the number of rounds (default 20, what CI runs):
//! `ALEXSTORAGE_POWER_KILLS=1000 cargo test --release -p alexstorage --test crash_power_loss`.
//! `ALEXSTORAGE_NO_CUT=1` runs the same loop with kills only (to tell a power-cut
//! problem from a crash problem).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use alexstorage::{Db, Durability, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const THREADS: u64 = 3;
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
#[ignore = "run by sync_writers_survive_kill9_and_power_cuts as its child process"]
fn crash_power_loss_child() {
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
        scope.spawn({
            let db = db.clone();
            move || {
                while Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(15));
                    db.compact().unwrap();
                }
            }
        });
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
fn sync_writers_survive_kill9_and_power_cuts() {
    let kills: u64 = std::env::var("ALEXSTORAGE_POWER_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(20);
    let mut pages_dropped = 0;
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
        let lines = common::run_and_kill("crash_power_loss_child", &envs, run);
        if let Ok(keep) = std::env::var("ALEXSTORAGE_KEEP_IMAGE") {
            let before = format!("{keep}.before-cut");
            let _ = std::fs::remove_dir_all(&before);
            std::fs::create_dir_all(&before).unwrap();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), Path::new(&before).join(entry.file_name())).unwrap();
            }
        }
        let mut choices = std::iter::repeat_with(|| random.next_u64() as u8);
        if std::env::var("ALEXSTORAGE_NO_CUT").is_err() {
            pages_dropped += alexstorage::testing::power_cuts::cut_power_after_kill(dir.path(), &mut choices);
        } else {
            pages_dropped += usize::from(choices.next().is_some());
        }
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
        if let Ok(keep) = std::env::var("ALEXSTORAGE_KEEP_IMAGE") {
            let previous = format!("{keep}.previous");
            let _ = std::fs::remove_dir_all(&previous);
            let _ = std::fs::rename(&keep, &previous);
            let _ = std::fs::remove_dir_all(&keep);
            std::fs::create_dir_all(&keep).unwrap();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), Path::new(&keep).join(entry.file_name())).unwrap();
            }
            let log: String = lines.join("\n");
            std::fs::write(Path::new(&keep).join("child.log"), log).unwrap();
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
            if recovered != *model && recovered != with {
                let lost: Vec<i64> = model
                    .iter()
                    .filter(|(key, value)| recovered.get(*key) != Some(*value))
                    .map(|(key, _)| *key)
                    .collect();
                let extra: Vec<i64> = recovered
                    .iter()
                    .filter(|(key, value)| model.get(*key) != Some(*value))
                    .map(|(key, _)| *key)
                    .collect();
                eprintln!("DIFF kill {kill} thread {thread}: differs from acknowledged at {lost:?}, unexpected {extra:?}; stats {:?}", db.stats());
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
    assert!(pages_dropped > 0, "no power cut changed a page");
    println!("{kills} kills and power cuts: {acknowledged} writes acknowledged, {pages_dropped} pages dropped or torn");
}
