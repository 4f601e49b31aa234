//! Torn tails: the last record (or batch) cut at every byte offset, or overwritten with
//! garbage; recovery keeps everything before it, drops it whole, and the store keeps
//! working (the torn bytes are cleared, so later writes and reopens are clean).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use alexstorage::testing::format::{RecordHeader, RecordKind};
use alexstorage::{Db, Error, Options, WriteBatch};
use alexstorage_keygen::SplitMix64;

const SEGMENT: &str = "00000001.seg";

/// Writes 20 records, then `last` (a put or a batch); returns the byte range of `last`.
fn build(path: &Path, last_is_batch: bool) -> (u64, u64) {
    let db = Options::new().segment_size(1 << 16).open(path).unwrap();
    for key in 0..20 {
        db.put(key, vec![key as u8; key as usize]).unwrap();
    }
    let start = 64 + db.stats().log_bytes;
    if last_is_batch {
        let mut batch = WriteBatch::new();
        batch.put(100, b"batch-a").delete(3).put(101, b"batch-b");
        db.write(batch).unwrap();
    } else {
        db.put(100, b"the last record").unwrap();
    }
    let end = 64 + db.stats().log_bytes;
    // A crash, not a clean close: a clean close checkpoints the index, after which the
    // checkpointed records are durable and a damaged one is corruption (reported by
    // reads and verify), not a torn tail.
    db.simulate_crash();
    (start, end)
}

/// Reopens and checks the store; returns the torn-tail bytes the first open discarded.
fn check_recovered(path: &Path, last_applied: bool, context: &str) -> u64 {
    let db = Db::open(path).unwrap_or_else(|error| panic!("{context}: open failed: {error}"));
    for key in 0..20 {
        let expected = if key == 3 && last_applied { None } else { Some(vec![key as u8; key as usize]) };
        let got = db.get(key).unwrap().map(|value| value.to_vec());
        if key != 3 {
            assert_eq!(got, expected, "{context}: key {key}");
        }
    }
    assert_eq!(db.get(100).unwrap().is_some(), last_applied, "{context}");
    let torn_tail_bytes = db.stats().torn_tail_bytes;
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
    // The store keeps working where the torn record was.
    db.put(200, b"after recovery").unwrap();
    drop(db);
    let db = Db::open(path).unwrap();
    assert_eq!(db.get(200).unwrap().unwrap(), b"after recovery", "{context}");
    db.verify().unwrap();
    assert_eq!(db.stats().torn_tail_bytes, 0, "{context}: the torn tail was not cleared");
    torn_tail_bytes
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            continue; // a file being written; the store ignores it
        }
        std::fs::copy(entry.path(), to.join(entry.file_name()))
            .unwrap_or_else(|error| panic!("copy {} -> {}: {error}", entry.path().display(), to.display()));
    }
}

