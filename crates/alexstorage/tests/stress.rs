//! A `db_stress`-like run: writer threads doing random puts, deletes and batches,
//! reader threads doing gets, snapshots and ranges in both directions, and a thread
//! compacting, all at once against an expected-state oracle, with every read checked.
//! At the end the store must hold exactly the oracle's state, verify, and hold it
//! again after a reopen.
//!
//! The oracle: each writer owns the keys `k` with `k % WRITERS == writer`, so it knows
//! their exact state (it checks its own writes read back), and publishes each key's
//! last acknowledged version. Every value names its key and version and carries filler
//! derived from both, so any read can be checked on its own: the bytes belong to that
//! key, and the version lies between what was acknowledged before the read and what
//! could be in flight after it. A snapshot is checked to be frozen (read twice, the
//! same) and consistent (its ranges agree with its gets, in key order).
//!
//! CI runs it for `ALEXSTORAGE_STRESS_SECONDS` (3 s by default; `scripts/test.sh`
//! sets 60 in release). An hour:
//! `ALEXSTORAGE_STRESS_SECONDS=3600 cargo test --release -p alexstorage --test stress -- --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alexstorage::{Db, Options, Snapshot, Value, WriteBatch};
use alexstorage_keygen::SplitMix64;

const WRITERS: i64 = 3;
const READERS: usize = 2;
const KEYS: i64 = 600;

/// Each key's state as its writer publishes it, `version << 1 | present`: `pending`
/// before a write of it starts, `acknowledged` once the write returned.
struct Oracle {
    pending: Vec<AtomicU64>,
    acknowledged: Vec<AtomicU64>,
}

/// A key's published state.
#[derive(Clone, Copy, Debug)]
struct State {
    version: u64,
    present: bool,
}

impl Oracle {
    fn new() -> Oracle {
        let zeros = || (0..KEYS).map(|_| AtomicU64::new(0)).collect();
        Oracle { pending: zeros(), acknowledged: zeros() }
    }

    fn load(states: &[AtomicU64], key: i64) -> State {
        let state = states[key as usize].load(Ordering::Acquire);
        State { version: state >> 1, present: state & 1 == 1 }
    }

    fn encode(version: u64, present: bool) -> u64 {
        version << 1 | u64::from(present)
    }

    fn begin(&self, key: i64, version: u64, present: bool) {
        self.pending[key as usize].store(Self::encode(version, present), Ordering::Release);
    }

    fn publish(&self, key: i64, version: u64, present: bool) {
        self.acknowledged[key as usize].store(Self::encode(version, present), Ordering::Release);
    }
}

fn value_of(key: i64, version: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(80);
    value.extend_from_slice(&key.to_le_bytes());
    value.extend_from_slice(&version.to_le_bytes());
    let filler = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version;
    let len = (filler % 64) as usize;
    value.extend((0..len).map(|index| (filler >> (index % 8 * 8)) as u8 ^ index as u8));
    value
}

/// The version a value read for `key` holds, after checking its bytes are a value the
/// stress run wrote for that key.
fn version_in(key: i64, value: &[u8]) -> u64 {
    assert!(value.len() >= 16, "key {key}: a value of {} bytes", value.len());
    let named = i64::from_le_bytes(value[..8].try_into().unwrap());
    let version = u64::from_le_bytes(value[8..16].try_into().unwrap());
    assert_eq!(named, key, "key {key} holds a value of key {named}");
    assert_eq!(value, value_of(key, version), "key {key}: wrong bytes for version {version}");
    version
}

/// Checks a read of `key` against the state acknowledged before it and the one
/// pending after it: the version seen lies between the two, and an absent key is
/// allowed only if one of the states it may have read (which are known when the two
/// are at most one write apart) is absent.
fn check_read(key: i64, read: Option<&Value>, before: State, after: State) {
    match read {
        Some(value) => {
            let version = version_in(key, value);
            assert!(
                version >= before.version && version <= after.version,
                "key {key}: read version {version}, acknowledged {before:?} before, pending {after:?} after"
            );
        }
        None => {
            let possible = !before.present
                || after.version > before.version + 1
                || (after.version == before.version + 1 && !after.present);
            assert!(possible, "key {key}: absent, acknowledged {before:?} before, pending {after:?} after");
        }
    }
}

