//! The I/O seam: every operation on the store's files that a real disk can fail or a
//! power cut can undo (creating, writing, syncing, allocating, truncating, renaming
//! and removing files, syncing a directory, `msync` of a mapped range, reading a file
//! or listing a directory) goes through a function here, and nowhere else.
//!
//! In normal builds each function is the plain system call. With the
//! `fault-injection` feature (the project's own tests only) two test tools hook in:
//! - [`faults`]: a test arms a fault that makes the `n`-th operation of chosen kinds
//!   fail with `EIO` or `ENOSPC` before it runs;
//! - [`power`]: a simulated disk that records, for a watched directory, what each
//!   operation made durable (file bytes a sync covered, directory entries a directory
//!   sync covered) and can then rewrite the directory into an image a power cut at
//!   that moment could leave.
//!
//! Writes through a mapping are plain memory stores and pass no function here; what
//! makes them durable is [`flush_map`] (`msync`), which does.

use std::fs::{File, OpenOptions, ReadDir};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use memmap2::MmapRaw;

#[cfg(feature = "fault-injection")]
pub mod faults;
#[cfg(feature = "fault-injection")]
pub mod power;

/// What an I/O operation does (the kinds a fault plan counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `fsync`, `fdatasync`, `msync`, or a directory's sync.
    Sync,
    /// Reserving blocks (`fallocate`) or changing a file's length.
    Allocate,
    /// Creating a file.
    Create,
    /// Writing a file's bytes with `write` (not through a mapping).
    Write,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Reading a file (not through a mapping), or listing a directory.
    Read,
}

/// Fails if a test armed a fault for this operation.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn check(_op: Op, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Fails if a test armed a fault for this operation.
#[cfg(feature = "fault-injection")]
fn check(op: Op, path: &Path) -> std::io::Result<()> {
    faults::check(op, path)
}

