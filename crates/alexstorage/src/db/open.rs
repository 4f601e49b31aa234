//! Opening a store: options checked, directory and lock file, identity file, the log
//! recovered and the index rebuilt (from a checkpoint plus the log written after it,
//! or from the whole log), then the background workers started.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use crate::background::{Next, Worker};
use crate::checkpointer::{Checkpointer, Covered};
use crate::compaction::{start_compactor, Compaction};
use crate::compression;
use crate::engine::{record_len, Engine, Families, Family, History, Recovery, View, Writer};
use crate::family::next_store_id;
use crate::index::Alex;
use crate::log::catalog::{self, Catalog};
use crate::log::checkpoint::{self, FamilySection};
use crate::log::format::{HeaderError, StoreHeader, FORMAT_VERSION};
use crate::log::io;
use crate::log::recovery::Replayed;
use crate::log::{Location, Log};
use crate::options::MAX_VALUE_SIZE_LIMIT;
use crate::options::{DEFAULT_MAX_VALUE_SIZE, MIN_SEGMENT_SIZE};
use crate::value::Leases;
use crate::{Compression, Durability, Error, Options, Result};

use super::{Db, Handle, Store, Workers};

/// Name of the file that marks a directory as a store.
const IDENTITY_FILE: &str = "ALEXSTORAGE";
/// Name of the lock file a writer holds.
const LOCK_FILE: &str = "LOCK";

impl Options {
    /// Opens (creating if missing, recovering if present) the store at `path`.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(path.as_ref(), self)
    }
}

impl Db {
    /// Opens the store at `path` with default options, creating the directory and an
    /// empty store if missing and recovering if present.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Options::default().open(path)
    }

    fn open_with(path: &Path, options: Options) -> Result<Db> {
        check_options(&options)?;
        prepare_directory(path, options.read_only)?;
        let lock = if options.read_only { None } else { Some(lock_store(path)?) };
        let mut options = options;
        let identity = check_identity(path, &options)?;
        // An open that chose no compression writes as the store did.
        if !options.compression_chosen {
            options.compression = identity.compression;
        }
        let recovered = recover(path, &options)?;
        if !options.read_only && identity != StoreHeader::current(options.compression) {
            // This build may write what an older one would misread (other families'
            // records, which it would skip and then compact away; compressed
            // values): once recovery has succeeded, the store is raised to this
            // version, which older builds refuse. The identity file also keeps the
            // compression setting.
            write_identity(path, options.compression)?;
        }
        // The checkpoint the open used covers what it covers: a close after no write
        // (and no replay past it, which raised the sequence) need not write it again.
        let covered = recovered.checkpoint;
        let engine =
            Arc::new(Engine::new(path.to_path_buf(), options, recovered.view, recovered.writer, recovered.recovery));
        let store = Arc::new(Store {
            engine: Arc::clone(&engine),
            checkpointer: Arc::new(Checkpointer::new(path.to_path_buf(), covered)),
            compaction: Arc::new(Compaction::default()),
            workers: Workers::default(),
            lock_file: Mutex::new(lock),
            crashed: AtomicBool::new(false),
        });
        // From here on a failure drops the handle, which stops what was started; the
        // close then skips its sync and checkpoint (nothing was written).
        let db = Db { engine, _handle: Arc::new(Handle(Arc::clone(&store))), store };
        if let Err(error) = db.start_workers() {
            db.store.crashed.store(true, Ordering::Relaxed);
            return Err(error);
        }
        Ok(db)
    }

    /// Starts the background workers a writable store runs.
    fn start_workers(&self) -> Result<()> {
        let (engine, store) = (&self.engine, &self.store);
        if engine.options.read_only {
            return Ok(());
        }
        *store.workers.checkpointer.lock() = Some(store.checkpointer.start_worker(engine)?);
        if let Durability::Periodic(interval) = engine.options.durability {
            *store.workers.syncer.lock() = Some(start_periodic_syncer(engine, interval)?);
        }
        if engine.options.background_compaction {
            *store.workers.compactor.lock() = Some(start_compactor(engine, &store.checkpointer, &store.compaction)?);
        }
        if cfg!(target_os = "linux")
            && engine.options.writeback_step > 0
            && engine.options.durability != Durability::Sync
        {
            *store.workers.writeback.lock() = Some(start_writeback_worker(engine)?);
        }
        Ok(())
    }
}

