//! A simulated disk for power cuts, in the manner of LevelDB's `fault_injection_test`
//! and RocksDB's `FaultInjectionTestFS`, fed by the I/O seam.
//!
//! A test [`watch`]es a directory. From then on the seam reports every successful
//! operation on the files in it, and the disk keeps what a real one would hold on
//! stable storage:
//! - each file's bytes and length as its syncs left them: an `fsync` covers the whole
//!   file, an `msync` of a mapped range covers exactly that range (and the length, as
//!   `fdatasync` does);
//! - the directory's entries as its last directory sync left them, and the entry
//!   changes since (creations, renames, removals), in order;
//! - after a failed sync, the pages it was writing as never written by later syncs
//!   either, until they are written again (their bytes change) or the store makes
//!   them dirty again (`io::redirty`): Linux marks the pages of a failed writeback
//!   clean, so a later `fsync` succeeds without them.
//!
//! [`Watched::cut`] then rewrites the directory (the store must be closed or crashed
//! first) into an image a power cut at that moment could leave:
//! - of the unsynced entry changes, either the oldest ones are kept and the rest undone
//!   (a journaling file system commits metadata in order), or each is kept or undone
//!   on its own (no order promised at all): a created file may be missing, a removed
//!   one back with its synced bytes, a rename undone;
//! - a file whose length changed since its last sync ends at its synced length, its
//!   current length, or a page boundary in between (a file created but never synced
//!   may be empty or short);
//! - every 4 KiB page whose bytes differ from the synced ones is kept, lost (back to
//!   the synced bytes, zeros past the synced length) or torn at a 512-byte sector
//!   (the first sectors new, the rest old), each independently of the others, as a
//!   page cache writing dirty pages back in any order leaves it.
//!
//! What the store never synced is thus never assumed to be on the disk, and what it
//! synced always is. Bytes are taken as durable as the file holds them when a sync
//! returns: callers sync only bytes no other thread is still writing (appends past a
//! synced range are outside it). Tests only (feature `fault-injection`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::Event;

/// The page cache's unit of write-back.
const PAGE: usize = 4096;
/// The unit a torn page write keeps whole.
const SECTOR: usize = 512;

type FileId = u64;

/// An entry change not yet covered by a directory sync.
#[derive(Clone, Debug)]
enum EntryChange {
    Created(String, FileId),
    Renamed { from: String, to: String, id: FileId },
    Removed(String),
}

/// One watched directory.
#[derive(Default)]
struct Disk {
    next_id: FileId,
    /// The entries as the last directory sync left them on stable storage.
    durable: BTreeMap<String, FileId>,
    /// The entries now.
    current: BTreeMap<String, FileId>,
    /// Entry changes since the last directory sync, oldest first.
    pending: Vec<EntryChange>,
    /// Each file's bytes (and so its length) as its syncs left them.
    stable: HashMap<FileId, Vec<u8>>,
    /// Per file, the pages a failed sync was writing, with their bytes then: later
    /// syncs do not write them (the kernel marked them clean) until they are written
    /// again (their bytes change) or made dirty again.
    failed: HashMap<FileId, BTreeMap<usize, Vec<u8>>>,
}

/// How many directories are watched: the seam does nothing more while it is 0.
static WATCHING: AtomicUsize = AtomicUsize::new(0);
static DISKS: Mutex<BTreeMap<PathBuf, Disk>> = Mutex::new(BTreeMap::new());

/// A watched directory; dropping it stops the watch.
#[derive(Debug)]
pub struct Watched {
    dir: PathBuf,
}

/// What a power cut did to the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// Unsynced entry changes undone (the newest ones).
    pub entries_undone: usize,
    /// Unsynced entry changes kept.
    pub entries_kept: usize,
    /// Files left at a length other than their current one.
    pub files_cut_short: usize,
    /// Unsynced pages lost.
    pub pages_lost: usize,
    /// Unsynced pages torn at a sector.
    pub pages_torn: usize,
    /// Unsynced pages that made it.
    pub pages_kept: usize,
}

