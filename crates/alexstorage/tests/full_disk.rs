//! A full disk: writes fail with an I/O error and write nothing, the store stays
//! consistent, and writes succeed again once space is freed. Uses a 4 MiB tmpfs, which
//! needs root (CI runs as root); elsewhere the test says so and does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use alexstorage::{Db, Error, Options};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<(tempfile::TempDir, Tmpfs)> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| {
            let mounted = Tmpfs(dir.path().to_path_buf());
            (dir, mounted)
        })
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_recovers_when_space_is_freed() {
    let Some((_dir, tmpfs)) = Tmpfs::mount("4M") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root; the full-disk test did not run");
        return;
    };
    let store = tmpfs.path().join("store");
    let filler = tmpfs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 1 << 20]).unwrap();
    let db = Options::new().segment_size(256 << 10).open(&store).unwrap();
    let value = vec![7u8; 1000];
    let mut written = 0i64;
    let error = loop {
        match db.put(written, &value) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 100_000, "the disk never filled");
    };
    match &error {
        Error::Io(io) => assert_eq!(io.raw_os_error(), Some(28), "expected ENOSPC, got {io}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // Nothing half-written: every acknowledged put is there, the failed one is not.
    assert_eq!(db.len(), written as usize);
    assert_eq!(db.get(written).unwrap(), None);
    for key in 0..written {
        assert_eq!(db.get(key).unwrap().unwrap(), value);
    }
    db.verify().unwrap();
    // Still full: still a clean error.
    assert!(matches!(db.put(written, &value), Err(Error::Io(_))));
    std::fs::remove_file(&filler).unwrap();
    db.put(written, &value).unwrap();
    drop(db);
    let db = Db::open(&store).unwrap();
    assert_eq!(db.len(), written as usize + 1);
    assert_eq!(db.get(written).unwrap().unwrap(), value);
    db.verify().unwrap();
}

#[test]
fn an_unwritable_path_is_a_clean_error() {
    let Some((_dir, tmpfs)) = Tmpfs::mount("1M") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root; the unwritable-path test did not run");
        return;
    };
    let status = Command::new("mount").args(["-o", "remount,ro"]).arg(tmpfs.path()).status().unwrap();
    assert!(status.success());
    match Db::open(tmpfs.path().join("store")) {
        Err(Error::Io(error)) => assert_eq!(error.raw_os_error(), Some(30), "expected EROFS, got {error}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    match Db::open(tmpfs.path()) {
        Err(Error::Io(error)) => assert_eq!(error.raw_os_error(), Some(30), "expected EROFS, got {error}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}
