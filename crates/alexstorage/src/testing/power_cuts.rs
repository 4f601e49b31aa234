//! A harness that drives random operations against a `BTreeMap` model, with clean
//! reopens, process crashes, and power cuts in between, and checks the recovery
//! contract after each: the store opens; it holds a state that existed (a prefix of
//! the write order, batches whole) that includes every write acknowledged as durable
//! (a `Sync` write that returned, everything before a `flush()` that returned); and it
//! goes on working. Shared by the cargo-fuzz target `power_cuts` and its bounded
//! property-test twin, `tests/power_cut_model.rs`.
//!
//! A power cut is played on the files left by a process that stopped without its
//! final sync ([`Db::simulate_crash`]): every 4 KiB page past the durable end of the
//! segment being written may be lost (back to zeros) or torn at a 512-byte sector,
//! independently of the others, as a page cache writing dirty pages back in any order
//! would leave it. The store runs with one log segment (1 MiB, no compaction), so the
//! durable end is known exactly: where the log ended after the last sync.

// A harness: a broken contract is a panic, which the fuzzer and the tests report. No
// program that uses the store reaches this module.
#![allow(clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Db, Durability, Options, WriteBatch};

/// The segment the harness's stores write (one segment: the store stays small).
const SEGMENT: &str = "00000001.seg";
const PAGE: u64 = 4096;
/// Writes per run at most: the store stays well inside its one segment.
const MAX_WRITES: usize = 400;

type Model = BTreeMap<i64, Vec<u8>>;

/// The value the harness writes for `key` at write number `write`.
fn value_of(key: i64, write: usize) -> Vec<u8> {
    let len = (key.unsigned_abs() as usize * 7 + write * 13) % 300;
    (0..len).map(|index| (write as u8).wrapping_mul(31) ^ (key as u8).wrapping_add(index as u8)).collect()
}

/// The operations and checks: see the module docs. `data` drives everything;
/// returns how many writes and power cuts ran. Panics on a violation of the contract.
pub fn run_operations(dir: &Path, data: &[u8]) -> (usize, usize) {
    let mut bytes = data.iter().copied();
    let durability = if bytes.next().unwrap_or(0) & 1 == 1 { Durability::Sync } else { Durability::Buffered };
    let options = Options::new().segment_size(1 << 20).background_compaction(false).durability(durability);
    let Ok(mut db) = options.clone().open(dir) else { panic!("a new store did not open") };
    // `states[i]`: the model after the first `i` writes; `durable`: how many writes
    // are durable; `durable_end`: where the log's durable bytes end.
    let mut states: Vec<Model> = vec![Model::new()];
    let mut durable = 0;
    let mut durable_end = log_end(&db);
    let mut cuts = 0;
    while let Some(op) = bytes.next() {
        if states.len() > MAX_WRITES {
            break;
        }
        let mut model = states.last().cloned().unwrap_or_default();
        let key = i64::from(bytes.next().unwrap_or(0) % 32) - 8;
        let write = states.len();
        let wrote = match op % 8 {
            0..=2 => {
                let value = value_of(key, write);
                db.put(key, &value).map(|()| model.insert(key, value)).is_ok()
            }
            3 => {
                if !model.contains_key(&key) {
                    // Deleting an absent key writes nothing.
                    let _ = db.delete(key);
                    continue;
                }
                db.delete(key).map(|()| model.remove(&key)).is_ok()
            }
            4 => {
                let mut batch = WriteBatch::new();
                for offset in 0..=(op / 8 % 4) {
                    let key = key + i64::from(offset);
                    if offset % 2 == 1 && model.contains_key(&key) {
                        batch.delete(key);
                        model.remove(&key);
                    } else {
                        let value = value_of(key, write);
                        batch.put(key, &value);
                        model.insert(key, value);
                    }
                }
                db.write(batch).is_ok()
            }
            5 => {
                if db.flush().is_ok() {
                    durable = states.len() - 1;
                    durable_end = log_end(&db);
                }
                continue;
            }
            6 => {
                drop(db);
                db = reopen(dir, &options, &states, states.len() - 1, "a clean close");
                durable = states.len() - 1;
                durable_end = log_end(&db);
                continue;
            }
            _ => {
                let lose = bytes.next().unwrap_or(0);
                db.simulate_crash();
                if lose & 1 == 1 {
                    cuts += 1;
                    cut_power(dir, durable_end, &mut bytes);
                }
                // A process crash keeps every acknowledged write; a power cut a prefix
                // holding the durable ones.
                let least = if lose & 1 == 1 { durable } else { states.len() - 1 };
                let (reopened, kept) = reopen_prefix(dir, &options, &states, least);
                db = reopened;
                states.truncate(kept + 1);
                durable = kept;
                durable_end = log_end(&db);
                continue;
            }
        };
        assert!(wrote, "write {write} failed on a healthy store");
        states.push(model);
        if durability == Durability::Sync {
            durable = states.len() - 1;
            durable_end = log_end(&db);
        }
    }
    let writes = states.len() - 1;
    drop(db);
    reopen(dir, &options, &states, writes, "the final clean close");
    (writes, cuts)
}

/// Where the store's log ends (its one segment).
fn log_end(db: &Db) -> u64 {
    64 + db.stats().log_bytes
}

