//! MVCC bookkeeping: the registry of live snapshots and the superseded versions kept
//! for them.
//!
//! Every committed write has a sequence number (a batch's writes share one). The index
//! maps each key to its latest version only; the record in the log carries the
//! version's sequence. When a write supersedes (overwrites or deletes) a version that a
//! live snapshot can still see, the superseded version goes into [`History`]: key ->
//! `(from, until, location)`, the sequence range in which it was the key's value. A
//! snapshot taken at sequence `S` reads a key as:
//! 1. the latest version, if its record's sequence is `<= S`; else
//! 2. the history version with `from <= S < until`, if there is one; else
//! 3. absent (the key was created after `S`, or deleted before it).
//!
//! A superseded version is kept only if some live snapshot's sequence is `>= from`
//! (its `until` is the new write's sequence, above every live snapshot). When a
//! snapshot is dropped while others live, versions no live snapshot falls within are
//! pruned in batches (once the kept versions have doubled since the last prune, and
//! number at least `PRUNE_AT`); with no snapshot left the whole history goes. Their log records stay on disk until
//! compaction, which must keep every record a live snapshot can reach.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::log::Location;
use crate::value::Lease;

use super::record::record_sequence;
use super::{Engine, Slot, View};

/// A version superseded while a snapshot could still see it.
#[derive(Clone, Debug)]
pub(crate) struct OldVersion {
    /// Sequence of the write that created it.
    pub from: u64,
    /// Sequence of the write that superseded it.
    pub until: u64,
    /// Its record.
    pub location: Location,
    /// Keeps the record's segment mapped: compaction may retire the segment (and
    /// delete its file) while a snapshot still needs this version.
    pub lease: Option<Arc<Lease>>,
}

/// Superseded versions that live snapshots may read, by (family id, key).
#[derive(Debug, Default)]
pub(crate) struct History {
    versions: BTreeMap<(u16, i64), Vec<OldVersion>>,
    count: usize,
}

impl History {
    /// Keeps `version` of `key` of the family with id `family`.
    pub fn keep(&mut self, family: u16, key: i64, version: OldVersion) {
        self.versions.entry((family, key)).or_default().push(version);
        self.count += 1;
    }

    /// The version of `key` of family `family` that was current at `sequence`, if one
    /// is kept.
    pub fn at(&self, family: u16, key: i64, sequence: u64) -> Option<Slot> {
        if self.count == 0 {
            return None;
        }
        let versions = self.versions.get(&(family, key))?;
        versions
            .iter()
            .find(|version| version.from <= sequence && sequence < version.until)
            .map(|version| Slot { location: version.location, lease: version.lease.clone() })
    }

    /// Number of versions kept.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Drops every version that no sequence in `live` falls within.
    pub fn prune(&mut self, live: &BTreeMap<u64, usize>) {
        let mut count = 0;
        self.versions.retain(|_, versions| {
            versions.retain(|version| live.range(version.from..version.until).next().is_some());
            count += versions.len();
            !versions.is_empty()
        });
        self.count = count;
    }

    /// Takes everything out (for dropping outside the lock).
    pub fn take(&mut self) -> History {
        std::mem::take(self)
    }

    /// Takes out every version of the family with id `family` (it was dropped), for
    /// the caller to free outside the lock.
    pub fn remove_family(&mut self, family: u16) -> Vec<Vec<OldVersion>> {
        let keys: Vec<(u16, i64)> =
            self.versions.range((family, i64::MIN)..=(family, i64::MAX)).map(|(key, _)| *key).collect();
        let mut removed = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(versions) = self.versions.remove(&key) {
                self.count -= versions.len();
                removed.push(versions);
            }
        }
        removed
    }

    /// Keys of family `family` with kept versions in `(lo, hi)`, ascending or
    /// descending, at most `limit`.
    pub fn keys(&self, family: u16, lo: Bound<i64>, hi: Bound<i64>, descending: bool, limit: usize) -> Vec<i64> {
        if range_is_empty(lo, hi) || self.count == 0 {
            return Vec::new();
        }
        let within = |bound: Bound<i64>, unbounded: i64| match bound {
            Bound::Included(key) => Bound::Included((family, key)),
            Bound::Excluded(key) => Bound::Excluded((family, key)),
            Bound::Unbounded => Bound::Included((family, unbounded)),
        };
        let range = self.versions.range((within(lo, i64::MIN), within(hi, i64::MAX))).map(|(key, _)| key.1);
        if descending {
            range.rev().take(limit).collect()
        } else {
            range.take(limit).collect()
        }
    }
}

