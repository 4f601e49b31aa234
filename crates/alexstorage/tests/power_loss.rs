//! Power cuts, as images of the disk: the page cache writes dirty pages back in any
//! order, so after a power cut any page written since the last sync may hold its old
//! bytes (zeros, for a fresh segment) or its new ones, independently of its
//! neighbours. Recovery keeps a prefix of the writes holding every durable one, and
//! still reports damage to durable bytes as corruption: durable marks (format
//! version 3) say how far each sync reached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use alexstorage::{Db, Durability, Error, Options};
use alexstorage_keygen::SplitMix64;

const SEGMENT: &str = "00000001.seg";
const PAGE: u64 = 4096;
const KEYS: i64 = 300;
const DURABLE_KEYS: i64 = 100;

fn value(key: i64) -> Vec<u8> {
    (0..500).map(|index| (key as usize).wrapping_mul(31).wrapping_add(index) as u8).collect()
}

/// Writes `DURABLE_KEYS` keys, flushes, writes the rest without a sync, and crashes.
/// Returns where the durable bytes end and where the records end.
fn build(path: &Path, durability: Durability) -> (u64, u64) {
    let db =
        Options::new().segment_size(1 << 20).background_compaction(false).durability(durability).open(path).unwrap();
    for key in 0..DURABLE_KEYS {
        db.put(key, value(key)).unwrap();
    }
    db.flush().unwrap();
    let durable = 64 + db.stats().log_bytes;
    for key in DURABLE_KEYS..KEYS {
        db.put(key, value(key)).unwrap();
    }
    let end = 64 + db.stats().log_bytes;
    db.simulate_crash();
    (durable, end)
}

/// Opens the store after a power cut and checks the contract: it opens, every durable
/// write is there, what is there is a prefix of the write order with the right
/// values, and the store goes on working.
fn check_prefix(path: &Path, context: &str) -> i64 {
    let db = Db::open(path).unwrap_or_else(|error| panic!("{context}: open failed: {error}"));
    let mut present = 0;
    for key in 0..KEYS {
        match db.get(key).unwrap_or_else(|error| panic!("{context}: key {key}: {error}")) {
            Some(found) => {
                assert_eq!(found, value(key), "{context}: key {key} has the wrong bytes");
                assert_eq!(key, present, "{context}: key {key} present after a missing one");
                present += 1;
            }
            None => assert!(key >= DURABLE_KEYS, "{context}: durable key {key} lost"),
        }
    }
    assert_eq!(db.len() as i64, present, "{context}");
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
    db.put(10_000, b"after").unwrap();
    drop(db);
    let db = Db::open(path).unwrap();
    assert_eq!(db.get(10_000).unwrap().unwrap(), b"after", "{context}");
    assert_eq!(db.len() as i64, present + 1, "{context}");
    present
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Overwrites `pages` (page numbers) of the segment with `fill(page)`.
fn replace_pages(path: &Path, pages: impl Iterator<Item = u64>, mut fill: impl FnMut(u64) -> Vec<u8>) {
    let file = std::fs::OpenOptions::new().write(true).open(path.join(SEGMENT)).unwrap();
    for page in pages {
        file.write_all_at(&fill(page), page * PAGE).unwrap();
    }
}

#[test]
fn lost_pages_after_the_last_sync_leave_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let (durable, end) = build(&original, Durability::Buffered);
    let first_unsynced = durable.div_ceil(PAGE);
    let last = (end - 1) / PAGE;
    assert!(last > first_unsynced + 4, "too few unsynced pages: {durable}..{end}");
    // Each page after the last sync lost on its own, the later ones landed.
    let mut kept = Vec::new();
    for page in first_unsynced..last {
        let copy = dir.path().join(format!("lost-{page}"));
        copy_store(&original, &copy);
        replace_pages(&copy, std::iter::once(page), |_| vec![0u8; PAGE as usize]);
        kept.push(check_prefix(&copy, &format!("page {page} lost")));
    }
    // The later the lost page, the more writes survive.
    assert!(kept.windows(2).all(|pair| pair[0] <= pair[1]), "{kept:?}");
    assert!(kept.first() < kept.last(), "{kept:?}");
    // Every other unsynced page lost.
    let copy = dir.path().join("every-other");
    copy_store(&original, &copy);
    replace_pages(&copy, (first_unsynced..=last).step_by(2), |_| vec![0u8; PAGE as usize]);
    check_prefix(&copy, "every other unsynced page lost");
    // Pages holding garbage (a torn write of other data) instead of zeros, or torn
    // at a 512-byte sector.
    let mut random = SplitMix64::new(11);
    for (index, page) in (first_unsynced..last).step_by(3).enumerate() {
        let copy = dir.path().join(format!("garbage-{page}"));
        copy_store(&original, &copy);
        let torn = index % 2 == 1;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(copy.join(SEGMENT)).unwrap();
        let mut bytes = vec![0u8; PAGE as usize];
        file.read_exact_at(&mut bytes, page * PAGE).unwrap();
        let sector = (random.below(8) * 512) as usize;
        for (at, byte) in bytes.iter_mut().enumerate() {
            if !torn || at >= sector {
                *byte = random.next_u64() as u8;
            }
        }
        file.write_all_at(&bytes, page * PAGE).unwrap();
        drop(file);
        check_prefix(&copy, &format!("page {page} garbage (torn: {torn})"));
    }
    // Nothing lost: everything is there.
    let copy = dir.path().join("intact");
    copy_store(&original, &copy);
    assert_eq!(check_prefix(&copy, "intact"), KEYS);
}

