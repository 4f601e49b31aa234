//! Online backup ([`Db::backup_to`]): a consistent copy of the store, taken while
//! writes and compactions go on.
//!
//! Under the checkpoint lock (so that no compaction is between switching its manifest
//! and its segments) and then the writer's section, for a moment, the backup takes a
//! capture, as a checkpoint does: a snapshot at the last write, the end of every
//! segment, the manifest and the column-family catalog. Still under the checkpoint
//! lock (no compaction moves a record meanwhile) it writes the copy's checkpoint from
//! the capture's snapshot into a new temporary directory beside the target (none if a
//! family was dropped meanwhile: the copy then replays its log, which is exact). Then,
//! holding no lock, it builds the rest of the copy:
//! - every segment but the last log segment is immutable below its end: it is shared
//!   by a hard link where the file system allows (the same file, no bytes copied), and
//!   copied otherwise (a compaction may have deleted it meanwhile: the capture still
//!   has it mapped, and its bytes are copied from the mapping);
//! - the last log segment, which writers go on appending to, is copied from its
//!   mapping up to its end at the capture (the copy's later appends must not reach the
//!   store's file, and the store's must not reach the copy);
//! - the manifest and the catalog as they were at the capture, and the identity file
//!   last;
//! - every file synced, the directory synced, renamed to the target (never over
//!   anything there), the parent synced.
//!
//! The copy therefore holds exactly the store's state at the capture: every write
//! acknowledged before `backup_to` was called (and any write that landed before the
//! capture), nothing after, no torn record. A failure removes the temporary
//! directory; until the final rename nothing at the target opens as a store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::checkpointer::Capture;
use crate::log::checkpoint::CHECKPOINT_FILE;
use crate::log::io;
use crate::log::segment::Segment;
use crate::log::{catalog, manifest};
use crate::{Error, Result};

use super::open::write_identity;
use super::Db;

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupStats {
    /// The last sequence number the backup holds (the store's state it copied).
    pub sequence: u64,
    /// Segment files shared with the store by a hard link.
    pub segments_linked: u64,
    /// Segment files copied.
    pub segments_copied: u64,
    /// Bytes copied into segment files.
    pub bytes_copied: u64,
}

/// Where a backup stands, for tests that act on the store in between (hidden).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupStage {
    /// The capture is taken and the checkpoint lock held (no compaction can run): the
    /// checkpoint of the capture is written next.
    Captured,
    /// The checkpoint is written and every lock released: the segments are copied next.
    Copying,
}

impl Db {
    /// Writes a consistent copy of the store to `target`, a directory that must not
    /// exist yet (its parent must), while other threads go on reading and writing. The
    /// copy opens as a store holding exactly the state at one point of the write
    /// order: every write acknowledged before this call, nothing torn, every column
    /// family as it was then. Writers wait only for an in-memory step; a running
    /// compaction is waited for before the backup starts, and a compaction waits
    /// while the backup writes its checkpoint. Segment files that no longer change
    /// are shared by hard links where the file system allows. On failure no store is
    /// left at `target`; a crash in the middle leaves a hidden directory beside it
    /// (`.NAME.backup-…`), which may be deleted.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let backups = tempfile::tempdir().unwrap();
    /// let db = alexstorage::Db::open(dir.path()).unwrap();
    /// db.put(1, b"one").unwrap();
    /// let target = backups.path().join("tonight");
    /// db.backup_to(&target).unwrap();
    /// db.put(2, b"two").unwrap();
    /// let copy = alexstorage::Db::open(&target).unwrap();
    /// assert_eq!(copy.get(1).unwrap().unwrap(), b"one");
    /// assert_eq!(copy.get(2).unwrap(), None);
    /// ```
    pub fn backup_to(&self, target: impl AsRef<Path>) -> Result<()> {
        self.backup_with_stats(target.as_ref()).map(|_| ())
    }

    /// [`Db::backup_to`], returning what it did.
    pub fn backup_with_stats(&self, target: &Path) -> Result<BackupStats> {
        self.backup_with_hook(target, |_| {})
    }