/// Starts watching `dir` (which must exist); its files as they are now are taken as
/// durable. Fails if `dir` cannot be read or is already watched.
pub fn watch(dir: &Path) -> std::io::Result<Watched> {
    let dir = std::fs::canonicalize(dir)?;
    let mut disk = Disk::default();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let id = disk.new_id();
        disk.stable.insert(id, std::fs::read(entry.path())?);
        disk.durable.insert(name.clone(), id);
        disk.current.insert(name, id);
    }
    let mut disks = DISKS.lock();
    if disks.contains_key(&dir) {
        return Err(std::io::Error::other(format!("{} is already watched", dir.display())));
    }
    disks.insert(dir.clone(), disk);
    WATCHING.fetch_add(1, Ordering::AcqRel);
    Ok(Watched { dir })
}

impl Watched {
    /// Rewrites the directory into what a power cut now could leave, as `choices` say
    /// (see the module docs; a missing choice is 0: the in-order mode keeping no
    /// unsynced entry change, and every current length and page kept). The first choice picks
    /// whether unsynced entry changes are kept in order (and how many) or each on its
    /// own (then one choice each); then, file by file in name order, one picks the
    /// length of a file whose length changed, and one each unsynced page. Whoever wrote the files
    /// must have stopped. Afterwards the image is what is durable.
    pub fn cut(&self, choices: &mut impl Iterator<Item = u8>) -> std::io::Result<Cut> {
        let mut disks = DISKS.lock();
        let Some(disk) = disks.get_mut(&self.dir) else {
            return Err(std::io::Error::other("the directory is not watched"));
        };
        let mut cut = Cut::default();
        let mut entries = disk.durable.clone();
        let choice = usize::from(choices.next().unwrap_or(0));
        if choice % 2 == 0 {
            // A journaling file system: the oldest changes, in order.
            let kept = choice / 2 % (disk.pending.len() + 1);
            for change in &disk.pending[..kept] {
                apply(&mut entries, change);
            }
            cut.entries_kept = kept;
        } else {
            // No order at all: each change kept or undone on its own (one that cannot
            // apply, a rename of a file whose creation was undone, is undone).
            for change in &disk.pending {
                if choices.next().unwrap_or(0) % 2 == 0 && apply(&mut entries, change) {
                    cut.entries_kept += 1;
                }
            }
        }
        cut.entries_undone = disk.pending.len() - cut.entries_kept;
        let mut images = Vec::with_capacity(entries.len());
        for (name, &id) in &entries {
            let stable = disk.stable.get(&id).cloned().unwrap_or_default();
            // The file's bytes now, if it is still reachable under some name.
            let now = match disk.current.iter().find(|&(_, &current)| current == id) {
                Some((current_name, _)) => Some(std::fs::read(self.dir.join(current_name))?),
                None => None,
            };
            let image = match now {
                Some(now) => mix(&stable, &now, choices, &mut cut),
                None => stable,
            };
            images.push((name.clone(), id, image));
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        disk.durable.clear();
        disk.stable.clear();
        for (name, id, image) in images {
            std::fs::write(self.dir.join(&name), &image)?;
            disk.durable.insert(name, id);
            disk.stable.insert(id, image);
        }
        disk.current = disk.durable.clone();
        disk.pending.clear();
        disk.failed.clear();
        Ok(cut)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if DISKS.lock().remove(&self.dir).is_some() {
            WATCHING.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Applies an entry change to `entries`; false if it cannot apply (a rename or
/// removal of a name that is not there).
fn apply(entries: &mut BTreeMap<String, FileId>, change: &EntryChange) -> bool {
    match change {
        EntryChange::Created(name, id) => {
            entries.insert(name.clone(), *id);
            true
        }
        EntryChange::Renamed { from, to, id } => {
            if entries.get(from) != Some(id) {
                return false;
            }
            entries.remove(from);
            entries.insert(to.clone(), *id);
            true
        }
        EntryChange::Removed(name) => entries.remove(name).is_some(),
    }
}

/// The bytes a power cut leaves of a file synced as `stable` and now `now`.
fn mix(stable: &[u8], now: &[u8], choices: &mut impl Iterator<Item = u8>, cut: &mut Cut) -> Vec<u8> {
    let length = if now.len() == stable.len() {
        now.len()
    } else {
        let choice = choices.next().unwrap_or(0);
        let (short, long) = (now.len().min(stable.len()), now.len().max(stable.len()));
        let length = match choice % 3 {
            0 => now.len(),
            1 => stable.len(),
            _ => {
                let pages = (long - short).div_ceil(PAGE);
                (short.div_ceil(PAGE) * PAGE + usize::from(choice / 3) % (pages + 1) * PAGE).min(long)
            }
        };
        if length != now.len() {
            cut.files_cut_short += 1;
        }
        length
    };
    let mut image = stable.to_vec();
    image.resize(length, 0);
    let mut start = 0;
    while start < length.min(now.len()) {
        let end = (start + PAGE).min(length.min(now.len()));
        if image[start..end] != now[start..end] {
            let choice = choices.next().unwrap_or(0);
            match choice % 3 {
                0 => {
                    image[start..end].copy_from_slice(&now[start..end]);
                    cut.pages_kept += 1;
                }
                1 => cut.pages_lost += 1,
                _ => {
                    let torn = (start + usize::from(choice / 3) % (PAGE / SECTOR) * SECTOR).min(end);
                    image[start..torn].copy_from_slice(&now[start..torn]);
                    cut.pages_torn += 1;
                }
            }
        }
        start = end;
    }
    image
}

impl Disk {
    fn new_id(&mut self) -> FileId {
        self.next_id += 1;
        self.next_id
    }

    /// A sync of `[start, end)` of file `id`, whose bytes are now `now`: those bytes
    /// and the length become durable, except pages a failed sync left marked clean.
    fn sync_range(&mut self, id: FileId, now: &[u8], start: usize, end: usize) {
        let stable = self.stable.entry(id).or_default();
        let old = std::mem::take(stable);
        let mut synced = old.clone();
        synced.resize(now.len(), 0);
        synced[start..end].copy_from_slice(&now[start..end]);
        if let Some(failed) = self.failed.get_mut(&id) {
            // A failed page written since (its bytes changed) is dirty again: this sync
            // writes it. One left as the failed sync saw it stays unwritten.
            failed.retain(|&page, then| {
                let range = page * PAGE..((page + 1) * PAGE).min(now.len());
                now.get(range) == Some(&then[..])
            });
            for &page in failed.keys() {
                let range = page * PAGE..((page + 1) * PAGE).min(synced.len());
                for at in range {
                    synced[at] = old.get(at).copied().unwrap_or(0);
                }
            }
        }
        *stable = synced;
    }
}

/// The watched directory and file name of `path`, if its directory is watched.
fn locate(path: &Path) -> Option<(PathBuf, String)> {
    let dir = std::fs::canonicalize(path.parent()?).ok()?;
    let name = path.file_name()?.to_str()?.to_owned();
    Some((dir, name))
}

/// Records what a successful operation made durable or changed (called by the seam).
pub(super) fn record(event: Event<'_>) {
    if WATCHING.load(Ordering::Acquire) == 0 {
        return;
    }
    if let Event::DirectorySynced(dir) = event {
        let Ok(dir) = std::fs::canonicalize(dir) else { return };
        if let Some(disk) = DISKS.lock().get_mut(&dir) {
            disk.durable = disk.current.clone();
            disk.pending.clear();
            let live: Vec<FileId> = disk.current.values().copied().collect();
            disk.stable.retain(|id, _| live.contains(id));
        }
        return;
    }
    let path = match event {
        Event::Created(path)
        | Event::Synced(path)
        | Event::Flushed(path, ..)
        | Event::Removed(path)
        | Event::SyncFailed(path)
        | Event::Redirtied(path, ..) => path,
        Event::Renamed(from, _) => from,
        Event::DirectorySynced(_) => return,
    };
    let Some((dir, name)) = locate(path) else { return };
    let mut disks = DISKS.lock();
    let Some(disk) = disks.get_mut(&dir) else { return };
    match event {
        Event::Created(_) => match disk.current.get(&name) {
            // Opened again for writing (and maybe emptied): what it writes now is new.
            Some(id) => {
                let id = *id;
                disk.failed.remove(&id);
            }
            None => {
                let id = disk.new_id();
                disk.current.insert(name.clone(), id);
                disk.pending.push(EntryChange::Created(name, id));
            }
        },
        Event::Synced(path) => {
            let Some(&id) = disk.current.get(&name) else { return };
            let Ok(now) = std::fs::read(path) else { return };
            disk.sync_range(id, &now, 0, now.len());
        }
        Event::Flushed(path, offset, len) => {
            let Some(&id) = disk.current.get(&name) else { return };
            let Ok(now) = std::fs::read(path) else { return };
            let start = (offset as usize).min(now.len());
            let end = (offset.saturating_add(len) as usize).min(now.len());
            disk.sync_range(id, &now, start, end);
        }
        Event::SyncFailed(path) => {
            let Some(&id) = disk.current.get(&name) else { return };
            let Ok(now) = std::fs::read(path) else { return };
            let stable = disk.stable.get(&id).map_or(&[][..], Vec::as_slice);
            let dirty: Vec<(usize, Vec<u8>)> = (0..now.len().div_ceil(PAGE))
                .filter_map(|page| {
                    let range = page * PAGE..((page + 1) * PAGE).min(now.len());
                    (stable.get(range.clone()) != Some(&now[range.clone()])).then(|| (page, now[range].to_vec()))
                })
                .collect();
            disk.failed.entry(id).or_default().extend(dirty);
        }
        Event::Redirtied(_, offset, len) => {
            let Some(&id) = disk.current.get(&name) else { return };
            if let Some(failed) = disk.failed.get_mut(&id) {
                let first = offset as usize / PAGE;
                let end = (offset.saturating_add(len) as usize).div_ceil(PAGE);
                failed.retain(|&page, _| page < first || page >= end);
            }
        }
        Event::Renamed(_, to) => {
            let Some(to) = to.file_name().and_then(|to| to.to_str()).map(str::to_owned) else { return };
            let Some(id) = disk.current.remove(&name) else { return };
            disk.current.insert(to.clone(), id);
            disk.pending.push(EntryChange::Renamed { from: name, to, id });
        }
        Event::Removed(_) => {
            if disk.current.remove(&name).is_some() {
                disk.pending.push(EntryChange::Removed(name));
            }
        }
        Event::DirectorySynced(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::io;

    fn bytes_of(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    #[test]
    fn unsynced_entries_are_undone_and_synced_bytes_kept() {
        let dir = tempfile::tempdir().unwrap();
        let watched = watch(dir.path()).unwrap();
        let path = dir.path().join("a");
        let file = io::create_new(&path).unwrap();
        io::write_all(&file, &path, &[1u8; 5000]).unwrap();
        io::sync_file(&file, &path).unwrap();
        // The file's bytes are durable, its entry is not: a cut keeping no entry
        // change loses the file.
        let cut = watched.cut(&mut [0u8].into_iter()).unwrap();
        assert_eq!(cut.entries_undone, 1);
        assert_eq!(bytes_of(dir.path(), "a"), None);

        let file = io::create_new(&path).unwrap();
        io::write_all(&file, &path, &[2u8; 5000]).unwrap();
        io::sync_file(&file, &path).unwrap();
        io::sync_directory(dir.path()).unwrap();
        io::write_all_at(&file, &path, &[3u8; 5000], 0).unwrap();
        // No entry change pending; both pages unsynced: the first lost, the second kept.
        let cut = watched.cut(&mut [0u8, 1, 0].into_iter()).unwrap();
        assert_eq!((cut.pages_lost, cut.pages_kept), (1, 1));
        let image = bytes_of(dir.path(), "a").unwrap();
        assert!(image[..4096].iter().all(|&byte| byte == 2));
        assert!(image[4096..].iter().all(|&byte| byte == 3));
    }

    #[test]
    fn renames_and_removals_are_undone_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"old").unwrap();
        let watched = watch(dir.path()).unwrap();
        let temporary = dir.path().join("new.tmp");
        io::replace_file(dir.path(), &dir.path().join("old"), &temporary, b"new").unwrap();
        assert_eq!(watched.cut(&mut std::iter::empty()).unwrap().entries_undone, 0);
        assert_eq!(bytes_of(dir.path(), "old").unwrap(), b"new");

        let file = io::create(&temporary, true).unwrap();
        io::write_all(&file, &temporary, b"newer").unwrap();
        io::sync_file(&file, &temporary).unwrap();
        io::rename(&temporary, &dir.path().join("old")).unwrap();
        io::remove(&dir.path().join("old")).unwrap();
        // Keep the creation only: the rename and the removal are undone.
        let cut = watched.cut(&mut [2u8].into_iter()).unwrap();
        assert_eq!((cut.entries_kept, cut.entries_undone), (1, 2));
        assert_eq!(bytes_of(dir.path(), "old").unwrap(), b"new");
        assert_eq!(bytes_of(dir.path(), "new.tmp").unwrap(), b"newer");

        // Out of order: the removal undone, the later creation kept.
        io::remove(&temporary).unwrap();
        drop(io::create_new(&dir.path().join("later")).unwrap());
        let cut = watched.cut(&mut [1u8, 1, 0].into_iter()).unwrap();
        assert_eq!((cut.entries_kept, cut.entries_undone), (1, 1));
        assert_eq!(bytes_of(dir.path(), "new.tmp").unwrap(), b"newer");
        assert_eq!(bytes_of(dir.path(), "later").unwrap(), b"");
    }

    #[test]
    fn a_rename_of_an_undone_creation_is_undone_and_a_torn_page_keeps_old_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let watched = watch(dir.path()).unwrap();
        let (temporary, target) = (dir.path().join("t"), dir.path().join("f"));
        let file = io::create_new(&temporary).unwrap();
        io::write_all(&file, &temporary, &[1u8; PAGE]).unwrap();
        io::sync_file(&file, &temporary).unwrap();
        io::rename(&temporary, &target).unwrap();
        // Out of order: the creation undone (choice 1), the rename kept (0): it cannot
        // apply, so neither name is there.
        let cut = watched.cut(&mut [1u8, 1, 0].into_iter()).unwrap();
        assert_eq!((cut.entries_kept, cut.entries_undone), (0, 2));
        assert_eq!((bytes_of(dir.path(), "t"), bytes_of(dir.path(), "f")), (None, None));

        let file = io::create_new(&target).unwrap();
        io::write_all(&file, &target, &[1u8; PAGE]).unwrap();
        io::sync_file(&file, &target).unwrap();
        io::sync_directory(dir.path()).unwrap();
        io::write_all_at(&file, &target, &[2u8; PAGE], 0).unwrap();
        // Torn after 2 sectors: new bytes there, the synced ones after.
        let cut = watched.cut(&mut [0u8, 2 + 3 * 2].into_iter()).unwrap();
        assert_eq!(cut.pages_torn, 1);
        let image = bytes_of(dir.path(), "f").unwrap();
        assert!(image[..2 * SECTOR].iter().all(|&byte| byte == 2));
        assert!(image[2 * SECTOR..].iter().all(|&byte| byte == 1));
    }

    #[test]
    fn a_mapped_flush_covers_its_range_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let watched = watch(dir.path()).unwrap();
        let file = io::create_new(&path).unwrap();
        io::allocate(&file, &path, 3 * PAGE as u64).unwrap();
        io::sync_file(&file, &path).unwrap();
        io::sync_directory(dir.path()).unwrap();
        let map = memmap2::MmapOptions::new().len(3 * PAGE).map_raw(&file).unwrap();
        // SAFETY: the mapping is 3 pages long and only this test touches it.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 7, 3 * PAGE) };
        io::flush_map(&map, &path, PAGE as u64, PAGE as u64).unwrap();
        drop(map);
        // Pages 0 and 2 unsynced and lost; page 1 durable.
        let cut = watched.cut(&mut [0u8, 1, 1].into_iter()).unwrap();
        assert_eq!(cut.pages_lost, 2);
        let image = bytes_of(dir.path(), "segment").unwrap();
        assert_eq!(image.len(), 3 * PAGE);
        assert!(image[..PAGE].iter().all(|&byte| byte == 0));
        assert!(image[PAGE..2 * PAGE].iter().all(|&byte| byte == 7));
        assert!(image[2 * PAGE..].iter().all(|&byte| byte == 0));
    }

    #[test]
    fn pages_a_failed_sync_was_writing_stay_unwritten_until_made_dirty_again() {
        use crate::log::io::faults::{self, Fault, Plan};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let watched = watch(dir.path()).unwrap();
        let file = io::create_new(&path).unwrap();
        io::allocate(&file, &path, 2 * PAGE as u64).unwrap();
        io::sync_file(&file, &path).unwrap();
        io::sync_directory(dir.path()).unwrap();
        let map = memmap2::MmapOptions::new().len(2 * PAGE).map_raw(&file).unwrap();
        // SAFETY: the mapping is 2 pages long and only this test touches it.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 5, 2 * PAGE) };
        faults::arm(Plan::at(0, Fault::Io).in_dir(dir.path()));
        assert!(io::flush_map(&map, &path, 0, 2 * PAGE as u64).is_err());
        faults::disarm_in(Some(dir.path()));
        // The next sync "succeeds", but writes neither page: a cut losing every
        // unsynced page leaves zeros.
        io::flush_map(&map, &path, 0, 2 * PAGE as u64).unwrap();
        let image = |watched: &Watched| {
            watched.cut(&mut [0u8, 1, 1].into_iter()).unwrap();
            bytes_of(dir.path(), "segment").unwrap()
        };
        let lost = image(&watched);
        assert!(lost.iter().all(|&byte| byte == 0), "a sync after a failed one wrote its pages");

        // A failed page written again (its bytes change) is dirty again: the next sync
        // writes it, while the other failed page stays unwritten.
        drop((map, file));
        let file = io::open(&path, true).unwrap();
        let map = memmap2::MmapOptions::new().len(2 * PAGE).map_raw(&file).unwrap();
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 4, 2 * PAGE) };
        faults::arm(Plan::at(0, Fault::Io).in_dir(dir.path()));
        assert!(io::flush_map(&map, &path, 0, 2 * PAGE as u64).is_err());
        faults::disarm_in(Some(dir.path()));
        // SAFETY: as above; page 0 only.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 3, PAGE) };
        io::flush_map(&map, &path, 0, 2 * PAGE as u64).unwrap();
        let rewritten = image(&watched);
        assert!(rewritten[..PAGE].iter().all(|&byte| byte == 3), "a rewritten failed page was not written");
        assert!(rewritten[PAGE..].iter().all(|&byte| byte == 0));

        // Made dirty again (the second page only), then synced: that page is durable.
        // (The cut wrote the file anew: open it again.)
        drop((map, file));
        let file = io::open(&path, true).unwrap();
        let map = memmap2::MmapOptions::new().len(2 * PAGE).map_raw(&file).unwrap();
        // SAFETY: as above.
        unsafe { std::ptr::write_bytes(map.as_mut_ptr(), 6, 2 * PAGE) };
        faults::arm(Plan::at(0, Fault::Io).in_dir(dir.path()));
        assert!(io::flush_map(&map, &path, 0, 2 * PAGE as u64).is_err());
        faults::disarm_in(Some(dir.path()));
        // SAFETY: the range is inside the mapping and the file; nothing else writes.
        unsafe { io::redirty(&map, &path, PAGE as u64, PAGE as u64) };
        io::flush_map(&map, &path, 0, 2 * PAGE as u64).unwrap();
        let kept = image(&watched);
        assert!(kept[..PAGE].iter().all(|&byte| byte == 3), "the first page keeps its last synced bytes");
        assert!(kept[PAGE..].iter().all(|&byte| byte == 6));
    }

    #[test]
    fn an_unsynced_file_may_be_short_and_a_page_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let watched = watch(dir.path()).unwrap();
        let file = io::create_new(&path).unwrap();
        io::sync_directory(dir.path()).unwrap();
        io::write_all(&file, &path, &[9u8; 3 * PAGE]).unwrap();
        // No entry change pending; the length a page boundary between 0 and 3 pages
        // (choice 2 + 3 * 2: two pages); the first page torn after 3 sectors, the
        // second kept.
        let cut = watched.cut(&mut [0u8, 2 + 3 * 2, 2 + 3 * 3, 0].into_iter()).unwrap();
        assert_eq!((cut.files_cut_short, cut.pages_torn, cut.pages_kept), (1, 1, 1));
        let image = bytes_of(dir.path(), "log").unwrap();
        assert_eq!(image.len(), 2 * PAGE);
        assert!(image[..3 * SECTOR].iter().all(|&byte| byte == 9));
        assert!(image[3 * SECTOR..PAGE].iter().all(|&byte| byte == 0));
        assert!(image[PAGE..].iter().all(|&byte| byte == 9));
    }
}
