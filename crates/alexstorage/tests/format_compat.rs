//! Stores written in an older format (docs/FORMAT.md) still open, and newer ones are
//! refused. A store made by this build is rewritten, byte by byte with the tests' own
//! CRC-32C, into what an older build left: identity file version 3, checkpoint
//! version 2 (no family sections), manifest version 1 (zeros where version 2 names
//! families). The data must all be there, the old checkpoint used, and a writable open
//! (only) raises the identity file to the current version (6). A version-1 manifest
//! with nonzero family bytes is corruption of the manifest; an identity file of a
//! newer version is refused as unsupported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use alexstorage::testing::disk::watch;
use alexstorage::testing::faults::{arm, disarm_in, Fault, Plan};
use alexstorage::{Db, Error, Options};

/// The format version this build writes.
const CURRENT: u32 = 6;
const IDENTITY: &str = "ALEXSTORAGE";
const CHECKPOINT: &str = "CHECKPOINT";
const MANIFEST: &str = "MANIFEST";
const CHECKPOINT_HEADER: usize = 64;
const SEGMENT_TABLE_ENTRY: usize = 12;
const SECTION_HEADER: usize = 32;
const MANIFEST_HEADER: usize = 40;
const MANIFEST_ENTRY: usize = 40;

fn value(key: i64, round: u64) -> Vec<u8> {
    format!("key {key} round {round} ").repeat(1 + (key.unsigned_abs() % 7) as usize).into_bytes()
}

fn options() -> Options {
    Options::new().background_compaction(false)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Replaces the trailing CRC-32C with the one of the bytes before it.
fn fix_crc(bytes: &mut [u8]) {
    let body_len = bytes.len() - 4;
    let crc = common::crc32c(&bytes[..body_len]);
    bytes[body_len..].copy_from_slice(&crc.to_le_bytes());
}

fn identity_version(dir: &Path) -> u32 {
    u32_at(&std::fs::read(dir.join(IDENTITY)).unwrap(), 8)
}

/// Rewrites the identity file with format version `version` (CRC over bytes 0..28).
fn set_identity_version(dir: &Path, version: u32) {
    let mut bytes = std::fs::read(dir.join(IDENTITY)).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(&bytes[..8], b"ALEXSTOR");
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = common::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join(IDENTITY), bytes).unwrap();
}

/// Skips one LEB128 varint at `*at`.
fn skip_varint(bytes: &[u8], at: &mut usize) {
    while bytes[*at] & 0x80 != 0 {
        *at += 1;
    }
    *at += 1;
}

/// Rewrites the store's version-3 checkpoint (of the default family alone) as the
/// version-2 checkpoint an older build wrote of the same state: the same header with
/// the entry count at bytes 32..40 instead of the family count, the same segment
/// table, and the default family's entries (encoded alike) with no section header.
fn downgrade_checkpoint(dir: &Path) {
    let bytes = std::fs::read(dir.join(CHECKPOINT)).unwrap();
    let body = &bytes[..bytes.len() - 4];
    assert_eq!(common::crc32c(body), u32_at(&bytes, body.len()), "the checkpoint's CRC");
    assert_eq!(&body[..8], b"ALEXCKPT");
    assert_eq!(u32_at(body, 8), 3, "this build writes version-3 checkpoints");
    assert_eq!(u64_at(body, 32), 1, "a store of the default family alone has one section");
    let table_end = CHECKPOINT_HEADER + u64_at(body, 24) as usize * SEGMENT_TABLE_ENTRY;
    let section = &body[table_end..table_end + SECTION_HEADER];
    assert_eq!(u16::from_le_bytes([section[0], section[1]]), 0, "the default family's section comes first");
    assert_eq!(u64_at(section, 8), 0, "the default family's incarnation");
    assert_eq!(u64_at(section, 16), u64_at(body, 48), "one family: its live bytes are the header's");
    let entry_count = u64_at(section, 24);
    let entries_start = table_end + SECTION_HEADER;
    let mut at = entries_start;
    for _ in 0..entry_count * 2 {
        skip_varint(body, &mut at);
    }
    assert_eq!(at, body.len(), "the section's entries end the checkpoint");
    let mut old = body[..table_end].to_vec();
    old[8..12].copy_from_slice(&2u32.to_le_bytes());
    old[32..40].copy_from_slice(&entry_count.to_le_bytes());
    old.extend_from_slice(&body[entries_start..]);
    let crc = common::crc32c(&old);
    old.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join(CHECKPOINT), old).unwrap();
}

