//! [`Transaction`]: optimistic transactions, serializable for what they read.
//!
//! A transaction is a snapshot taken at begin, the transaction's own writes (a sorted
//! map, kept in memory), and a record of what it read ([`reads`]): the keys it looked
//! up, found or not, and the part of every range it iterated. Reads see the snapshot
//! with the transaction's own writes on top; nobody else sees those writes before
//! commit. It holds no lock while open, so it blocks no reader, writer or other
//! transaction.
//!
//! `commit` turns the writes into one batch (one record group in the log: all or
//! nothing after any crash) and writes it through the store's ordinary write path
//! (group commit included), with one check run inside the writer's section, where no
//! other write can land: every key it read and every key in every part of a range it
//! read must still be as the snapshot saw it (no newer version, and not deleted
//! since). If one is not, the commit writes nothing and fails with
//! [`Error::Conflict`] naming the key (and the range it was written into). Passing
//! the check means everything the transaction read is what the store holds at the
//! moment its batch is applied, so committed transactions are serializable in commit
//! order, phantoms included. A transaction that wrote nothing commits without a
//! check (what it read was one consistent snapshot); one that read nothing commits
//! without a check too.
//!
//! The check costs O(what the transaction read): one index lookup and one record
//! header per key, and a walk of the index and kept versions over each range part it
//! read; never O(the store) nor O(the writes since it began). It runs first outside
//! the writer's section (a conflict found there is final) and again inside it only if
//! writes landed in between. Compaction moves records but keeps their sequence
//! numbers, so it causes no conflict. A key the transaction wrote and then read back
//! (in `get` or a range) counts as read in a range part: a write to it by another
//! conflicts, as in RocksDB, though the transaction saw its own value.
//!
//! A range a transaction made reads its snapshot; once the transaction commits or is
//! dropped, the range returns one `Err(Error::InvalidArgument)` and ends: what it
//! returned later would not have been checked.
//!
//! Memory: an open transaction keeps its snapshot (so the versions it can see are
//! kept, as for any [`crate::Snapshot`]), its writes, and one entry per key read and
//! per range read.

mod merge;
mod reads;

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::engine::range_is_empty;
use crate::family::FamilyRef;
use crate::{ColumnFamily, Db, Error, Range, Result, Snapshot, Value, WriteBatch};

use merge::Merged;
use reads::Reads;

/// How many times [`Db::transact`] runs a transaction that keeps conflicting.
pub const DEFAULT_ATTEMPTS: u32 = 16;