#[test]
fn damage_to_durable_pages_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let (durable, _) = build(&original, Durability::Buffered);
    // A page wholly below the durable end, zeroed or with a bit flipped.
    let page = (durable / PAGE).saturating_sub(1).max(1);
    for zero in [true, false] {
        let copy = dir.path().join(format!("durable-{zero}"));
        copy_store(&original, &copy);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(copy.join(SEGMENT)).unwrap();
        let mut bytes = vec![0u8; PAGE as usize];
        file.read_exact_at(&mut bytes, page * PAGE).unwrap();
        if zero {
            bytes.fill(0);
        } else {
            bytes[100] ^= 0x20;
        }
        file.write_all_at(&bytes, page * PAGE).unwrap();
        drop(file);
        match Db::open(&copy) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert!(file.ends_with(SEGMENT) && offset < durable, "{}: {offset}", file.display());
            }
            Ok(db) => panic!("zero: {zero}: opened with {} keys", db.len()),
            Err(other) => panic!("zero: {zero}: {other}"),
        }
    }
}

#[test]
fn sync_writes_are_durable_whatever_the_page_cache_did() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let (_, end) = build(&original, Durability::Sync);
    // Every write returned after its msync: the whole log is durable, marked so by
    // the mark after each sync (the last one's own page may be lost).
    let last_record_page = (end - 1) / PAGE;
    let copy = dir.path().join("intact");
    copy_store(&original, &copy);
    assert_eq!(check_prefix(&copy, "sync, intact"), KEYS);
    let copy = dir.path().join("damaged");
    copy_store(&original, &copy);
    replace_pages(&copy, std::iter::once(last_record_page - 2), |_| vec![0u8; PAGE as usize]);
    assert!(matches!(Db::open(&copy), Err(Error::Corruption { .. })), "a lost page of Sync writes was not reported");
}

/// More than the 4 MiB a torn tail is checked for: a power cut loses the first
/// megabytes after the last sync and later pages land. The log ends at the hole and
/// every byte after it in the file is zeroed, so that no leftover record can ever be
/// read as part of the log once new writes reach it.
#[test]
fn a_long_hole_ends_the_log_and_everything_after_it_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let db = Options::new().segment_size(64 << 20).background_compaction(false).open(&path).unwrap();
    for key in 0..DURABLE_KEYS {
        db.put(key, value(key)).unwrap();
    }
    db.flush().unwrap();
    let durable = 64 + db.stats().log_bytes;
    // About 10 MiB unsynced.
    for key in DURABLE_KEYS..DURABLE_KEYS + 20_000 {
        db.put(key, value(key)).unwrap();
    }
    db.simulate_crash();
    // Lost: 5 MiB starting at a record's start (so recovery meets a zeroed header, not
    // a damaged record), 100 records after the flush (and its durable mark).
    let hole = durable + 100 * 528;
    let file = std::fs::OpenOptions::new().write(true).open(path.join(SEGMENT)).unwrap();
    file.write_all_at(&vec![0u8; 5 << 20], hole).unwrap();
    drop(file);
    let db = Db::open(&path).unwrap();
    assert_eq!(db.len() as i64, DURABLE_KEYS + 100, "the log ends at the hole");
    let mut present = 0;
    for key in 0..DURABLE_KEYS + 20_000 {
        match db.get(key).unwrap() {
            Some(found) => {
                assert_eq!(found, value(key), "key {key}");
                assert_eq!(key, present, "key {key} present after a missing one");
                present += 1;
            }
            None => assert!(key >= DURABLE_KEYS, "durable key {key} lost"),
        }
    }
    assert_eq!(db.len() as i64, present);
    assert!(present < DURABLE_KEYS + 20_000, "writes after the hole survived");
    let recovered_end = 64 + db.stats().log_bytes;
    drop(db);
    let bytes = std::fs::read(path.join(SEGMENT)).unwrap();
    let after = &bytes[recovered_end as usize..];
    // A clean close appended nothing but a durable mark and the checkpoint's files.
    assert!(after.iter().all(|&byte| byte == 0), "leftovers after the recovered end at {recovered_end}");
    check_prefix(&path, "after a long hole");
}