/// Rewrites the store's manifest as version 1, which it must be able to be: every
/// entry's families (bytes 4..8) zero. Returns how many entries it lists.
fn downgrade_manifest(dir: &Path) -> usize {
    let mut bytes = std::fs::read(dir.join(MANIFEST)).unwrap();
    assert_eq!(&bytes[..8], b"ALEXMANF");
    assert_eq!(u32_at(&bytes, 8), 2, "this build writes version-2 manifests");
    let count = u32_at(&bytes, 36) as usize;
    assert_eq!(bytes.len(), MANIFEST_HEADER + count * MANIFEST_ENTRY + 4);
    for entry in 0..count {
        let at = MANIFEST_HEADER + entry * MANIFEST_ENTRY;
        assert_eq!(u32_at(&bytes, at + 4), 0, "entry {entry} names a family other than the default");
    }
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    fix_crc(&mut bytes);
    std::fs::write(dir.join(MANIFEST), bytes).unwrap();
    count
}

/// Writes keys, overwrites and deletes some; returns what the store holds.
fn fill(db: &Db, round: u64) -> BTreeMap<i64, Vec<u8>> {
    let mut model = BTreeMap::new();
    for key in -300..700 {
        let key = key * 13;
        db.put(key, value(key, round)).unwrap();
        model.insert(key, value(key, round));
    }
    for key in (0..400).step_by(3) {
        let key = key * 13;
        db.put(key, value(key, round + 1)).unwrap();
        model.insert(key, value(key, round + 1));
    }
    for key in (-300..0).step_by(5) {
        let key = key * 13;
        db.delete(key).unwrap();
        model.remove(&key);
    }
    model
}

fn check_contents(db: &Db, model: &BTreeMap<i64, Vec<u8>>, context: &str) {
    assert_eq!(db.len(), model.len(), "{context}");
    for (key, expected) in model {
        let found = db.get(*key).unwrap();
        assert_eq!(found.as_deref(), Some(&expected[..]), "{context}: key {key}");
    }
    let listed: Vec<(i64, Vec<u8>)> =
        db.iter().map(|item| item.map(|(key, value)| (key, value.to_vec()))).collect::<Result<_, _>>().unwrap();
    let expected: Vec<(i64, Vec<u8>)> = model.iter().map(|(key, value)| (*key, value.clone())).collect();
    assert!(listed == expected, "{context}: the iteration differs from the model");
    db.verify().unwrap_or_else(|error| panic!("{context}: verify: {error}"));
}

fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A version-3 store (identity version 3, a version-2 checkpoint) opens from its
/// checkpoint with all its data; a read-only open leaves its identity file alone and a
/// writable one raises it to the current version.
#[test]
fn a_version_3_store_with_a_version_2_checkpoint_opens_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = options().open(path).unwrap();
    let model = fill(&db, 0);
    drop(db);
    assert_eq!(identity_version(path), CURRENT);
    downgrade_checkpoint(path);
    set_identity_version(path, 3);
    let identity = std::fs::read(path.join(IDENTITY)).unwrap();
    let checkpoint = std::fs::read(path.join(CHECKPOINT)).unwrap();

    // Read-only: opens from the old checkpoint and writes nothing.
    let db = options().read_only(true).open(path).unwrap();
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "read-only: the version-2 checkpoint was not used");
    assert_eq!(stats.replayed_keys, 0, "read-only: the checkpoint covers the whole log");
    check_contents(&db, &model, "read-only");
    assert!(matches!(db.put(1, b"no"), Err(Error::ReadOnly)));
    drop(db);
    assert_eq!(std::fs::read(path.join(IDENTITY)).unwrap(), identity, "a read-only open changed the identity file");
    assert_eq!(std::fs::read(path.join(CHECKPOINT)).unwrap(), checkpoint, "a read-only open changed the checkpoint");
    assert_eq!(identity_version(path), 3);

    // Writable: opens from the old checkpoint, raises the identity file at once.
    let db = options().open(path).unwrap();
    assert_eq!(identity_version(path), CURRENT, "a writable open of a version-3 store left its identity file");
    let stats = db.stats();
    assert!(stats.opened_from_checkpoint, "the version-2 checkpoint was not used");
    assert_eq!(stats.replayed_keys, 0, "the checkpoint covers the whole log");
    check_contents(&db, &model, "writable");
    // The store goes on working, named families included.
    let mut model = model;
    db.put(5, b"after the upgrade").unwrap();
    model.insert(5, b"after the upgrade".to_vec());
    let family = db.column_family("new").unwrap();
    family.put(5, b"a named family's key").unwrap();
    drop(family);
    drop(db);
    assert_eq!(identity_version(path), CURRENT);
    // Its checkpoint is now version 3, and used.
    assert_eq!(u32_at(&std::fs::read(path.join(CHECKPOINT)).unwrap(), 8), 3);
    let db = options().open(path).unwrap();
    assert!(db.stats().opened_from_checkpoint);
    check_contents(&db, &model, "after the upgrade");
    assert_eq!(db.column_family("new").unwrap().get(5).unwrap().as_deref(), Some(&b"a named family's key"[..]));
}

/// Every file of the store but the lock file and temporaries, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| (entry.file_name().into_string().unwrap(), entry.path()))
        .filter(|(name, _)| name != "LOCK" && !name.ends_with(".tmp"))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect()
}

/// While the identity file still says version 3, the store holds nothing a version-3
/// build could not read: the same files (no catalog), the same checkpoint. Recovery
/// itself may have written to the last log segment (a durable mark, which version 3
/// knows), since the identity file is raised only once recovery has succeeded.
fn assert_still_version_3(dir: &Path, before: &BTreeMap<String, Vec<u8>>, context: &str) {
    let now = files(dir);
    assert!(now.keys().eq(before.keys()), "{context}: files {:?}, before {:?}", now.keys(), before.keys());
    assert!(now.get(CHECKPOINT) == before.get(CHECKPOINT), "{context}: the checkpoint changed");
}

/// A fault on each I/O operation of a writable open of a version-3 store in turn,
/// then a power cut losing everything unsynced. An open that succeeded raised the
/// identity file durably; one that failed left a store with version 3 only as a
/// version-3 build could read it; the store then opens with its data.
#[test]
fn the_identity_file_is_raised_durably_by_an_open_that_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let db = options().open(&original).unwrap();
    let model = fill(&db, 0);
    drop(db);
    downgrade_checkpoint(&original);
    set_identity_version(&original, 3);
    let before = files(&original);
    let (mut fail_at, mut failed_opens_at_version_3) = (0, 0);
    loop {
        let copy = dir.path().join(format!("fault-{fail_at}"));
        copy_store(&original, &copy);
        let disk = watch(&copy).unwrap();
        arm(Plan::at(fail_at, Fault::Io).in_dir(&copy));
        let opened = options().open(&copy);
        let (_, failed) = disarm_in(Some(&copy));
        let context = format!("fault at operation {fail_at} ({failed:?})");
        let succeeded = match opened {
            Ok(db) => {
                db.simulate_crash();
                true
            }
            Err(_) => false,
        };
        if identity_version(&copy) == 3 {
            assert!(!succeeded, "{context}: opened without raising the identity file");
            assert_still_version_3(&copy, &before, &context);
            failed_opens_at_version_3 += 1;
        }
        disk.cut(&mut std::iter::once(0).chain(std::iter::repeat(1))).unwrap();
        match identity_version(&copy) {
            3 => assert_still_version_3(&copy, &before, &format!("{context}, after a power cut")),
            CURRENT => {}
            other => panic!("{context}: identity version {other}"),
        }
        if succeeded {
            assert_eq!(identity_version(&copy), CURRENT, "{context}: the raised identity file was lost in a power cut");
        }
        drop(disk);
        // Whatever happened, the store opens with its data.
        let db = options().open(&copy).unwrap_or_else(|error| panic!("{context}: reopen: {error}"));
        check_contents(&db, &model, &context);
        drop(db);
        assert_eq!(identity_version(&copy), CURRENT, "{context}");
        if failed.is_none() {
            assert!(succeeded, "{context}: failed with no fault");
            break;
        }
        fail_at += 1;
    }
    assert!(fail_at >= 4 && failed_opens_at_version_3 >= 1, "{fail_at} operations, {failed_opens_at_version_3}");
}