/// The state recovery rebuilt.
struct Recovered {
    view: View,
    writer: Writer,
    recovery: Recovery,
    /// What the checkpoint the open used covers, if it used one.
    checkpoint: Option<Covered>,
}

/// Replays the log (after the checkpoint, if one is usable) and rebuilds every
/// family's index.
fn recover(path: &Path, options: &Options) -> Result<Recovered> {
    // A read-only open may race a writer that creates and drops families: the catalog
    // it replays against must be the one in force for the whole replay, or it could
    // file a new family's records under a dropped one that had the same id. Catalogs
    // only move forward (each change takes a new incarnation), so one that reads the
    // same before and after the replay was in force throughout.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let catalog = catalog::read(path)?;
        let recovered = recover_with(path, options, catalog.clone())?;
        if !options.read_only || catalog::read(path)? == catalog {
            return Ok(recovered);
        }
        if attempts >= CATALOG_ATTEMPTS {
            return Err(Error::InvalidArgument(format!(
                "the column-family catalog kept changing during {CATALOG_ATTEMPTS} read-only opens"
            )));
        }
    }
}

/// How many times a read-only open replays the log while a writer keeps changing the
/// catalog.
const CATALOG_ATTEMPTS: u32 = 16;

/// [`recover`] against `catalog`.
fn recover_with(path: &Path, options: &Options, catalog: Catalog) -> Result<Recovered> {
    let checkpoint = checkpoint::read(path)?;
    let mut replay = Replay { catalog: &catalog, writes: Vec::new(), dedupe_at: REPLAY_DEDUPE_MIN };
    let (log, sequence, from_checkpoint) =
        Log::open(path, options.segment_size, !options.read_only, checkpoint.as_ref(), |write| replay.apply(write))?;
    let covered = checkpoint
        .as_ref()
        .filter(|_| from_checkpoint)
        .map(|checkpoint| Covered { sequence: checkpoint.sequence, generation: checkpoint.generation });
    let mut replayed = replay.by_family();
    let replayed_keys = replayed.values().map(Vec::len).sum();
    let mut sections = checkpoint.filter(|_| from_checkpoint).map(|checkpoint| checkpoint.families).unwrap_or_default();
    // A section counts only for the family the catalog lists with its id and
    // incarnation (a family dropped since, or dropped and its id reused, has none).
    sections.retain(|section| {
        section.id == 0 || catalog.entry(section.id).is_some_and(|entry| entry.incarnation == section.incarnation)
    });
    let mut indexes = BTreeMap::new();
    let mut family_live_bytes = BTreeMap::new();
    let ids = std::iter::once(0).chain(catalog.families.iter().map(|entry| entry.id));
    for id in ids {
        let section = sections.iter_mut().find(|section| section.id == id).map(std::mem::take);
        let writes = replayed.remove(&id).unwrap_or_default();
        let (index, live_bytes) = match section {
            Some(section) => onto_checkpoint(&log, section, writes)?,
            None => into_index(writes)?,
        };
        indexes.insert(id, index);
        family_live_bytes.insert(id, live_bytes);
    }
    let mut families = Families::new(next_store_id());
    for entry in &catalog.families {
        let index = indexes.remove(&entry.id).unwrap_or_default();
        let family = Family { name: Arc::from(entry.name.as_str()), incarnation: entry.incarnation, index };
        families.insert(entry.id, family);
    }
    let index = indexes.remove(&0).unwrap_or_default();
    let segments = log.segments().map(|segment| (segment.id(), Leases::new(Arc::clone(segment)))).collect();
    Ok(Recovered {
        view: View { index, families, segments, sequence, history: History::default() },
        writer: Writer::new(log, sequence, catalog, family_live_bytes),
        recovery: Recovery { from_checkpoint, replayed_keys },
        checkpoint: covered,
    })
}

