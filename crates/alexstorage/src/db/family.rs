//! Column families: independent keyspaces in one store ([`ColumnFamily`]), created on
//! first use, listed, and dropped; and the `_cf` methods of batches and snapshots.
//!
//! Each named family has its own ordered index in the view, and its records carry its
//! id. Which families exist is the catalog (`log/catalog.rs`), one small file
//! replaced atomically by every creation and every drop, under the writer's section
//! (families change nowhere else). A family's records are written only once the
//! catalog naming it is durable. A creation or a drop first makes the log durable (so
//! that a power cut cannot keep the change and lose writes acknowledged before it),
//! then replaces the catalog, then changes the view (a drop removes the family's index
//! and kept versions): after any crash the family is wholly there or wholly gone, and
//! the store holds a prefix of its history. Its records become garbage at
//! once (the live-bytes accounting drops them), and compaction, which copies only the
//! families in the view, reclaims their space.

use std::ops::RangeBounds;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::engine::{read_record, Engine, Family, Writer};
use crate::family::{check_name, FamilyRef, DEFAULT_FAMILY_NAME};
use crate::index::Alex;
use crate::log::catalog::{self, Catalog, CatalogEntry};
use crate::{Error, Range, Result, Snapshot, Value, WriteBatch};

use super::{Db, Handle};

/// A handle on one column family: an independent, ordered keyspace in the store,
/// with its own `len`, ranges and snapshots' view of it.
///
/// Made by [`Db::column_family`] (which creates the family on first use). Cheap to
/// clone, `Send + Sync + 'static`. It does not keep the store open (nor locked): once
/// the last [`Db`] handle is dropped, operations through it fail with
/// [`Error::Closed`] (and `len` is 0), though, like a snapshot, it keeps the store's
/// shared state in memory until it is dropped. Once the family is dropped ([`Db::drop_column_family`]) every
/// operation through the handle fails with [`Error::ColumnFamilyNotFound`], even
/// after a family of the same name is created again (which starts empty and needs a
/// new handle).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let db = alexstorage::Db::open(dir.path()).unwrap();
/// let users = db.column_family("users").unwrap();
/// users.put(1, b"ada").unwrap();
/// db.put(1, b"the default family's own key 1").unwrap();
/// assert_eq!(users.get(1).unwrap().unwrap(), b"ada");
/// assert_eq!((users.len(), db.len()), (1, 1));
/// assert_eq!(db.column_families(), ["users"]);
/// db.drop_column_family("users").unwrap();
/// assert!(matches!(users.get(1), Err(alexstorage::Error::ColumnFamilyNotFound(_))));
/// ```
#[derive(Clone)]
pub struct ColumnFamily {
    /// What reads go through (no shared counter is touched per read).
    engine: Arc<Engine>,
    /// The store's handle, held weakly: a family handle does not keep it open.
    handle: Weak<Handle>,
    family: FamilyRef,
}

impl std::fmt::Debug for ColumnFamily {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ColumnFamily")
            .field("name", &self.family.name)
            .field("id", &self.family.id)
            .field("incarnation", &self.family.incarnation)
            .finish()
    }
}

impl Db {
    /// A handle on the column family `name`, creating it (durably) if it does not
    /// exist. `"default"` names the store's own keys (those of [`Db::get`] and
    /// friends). A name is 1 to 255 bytes; others fail with
    /// [`Error::InvalidArgument`]. A store holds at most 65,535 named families at once.
    pub fn column_family(&self, name: &str) -> Result<ColumnFamily> {
        let handle =
            |family| ColumnFamily { engine: Arc::clone(&self.engine), handle: Arc::downgrade(&self._handle), family };
        if name == DEFAULT_FAMILY_NAME {
            return Ok(handle(FamilyRef::default_family().clone()));
        }
        check_name(name)?;
        let existing = self.engine.read_view().families.named(name);
        match existing {
            Some(family) => Ok(handle(family)),
            None => self.create_family(name).map(handle),
        }
    }

    /// The names of the named column families (not the default one), sorted.
    pub fn column_families(&self) -> Vec<String> {
        let view = self.engine.read_view();
        let mut names: Vec<String> = view.families.iter().map(|(_, family)| family.name.to_string()).collect();
        names.sort_unstable();
        names
    }

