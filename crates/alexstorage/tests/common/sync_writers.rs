//! The kill loop of `Sync` writer threads shared by `tests/crash_concurrent.rs` and
//! `tests/crash_power_loss.rs`: a child process runs writer threads, each owning a
//! disjoint set of keys, writing single puts, deletes and batches with
//! `Durability::Sync` and reporting each write before it starts and once it is
//! acknowledged (and, optionally, a thread compacting now and then). The parent kills
//! the child at random moments, lets the test change the files (a power cut), reopens,
//! and checks, thread by thread, that every acknowledged write survived and that the
//! write in flight (a batch included) is there entirely or not at all.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use alexstorage::testing::power_cuts::durable_after_close;
use alexstorage::{Db, Durability, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const SLOTS_PER_THREAD: u64 = 64;

/// How a loop runs.
pub struct Loop {
    /// Writer threads in the child.
    pub threads: u64,
    /// Whether the child also compacts every 15 ms.
    pub compact: bool,
}

fn key(thread: u64, slot: u64) -> i64 {
    ((thread * SLOTS_PER_THREAD + slot) as i64 - 128).wrapping_mul(0x0123_4567_89AB)
}

fn value(slot: u64, len: u64, round: u64) -> Vec<u8> {
    (0..len).map(|index| (index.wrapping_mul(13) ^ slot ^ round) as u8).collect()
}

pub fn options() -> Options {
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

fn report(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    out.write_fmt(line).unwrap();
    out.write_all(b"\n").unwrap();
    out.flush().unwrap();
}

/// The child's body: writer threads until killed (or, as a safeguard, for 60 s).
pub fn child(setup: &Loop) {
    let Ok(dir) = std::env::var("ALEXSTORAGE_CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CRASH_SEED").unwrap().parse().unwrap();
    let db = options().open(&dir).unwrap();
    report(format_args!("READY"));
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        if setup.compact {
            let db = db.clone();
            scope.spawn(move || {
                while Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(15));
                    db.compact().unwrap();
                }
            });
        }
        for thread in 0..setup.threads {
            let db = db.clone();
            scope.spawn(move || writer(&db, thread, seed, deadline));
        }
    });
}

fn writer(db: &Db, thread: u64, seed: u64, deadline: Instant) {
    let mut random = SplitMix64::new(seed * 31 + thread);
    let mut round = (seed << 32) + (thread << 24);
    while Instant::now() < deadline {
        round += 1;
        let count = if random.below(3) == 0 { 2 + random.below(6) } else { 1 };
        let writes: Writes = (0..count)
            .map(|_| (random.below(5) != 0, random.below(SLOTS_PER_THREAD), random.below(300), round))
            .collect();
        let fields: Vec<String> =
            writes.iter().map(|(put, slot, len, round)| format!("{} {slot} {len} {round}", u8::from(*put))).collect();
        report(format_args!("BEGIN {thread} {}", fields.join(" ")));
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
        report(format_args!("ACK {thread}"));
    }
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

/// Runs `kills` rounds of the child `child_name` (the ignored test that calls
/// [`child`]); after each kill `after_kill` may change the files, given what this
/// loop knows was durable (each segment's end after its own last clean close). Returns
/// the writes acknowledged.
pub fn kill_loop(
    setup: &Loop,
    child_name: &str,
    kills: u64,
    mut after_kill: impl FnMut(&Path, &[(u32, u64)], &mut SplitMix64),
) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    // One model per writer thread: the threads own disjoint keys.
    let mut models: Vec<BTreeMap<i64, Vec<u8>>> = vec![BTreeMap::new(); setup.threads as usize];
    let mut random = SplitMix64::new(77);
    let mut acknowledged = 0u64;
    let mut durable = Vec::new();
    for kill in 0..kills {
        let envs = [
            ("ALEXSTORAGE_CRASH_CHILD_DIR", dir.path().display().to_string()),
            ("ALEXSTORAGE_CRASH_SEED", (kill + 1).to_string()),
        ];
        let run = Duration::from_millis(5 + random.below(60));
        let lines = super::run_and_kill(child_name, &envs, run);
        after_kill(dir.path(), &durable, &mut random);
        let mut in_flight: Vec<Option<Writes>> = vec![None; setup.threads as usize];
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
        for thread in 0..setup.threads {
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
        // A clean close: everything in the files is durable.
        drop(db);
        durable = durable_after_close(dir.path());
    }
    assert!(acknowledged > kills, "too few writes were acknowledged to mean anything: {acknowledged}");
    acknowledged
}