/// The replayed writes, from which [`Replay::by_family`] keeps the newest of each
/// (family, key) by sequence (compacted segments are replayed before older log
/// records, so the order of replay is not the order of writes). Records of families
/// the catalog does not hold are skipped: the family was dropped (its id perhaps
/// reused by a later family, whose records all have higher sequence numbers). Writes
/// are appended as they come and sorted once at the end: cheaper than a hash table
/// probed at random for every record.
struct Replay<'a> {
    catalog: &'a Catalog,
    writes: Vec<(u16, i64, Latest)>,
    /// When `writes` reaches this length it is deduplicated (a log that overwrote a
    /// few keys many times must not hold every write at once).
    dedupe_at: usize,
}

/// The least [`Replay::dedupe_at`].
const REPLAY_DEDUPE_MIN: usize = 1 << 20;

/// A key's newest replayed write.
#[derive(Clone, Copy, Default)]
struct Latest {
    sequence: u64,
    /// The record and its length for a put; `None` for a delete.
    put: Option<(Location, u32)>,
}

impl Replay<'_> {
    /// Takes in one replayed write.
    fn apply(&mut self, write: Replayed) {
        let (family, key, newer) = match write {
            Replayed::Put { column_family, key, sequence, location, len } => {
                (column_family, key, Latest { sequence, put: Some((location, len)) })
            }
            Replayed::Delete { column_family, key, sequence } => (column_family, key, Latest { sequence, put: None }),
        };
        if !self.catalog.holds(family, newer.sequence) {
            return;
        }
        self.writes.push((family, key, newer));
        if self.writes.len() >= self.dedupe_at {
            self.dedupe();
            self.dedupe_at = (self.writes.len() * 2).max(REPLAY_DEDUPE_MIN);
        }
    }

    /// Keeps only the newest write of each key, ascending by (family, key). Of two
    /// writes of one key with the same sequence (a compacted copy and its original in
    /// a log segment its compaction had not yet retired), the one replayed later is
    /// kept.
    fn dedupe(&mut self) {
        // Stable: writes of one key and sequence stay in replay order.
        self.writes.sort_by_key(|&(family, key, latest)| (family, key, latest.sequence));
        // Of each run of one key, the last: `dedup_by` keeps the first, so the later
        // write takes its place before the earlier is dropped.
        self.writes.dedup_by(|later, kept| {
            let same = (later.0, later.1) == (kept.0, kept.1);
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
    }

    /// The newest replayed write of each key ([`Replay::dedupe`]), by family,
    /// ascending by key.
    fn by_family(mut self) -> HashMap<u16, Vec<(i64, Latest)>> {
        self.dedupe();
        let mut families: HashMap<u16, Vec<(i64, Latest)>> = HashMap::new();
        for (family, key, latest) in self.writes {
            families.entry(family).or_default().push((key, latest));
        }
        families
    }
}

/// A family's index from its checkpoint `section` with the replayed `writes`
/// (ascending by key) applied, and its live bytes: the writes are merged into the
/// checkpoint's sorted entries in place and the index is bulk-loaded once (inserting
/// the writes one by one into an index loaded from the checkpoint cost more than
/// twice as much at 10M keys, and a merged copy of the entries cost its zeroed pages).
fn onto_checkpoint(log: &Log, section: FamilySection, writes: Vec<(i64, Latest)>) -> Result<(Alex<u64>, u64)> {
    let mut live_bytes = section.live_bytes;
    let mut supersede = |old: u64| {
        let old = Location(old);
        let len = log.segment(old.segment()).and_then(|segment| record_len(segment, old)).unwrap_or(0);
        live_bytes = live_bytes.saturating_sub(len);
    };
    let mut added = 0u64;
    let entries = merge_writes(section.entries, writes, &mut supersede, |len| added += u64::from(len));
    Ok((Alex::bulk_load(&entries).map_err(invalid_checkpoint)?, live_bytes.saturating_add(added)))
}

/// `entries` (ascending, unique keys) with `writes` (ascending, unique keys) applied
/// in place: a put replaces or adds its key, a delete removes it. `supersede` is
/// given the location of every entry a write replaces or removes, `put` the length
/// of every put.
fn merge_writes(
    mut entries: Vec<(i64, u64)>,
    writes: Vec<(i64, Latest)>,
    supersede: &mut impl FnMut(u64),
    mut put: impl FnMut(u32),
) -> Vec<(i64, u64)> {
    // First, front to back: replaced entries take their new location and deleted ones
    // go; puts of keys the entries lack are set aside.
    let mut inserts: Vec<(i64, u64)> = Vec::new();
    let mut writes = writes.into_iter().peekable();
    let mut kept = 0;
    for at in 0..entries.len() {
        let Some(&(key, old)) = entries.get(at) else { break };
        while let Some((new_key, latest)) = writes.next_if(|&(write, _)| write < key) {
            if let Some((location, len)) = latest.put {
                put(len);
                inserts.push((new_key, location.0));
            }
        }
        let entry = match writes.next_if(|&(write, _)| write == key) {
            Some((_, latest)) => {
                supersede(old);
                latest.put.map(|(location, len)| {
                    put(len);
                    (key, location.0)
                })
            }
            None => Some((key, old)),
        };
        if let Some(entry) = entry {
            if let Some(slot) = entries.get_mut(kept) {
                *slot = entry;
            }
            kept += 1;
        }
    }
    entries.truncate(kept);
    for (key, latest) in writes {
        if let Some((location, len)) = latest.put {
            put(len);
            inserts.push((key, location.0));
        }
    }
    // Then the new keys, back to front: each entry moves at most once, and never onto
    // one not yet moved.
    let mut read = entries.len();
    entries.resize(entries.len() + inserts.len(), (0, 0));
    let mut write = entries.len();
    while let Some(&(key, location)) = inserts.last() {
        write -= 1;
        let before = read.checked_sub(1).and_then(|at| entries.get(at).copied());
        let moved = match before {
            Some(entry) if entry.0 > key => {
                read -= 1;
                entry
            }
            _ => {
                inserts.pop();
                (key, location)
            }
        };
        if let Some(slot) = entries.get_mut(write) {
            *slot = moved;
        }
    }
    entries
}

/// A family's index of the replayed `writes` alone (a full replay), and its live
/// bytes.
fn into_index(writes: Vec<(i64, Latest)>) -> Result<(Alex<u64>, u64)> {
    let mut live_bytes = 0;
    let mut pairs: Vec<(i64, u64)> = writes
        .into_iter()
        .filter_map(|(key, latest)| {
            let (location, len) = latest.put?;
            live_bytes += u64::from(len);
            Some((key, location.0))
        })
        .collect();
    pairs.sort_unstable_by_key(|pair| pair.0);
    Ok((Alex::bulk_load(&pairs).map_err(invalid_checkpoint)?, live_bytes))
}

fn invalid_checkpoint(error: crate::index::BulkLoadError) -> Error {
    Error::InvalidArgument(format!("index rebuild failed: {error}"))
}

fn check_options(options: &Options) -> Result<()> {
    if let Compression::Zstd(level) = options.compression {
        let levels = compression::zstd_levels();
        if !levels.contains(&level) {
            return Err(Error::InvalidArgument(format!(
                "zstd level {level} is outside {} to {}",
                levels.start(),
                levels.end()
            )));
        }
    }
    if options.segment_size < MIN_SEGMENT_SIZE || options.segment_size > u64::from(u32::MAX) {
        return Err(Error::InvalidArgument(format!(
            "segment_size must be between {MIN_SEGMENT_SIZE} and {} bytes",
            u32::MAX
        )));
    }
    if options.max_value_size > MAX_VALUE_SIZE_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "max_value_size may not exceed {MAX_VALUE_SIZE_LIMIT} bytes (default {DEFAULT_MAX_VALUE_SIZE})"
        )));
    }
    if !(options.compaction_threshold > 0.0 && options.compaction_threshold < 1.0) {
        return Err(Error::InvalidArgument("compaction_threshold must lie strictly between 0 and 1".into()));
    }
    if let Durability::Periodic(interval) = options.durability {
        if interval.is_zero() {
            return Err(Error::InvalidArgument("a periodic sync interval must be positive".into()));
        }
    }
    Ok(())
}