fn seconds() -> u64 {
    std::env::var("ALEXSTORAGE_STRESS_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(3)
}

fn writer(db: &Db, oracle: &Oracle, me: i64, stop: &AtomicBool) -> (BTreeMap<i64, u64>, u64) {
    let mine: Vec<i64> = (0..KEYS).filter(|key| key % WRITERS == me).collect();
    let mut random = SplitMix64::new(me as u64 + 100);
    // The exact state of my keys: version of the present ones.
    let mut state: BTreeMap<i64, u64> = BTreeMap::new();
    let mut versions: BTreeMap<i64, u64> = mine.iter().map(|&key| (key, 0)).collect();
    let mut writes = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = mine[random.below(mine.len() as u64) as usize];
        match random.below(10) {
            0..=5 => {
                let version = versions[&key] + 1;
                oracle.begin(key, version, true);
                db.put(key, value_of(key, version)).unwrap();
                versions.insert(key, version);
                state.insert(key, version);
                oracle.publish(key, version, true);
            }
            6 | 7 => {
                if !state.contains_key(&key) {
                    // Deleting an absent key writes nothing.
                    db.delete(key).unwrap();
                    continue;
                }
                let version = versions[&key] + 1;
                oracle.begin(key, version, false);
                db.delete(key).unwrap();
                state.remove(&key);
                versions.insert(key, version);
                oracle.publish(key, version, false);
            }
            _ => {
                let mut batch = WriteBatch::new();
                let mut changed = Vec::new();
                for _ in 0..1 + random.below(6) {
                    let key = mine[random.below(mine.len() as u64) as usize];
                    if changed.iter().any(|&(other, _, _)| other == key) {
                        continue;
                    }
                    let version = versions[&key] + 1;
                    let present = random.below(4) != 0 || !state.contains_key(&key);
                    oracle.begin(key, version, present);
                    if present {
                        batch.put(key, value_of(key, version));
                    } else {
                        batch.delete(key);
                    }
                    changed.push((key, version, present));
                }
                db.write(batch).unwrap();
                for (key, version, present) in changed {
                    versions.insert(key, version);
                    if present {
                        state.insert(key, version);
                    } else {
                        state.remove(&key);
                    }
                    oracle.publish(key, version, present);
                }
            }
        }
        writes += 1;
        // Read my own write back.
        let read = db.get(key).unwrap();
        assert_eq!(read.map(|value| version_in(key, &value)), state.get(&key).copied(), "writer {me}, key {key}");
    }
    (state, writes)
}

fn check_snapshot(snapshot: &Snapshot, random: &mut SplitMix64) -> Vec<(i64, Vec<u8>)> {
    let lo = random.below(KEYS as u64) as i64;
    let hi = lo + random.below(200) as i64;
    let ascending: Vec<(i64, Vec<u8>)> =
        snapshot.range(lo..hi).map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect();
    let mut descending: Vec<(i64, Vec<u8>)> =
        snapshot.range(lo..hi).rev().map(|entry| entry.map(|(key, value)| (key, value.to_vec())).unwrap()).collect();
    descending.reverse();
    assert_eq!(ascending, descending, "a snapshot's range read both ways differs");
    assert!(ascending.windows(2).all(|pair| pair[0].0 < pair[1].0), "range not in key order");
    for (key, value) in &ascending {
        version_in(*key, value);
        assert_eq!(snapshot.get(*key).unwrap().map(|value| value.to_vec()).as_ref(), Some(value), "get vs range");
    }
    let in_range = (lo..hi.min(KEYS)).filter(|&key| snapshot.get(key).unwrap().is_some()).count();
    assert_eq!(in_range, ascending.len(), "the range missed keys the snapshot's gets see");
    ascending
}

fn reader(db: &Db, oracle: &Oracle, me: usize, stop: &AtomicBool) -> u64 {
    let mut random = SplitMix64::new(me as u64 + 7);
    let mut reads = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if random.below(8) == 0 {
            let snapshot = db.snapshot();
            // The same range read again, after the writers went on: frozen.
            let mut again = random.clone();
            let first = check_snapshot(&snapshot, &mut random);
            std::thread::yield_now();
            assert_eq!(check_snapshot(&snapshot, &mut again), first, "a snapshot changed under writes");
            reads += 2;
            continue;
        }
        let key = random.below(KEYS as u64) as i64;
        let before = Oracle::load(&oracle.acknowledged, key);
        let read = db.get(key).unwrap();
        let after = Oracle::load(&oracle.pending, key);
        check_read(key, read.as_ref(), before, after);
        reads += 1;
    }
    reads
}