    /// Drops the column family `name` and everything in it, durably and atomically:
    /// after any crash it is wholly there or wholly gone. Handles on it then fail with
    /// [`Error::ColumnFamilyNotFound`], as do snapshots' and transactions' reads of it;
    /// a family created later under the same name starts empty. Its records become
    /// garbage, which compaction reclaims. Fails with
    /// [`Error::ColumnFamilyNotFound`] if there is no such family, and with
    /// [`Error::InvalidArgument`] for `"default"`.
    pub fn drop_column_family(&self, name: &str) -> Result<()> {
        if name == DEFAULT_FAMILY_NAME {
            return Err(Error::InvalidArgument("the default column family cannot be dropped".into()));
        }
        check_name(name)?;
        if self.engine.options.read_only {
            return Err(Error::ReadOnly);
        }
        let mut writer = self.catalog_section()?;
        let Some(entry) = writer.catalog.families.iter().find(|entry| entry.name == name).cloned() else {
            return Err(Error::ColumnFamilyNotFound(name.to_owned()));
        };
        let mut next = writer.catalog.clone();
        next.families.retain(|other| other.id != entry.id);
        write_catalog(&self.engine.path, &mut writer, next)?;
        let dropped_bytes = writer.family_live_bytes.remove(&entry.id).unwrap_or(0);
        writer.live_bytes = writer.live_bytes.saturating_sub(dropped_bytes);
        writer.dropped_bytes = writer.dropped_bytes.saturating_add(dropped_bytes);
        let store = self.engine.store;
        let family = FamilyRef { id: entry.id, incarnation: entry.incarnation, store, name: Arc::from(name) };
        let removed = {
            let mut view = self.engine.write_view();
            let versions = view.history.remove_family(entry.id);
            self.engine.versions.set_retained(view.history.len());
            (view.families.remove(&family), versions)
        };
        let wake = self.engine.pressure.assess(&self.engine.options, &writer);
        drop(writer);
        // The index and the kept versions (whose leases may be the last holders of
        // retired segments) are freed outside every lock.
        drop(removed);
        if wake {
            self.store.workers.wake_compactor();
        }
        Ok(())
    }

    /// The writer's section, with every write acknowledged so far durable: where the
    /// catalog changes. A creation or a drop is durable when it returns, so the writes
    /// before it must be too, or a power cut could keep the change and lose them (no
    /// prefix of the store's history). Most of the log is synced before the section is
    /// taken, the rest (what landed meanwhile) inside it.
    fn catalog_section(&self) -> Result<parking_lot::MutexGuard<'_, Writer>> {
        self.flush()?;
        let mut writer = self.engine.writer.lock();
        writer.check_usable()?;
        self.engine.sync_in_section(&mut writer)?;
        Ok(writer)
    }

    /// Creates the family `name` (unless another thread just did): a free id, a new
    /// incarnation, the catalog replaced durably, then the empty index published.
    fn create_family(&self, name: &str) -> Result<FamilyRef> {
        if self.engine.options.read_only {
            // Nothing by that name, and none can be made.
            return Err(Error::ColumnFamilyNotFound(name.to_owned()));
        }
        let mut writer = self.catalog_section()?;
        if let Some(family) = self.engine.read_view().families.named(name) {
            return Ok(family);
        }
        let id = writer.catalog.free_id().ok_or_else(|| {
            Error::InvalidArgument(format!("the store holds {} column families, the most it can", u16::MAX))
        })?;
        let incarnation = writer.catalog.next_incarnation.max(1);
        let created_after = writer.sequence;
        let mut next = writer.catalog.clone();
        next.next_incarnation = incarnation
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("the store has created all the column families it can".into()))?;
        next.families.push(CatalogEntry { id, incarnation, created_after, name: name.to_owned() });
        next.families.sort_unstable_by_key(|entry| entry.id);
        write_catalog(&self.engine.path, &mut writer, next)?;
        let name: Arc<str> = Arc::from(name);
        let family = Family { name: Arc::clone(&name), incarnation, index: Alex::new() };
        self.engine.write_view().families.insert(id, family);
        Ok(FamilyRef { id, incarnation, store: self.engine.store, name })
    }
}

/// Replaces the catalog with `next` (under the writer's section, `writer`). If that
/// fails, whether the new catalog took the old one's place is unknown (the rename may
/// have happened without the directory sync): the store refuses writes until a reopen
/// reads what is on disk, since writes to a family the disk may no longer list would
/// be lost.
fn write_catalog(path: &std::path::Path, writer: &mut Writer, next: Catalog) -> Result<()> {
    if let Err(error) = catalog::write(path, &next) {
        writer.poisoned = Some(format!("replacing the column-family catalog failed: {error}"));
        return Err(error);
    }
    writer.catalog = next;
    Ok(())
}

impl ColumnFamily {
    /// The family's name (`"default"` for the store's own keys).
    pub fn name(&self) -> &str {
        &self.family.name
    }