#[test]
fn last_record_cut_at_every_offset() {
    for last_is_batch in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("original");
        let (start, end) = build(&original, last_is_batch);
        for cut in start..=end {
            let copy = dir.path().join(format!("cut-{cut}"));
            copy_store(&original, &copy);
            let file = std::fs::OpenOptions::new().write(true).open(copy.join(SEGMENT)).unwrap();
            let zeros = vec![0u8; (end - cut) as usize];
            file.write_all_at(&zeros, cut).unwrap();
            drop(file);
            let torn = check_recovered(&copy, cut == end, &format!("batch={last_is_batch} zeroed from {cut}"));
            // Something of the record was left (and so discarded) unless it was zeroed whole.
            assert_eq!(torn > 0, cut > start && cut < end, "zeroed from {cut}: {torn} torn bytes");
            std::fs::remove_dir_all(&copy).unwrap();
        }
        // The file itself cut short.
        for cut in [start, start + 1, start + 27, start + 28, end - 1] {
            let copy = dir.path().join(format!("truncated-{cut}"));
            copy_store(&original, &copy);
            std::fs::OpenOptions::new().write(true).open(copy.join(SEGMENT)).unwrap().set_len(cut).unwrap();
            check_recovered(&copy, false, &format!("batch={last_is_batch} file cut at {cut}"));
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
}

#[test]
fn last_record_overwritten_with_garbage() {
    let mut random = SplitMix64::new(17);
    for last_is_batch in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("original");
        let (start, end) = build(&original, last_is_batch);
        for round in 0..50 {
            let copy = dir.path().join(format!("garbage-{round}"));
            copy_store(&original, &copy);
            let from = start + random.below(end - start);
            let garbage: Vec<u8> = (from..end).map(|_| random.next_u64() as u8).collect();
            let file = std::fs::OpenOptions::new().read(true).write(true).open(copy.join(SEGMENT)).unwrap();
            let mut original = vec![0u8; garbage.len()];
            file.read_exact_at(&mut original, from).unwrap();
            file.write_all_at(&garbage, from).unwrap();
            drop(file);
            let context = format!("batch={last_is_batch} garbage from {from}");
            // Random bytes equal to the originals leave the record intact (and so
            // applied); any other garbage tears it.
            check_recovered(&copy, garbage == original, &context);
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
}

/// Rewrites the segment's header as format version 2 (no durable marks), so that
/// recovery applies version 2's rule for a bad record: a valid later record makes it
/// corruption, and a record that fails its checksum owns the bytes it claims.
fn as_version_2(path: &Path) {
    use alexstorage::testing::format::SegmentHeader;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path.join(SEGMENT)).unwrap();
    let mut bytes = [0u8; 64];
    file.read_exact_at(&mut bytes, 0).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    file.write_all_at(&SegmentHeader { version: 2, ..header }.encode(), 0).unwrap();
}

/// Makes the store's records durable (a reopen recovers and syncs them, and marks
/// them durable), then crashes again: damage to them is rot, never a torn write.
fn make_durable(path: &Path) {
    let db = Db::open(path).unwrap();
    db.flush().unwrap();
    db.simulate_crash();
}

#[test]
fn a_bad_record_before_good_ones_is_corruption_not_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (start, _) = build(&path, false);
    // Durable records: a power cut cannot have damaged them (before format version 3
    // this held for any record with valid ones after it; now bytes that never
    // reached the disk may end the log instead: tests/power_loss.rs).
    make_durable(&path);
    // Zero the header of record 19 (the one before the last): valid records follow.
    let record_19 = start - (28 + 19);
    let file = std::fs::OpenOptions::new().write(true).open(path.join(SEGMENT)).unwrap();
    file.write_all_at(&[0u8; 28], record_19).unwrap();
    drop(file);
    match Db::open(&path) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, record_19),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_complete_record_out_of_sequence_is_corruption_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (start, end) = build(&path, false);
    // Append a copy of an earlier, valid record after the last one: its checksum
    // matches, so it was fully written and cannot be a torn tail.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path.join(SEGMENT)).unwrap();
    let mut record = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut record, start).unwrap();
    file.write_all_at(&record, end).unwrap();
    drop(file);
    match Db::open(&path) {
        Err(Error::Corruption { offset, reason, .. }) => {
            assert_eq!(offset, end);
            assert!(reason.contains("sequence"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// A `kill -9` while a large value is being copied: the record's header is written
/// (it is copied first), its value only in part, and the part already copied holds the
/// bytes of a valid record with a plausible sequence number (a blob exported from
/// another store). Those bytes lie inside the torn record's own claimed extent: they
/// are its value, not a later write, and the store opens with the torn tail dropped.
#[test]
fn a_torn_value_holding_a_valid_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (_, end) = build(&path, false);
    // Version 2's rule: with version 3 a torn write past every durable mark ends the
    // log whatever follows it.
    as_version_2(&path);
    // The last write had sequence 21: a record of sequence 22 is what a later write
    // would carry.
    let inner_value = b"exported from another store".to_vec();
    let inner = [
        &RecordHeader::new(RecordKind::Put, 0, 999, 22, inner_value.len() as u32).encode(&inner_value)[..],
        &inner_value,
    ]
    .concat();
    let mut value = vec![0xAB; 6000];
    value[100..100 + inner.len()].copy_from_slice(&inner);
    let header = RecordHeader::new(RecordKind::Put, 0, 500, 22, value.len() as u32).encode(&value);
    let file = std::fs::OpenOptions::new().write(true).open(path.join(SEGMENT)).unwrap();
    file.write_all_at(&header, end).unwrap();
    // Copied so far: the first 2,000 bytes of the value, the inner record among them.
    file.write_all_at(&value[..2000], end + 28).unwrap();
    drop(file);
    let torn = check_recovered(&path, true, "torn value holding a record");
    assert!(torn >= 2028, "the torn record was not discarded: {torn} bytes");
    let db = Db::open(&path).unwrap();
    assert_eq!(db.get(500).unwrap(), None);
    assert_eq!(db.get(999).unwrap(), None);
}

/// The torn write is a batch: the part of its body already copied holds, inside a
/// value, a valid record of the next sequence. The batch's claimed extent (header,
/// descriptor and body) covers it, so it is the batch's own bytes.
#[test]
fn a_torn_batch_holding_a_valid_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (_, end) = build(&path, false);
    as_version_2(&path);
    let inner_value = b"exported".to_vec();
    let fake = [
        &RecordHeader::new(RecordKind::Put, 0, 999, 23, inner_value.len() as u32).encode(&inner_value)[..],
        &inner_value,
    ]
    .concat();
    let mut value = vec![0xCD; 6000];
    value[300..300 + fake.len()].copy_from_slice(&fake);
    let put = RecordHeader::new(RecordKind::Put, 0, 500, 22, value.len() as u32).encode(&value);
    let body_len = (put.len() + value.len()) as u64;
    // The batch descriptor: the count of writes, then the body's length (FORMAT.md).
    let mut descriptor = Vec::new();
    descriptor.extend_from_slice(&1u32.to_le_bytes());
    descriptor.extend_from_slice(&body_len.to_le_bytes());
    let batch = RecordHeader::new(RecordKind::Batch, 0, 0, 22, descriptor.len() as u32).encode(&descriptor);
    let written = [&batch[..], &descriptor, &put, &value[..3000]].concat();
    let file = std::fs::OpenOptions::new().write(true).open(path.join(SEGMENT)).unwrap();
    file.write_all_at(&written, end).unwrap();
    drop(file);
    let torn = check_recovered(&path, true, "torn batch holding a record");
    assert!(torn >= written.len() as u64, "the torn batch was not discarded: {torn} bytes");
    let db = Db::open(&path).unwrap();
    assert_eq!(db.get(500).unwrap(), None);
    assert_eq!(db.get(999).unwrap(), None);
}

/// Skipping a bad record's claimed extent still finds what lies past it: a value bit
/// flipped in the record before the last (its length intact) is corruption, because
/// the last record follows, valid, right where the damaged one says it ends.
#[test]
fn a_valid_record_past_the_claimed_extent_is_still_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let (start, end) = build(&path, false);
    as_version_2(&path);
    // Flip a bit in the value of record 19 (the one before the last): its length is
    // intact, and the last record follows it, valid.
    let record_19 = start - (28 + 19);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path.join(SEGMENT)).unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, record_19 + 30).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], record_19 + 30).unwrap();
    drop(file);
    match Db::open(&path) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, record_19),
        other => panic!("expected corruption, got {other:?} (records end at {end})"),
    }
}

#[test]
fn read_only_opens_alongside_a_busy_writer_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().segment_size(1 << 16).open(dir.path()).unwrap();
    db.put(0, b"first").unwrap();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for key in 1..20_000i64 {
                db.put(key, key.to_le_bytes()).unwrap();
            }
        })
    };
    let mut opens = 0;
    while !writer.is_finished() {
        let reader = Options::new().read_only(true).open(dir.path()).unwrap();
        assert_eq!(reader.get(0).unwrap().unwrap(), b"first");
        let seen = reader.len();
        for key in (1..seen as i64).step_by(97) {
            assert_eq!(reader.get(key).unwrap().unwrap(), key.to_le_bytes());
        }
        opens += 1;
    }
    writer.join().unwrap();
    assert!(opens > 0);
}