/// An optimistic transaction, serializable for what it read: made by
/// [`Db::transaction`], ended by [`Transaction::commit`] or [`Transaction::rollback`]
/// (or by dropping it, which rolls it back).
///
/// It reads the snapshot taken when it began with its own writes on top (ranges merge
/// them in key order, from both ends); nobody sees its writes before it commits. It
/// holds no lock while open. `commit` writes them as one batch (all or nothing, also
/// across crashes; group-committed in `Durability::Sync`) if nothing it read changed
/// since it began: the keys it looked up, found or not, and every part of a range it
/// iterated, so committed transactions are serializable in commit order, phantoms
/// included. Otherwise it writes nothing and returns [`Error::Conflict`] naming the
/// key (and the range it was written into). The check costs what the transaction read;
/// compaction never causes a conflict; a transaction that only read, or only wrote,
/// never conflicts. An open transaction keeps its snapshot, and the versions it sees,
/// alive: keep transactions short. A range it made ends, with one error, once the
/// transaction commits or is dropped.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let db = alexstorage::Db::open(dir.path()).unwrap();
/// db.put(1, b"100").unwrap();
/// let mut tx = db.transaction();
/// let balance: u32 = std::str::from_utf8(&tx.get(1).unwrap().unwrap()).unwrap().parse().unwrap();
/// tx.put(1, (balance - 30).to_string());
/// tx.put(2, b"30");
/// assert_eq!(db.get(2).unwrap(), None, "nobody sees a write before commit");
/// tx.commit().unwrap();
/// assert_eq!(db.get(1).unwrap().unwrap(), b"70");
/// ```
pub struct Transaction {
    db: Db,
    snapshot: Snapshot,
    /// Its own writes, by (family incarnation, key): a value, or `None` for a delete.
    writes: BTreeMap<(u64, i64), Option<Arc<[u8]>>>,
    /// The named families it wrote, by incarnation (those it read are in `reads`).
    families: BTreeMap<u64, FamilyRef>,
    /// What it read; ranges it made update it as they are iterated.
    reads: Arc<Mutex<Reads>>,
    /// Dropped with the transaction: its ranges that outlive it then end (with an
    /// error) rather than read on unchecked.
    alive: Arc<()>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Transaction")
            .field("sequence", &self.snapshot.sequence())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Begins a transaction on the store as it is now.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            db: self.clone(),
            snapshot: self.snapshot(),
            writes: BTreeMap::new(),
            families: BTreeMap::new(),
            reads: Arc::new(Mutex::new(Reads::default())),
            alive: Arc::new(()),
        }
    }

    /// Runs `body` in a transaction and commits it, running it again in a fresh
    /// transaction after a conflict, up to [`DEFAULT_ATTEMPTS`] times in all, with a
    /// short randomized backoff between attempts. Returns `body`'s result once a
    /// commit succeeds; the last [`Error::Conflict`] if every attempt conflicted; any
    /// other error (from `body` or the commit) at once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = alexstorage::Db::open(dir.path()).unwrap();
    /// let count = db.transact(|tx| {
    ///     let count = tx.get(0)?.map_or(0, |value| value[0]) + 1;
    ///     tx.put(0, [count]);
    ///     Ok(count)
    /// }).unwrap();
    /// assert_eq!(count, 1);
    /// ```
    pub fn transact<T>(&self, body: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        self.transact_with(DEFAULT_ATTEMPTS, body)
    }

    /// [`Db::transact`] with at most `attempts` runs (at least one).
    pub fn transact_with<T>(&self, attempts: u32, mut body: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        let mut backoff = Duration::from_micros(20);
        let mut attempt = 1;
        loop {
            let mut transaction = self.transaction();
            let value = body(&mut transaction)?;
            match transaction.commit() {
                Ok(()) => return Ok(value),
                Err(Error::Conflict { .. }) if attempt < attempts => {
                    // Randomized, so that transactions that collided do not collide
                    // again in step.
                    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                    hasher.write_u32(attempt);
                    let jitter = hasher.finish() % (backoff.as_nanos() as u64 + 1);
                    std::thread::sleep(backoff / 2 + Duration::from_nanos(jitter / 2));
                    backoff = (backoff * 2).min(Duration::from_millis(2));
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Transaction {
    /// The value of `key`: its own write if it wrote it, else the value at begin.
    pub fn get(&self, key: i64) -> Result<Option<Value>> {
        self.get_in(FamilyRef::default_family(), key)
    }

    /// Whether `key` has a value, as [`Transaction::get`] sees it.
    pub fn contains_key(&self, key: i64) -> Result<bool> {
        self.get(key).map(|value| value.is_some())
    }

    /// Sets `key` to `value` when the transaction commits (checked against
    /// `max_value_size` then).
    pub fn put(&mut self, key: i64, value: impl AsRef<[u8]>) {
        self.writes.insert((0, key), Some(Arc::from(value.as_ref())));
    }

    /// Deletes `key` when the transaction commits.
    pub fn delete(&mut self, key: i64) {
        self.writes.insert((0, key), None);
    }

    /// The value of `key` of `family`: its own write if it wrote it, else the value at
    /// begin (none for a family created since). Fails with
    /// [`Error::ColumnFamilyNotFound`] once the family is dropped.
    pub fn get_cf(&self, family: &ColumnFamily, key: i64) -> Result<Option<Value>> {
        self.get_in(family.family(), key)
    }

    /// Whether `key` of `family` has a value, as [`Transaction::get_cf`] sees it.
    pub fn contains_key_cf(&self, family: &ColumnFamily, key: i64) -> Result<bool> {
        self.get_cf(family, key).map(|value| value.is_some())
    }

    /// Sets `key` of `family` to `value` when the transaction commits. A commit
    /// writing a family dropped meanwhile fails with [`Error::ColumnFamilyNotFound`]
    /// and writes nothing.
    pub fn put_cf(&mut self, family: &ColumnFamily, key: i64, value: impl AsRef<[u8]>) {
        let family = self.note(family);
        self.writes.insert((family.incarnation, key), Some(Arc::from(value.as_ref())));
    }

    /// Deletes `key` of `family` when the transaction commits.
    pub fn delete_cf(&mut self, family: &ColumnFamily, key: i64) {
        let family = self.note(family);
        self.writes.insert((family.incarnation, key), None);
    }

    /// [`Transaction::range`] over the keys of `family`.
    pub fn range_cf(&self, family: &ColumnFamily, range: impl RangeBounds<i64>) -> Range {
        self.range_in(family.family(), range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// Notes that the transaction writes `family`.
    fn note(&mut self, family: &ColumnFamily) -> FamilyRef {
        let family = family.family();
        if !family.is_default() {
            self.families.entry(family.incarnation).or_insert_with(|| family.clone());
        }
        family.clone()
    }

    fn get_in(&self, family: &FamilyRef, key: i64) -> Result<Option<Value>> {
        if let Some(write) = self.writes.get(&(family.incarnation, key)) {
            return Ok(write.clone().map(Value::owned));
        }
        self.reads.lock().key(family, key);
        self.snapshot.get_in(family, key)
    }

    /// The keys in `range` as of begin with the transaction's own writes on top,
    /// ascending (or descending with `.rev()`), lazily. What it returns counts as
    /// read: from the range's start to the last key returned (from either end),
    /// the whole range once it is exhausted. Writes the transaction makes after
    /// calling `range` do not show in it.
    pub fn range(&self, range: impl RangeBounds<i64>) -> Range {
        self.range_in(FamilyRef::default_family(), range.start_bound().cloned(), range.end_bound().cloned())
    }

    fn range_in(&self, family: &FamilyRef, lo: Bound<i64>, hi: Bound<i64>) -> Range {
        let incarnation = family.incarnation;
        // (`BTreeMap::range` panics on bounds that cross; such a range is empty.)
        let writes = if range_is_empty(lo, hi) {
            VecDeque::new()
        } else {
            let within = |bound: Bound<i64>, unbounded: i64| match bound {
                Bound::Included(key) => Bound::Included((incarnation, key)),
                Bound::Excluded(key) => Bound::Excluded((incarnation, key)),
                Bound::Unbounded => Bound::Included((incarnation, unbounded)),
            };
            self.writes
                .range((within(lo, i64::MIN), within(hi, i64::MAX)))
                .map(|(key, write)| (key.1, write.clone()))
                .collect()
        };
        let part = self.reads.lock().range(family, lo, hi);
        let alive = Arc::downgrade(&self.alive);
        let snapshot = self.snapshot.range_in(family, lo, hi);
        Range::layered(Merged::new(snapshot, writes, Arc::clone(&self.reads), alive, part))
    }

    /// [`Transaction::range`] over every key.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// The sequence number of the last write its snapshot sees (the state it began
    /// on).
    pub fn sequence(&self) -> u64 {
        self.snapshot.sequence()
    }

    /// How many writes the transaction holds.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    /// Applies every write atomically if nothing the transaction read has changed
    /// since it began; else writes nothing and fails with [`Error::Conflict`]. In
    /// `Durability::Sync` it returns once the writes are durable (group-committed with
    /// other writes). A transaction without writes commits at once.
    pub fn commit(self) -> Result<()> {
        self.commit_sequenced().map(|_| ())
    }

    /// [`Transaction::commit`], returning the sequence number its writes took in the
    /// store's write order (`None` for a transaction without writes, which serializes
    /// at its begin, [`Transaction::sequence`]). Committed transactions are
    /// serializable in this order.
    pub fn commit_sequenced(self) -> Result<Option<u64>> {
        if self.writes.is_empty() {
            return Ok(None);
        }
        let default = FamilyRef::default_family();
        let mut batch = WriteBatch::new();
        for (&(incarnation, key), write) in &self.writes {
            let family = self.families.get(&incarnation).unwrap_or(default);
            match write {
                Some(value) => batch.put_in(family, key, value),
                None => batch.delete_in(family, key),
            };
        }
        // From here on the transaction's ranges read no further: what they returned
        // later would go unchecked.
        let reads = self.reads.lock().end();
        // A family it read must still exist when the batch applies (a drop takes no
        // sequence number, so the check below would not see it).
        for family in reads.families().values() {
            batch.require_family(family);
        }
        let families = reads.families().clone();
        // Checked first outside the writer's section, against the state as of
        // `observed` (a conflict found there is final: what was written after begin
        // stays written after begin). Inside the section it needs checking again only
        // if writes landed since.
        let observed = self.db.visible_sequence();
        let snapshot = self.snapshot;
        let metrics = self.db.metrics();
        let first = check(&snapshot, &reads, &families);
        if let Err(error) = first {
            let counter = match error {
                Error::Conflict { .. } => &metrics.transaction_conflicts,
                _ => &metrics.transaction_errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        let committed = self.db.write_checked(batch, move |last| {
            let checked = if last == observed { Ok(()) } else { check(&snapshot, &reads, &families) };
            // The snapshot is let go before the batch is published, so that the
            // versions it overwrites are not kept for the committing transaction itself.
            drop(snapshot);
            checked
        });
        match &committed {
            Ok(_) => metrics.transactions_committed.fetch_add(1, Ordering::Relaxed),
            Err(Error::Conflict { .. }) => metrics.transaction_conflicts.fetch_add(1, Ordering::Relaxed),
            Err(_) => metrics.transaction_errors.fetch_add(1, Ordering::Relaxed),
        };
        committed
    }

    /// Drops every write; same as dropping the transaction.
    pub fn rollback(self) {}
}

/// The commit check: nothing `reads` holds was written after `snapshot`. `families`
/// names the families the reads' incarnations stand for.
fn check(snapshot: &Snapshot, reads: &Reads, families: &BTreeMap<u64, FamilyRef>) -> Result<()> {
    let family_of = |incarnation: u64| families.get(&incarnation).unwrap_or(FamilyRef::default_family());
    let conflict = |family: &FamilyRef, key, range| Error::Conflict { family: family.name.to_string(), key, range };
    for &(incarnation, key) in reads.keys() {
        let family = family_of(incarnation);
        if snapshot.written_since(family, key)? {
            return Err(conflict(family, key, None));
        }
    }
    for (incarnation, (lo, hi)) in reads.parts() {
        let family = family_of(incarnation);
        if let Some(key) = snapshot.first_written_since(family, lo, hi)? {
            return Err(conflict(family, key, Some((lo, hi))));
        }
    }
    Ok(())
}

/// A bound as an owned pair (for the read record).
pub(crate) type Interval = (Bound<i64>, Bound<i64>);