/// What a successful operation did, as the simulated disk ([`power`]) records it.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
pub enum Event<'a> {
    /// A file was created (or opened with creation allowed).
    Created(&'a Path),
    /// A file's bytes and length were synced.
    Synced(&'a Path),
    /// A range of a file (`offset`, `len`) was synced through its mapping.
    Flushed(&'a Path, u64, u64),
    /// A file was renamed (`from`, `to`).
    Renamed(&'a Path, &'a Path),
    /// A file was removed.
    Removed(&'a Path),
    /// A directory's entries were synced.
    DirectorySynced(&'a Path),
    /// A sync of a file failed: the pages it was writing may never reach the disk,
    /// whatever later syncs report (Linux marks them clean after a failed writeback).
    SyncFailed(&'a Path),
    /// A range of a mapped file (`offset`, `len`) was made dirty again, so that the
    /// next sync writes it whatever an earlier failed one left.
    Redirtied(&'a Path, u64, u64),
}

/// Tells the simulated disk what a successful operation did.
#[cfg(feature = "fault-injection")]
fn record(event: Event<'_>) {
    power::record(event);
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn record(_event: Event<'_>) {}

/// Creates the file at `path`, which must not exist, open for reading and writing.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    check(Op::Create, path)?;
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    record(Event::Created(path));
    Ok(file)
}

/// Opens the file at `path` for writing, creating it if missing; `truncate` empties
/// an existing one.
pub fn create(path: &Path, truncate: bool) -> std::io::Result<File> {
    check(Op::Create, path)?;
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(truncate).open(path)?;
    record(Event::Created(path));
    Ok(file)
}

/// Opens the existing file at `path`, for writing too if `writable`.
pub fn open(path: &Path, writable: bool) -> std::io::Result<File> {
    check(Op::Read, path)?;
    OpenOptions::new().read(true).write(writable).open(path)
}

/// Writes `bytes` at the current position of `file` (at `path`).
pub fn write_all(mut file: &File, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    check(Op::Write, path)?;
    file.write_all(bytes)
}

/// Writes `bytes` at `offset` of `file` (at `path`).
pub fn write_all_at(file: &File, path: &Path, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    check(Op::Write, path)?;
    file.write_all_at(bytes, offset)
}

/// Makes the bytes and length of `file` (at `path`) durable (`fsync`).
pub fn sync_file(file: &File, path: &Path) -> std::io::Result<()> {
    let synced = check(Op::Sync, path).and_then(|()| file.sync_all());
    record(if synced.is_ok() { Event::Synced(path) } else { Event::SyncFailed(path) });
    synced
}

/// Makes `len` bytes at `offset` of `map` (a shared mapping of the file at `path`)
/// durable (`msync`).
pub fn flush_map(map: &MmapRaw, path: &Path, offset: u64, len: u64) -> std::io::Result<()> {
    let flushed = check(Op::Sync, path).and_then(|()| map.flush_range(offset as usize, len as usize));
    record(if flushed.is_ok() { Event::Flushed(path, offset, len) } else { Event::SyncFailed(path) });
    flushed
}

/// Starts writing `len` bytes at `offset` of `file` back to the disk without waiting
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): a hint that makes nothing durable
/// (the simulated disk records nothing for it). A caller may ignore its error: the
/// kernel keeps a failed writeback's error for the file's next `fsync` or `msync`,
/// which is where durability is decided and where it is reported.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        };
        // SAFETY: `sync_file_range` takes plain integers and touches no memory of
        // ours; `file` is an open descriptor for the length of the call.
        let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
    Ok(())
}

/// Makes the pages of `[offset, offset + len)` of `map` (a shared mapping of the file
/// at `path`) dirty again by writing one byte of each back unchanged, so that the next
/// sync writes them: after a failed sync, Linux may have marked pages clean that never
/// reached the disk, and a later sync would then report success without writing them.
///
/// # Safety
/// `[offset, offset + len)` must lie inside both the mapping and the file, and no other
/// thread may write those bytes meanwhile (a byte written back could undo its write).
pub unsafe fn redirty(map: &MmapRaw, path: &Path, offset: u64, len: u64) {
    /// Every page of 4 KiB is touched: on systems with larger pages, more than needed.
    const PAGE: u64 = 4096;
    let end = offset.saturating_add(len).min(map.len() as u64);
    let mut at = offset;
    while at < end {
        // SAFETY: `at` lies in `[offset, end)`, inside the mapping and the file (the
        // caller's promise), and no other thread writes it: reading the byte and
        // writing the same value back changes no content, only marks the page dirty.
        unsafe {
            let byte = map.as_mut_ptr().add(at as usize);
            byte.write_volatile(byte.read_volatile());
        }
        at = (at / PAGE + 1) * PAGE;
    }
    record(Event::Redirtied(path, offset, len));
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_directory(dir: &Path) -> std::io::Result<()> {
    check(Op::Sync, dir)?;
    File::open(dir)?.sync_all()?;
    record(Event::DirectorySynced(dir));
    Ok(())
}

/// Creates the directory `path` and any missing parents.
pub fn create_directory(path: &Path) -> std::io::Result<()> {
    check(Op::Create, path)?;
    std::fs::create_dir_all(path)
}

/// Reserves the blocks of `file` (at `path`) up to `length` bytes (`fallocate`),
/// extending it.
pub fn allocate(file: &File, path: &Path, length: u64) -> std::io::Result<()> {
    check(Op::Allocate, path)?;
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, length).map_err(std::io::Error::from)
}

/// Sets the length of `file` (at `path`).
pub fn set_len(file: &File, path: &Path, length: u64) -> std::io::Result<()> {
    check(Op::Allocate, path)?;
    file.set_len(length)
}

/// Renames `from` to `to`, replacing any file there.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    check(Op::Rename, from)?;
    std::fs::rename(from, to)?;
    record(Event::Renamed(from, to));
    Ok(())
}

/// Creates the directory `path`, which must not exist.
pub fn create_new_directory(path: &Path) -> std::io::Result<()> {
    check(Op::Create, path)?;
    std::fs::create_dir(path)
}

/// Renames `from` to `to`, failing if `to` exists (even as an empty directory).
pub fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    check(Op::Rename, from)?;
    let cwd = rustix::fs::CWD;
    rustix::fs::renameat_with(cwd, from, cwd, to, rustix::fs::RenameFlags::NOREPLACE)?;
    record(Event::Renamed(from, to));
    Ok(())
}

/// Makes `to` another name of the file at `from` (a hard link).
pub fn hard_link(from: &Path, to: &Path) -> std::io::Result<()> {
    check(Op::Create, to)?;
    std::fs::hard_link(from, to)?;
    record(Event::Created(to));
    Ok(())
}

/// Removes the directory `dir` and everything in it.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    check(Op::Remove, dir)?;
    std::fs::remove_dir_all(dir)
}

/// Removes the file at `path`.
pub fn remove(path: &Path) -> std::io::Result<()> {
    check(Op::Remove, path)?;
    std::fs::remove_file(path)?;
    record(Event::Removed(path));
    Ok(())
}

/// Reads the whole file at `path`.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    check(Op::Read, path)?;
    std::fs::read(path)
}

/// Lists the directory `dir`.
pub fn read_dir(dir: &Path) -> std::io::Result<ReadDir> {
    check(Op::Read, dir)?;
    std::fs::read_dir(dir)
}

/// Reads the whole file at `path`, or `None` if there is none.
pub fn read_if_present(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// [`replace_file`] of the file `name` in `dir`, through the temporary `name.tmp`
/// beside it (the store's own files: identity, manifest, catalog, checkpoint).
pub fn replace_in(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    replace_file(dir, &dir.join(name), &dir.join(format!("{name}.tmp")), bytes)
}

/// Writes a whole new file at `path` durably and atomically: the bytes go to a
/// temporary beside it, which is synced, renamed over `path`, and the directory synced.
/// A crash or power cut at any point leaves the old file or the new one (and maybe the
/// temporary, which the next replacement overwrites).
pub fn replace_file(dir: &Path, path: &Path, temporary: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = create(temporary, true)?;
    write_all(&file, temporary, bytes)?;
    sync_file(&file, temporary)?;
    drop(file);
    rename(temporary, path)?;
    sync_directory(dir)
}