    /// [`Db::backup_with_stats`], calling `hook` at each [`BackupStage`] (for tests).
    #[doc(hidden)]
    pub fn backup_with_hook(&self, target: &Path, mut hook: impl FnMut(BackupStage)) -> Result<BackupStats> {
        if std::fs::symlink_metadata(target).is_ok() {
            return Err(Error::InvalidArgument(format!("the backup target {} already exists", target.display())));
        }
        let name = target.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("the backup target {} does not end in a name", target.display()))
        })?;
        let parent = target.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "the backup target's parent {} is not a directory",
                parent.display()
            )));
        }
        let temporary = new_temporary(parent, &name.to_string_lossy())?;
        let stats = match self.write_backup(&temporary, &mut hook) {
            Ok(stats) => stats,
            Err(error) => return Err(discard(&temporary, error)),
        };
        if let Err(error) = io::rename_no_replace(&temporary, target) {
            return Err(discard(&temporary, error.into()));
        }
        // Renamed, but not durably until the parent is synced: a failure now takes the
        // copy away from the target again before removing it.
        if let Err(error) = io::sync_directory(parent) {
            let at = if io::rename(target, &temporary).is_ok() { temporary.as_path() } else { target };
            return Err(discard(at, error.into()));
        }
        Ok(stats)
    }

    /// Builds the copy in `dir` (see the module docs).
    fn write_backup(&self, dir: &Path, hook: &mut impl FnMut(BackupStage)) -> Result<BackupStats> {
        let (capture, manifest, catalog) = {
            // A compaction holds the checkpoint lock from its first step to its last:
            // with it held, the manifest and the segment table agree, and no record
            // moves while the checkpoint below walks the index.
            let no_compaction = self.store.checkpointer.lock();
            let captured = {
                let writer = self.engine.writer.lock();
                writer.check_usable()?;
                (Capture::take(&self.engine, &writer), writer.log.manifest().clone(), writer.catalog.clone())
            };
            hook(BackupStage::Captured);
            // The copy's own checkpoint, so that it opens without a replay. A family
            // dropped since the capture is gone from the index: the checkpoint would
            // give it no keys, while the copy's catalog (the capture's) still lists
            // it. The copy is then left without a checkpoint; its full replay is exact.
            match captured.0.write_to(dir, &self.engine, &AtomicBool::new(false), true) {
                Ok(()) => {}
                Err(Error::ColumnFamilyNotFound(_)) => remove_if_present(&dir.join(format!("{CHECKPOINT_FILE}.tmp")))?,
                Err(error) => return Err(error),
            }
            drop(no_compaction);
            captured
        };
        hook(BackupStage::Copying);
        let point = capture.point();
        let mut stats = BackupStats { sequence: point.sequence, ..BackupStats::default() };
        let last_log = capture.segments().iter().filter(|segment| !segment.is_compacted()).map(|s| s.id()).max();
        if capture.segments().len() != point.segments.len() {
            return Err(Error::InvalidArgument("the capture's segments and their ends disagree".into()));
        }
        for (segment, &(id, end)) in capture.segments().iter().zip(&point.segments) {
            if id != segment.id() {
                return Err(Error::InvalidArgument("the capture's segments and their ends disagree".into()));
            }
            let to = dir.join(file_name(segment)?);
            let immutable = Some(id) != last_log;
            // A link fails across file systems, or once a compaction deleted the file:
            // the capture still has it mapped, and its bytes are copied.
            if immutable && io::hard_link(segment.path(), &to).is_ok() {
                stats.segments_linked += 1;
                continue;
            }
            copy_segment(segment, end, &to)?;
            stats.segments_copied += 1;
            stats.bytes_copied += end;
        }
        if manifest != manifest::Manifest::default() {
            manifest::write(dir, &manifest)?;
        }
        // Written whenever the store has one: an empty catalog still holds the next
        // incarnation, which must never go back.
        if catalog.next_incarnation > 1 || !catalog.families.is_empty() {
            catalog::write(dir, &catalog)?;
        }
        write_identity(dir, self.engine.options.compression)?;
        io::sync_directory(dir)?;
        Ok(stats)
    }
}

/// A new, empty directory in `parent` for the backup of `name` to be built in.
fn new_temporary(parent: &Path, name: &str) -> Result<PathBuf> {
    static ATTEMPT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    for _ in 0..16 {
        let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let temporary = parent.join(format!(".{name}.backup-{}-{nanos}-{attempt}", std::process::id()));
        match io::create_new_directory(&temporary) {
            Ok(()) => return Ok(temporary),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Error::InvalidArgument(format!("no free name for a temporary directory in {}", parent.display())))
}

/// Removes the file at `path` if there is one.
fn remove_if_present(path: &Path) -> Result<()> {
    match io::remove(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// Removes the failed backup's directory `dir`; returns `error`, the failure.
fn discard(dir: &Path, error: Error) -> Error {
    if let Err(removal) = io::remove_tree(dir) {
        tracing::warn!(dir = %dir.display(), "could not remove a failed backup: {removal}");
    }
    error
}

/// The file name of `segment` (the same in the copy).
fn file_name(segment: &Arc<Segment>) -> Result<PathBuf> {
    segment
        .path()
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| Error::InvalidArgument(format!("segment {} has no file name", segment.id())))
}

/// Copies the first `end` bytes of `segment` (header and records, from its mapping)
/// to a new file at `to`, durably.
fn copy_segment(segment: &Segment, end: u64, to: &Path) -> Result<()> {
    let len = usize::try_from(end).map_err(|_| Error::InvalidArgument(format!("segment end {end} too large")))?;
    let bytes = segment.read(0, len).ok_or_else(|| {
        Error::corruption(segment.path(), end, "the backup's end of the segment is past its published bytes")
    })?;
    let file = io::create_new(to)?;
    io::write_all(&file, to, bytes)?;
    io::sync_file(&file, to)?;
    Ok(())
}
