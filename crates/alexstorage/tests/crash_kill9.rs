//! Crash test: a child process writes single puts, deletes and batches and reports
//! each write before it starts and once it is acknowledged; the parent `kill -9`s it at
//! random moments, reopens the store, and checks that every acknowledged write is
//! there with the right value, that the one write in flight is all there or not at
//! all (batches included), and that `len()` matches.
//!
//! `ALEXSTORAGE_CRASH_KILLS` sets the number of kills (default 50, what CI runs):
//! `ALEXSTORAGE_CRASH_KILLS=1000 cargo test --release -p alexstorage --test crash_kill9`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use alexstorage::{Db, Durability, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const KEYS: u64 = 512;

fn key(slot: u64) -> i64 {
    (slot as i64 - 256).wrapping_mul(0x0123_4567_89AB_CDEF)
}

fn value(slot: u64, len: u64, round: u64) -> Vec<u8> {
    (0..len).map(|index| (index.wrapping_mul(7) ^ slot ^ round) as u8).collect()
}

fn options(durability: &str) -> Options {
    let durability = if durability == "sync" { Durability::Sync } else { Durability::Buffered };
    Options::new().durability(durability).segment_size(64 << 10)
}

/// One write, as the child reports it.
#[derive(Clone, Debug)]
enum Write1 {
    Put { slot: u64, len: u64, round: u64 },
    Delete { slot: u64 },
}

fn apply(model: &mut BTreeMap<i64, Vec<u8>>, writes: &[Write1]) {
    for write in writes {
        match *write {
            Write1::Put { slot, len, round } => {
                model.insert(key(slot), value(slot, len, round));
            }
            Write1::Delete { slot } => {
                model.remove(&key(slot));
            }
        }
    }
}

fn parse(line: &str) -> Vec<Write1> {
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|field| field.parse().unwrap()).collect();
    fields
        .chunks(4)
        .map(|chunk| match chunk {
            [0, slot, len, round] => Write1::Put { slot: *slot, len: *len, round: *round },
            [1, slot, _, _] => Write1::Delete { slot: *slot },
            other => panic!("bad protocol chunk {other:?}"),
        })
        .collect()
}

fn encode(writes: &[Write1]) -> String {
    let mut line = String::from("BEGIN");
    for write in writes {
        match *write {
            Write1::Put { slot, len, round } => line.push_str(&format!(" 0 {slot} {len} {round}")),
            Write1::Delete { slot } => line.push_str(&format!(" 1 {slot} 0 0")),
        }
    }
    line
}

/// The child: writes until killed (or, as a safeguard, for at most 60 s).
#[test]
#[ignore = "run by crash_kill9_recovers_every_acknowledged_write as its child process"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("ALEXSTORAGE_CRASH_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ALEXSTORAGE_CRASH_SEED").unwrap().parse().unwrap();
    let durability = std::env::var("ALEXSTORAGE_CRASH_DURABILITY").unwrap();
    let db = options(&durability).open(&dir).unwrap();
    let mut random = SplitMix64::new(seed);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = seed << 32;
    while Instant::now() < deadline {
        round += 1;
        let count = if random.below(4) == 0 { 1 + random.below(8) } else { 1 };
        let writes: Vec<Write1> = (0..count)
            .map(|_| {
                let slot = random.below(KEYS);
                if random.below(5) == 0 {
                    Write1::Delete { slot }
                } else {
                    Write1::Put { slot, len: random.below(400), round }
                }
            })
            .collect();
        writeln!(out, "{}", encode(&writes)).unwrap();
        out.flush().unwrap();
        if count == 1 {
            match writes[0] {
                Write1::Put { slot, len, round } => db.put(key(slot), value(slot, len, round)).unwrap(),
                Write1::Delete { slot } => db.delete(key(slot)).unwrap(),
            }
        } else {
            let mut batch = WriteBatch::new();
            for write in &writes {
                match *write {
                    Write1::Put { slot, len, round } => batch.put(key(slot), value(slot, len, round)),
                    Write1::Delete { slot } => batch.delete(key(slot)),
                };
            }
            db.write(batch).unwrap();
        }
        writeln!(out, "ACK").unwrap();
        out.flush().unwrap();
    }
}

fn state_of(db: &Db) -> BTreeMap<i64, Vec<u8>> {
    (0..KEYS).filter_map(|slot| db.get(key(slot)).unwrap().map(|value| (key(slot), value.to_vec()))).collect()
}

#[test]
fn crash_kill9_recovers_every_acknowledged_write() {
    let kills: u64 = std::env::var("ALEXSTORAGE_CRASH_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut random = SplitMix64::new(2026);
    let mut acknowledged_total = 0u64;
    for kill in 0..kills {
        let durability = if kill % 5 == 4 { "sync" } else { "buffered" };
        let envs = [
            ("ALEXSTORAGE_CRASH_CHILD_DIR", dir.path().display().to_string()),
            ("ALEXSTORAGE_CRASH_SEED", (kill + 1).to_string()),
            ("ALEXSTORAGE_CRASH_DURABILITY", durability.to_string()),
        ];
        let run = Duration::from_millis(1 + random.below(40));
        let lines = common::run_and_kill("crash_child_writer", &envs, run);
        let mut in_flight: Option<Vec<Write1>> = None;
        for line in lines.iter().filter(|line| line.starts_with("BEGIN") || *line == "ACK") {
            if line == "ACK" {
                let writes = in_flight.take().expect("ACK without BEGIN");
                apply(&mut model, &writes);
                acknowledged_total += 1;
            } else {
                in_flight = Some(parse(line));
            }
        }
        let db = options(durability).open(dir.path()).unwrap_or_else(|error| panic!("kill {kill}: reopen: {error}"));
        let recovered = state_of(&db);
        assert_eq!(db.len(), recovered.len(), "kill {kill}: len() disagrees with the contents");
        let without = model.clone();
        let mut with = model.clone();
        if let Some(writes) = &in_flight {
            apply(&mut with, writes);
        }
        assert!(
            recovered == without || recovered == with,
            "kill {kill}: recovered state is neither the acknowledged state nor it plus the write in flight \
             ({in_flight:?})"
        );
        db.verify().unwrap();
        model = recovered;
    }
    assert!(acknowledged_total > kills, "too few writes were acknowledged to mean anything: {acknowledged_total}");
}