/// Makes sure `path` is a directory, creating it for a writable open.
fn prepare_directory(path: &Path, read_only: bool) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!("{} exists and is not a directory", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !read_only => Ok(io::create_directory(path)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::InvalidArgument(format!("no store at {} to open read-only", path.display())))
        }
        Err(error) => Err(error.into()),
    }
}

/// Takes the writer's lock on the store, or fails with `Error::Locked`.
fn lock_store(path: &Path) -> Result<File> {
    let file = io::create(&path.join(LOCK_FILE), false)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => Err(Error::Locked { path: path.to_path_buf() }),
        Err(errno) => Err(Error::Io(errno.into())),
    }
}

/// Writes the identity file of this build's format version and `compression`,
/// durably.
pub(super) fn write_identity(path: &Path, compression: Compression) -> Result<()> {
    Ok(io::replace_in(path, IDENTITY_FILE, &StoreHeader::current(compression).encode())?)
}

/// Checks the identity file, creating it in an empty directory (with the compression
/// `options` chose, if any); returns what it holds.
fn check_identity(path: &Path, options: &Options) -> Result<StoreHeader> {
    let read_only = options.read_only;
    let identity = path.join(IDENTITY_FILE);
    match io::read(&identity) {
        Ok(bytes) => match StoreHeader::decode(&bytes) {
            Ok(header) => Ok(header),
            Err(HeaderError::NewerVersion(found)) => {
                Err(Error::UnsupportedVersion { file: identity, found, supported: FORMAT_VERSION })
            }
            Err(HeaderError::Invalid(reason)) => Err(Error::corruption(identity, 0, reason)),
            Err(HeaderError::Blank) => Err(Error::corruption(identity, 0, "blank identity file")),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // The lock file, and the identity file's temporary left by an open that
            // failed while creating the store, are this store's own.
            let temporary_name = format!("{IDENTITY_FILE}.tmp");
            let foreign = io::read_dir(path)?
                .filter_map(|entry| entry.ok())
                .any(|entry| entry.file_name() != LOCK_FILE && entry.file_name().to_str() != Some(&temporary_name));
            if foreign {
                return Err(Error::InvalidArgument(format!(
                    "{} holds files but is not an AlexStorage store",
                    path.display()
                )));
            }
            if read_only {
                return Err(Error::InvalidArgument(format!("no store at {} to open read-only", path.display())));
            }
            let created = StoreHeader::current(options.compression);
            write_identity(path, created.compression)?;
            // The store directory's own entry must outlive a power cut as much as the
            // files in it: sync its parent (on every attempt until the store exists,
            // in case an earlier one made the directory and died).
            let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match io::sync_directory(parent) {
                Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                    // A parent we may not open for reading: its entry is the file
                    // system's to keep, as it was before this store.
                    tracing::warn!(dir = %parent.display(), "could not sync the store's parent directory: {error}");
                    Ok(created)
                }
                synced => synced.map(|()| created).map_err(Error::from),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// Starts the writeback worker (`Options::writeback_step`): woken by a writer once the
/// active segment holds a step of bytes past its last sync or early writeback, it
/// starts the kernel writing them back, outside every lock, so that the sync that
/// later makes them durable (the seal at a roll-over, in the writer's section) waits
/// for little.
fn start_writeback_worker(engine: &Arc<Engine>) -> Result<Worker> {
    let engine: Weak<Engine> = Arc::downgrade(engine);
    Worker::spawn("alexstorage-writeback", Next::OnWake, move |_| {
        let Some(engine) = engine.upgrade() else { return Next::Exit };
        let active = engine.writer.lock().log.active().cloned();
        if let Some(segment) = active {
            segment.start_writeback();
        }
        Next::OnWake
    })
}

/// Starts the background syncer of `Durability::Periodic`: every `interval` it syncs
/// the log; a failed sync poisons the store and ends it.
fn start_periodic_syncer(engine: &Arc<Engine>, interval: Duration) -> Result<Worker> {
    let engine: Weak<Engine> = Arc::downgrade(engine);
    Worker::spawn("alexstorage-sync", Next::After(interval), move |_| {
        let Some(engine) = engine.upgrade() else { return Next::Exit };
        match engine.sync_or_poison(&engine.segments()) {
            Ok(()) => Next::After(interval),
            Err(_) => Next::Exit,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: i64, sequence: u64, offset: u32) -> Replayed {
        Replayed::Put { column_family: 0, key, sequence, location: Location::new(1, offset), len: 40 }
    }

    #[test]
    fn replay_keeps_the_newest_write_of_each_key_and_the_later_of_equal_ones() {
        for dedupe_at in [2, REPLAY_DEDUPE_MIN] {
            let catalog = Catalog::default();
            let mut replay = Replay { catalog: &catalog, writes: Vec::new(), dedupe_at };
            replay.apply(put(1, 5, 100));
            replay.apply(put(2, 6, 200));
            replay.apply(put(1, 3, 300));
            replay.apply(Replayed::Delete { column_family: 0, key: 2, sequence: 7 });
            replay.apply(put(3, 9, 400));
            // The same write replayed again (a compacted copy, then its original).
            replay.apply(put(1, 5, 500));
            replay.apply(put(2, 4, 600));
            let families = replay.by_family();
            let default: Vec<(i64, u64, Option<u32>)> = families[&0]
                .iter()
                .map(|(key, latest)| (*key, latest.sequence, latest.put.map(|(location, _)| location.offset())))
                .collect();
            assert_eq!(default, vec![(1, 5, Some(500)), (2, 7, None), (3, 9, Some(400))], "dedupe at {dedupe_at}");
        }
    }

    #[test]
    fn merging_writes_into_checkpoint_entries_matches_a_map() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for round in 0..200 {
            let span = 1 + next(300) as i64;
            let mut model: BTreeMap<i64, u64> = BTreeMap::new();
            for _ in 0..next(200) {
                model.insert(next(span as u64) as i64 - span / 2, next(1000));
            }
            let entries: Vec<(i64, u64)> = model.iter().map(|(&key, &location)| (key, location)).collect();
            let mut writes: BTreeMap<i64, Latest> = BTreeMap::new();
            for _ in 0..next(100) {
                let key = next(span as u64 + 20) as i64 - span / 2 - 10;
                let put = (next(3) > 0).then(|| (Location::new(2, next(1 << 20) as u32), next(500) as u32 + 1));
                writes.insert(key, Latest { sequence: 1, put });
            }
            let (mut superseded, mut put_bytes) = (Vec::new(), 0u64);
            let mut expected_superseded = Vec::new();
            for (key, latest) in &writes {
                if let Some(old) = model.get(key) {
                    expected_superseded.push(*old);
                }
                match latest.put {
                    Some((location, _)) => model.insert(*key, location.0),
                    None => model.remove(key),
                };
            }
            let merged = merge_writes(
                entries,
                writes.iter().map(|(&key, &latest)| (key, latest)).collect(),
                &mut |old| superseded.push(old),
                |len| put_bytes += u64::from(len),
            );
            let expected: Vec<(i64, u64)> = model.iter().map(|(&key, &location)| (key, location)).collect();
            assert_eq!(merged, expected, "round {round}");
            assert_eq!(superseded, expected_superseded, "round {round}");
            let expected_put: u64 =
                writes.values().filter_map(|latest| latest.put).map(|(_, len)| u64::from(len)).sum();
            assert_eq!(put_bytes, expected_put, "round {round}");
        }
    }
}
