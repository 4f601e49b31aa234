//! Writes missing from the log: a segment gone from the middle of the log, emptied,
//! cut to nothing or with a zeroed start, and the first segment gone. Each rises
//! sequence numbers by more than one somewhere, or leaves a checkpoint naming a
//! segment that is not there: `open` (writable and read-only) reports
//! `Error::Corruption` instead of serving the store without those writes, and the
//! damaged files are left as they were found.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use alexstorage::{Db, Error, Options};
use common::segment_files;

/// A store of several log segments (no compaction); returns the segment files,
/// oldest first.
fn build(dir: &Path, clean_close: bool) -> Vec<PathBuf> {
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir).unwrap();
    for key in 0..2_000i64 {
        db.put(key, [key as u8; 100]).unwrap();
    }
    assert!(db.stats().segments >= 4, "{:?}", db.stats());
    if clean_close {
        drop(db);
    } else {
        db.simulate_crash();
    }
    segment_files(dir)
}

/// Both kinds of open report corruption, or (when a checkpoint covered the damaged
/// records, which open then does not read again) open and every read of a lost key
/// and `verify()` do: no key is silently absent. The files are untouched by the
/// attempt.
fn expect_corruption(dir: &Path, context: &str) {
    expect_corruption_at(dir, context, false);
}

/// [`expect_corruption`]; with `at_open`, only an open that fails will do.
fn expect_corruption_at(dir: &Path, context: &str, at_open: bool) {
    let before = segment_files(dir);
    for read_only in [true, false] {
        match Options::new().read_only(read_only).open(dir) {
            Err(Error::Corruption { file, offset, reason }) => {
                assert!(!reason.is_empty(), "{context}: {} at {offset}", file.display());
            }
            Ok(db) if at_open => panic!("{context} (read-only: {read_only}): opened with {} keys", db.len()),
            Ok(db) => {
                let context = format!("{context} (read-only: {read_only}, opened)");
                assert!(matches!(db.verify(), Err(Error::Corruption { .. })), "{context}: verify passed");
                let mut reported = 0;
                for key in 0..2_000i64 {
                    match db.get(key) {
                        Ok(Some(value)) => assert_eq!(value, [key as u8; 100], "{context}: key {key}"),
                        Ok(None) => panic!("{context}: key {key} silently absent"),
                        Err(Error::Corruption { .. }) => reported += 1,
                        Err(other) => panic!("{context}: key {key}: {other}"),
                    }
                }
                assert!(reported > 0, "{context}: no read met the damage");
            }
            Err(other) => panic!("{context} (read-only: {read_only}): {other}"),
        }
    }
    assert_eq!(segment_files(dir), before, "{context}: the failed open deleted files");
}

#[test]
fn missing_emptied_or_blanked_segments_are_corruption() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("a middle segment deleted", |file| std::fs::remove_file(file).unwrap()),
        ("a middle segment cut to zero bytes", |file| std::fs::File::create(file).map(drop).unwrap()),
        ("a middle segment's first 4 KiB zeroed", |file| {
            use std::os::unix::fs::FileExt;
            std::fs::OpenOptions::new().write(true).open(file).unwrap().write_all_at(&[0u8; 4096], 0).unwrap();
        }),
        ("a middle segment's records zeroed, its header kept", |file| {
            use std::os::unix::fs::FileExt;
            let length = std::fs::metadata(file).unwrap().len();
            let zeros = vec![0u8; (length - 64) as usize];
            std::fs::OpenOptions::new().write(true).open(file).unwrap().write_all_at(&zeros, 64).unwrap();
        }),
    ];
    for (case, (what, damage)) in cases.into_iter().enumerate() {
        for clean_close in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let files = build(dir.path(), clean_close);
            damage(&files[1]);
            // Only a segment that is still there with its header may open, when a
            // checkpoint covers it (one written at a roll-over or the clean close: its
            // records are not read again); its damage is then reported by the reads
            // and `verify`.
            let at_open = case < 3;
            expect_corruption_at(dir.path(), &format!("{what}, clean close: {clean_close}"), at_open);
        }
    }
}

#[test]
fn a_missing_first_segment_is_corruption() {
    for clean_close in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let files = build(dir.path(), clean_close);
        std::fs::remove_file(&files[0]).unwrap();
        expect_corruption(dir.path(), &format!("first segment deleted, clean close: {clean_close}"));
    }
}

#[test]
fn a_missing_newest_segment_named_by_the_checkpoint_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let files = build(dir.path(), true);
    std::fs::remove_file(files.last().unwrap()).unwrap();
    expect_corruption(dir.path(), "newest segment deleted after a clean close");
}

/// The rule does not fire on stores that are whole: after compactions, crashes and
/// reopens the sequence numbers still follow on.
#[test]
fn whole_stores_still_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), false);
    let db = Options::new().segment_size(64 << 10).background_compaction(false).open(dir.path()).unwrap();
    for key in 0..1_000i64 {
        db.put(key, [1u8; 100]).unwrap();
    }
    db.compact().unwrap();
    for key in 0..500i64 {
        db.put(key, [2u8; 100]).unwrap();
    }
    db.simulate_crash();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.len(), 2_000);
    db.verify().unwrap();
    assert_eq!(db.get(0).unwrap().unwrap(), [2u8; 100]);
    assert_eq!(db.get(700).unwrap().unwrap(), [1u8; 100]);
    assert_eq!(db.get(1_500).unwrap().unwrap(), [(1_500i64 as u8); 100]);
}