/// Without any checkpoint, the same version-3 store replays its log whole.
#[test]
fn a_version_3_store_without_a_checkpoint_replays_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = options().open(path).unwrap();
    let model = fill(&db, 0);
    drop(db);
    std::fs::remove_file(path.join(CHECKPOINT)).unwrap();
    set_identity_version(path, 3);
    let db = options().read_only(true).open(path).unwrap();
    assert!(!db.stats().opened_from_checkpoint);
    check_contents(&db, &model, "read-only, no checkpoint");
    drop(db);
    assert_eq!(identity_version(path), 3);
    let db = options().open(path).unwrap();
    assert_eq!(identity_version(path), CURRENT);
    check_contents(&db, &model, "writable, no checkpoint");
}

/// A compacted version-3 store: its manifest rewritten as version 1 (families zero)
/// and its checkpoint as version 2; then with no checkpoint (the compacted segments
/// replayed against the version-1 manifest).
#[test]
fn a_version_1_manifest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let db = options().segment_size(64 << 10).open(&original).unwrap();
    let mut model = fill(&db, 0);
    let compaction = db.compact().unwrap();
    assert!(compaction.segments_written >= 1, "{compaction:?}");
    // Some writes after the compaction, in the log.
    for key in 0..50 {
        db.put(key * 7, value(key, 9)).unwrap();
        model.insert(key * 7, value(key, 9));
    }
    drop(db);
    let entries = downgrade_manifest(&original);
    assert!(entries >= 1);
    set_identity_version(&original, 3);

    for with_checkpoint in [true, false] {
        let copy = dir.path().join(format!("checkpoint-{with_checkpoint}"));
        copy_store(&original, &copy);
        if with_checkpoint {
            downgrade_checkpoint(&copy);
        } else {
            std::fs::remove_file(copy.join(CHECKPOINT)).unwrap();
        }
        let context = format!("version-1 manifest of {entries} entries, checkpoint: {with_checkpoint}");
        let db = options().read_only(true).open(&copy).unwrap();
        assert_eq!(db.stats().opened_from_checkpoint, with_checkpoint, "{context}");
        check_contents(&db, &model, &format!("{context}, read-only"));
        drop(db);
        assert_eq!(identity_version(&copy), 3, "{context}");
        let db = options().open(&copy).unwrap();
        assert_eq!(db.stats().opened_from_checkpoint, with_checkpoint, "{context}");
        check_contents(&db, &model, &context);
        // Compacting again rewrites the manifest as version 2, which is read too.
        db.put(-1, b"more").unwrap();
        let mut model = model.clone();
        model.insert(-1, b"more".to_vec());
        db.compact().unwrap();
        drop(db);
        assert_eq!(u32_at(&std::fs::read(copy.join(MANIFEST)).unwrap(), 8), 2, "{context}");
        let db = options().open(&copy).unwrap();
        check_contents(&db, &model, &format!("{context}, compacted again"));
    }
}