#[test]
fn threads_against_an_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::new().segment_size(256 << 10).compaction_threshold(0.4);
    let db = options.clone().open(dir.path()).unwrap();
    let oracle = Oracle::new();
    let stop = AtomicBool::new(false);
    let run = Duration::from_secs(seconds());
    let started = Instant::now();
    let (states, reads, compactions) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|me| {
                scope.spawn({
                    let db = db.clone();
                    let (oracle, stop) = (&oracle, &stop);
                    move || writer(&db, oracle, me, stop)
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|me| {
                scope.spawn({
                    let db = db.clone();
                    let (oracle, stop) = (&oracle, &stop);
                    move || reader(&db, oracle, me, stop)
                })
            })
            .collect();
        let compactor = scope.spawn({
            let db = db.clone();
            let stop = &stop;
            move || {
                let mut compactions = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    db.compact().unwrap();
                    compactions += 1;
                }
                compactions
            }
        });
        while started.elapsed() < run {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let states: Vec<_> = writers.into_iter().map(|thread| thread.join().unwrap()).collect();
        let reads: u64 = readers.into_iter().map(|thread| thread.join().unwrap()).sum();
        (states, reads, compactor.join().unwrap())
    });
    let writes: u64 = states.iter().map(|(_, writes)| writes).sum();
    let expected: BTreeMap<i64, u64> = states.into_iter().flat_map(|(state, _)| state).collect();
    println!("stress: {writes} writes, {reads} reads, {compactions} compactions in {:?}", started.elapsed());
    assert!(writes > 0 && reads > 0 && compactions > 0);
    let check = |db: &Db, when: &str| {
        assert_eq!(db.len(), expected.len(), "{when}");
        for key in 0..KEYS {
            let found = db.get(key).unwrap().map(|value| version_in(key, &value));
            assert_eq!(found, expected.get(&key).copied(), "{when}: key {key}");
        }
        let keys: Vec<i64> = db.iter().map(|entry| entry.unwrap().0).collect();
        assert_eq!(keys, expected.keys().copied().collect::<Vec<_>>(), "{when}: iteration");
        db.verify().unwrap();
    };
    check(&db, "at the end");
    drop(db);
    let db = options.open(dir.path()).unwrap();
    check(&db, "after a reopen");
}

/// The checks refuse what a correct store can never return.
#[test]
fn the_oracle_refuses_impossible_reads() {
    let present = |version| State { version, present: true };
    let value = |key, version| {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        db.put(key, value_of(key, version)).unwrap();
        db.get(key).unwrap().unwrap()
    };
    let refused = |read: Option<Value>, before: State, after: State| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_read(3, read.as_ref(), before, after))).is_err()
    };
    let cases = [
        // A version older than one acknowledged before the read, or newer than any pending.
        ("an older version", Some(value(3, 4)), present(5), present(5), true),
        ("a version never pending", Some(value(3, 7)), present(5), present(6), true),
        ("another key's value", Some(value(4, 5)), present(5), present(5), true),
        // Absent while present before and nothing but a put pending.
        ("absent, nothing pending", None, present(5), present(5), true),
        ("absent, a put pending", None, present(5), present(6), true),
        // What is possible passes.
        ("the pending version", Some(value(3, 6)), present(5), present(6), false),
        ("absent, a delete pending", None, present(5), State { version: 6, present: false }, false),
        ("absent, writes in between", None, present(5), present(8), false),
    ];
    // The refusals are panics caught on purpose: keep them off the output while they
    // run, and assert only once the usual hook is back.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcomes: Vec<(&str, bool, bool)> = cases
        .into_iter()
        .map(|(what, read, before, after, expected)| (what, refused(read, before, after), expected))
        .collect();
    std::panic::set_hook(hook);
    for (what, refused, expected) in outcomes {
        assert_eq!(refused, expected, "{what}");
    }
}