/// Reopens and checks the store holds exactly `states[expected]`.
fn reopen(dir: &Path, options: &Options, states: &[Model], expected: usize, after: &str) -> Db {
    let (db, kept) = reopen_prefix(dir, options, states, expected);
    assert_eq!(kept, expected, "after {after} the store holds the state after write {kept}, not {expected}");
    db
}

/// Reopens the store and finds which state it holds: one of `states[least..]`, or the
/// contract is broken. Returns the store and the index of that state.
fn reopen_prefix(dir: &Path, options: &Options, states: &[Model], least: usize) -> (Db, usize) {
    let db = match options.clone().open(dir) {
        Ok(db) => db,
        Err(error) => panic!("the store did not open: {error}"),
    };
    let mut found = Model::new();
    for entry in db.iter() {
        match entry {
            Ok((key, value)) => {
                found.insert(key, value.to_vec());
            }
            Err(error) => panic!("reading the recovered store failed: {error}"),
        }
    }
    assert_eq!(db.len(), found.len(), "len() disagrees with the keys read");
    if let Err(error) = db.verify() {
        panic!("verify after recovery: {error}");
    }
    // The latest matching state: equal states are indistinguishable, and the latest
    // keeps the most writes counted as durable.
    let Some(kept) = (least..states.len()).rev().find(|&index| states[index] == found) else {
        panic!(
            "the recovered store ({} keys) is no state between write {least} (durable) and write {}",
            found.len(),
            states.len() - 1
        );
    };
    (db, kept)
}

/// Plays a power cut on the segment: pages past `durable_end` are each kept, lost, or
/// torn at a sector, as `choices` say.
fn cut_power(dir: &Path, durable_end: u64, choices: &mut impl Iterator<Item = u8>) {
    drop_unsynced_pages(&dir.join(SEGMENT), durable_end, choices);
}

/// Every page of the file at `path` past `durable` (the page holding it keeps its
/// durable part) kept, lost (back to zeros), or torn at a 512-byte sector (lost from
/// there on), as `choices` say: what a page cache writing dirty pages back in any order
/// leaves after a power cut. Returns the pages changed.
fn drop_unsynced_pages(path: &Path, durable: u64, choices: &mut impl Iterator<Item = u8>) -> usize {
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(path) else { return 0 };
    let Ok(length) = file.metadata().map(|metadata| metadata.len()) else { return 0 };
    let mut changed = 0;
    let mut page = durable / PAGE;
    while page * PAGE < length {
        let start = (page * PAGE).max(durable);
        let end = ((page + 1) * PAGE).min(length);
        let choice = choices.next().unwrap_or(0);
        let lost_from = match choice % 3 {
            0 => None,
            1 => Some(start),
            _ => Some(((page * PAGE) + u64::from(choice / 3 % 8) * 512).max(start)),
        };
        if let Some(from) = lost_from.filter(|&from| from < end) {
            if file.write_all_at(&vec![0u8; (end - from) as usize], from).is_err() {
                return changed;
            }
            changed += 1;
        }
        page += 1;
    }
    changed
}

/// The durable end of a version-3 log segment file as its durable marks claim it (the
/// furthest end a valid mark claims; 64, the header, if none): what a parent process
/// playing the disk after killing a writer may take as surely on stable storage.
/// `None` for a file that is not such a segment.
pub fn claimed_durable_end(path: &Path) -> Option<u64> {
    use crate::log::format::{
        Decoded, DurableMark, RecordHeader, SegmentHeader, DURABLE_MARKS_VERSION, DURABLE_MARK_SIZE, SEGMENT_COMPACTED,
        SEGMENT_HEADER_SIZE,
    };
    let bytes = std::fs::read(path).ok()?;
    let header = SegmentHeader::decode(&bytes).ok()?;
    if header.version < DURABLE_MARKS_VERSION || header.flags & SEGMENT_COMPACTED != 0 {
        return None;
    }
    let mut durable = SEGMENT_HEADER_SIZE as u64;
    for at in SEGMENT_HEADER_SIZE..bytes.len().saturating_sub(DURABLE_MARK_SIZE) {
        if bytes.get(at + 4) != Some(&4) || bytes.get(at + 20..at + 28) != Some(&(at as u64).to_le_bytes()[..]) {
            continue;
        }
        if let Decoded::Record { header: record, len } = RecordHeader::decode(&bytes[at..]) {
            if let Some(mark) = DurableMark::check(&record, &bytes[at..at + len], header.id, at as u64) {
                durable = durable.max(mark.durable);
            }
        }
    }
    Some(durable)
}

/// Plays a power cut on the newest log segment of the store in `dir` after its writer
/// was killed: every page past the claimed durable end lost, kept or torn at a sector,
/// as `choices` say. Returns the number of pages changed.
pub fn cut_power_after_kill(dir: &Path, choices: &mut impl Iterator<Item = u8>) -> usize {
    let mut segments: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter_map(|path| {
            let id = path.file_name()?.to_str().and_then(crate::log::segment::parse_file_name)?;
            Some((id, path))
        })
        .collect();
    segments.sort();
    let Some((durable, path)) =
        segments.iter().rev().find_map(|(_, path)| claimed_durable_end(path).map(|durable| (durable, path.clone())))
    else {
        return 0;
    };
    drop_unsynced_pages(&path, durable, choices)
}