/// Whether no key satisfies both bounds (`BTreeMap::range` panics on some of these).
pub(crate) fn range_is_empty(lo: Bound<i64>, hi: Bound<i64>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a), Bound::Excluded(b)) | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        (Bound::Excluded(a), Bound::Excluded(b)) => a >= b || a.checked_add(1) == Some(b),
        _ => false,
    }
}

/// The registry of live snapshots.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// Live snapshots: sequence -> how many (lock order 5).
    live: Mutex<BTreeMap<u64, usize>>,
    /// 1 + the newest live snapshot's sequence, 0 if none. Changed under `live`
    /// (registering also holds the view shared, so no write publishes in between);
    /// read by writers under the exclusive view lock.
    newest: AtomicU64,
    /// `view.history.len()`, readable without the view's lock.
    retained: AtomicUsize,
    /// `view.history.len()` right after the last prune: the next one waits until the
    /// kept versions have doubled (so that versions live snapshots still need do not
    /// make every release walk them all).
    pruned_to: AtomicUsize,
}

impl Versions {
    /// Whether any snapshot is live (writers then keep what they supersede).
    #[inline]
    pub fn any_live(&self) -> bool {
        self.newest.load(Ordering::Acquire) != 0
    }

    /// Records how many versions the view keeps (after a change under the exclusive
    /// view lock that removed some outside the usual paths: a dropped family's).
    pub fn set_retained(&self, count: usize) {
        self.retained.store(count, Ordering::SeqCst);
    }

    /// Number of live snapshots.
    pub fn live_count(&self) -> usize {
        self.live.lock().values().sum()
    }
}

/// A registered point in time: keeps its versions reachable until dropped.
pub(crate) struct Registration {
    /// The store it reads.
    pub engine: Arc<Engine>,
    /// The sequence of the last write it sees.
    pub sequence: u64,
    /// The number of keys at that sequence.
    pub len: usize,
}

/// Kept versions past which releasing a snapshot prunes them even while other
/// snapshots are live.
const PRUNE_AT: usize = 64;

impl Drop for Registration {
    fn drop(&mut self) {
        self.engine.release_snapshot(self.sequence);
    }
}

/// Where the version a write supersedes is, and its sequence: read before the
/// exclusive section (see [`Engine::old_version`]).
pub(crate) type Hint = (Location, u64);

impl Engine {
    /// Registers a snapshot of the current state.
    pub fn register_snapshot(self: &Arc<Self>) -> Registration {
        let view = self.read_view();
        let sequence = view.sequence;
        let len = view.index.len();
        let mut live = self.versions.live.lock();
        *live.entry(sequence).or_insert(0) += 1;
        let newest = live.last_key_value().map_or(0, |(newest, _)| newest + 1);
        self.versions.newest.store(newest, Ordering::SeqCst);
        drop(live);
        drop(view);
        Registration { engine: Arc::clone(self), sequence, len }
    }

    /// Unregisters a snapshot and drops the versions only it kept.
    fn release_snapshot(&self, sequence: u64) {
        // The common case (a range or snapshot dropped while nothing is kept) takes
        // no view lock at all, so dropping a range never waits for, or blocks, others.
        let others_live = {
            let mut live = self.versions.live.lock();
            if let Some(count) = live.get_mut(&sequence) {
                *count -= 1;
                if *count > 0 {
                    // Another snapshot at the same sequence still sees the same versions.
                    return;
                }
                live.remove(&sequence);
            }
            let newest = live.last_key_value().map_or(0, |(newest, _)| newest + 1);
            self.versions.newest.store(newest, Ordering::SeqCst);
            !live.is_empty()
        };
        // A writer that read the old `newest` may still add a version after this
        // check; `retire` drops such leftovers when it next runs with no snapshot live.
        let retained = self.versions.retained.load(Ordering::SeqCst);
        if retained == 0 {
            return;
        }
        // While other snapshots live (transactions overlapping one another, say),
        // pruning is put off until the kept versions number PRUNE_AT and have doubled
        // since the last prune: each prune takes the exclusive section and walks every
        // kept version. Meanwhile the versions it would drop cost memory, and their
        // leases keep retired segments mapped (and their disk blocks allocated). The
        // last snapshot released drops them all.
        let threshold = PRUNE_AT.max(2 * self.versions.pruned_to.load(Ordering::Relaxed));
        if others_live && retained < threshold {
            return;
        }
        let mut view = self.write_view();
        let live = self.versions.live.lock();
        let garbage = if live.is_empty() {
            view.history.take()
        } else {
            view.history.prune(&live);
            History::default()
        };
        self.versions.retained.store(view.history.len(), Ordering::SeqCst);
        self.versions.pruned_to.store(view.history.len(), Ordering::Relaxed);
        drop(live);
        drop(view);
        // Freed outside the locks.
        drop(garbage);
    }