/// A version-1 manifest whose entry has nonzero bytes where version 2 has the
/// families (its CRC fixed up) is corruption of the manifest, for either kind of open.
#[test]
fn a_version_1_manifest_with_nonzero_family_bytes_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let db = options().open(&original).unwrap();
    fill(&db, 0);
    db.compact().unwrap();
    drop(db);
    downgrade_manifest(&original);
    set_identity_version(&original, 3);
    // (first family, last family): one that ascends (only the version tells), and one
    // with the first above the last (out of order as well).
    for (first, last) in [(0u16, 1u16), (1, 1), (2, 0), (0, 0x100)] {
        for read_only in [true, false] {
            let copy = dir.path().join(format!("families-{first}-{last}-{read_only}"));
            copy_store(&original, &copy);
            let mut bytes = std::fs::read(copy.join(MANIFEST)).unwrap();
            bytes[MANIFEST_HEADER + 4..MANIFEST_HEADER + 6].copy_from_slice(&first.to_le_bytes());
            bytes[MANIFEST_HEADER + 6..MANIFEST_HEADER + 8].copy_from_slice(&last.to_le_bytes());
            fix_crc(&mut bytes);
            std::fs::write(copy.join(MANIFEST), &bytes).unwrap();
            let context = format!("families {first}..{last}, read-only: {read_only}");
            match options().read_only(read_only).open(&copy) {
                Err(Error::Corruption { file, offset, reason }) => {
                    assert!(file.ends_with(MANIFEST), "{context}: {} {offset} {reason}", file.display());
                    let expected = if first > last { MANIFEST_HEADER } else { MANIFEST_HEADER + 4 };
                    assert_eq!(offset, expected as u64, "{context}: {reason}");
                }
                Ok(db) => panic!("{context}: opened with {} keys", db.len()),
                Err(other) => panic!("{context}: {other}"),
            }
            // Nothing changed: the identity file is raised only once recovery has
            // succeeded, so an older build still opens (and reports) the store.
            assert_eq!(std::fs::read(copy.join(MANIFEST)).unwrap(), bytes, "{context}");
            assert_eq!(identity_version(&copy), 3, "{context}");
        }
    }
}

/// An identity file of a newer format version is refused as unsupported, by a
/// writable and a read-only open, and left as it was.
#[test]
fn a_newer_identity_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = options().open(path).unwrap();
    db.put(1, b"one").unwrap();
    drop(db);
    for version in [CURRENT + 1, CURRENT + 2, u32::MAX] {
        set_identity_version(path, version);
        let identity = std::fs::read(path.join(IDENTITY)).unwrap();
        for read_only in [false, true] {
            match options().read_only(read_only).open(path) {
                Err(Error::UnsupportedVersion { file, found, supported }) => {
                    assert!(file.ends_with(IDENTITY), "{}", file.display());
                    assert_eq!((found, supported), (version, CURRENT));
                }
                Ok(_) => panic!("version {version} (read-only: {read_only}): opened"),
                Err(other) => panic!("version {version} (read-only: {read_only}): {other}"),
            }
            assert_eq!(std::fs::read(path.join(IDENTITY)).unwrap(), identity);
        }
    }
    // Version 0 is not a version: corruption of the identity file, at offset 0.
    set_identity_version(path, 0);
    match options().open(path) {
        Err(Error::Corruption { file, offset, .. }) => assert!(file.ends_with(IDENTITY) && offset == 0),
        other => panic!("version 0: {other:?}"),
    }
    // Back to the current version (or an older one), the store opens with its data.
    for version in [CURRENT, 4, 1] {
        set_identity_version(path, version);
        let db = options().open(path).unwrap();
        assert_eq!(db.get(1).unwrap().as_deref(), Some(&b"one"[..]));
        drop(db);
        assert_eq!(identity_version(path), CURRENT);
    }
}