    /// The store, while it is open: for writes.
    fn db(&self) -> Result<Db> {
        let handle = self.handle.upgrade().ok_or(Error::Closed)?;
        let store = Arc::clone(&handle.0);
        Ok(Db { engine: Arc::clone(&store.engine), store, _handle: handle })
    }

    /// The engine, while the store is open: for reads.
    #[inline]
    fn engine(&self) -> Result<&Engine> {
        if self.engine.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(&self.engine)
    }

    /// Inserts or overwrites `key`.
    pub fn put(&self, key: i64, value: impl AsRef<[u8]>) -> Result<()> {
        self.db()?.put_in(&self.family, key, value.as_ref())
    }

    /// The latest value of `key`.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        let engine = self.engine()?;
        engine.metrics.reads.gets(1);
        let slot = engine.read_view().locate_in(&self.family, key)?;
        match slot {
            None => Ok(None),
            Some(slot) => {
                let (_, value) = read_record(&engine.path, slot.location, slot.lease, self.family.id, key)?;
                engine.metrics.reads.bytes(value.len() as u64);
                Ok(Some(value))
            }
        }
    }

    /// The latest values of `keys` in this family, one result per key, in order: as
    /// [`Db::multi_get`].
    pub fn multi_get(&self, keys: &[i64]) -> Result<Vec<Option<Value>>> {
        self.engine()?;
        super::multi_get_in(&self.engine, &self.family, keys)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        let view = self.engine()?.read_view();
        let index = view.index_of(&self.family).ok_or_else(|| self.family.missing())?;
        Ok(index.contains_key(key))
    }

    /// Deletes `key`; deleting an absent key is `Ok(())` and writes nothing.
    pub fn delete(&self, key: i64) -> Result<()> {
        self.db()?.delete_in(&self.family, key)
    }

    /// The keys in `range` with their values, ascending (`.rev()` for descending), as
    /// of this call: a lazy iterator over a snapshot taken now. Once the family is
    /// dropped it yields one `Err(Error::ColumnFamilyNotFound)`; once the store is
    /// closed, one `Err(Error::Closed)`.
    pub fn range(&self, range: impl RangeBounds<i64>) -> Range {
        if let Err(error) = self.engine() {
            return Range::failed(error);
        }
        let snapshot = Snapshot::new(self.engine.register_snapshot());
        snapshot.range_in(&self.family, range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Every key with its value, ascending: `range(..)`.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// Number of live keys (exact); 0 once the family is dropped or the store closed.
    pub fn len(&self) -> usize {
        self.engine().map_or(0, |engine| engine.read_view().index_of(&self.family).map_or(0, Alex::len))
    }

    /// Whether the family holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What names the family inside the crate (transactions use it).
    pub(crate) fn family(&self) -> &FamilyRef {
        &self.family
    }
}

/// Batches across families.
impl WriteBatch {
    /// Sets `key` of `family` to `value`. The batch stays one atomic write, whatever
    /// families it spans; it fails, writing nothing, if one of them was dropped.
    pub fn put_cf(&mut self, family: &ColumnFamily, key: i64, value: impl AsRef<[u8]>) -> &mut Self {
        self.put_in(&family.family, key, value.as_ref())
    }

    /// Deletes `key` of `family`.
    pub fn delete_cf(&mut self, family: &ColumnFamily, key: i64) -> &mut Self {
        self.delete_in(&family.family, key)
    }
}

/// Snapshots cover every family.
impl Snapshot {
    /// The value `key` of `family` had when the snapshot was taken (none for a family
    /// created since). Fails with [`Error::ColumnFamilyNotFound`] once the family is
    /// dropped.
    pub fn get_cf(&self, family: &ColumnFamily, key: i64) -> Result<Option<Value>> {
        self.get_in(&family.family, key)
    }

    /// The values `keys` of `family` had when the snapshot was taken, one result per
    /// key, in order: as [`Snapshot::get_cf`] of each, faster per key.
    pub fn multi_get_cf(&self, family: &ColumnFamily, keys: &[i64]) -> Result<Vec<Option<Value>>> {
        self.multi_get_in(&family.family, keys)
    }

    /// Whether `key` of `family` had a value when the snapshot was taken.
    pub fn contains_key_cf(&self, family: &ColumnFamily, key: i64) -> Result<bool> {
        self.get_cf(family, key).map(|value| value.is_some())
    }

    /// The keys of `family` in `range` as of the snapshot, ascending (or descending
    /// with `.rev()`). Once the family is dropped it yields one
    /// `Err(Error::ColumnFamilyNotFound)`.
    pub fn range_cf(&self, family: &ColumnFamily, range: impl RangeBounds<i64>) -> Range {
        self.range_in(&family.family, range.start_bound().cloned(), range.end_bound().cloned())
    }
}