    /// Where the current version of `key` is and its sequence, read before the
    /// exclusive section (so that reading a record, which may fault a page in, never
    /// happens while readers are locked out), if snapshots are live. Called by the
    /// writer, so the index cannot change before the write is published.
    #[inline]
    pub fn old_version(&self, family: u16, key: i64) -> Option<Hint> {
        if !self.versions.any_live() {
            return None;
        }
        let slot = {
            let view = self.read_view();
            let location = view.index_by_id(family)?.get(key)?;
            view.slot(Location(location))
        };
        Some((slot.location, record_sequence(slot.lease?.segment(), slot.location)?))
    }

    /// [`Engine::old_version`] for each of `keys` (one lookup under the shared lock,
    /// then the records read outside it); `None` if no snapshot is live.
    pub fn old_versions(&self, keys: impl Iterator<Item = (u16, i64)>) -> Option<HashMap<(u16, i64), Hint>> {
        if !self.versions.any_live() {
            return None;
        }
        let slots: Vec<((u16, i64), Slot)> = {
            let view = self.read_view();
            keys.filter_map(|(family, key)| {
                let location = view.index_by_id(family)?.get(key)?;
                Some(((family, key), view.slot(Location(location))))
            })
            .collect()
        };
        let read = |(key, slot): ((u16, i64), Slot)| {
            Some((key, (slot.location, record_sequence(slot.lease?.segment(), slot.location)?)))
        };
        Some(slots.into_iter().filter_map(read).collect())
    }

    /// Called (under the exclusive view) when the write with `sequence` supersedes
    /// the version of `key` at `old`: keeps that version if a live snapshot sees it.
    /// `hint` is [`Engine::old_version`]'s answer, if it was asked.
    #[inline]
    pub fn retire(&self, view: &mut View, family: u16, key: i64, old: Location, sequence: u64, hint: Option<Hint>) {
        let newest = self.versions.newest.load(Ordering::SeqCst);
        if newest == 0 {
            if view.history.len() > 0 {
                // Left by a write that raced the release of the last snapshot.
                view.history = History::default();
                self.versions.retained.store(0, Ordering::SeqCst);
            }
            return;
        }
        let from = match hint {
            Some((location, from)) if location == old => Some(from),
            // A snapshot registered after the hint was skipped, or a batch: read now.
            _ => view.slot(old).lease.and_then(|lease| record_sequence(lease.segment(), old)),
        };
        // Unreadable: the version is not kept, and a snapshot reading the key reports
        // the corruption through the latest version's read instead.
        let Some(from) = from else { return };
        // `newest` is 1 + the newest live snapshot sequence.
        if newest > from {
            let lease = view.slot(old).lease;
            view.history.keep(family, key, OldVersion { from, until: sequence, location: old, lease });
            self.versions.retained.store(view.history.len(), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ranges() {
        use Bound::*;
        assert!(range_is_empty(Included(2), Included(1)));
        assert!(!range_is_empty(Included(1), Included(1)));
        assert!(range_is_empty(Included(1), Excluded(1)));
        assert!(range_is_empty(Excluded(1), Excluded(2)));
        assert!(!range_is_empty(Excluded(1), Excluded(3)));
        assert!(!range_is_empty(Unbounded, Excluded(i64::MIN + 1)));
    }

    #[test]
    fn history_keeps_what_live_snapshots_see() {
        let mut history = History::default();
        let version = |from, until, location| OldVersion { from, until, location: Location(location), lease: None };
        history.keep(0, 1, version(1, 5, 10));
        history.keep(0, 1, version(5, 9, 11));
        history.keep(0, 2, version(2, 3, 12));
        history.keep(3, 1, version(1, 9, 13));
        let at = |history: &History, key, sequence| history.at(0, key, sequence).map(|slot| slot.location);
        assert_eq!(history.at(3, 1, 4).map(|slot| slot.location), Some(Location(13)));
        assert_eq!(history.keys(3, Bound::Unbounded, Bound::Unbounded, false, 10), [1]);
        assert_eq!(history.keys(0, Bound::Unbounded, Bound::Unbounded, true, 10), [2, 1]);
        history.remove_family(3);
        assert_eq!(history.len(), 3);
        assert_eq!(history.at(3, 1, 4).map(|slot| slot.location), None);
        assert_eq!(at(&history, 1, 4), Some(Location(10)));
        assert_eq!(at(&history, 1, 5), Some(Location(11)));
        assert_eq!(at(&history, 1, 9), None);
        let live: BTreeMap<u64, usize> = [(6, 1)].into_iter().collect();
        history.prune(&live);
        assert_eq!(history.len(), 1);
        assert_eq!(at(&history, 1, 6), Some(Location(11)));
        assert_eq!(at(&history, 2, 2), None);
    }
}
