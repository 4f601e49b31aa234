//! Online backup ([`Db::backup_to`]): a consistent copy of the store, taken while
//! writes and compactions go on.
//!
//! Under the checkpoint lock (so that no compaction is between switching its manifest
//! and its segments) and then the writer's section, for a moment, the backup takes a
//! capture, as a checkpoint does: a snapshot at the last write, the end of every
//! segment, the manifest and the column-family catalog. Then, holding no lock, it
//! builds the copy in a temporary directory beside the target:
//! - every segment but the last log segment is immutable below its end: it is shared
//!   by a hard link where the file system allows (the same file, no bytes copied), and
//!   copied otherwise (a compaction may have deleted it meanwhile: the capture still
//!   has it mapped, and its bytes are copied from the mapping);
//! - the last log segment, which writers go on appending to, is copied from its
//!   mapping up to its end at the capture (the copy's later appends must not reach the
//!   store's file, and the store's must not reach the copy);
//! - the manifest and the catalog as they were at the capture, a checkpoint of the
//!   capture's snapshot (so the copy opens without replaying its log), and the identity
//!   file last;
//! - every file synced, the directory synced, renamed to the target, the parent synced.
//!
//! The copy therefore holds exactly the store's state at the capture: every write
//! acknowledged before `backup_to` was called (and any write that landed before the
//! capture), nothing after, no torn record. A failure removes the temporary
//! directory; until the final rename nothing at the target opens as a store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::checkpointer::Capture;
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

impl Db {
    /// Writes a consistent copy of the store to `target`, a directory that must not
    /// exist yet (its parent must), while other threads go on reading and writing. The
    /// copy opens as a store holding exactly the state at one point of the write
    /// order: every write acknowledged before this call, nothing torn. Writers wait
    /// only for an in-memory step; a running compaction is waited for before it
    /// starts. Segment files that no longer change are shared by hard links where the
    /// file system allows. On failure no store is left at `target`.
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
        if std::fs::symlink_metadata(target).is_ok() {
            return Err(Error::InvalidArgument(format!("the backup target {} already exists", target.display())));
        }
        let name = target
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| Error::InvalidArgument(format!("{} names no directory", target.display())))?;
        let parent = target.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "the backup target's parent {} is not a directory",
                parent.display()
            )));
        }
        static ATTEMPT: AtomicU64 = AtomicU64::new(0);
        let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let temporary = parent.join(format!(".{name}.backup-{}-{attempt}", std::process::id()));
        io::create_directory(&temporary)?;
        let stats = match self.write_backup(&temporary) {
            Ok(stats) => stats,
            Err(error) => return Err(discard(&temporary, error)),
        };
        if let Err(error) = io::rename(&temporary, target) {
            return Err(discard(&temporary, error.into()));
        }
        // Renamed, but not durably until the parent is synced: a failure now removes
        // the copy from the target.
        if let Err(error) = io::sync_directory(parent) {
            return Err(discard(target, error.into()));
        }
        Ok(stats)
    }

    /// Builds the copy in `dir` (see the module docs).
    fn write_backup(&self, dir: &Path) -> Result<BackupStats> {
        let (capture, manifest, catalog) = {
            // A compaction holds the checkpoint lock from its first step to its last:
            // with it held, the manifest and the segment table agree.
            let _no_compaction = self.store.checkpointer.lock();
            let writer = self.engine.writer.lock();
            writer.check_usable()?;
            (Capture::take(&self.engine, &writer), writer.log.manifest().clone(), writer.catalog.clone())
        };
        let point = capture.point();
        let mut stats = BackupStats { sequence: point.sequence, ..BackupStats::default() };
        let last_log = capture.segments().iter().filter(|segment| !segment.is_compacted()).map(|s| s.id()).max();
        for segment in capture.segments() {
            let end = point.segments.iter().find(|(id, _)| *id == segment.id()).map_or(0, |(_, end)| *end);
            let to = dir.join(file_name(segment)?);
            let immutable = Some(segment.id()) != last_log;
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
        if !catalog.families.is_empty() {
            catalog::write(dir, &catalog)?;
        }
        capture.write_to(dir, &self.engine, &AtomicBool::new(false))?;
        write_identity(dir)?;
        io::sync_directory(dir)?;
        Ok(stats)
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
