//! Property test: random operations on column families against a model (a `BTreeMap`
//! of families, each a `BTreeMap` of keys): puts and deletes in the default family and
//! four named ones (created on first use), batches across families, a batch that also
//! names a dropped family (refused whole), dropping a family and re-creating it by
//! writing again, compaction (also crashing inside it), clean reopen, crash and
//! recovery, and snapshots taken and checked whole later against the model as it was
//! (a family dropped since reads as `ColumnFamilyNotFound` through them). After every
//! step every live family's contents and `len()`, the list of families and the dead
//! handles are checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use alexstorage::{ColumnFamily, Db, Durability, Error, Failpoint, Options, Snapshot, WriteBatch};
use proptest::prelude::*;

/// The families the operations pick from: `""` is the default family.
const NAMES: [&str; 5] = ["", "alpha", "beta", "gamma", "delta"];
/// Keys come from a small range, so that writes overwrite and delete each other.
const KEYS: std::ops::Range<i64> = -20..20;

type Family = BTreeMap<i64, Vec<u8>>;
/// Every live family by name (`""` for the default one, always there).
type Model = BTreeMap<String, Family>;

#[derive(Clone, Debug)]
enum Op {
    Put(usize, i64, u16),
    Delete(usize, i64),
    /// Writes as (family, put or delete, key, value length).
    Batch(Vec<(usize, bool, i64, u16)>),
    /// Puts into live families plus one through the handle of a dropped family.
    DeadBatch(Vec<(usize, i64, u16)>),
    Drop(usize),
    Take,
    Check(usize),
    /// A range of one family over the latest state: bounds, and how it is read.
    CheckRange(usize, (u8, i64), (u8, i64), u8),
    /// Compact; with a failpoint (index into `Failpoint::ALL`, passes to skip), crash
    /// there and reopen.
    Compact(Option<(usize, u64)>),
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let family = 0..NAMES.len();
    let bound = (0u8..3, -22i64..22);
    prop_oneof![
        8 => (family.clone(), KEYS, 0u16..300).prop_map(|(family, key, len)| Op::Put(family, key, len)),
        3 => (family.clone(), KEYS).prop_map(|(family, key)| Op::Delete(family, key)),
        3 => prop::collection::vec((family.clone(), any::<bool>(), KEYS, 0u16..200), 1..10).prop_map(Op::Batch),
        1 => prop::collection::vec((family.clone(), KEYS, 0u16..100), 0..4).prop_map(Op::DeadBatch),
        2 => family.clone().prop_map(Op::Drop),
        2 => Just(Op::Take),
        2 => (0usize..3).prop_map(Op::Check),
        2 => (family, bound.clone(), bound, 0u8..3).prop_map(|(at, lo, hi, how)| Op::CheckRange(at, lo, hi, how)),
        1 => prop::option::of((0..Failpoint::ALL.len(), 0u64..3)).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn value(family: usize, key: i64, len: u16, step: usize) -> Vec<u8> {
    (0..len).map(|index| (usize::from(index).wrapping_mul(31) ^ step ^ (family << 5) ^ key as usize) as u8).collect()
}

/// The name the store knows a model family by.
fn store_name(name: &str) -> &str {
    if name.is_empty() {
        "default"
    } else {
        name
    }
}

fn bound_of((kind, at): (u8, i64)) -> Bound<i64> {
    match kind % 3 {
        0 => Bound::Included(at),
        1 => Bound::Excluded(at),
        _ => Bound::Unbounded,
    }
}

fn expected(family: &Family, lo: Bound<i64>, hi: Bound<i64>) -> Vec<(i64, Vec<u8>)> {
    family.iter().filter(|(key, _)| (lo, hi).contains(*key)).map(|(key, value)| (*key, value.clone())).collect()
}

fn assert_not_found<T: std::fmt::Debug>(result: alexstorage::Result<T>) {
    assert!(matches!(result, Err(Error::ColumnFamilyNotFound(_))), "expected ColumnFamilyNotFound, got {result:?}");
}

/// A snapshot with the model as it was and a handle on every family live then (with
/// its incarnation, see [`Families::generations`]).
struct Taken {
    snapshot: Snapshot,
    model: Model,
    families: Vec<(String, u64, ColumnFamily)>,
}

/// The model and the handles of the open store.
#[derive(Default)]
struct Families {
    model: Model,
    /// A handle per live family, obtained on first use since the store was opened.
    handles: BTreeMap<String, ColumnFamily>,
    /// How many times each name was dropped: a family's incarnation.
    generations: BTreeMap<String, u64>,
    /// Handles of dropped families (the last few).
    dead: Vec<ColumnFamily>,
}

impl Families {
    fn new() -> Families {
        let mut families = Families::default();
        families.model.insert(String::new(), Family::new());
        families
    }

    /// The handle on family `name`, creating the family (in the store and the model)
    /// if it is not there.
    fn handle(&mut self, db: &Db, name: &str) -> ColumnFamily {
        self.model.entry(name.to_owned()).or_default();
        self.handles.entry(name.to_owned()).or_insert_with(|| db.column_family(store_name(name)).unwrap()).clone()
    }

    fn generation(&self, name: &str) -> u64 {
        self.generations.get(name).copied().unwrap_or(0)
    }

    /// Lets go of every handle (they keep the store open), before a reopen.
    fn forget_handles(&mut self) {
        self.handles.clear();
        self.dead.clear();
    }

    /// The store's families, each family's `len()` and contents, and (`full`) every
    /// key's `get` and `contains_key` match the model; dead handles stay dead.
    fn check(&mut self, db: &Db, full: bool) {
        let named: Vec<&str> = self.model.keys().filter(|name| !name.is_empty()).map(String::as_str).collect();
        assert_eq!(db.column_families(), named);
        assert_eq!(db.len(), self.model[""].len());
        let names: Vec<String> = self.model.keys().cloned().collect();
        for name in names {
            let family = self.handle(db, &name);
            let model = &self.model[&name];
            assert_eq!(family.len(), model.len(), "family {name:?}");
            let all = expected(model, Bound::Unbounded, Bound::Unbounded);
            assert_eq!(common::read_range(family.iter(), 0), all, "family {name:?}");
            if full {
                assert_eq!(common::read_range(family.iter(), 1), all, "family {name:?}, backwards");
                for key in KEYS {
                    let got = family.get(key).unwrap().map(|value| value.to_vec());
                    assert_eq!(got.as_ref(), model.get(&key), "family {name:?}, key {key}");
                    assert_eq!(
                        family.contains_key(key).unwrap(),
                        model.contains_key(&key),
                        "family {name:?}, key {key}"
                    );
                }
            }
        }
        if full {
            let default = &self.model[""];
            for key in KEYS {
                let got = db.get(key).unwrap().map(|value| value.to_vec());
                assert_eq!(got.as_ref(), default.get(&key), "default family through the Db, key {key}");
            }
        }
        for family in &self.dead {
            assert_eq!(family.len(), 0, "a dead handle on {:?} counts keys", family.name());
            assert_not_found(family.get(0));
        }
    }

    /// Every family the snapshot held reads as it was, if it is still the same
    /// incarnation; else its reads fail.
    fn check_snapshot(&self, taken: &Taken) {
        let snapshot = &taken.snapshot;
        for (name, generation, family) in &taken.families {
            let live = self.model.contains_key(name) && self.generation(name) == *generation;
            if !live {
                assert_not_found(snapshot.get_cf(family, 0));
                assert_not_found(snapshot.contains_key_cf(family, 0));
                let mut range = snapshot.range_cf(family, ..);
                assert_not_found(range.next().expect("a snapshot range of a dropped family returned nothing"));
                assert!(range.next().is_none(), "a snapshot range of a dropped family went on after its error");
                continue;
            }
            let frozen = &taken.model[name];
            let all = expected(frozen, Bound::Unbounded, Bound::Unbounded);
            assert_eq!(common::read_range(snapshot.range_cf(family, ..), 0), all, "snapshot of family {name:?}");
            for key in KEYS {
                let got = snapshot.get_cf(family, key).unwrap().map(|value| value.to_vec());
                assert_eq!(got.as_ref(), frozen.get(&key), "snapshot of family {name:?}, key {key}");
                assert_eq!(snapshot.contains_key_cf(family, key).unwrap(), frozen.contains_key(&key));
            }
            if name.is_empty() {
                assert_eq!(snapshot.len(), frozen.len());
                assert_eq!(common::read_range(snapshot.range(..), 2), all, "snapshot of the default family");
            }
        }
    }
}

fn run(durability: Durability, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: roll-overs, checkpoints and compactions across several files.
    let open = || Options::new().durability(durability).segment_size(8192).open(dir.path()).unwrap();
    let mut db = open();
    let mut families = Families::new();
    let mut snapshots: Vec<Taken> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(family, key, len) => {
                let name = NAMES[family];
                let bytes = value(family, key, len, step);
                if name.is_empty() {
                    db.put(key, &bytes).unwrap();
                } else {
                    families.handle(&db, name).put(key, &bytes).unwrap();
                }
                families.model.get_mut(name).unwrap_or_else(|| panic!("{name:?} was not created")).insert(key, bytes);
            }
            Op::Delete(family, key) => {
                let name = NAMES[family];
                if name.is_empty() {
                    db.delete(key).unwrap();
                } else {
                    families.handle(&db, name).delete(key).unwrap();
                }
                families.model.get_mut(name).unwrap().remove(&key);
            }
            Op::Batch(writes) => {
                let mut batch = WriteBatch::new();
                for (family, put, key, len) in writes {
                    let name = NAMES[family];
                    let handle = families.handle(&db, name);
                    let bytes = value(family, key, len, step);
                    // The default family's writes go through the plain calls half the time.
                    match (put, name.is_empty() && key % 2 == 0) {
                        (true, true) => batch.put(key, &bytes),
                        (true, false) => batch.put_cf(&handle, key, &bytes),
                        (false, true) => batch.delete(key),
                        (false, false) => batch.delete_cf(&handle, key),
                    };
                    let model = families.model.get_mut(name).unwrap();
                    if put {
                        model.insert(key, bytes);
                    } else {
                        model.remove(&key);
                    }
                }
                db.write(batch).unwrap();
            }
            Op::DeadBatch(writes) => {
                if let Some(stale) = families.dead.last().cloned() {
                    let mut batch = WriteBatch::new();
                    for (family, key, len) in writes {
                        let handle = families.handle(&db, NAMES[family]);
                        batch.put_cf(&handle, key, value(family, key, len, step));
                    }
                    batch.put_cf(&stale, 0, b"through a dropped family");
                    assert_not_found(db.write(batch));
                }
            }
            Op::Drop(family) => {
                let name = NAMES[family];
                if name.is_empty() {
                    assert!(matches!(db.drop_column_family("default"), Err(Error::InvalidArgument(_))));
                } else if families.model.remove(name).is_some() {
                    db.drop_column_family(name).unwrap();
                    *families.generations.entry(name.to_owned()).or_default() += 1;
                    if let Some(handle) = families.handles.remove(name) {
                        if families.dead.len() == 3 {
                            families.dead.remove(0);
                        }
                        families.dead.push(handle);
                    }
                } else {
                    match db.drop_column_family(name) {
                        Err(Error::ColumnFamilyNotFound(missing)) => assert_eq!(missing, name),
                        other => panic!("dropping the missing family {name:?}: {other:?}"),
                    }
                }
            }
            Op::Take => {
                if snapshots.len() == 3 {
                    snapshots.remove(0);
                }
                let names: Vec<String> = families.model.keys().cloned().collect();
                let handles: Vec<(String, u64, ColumnFamily)> = names
                    .into_iter()
                    .map(|name| {
                        let handle = families.handle(&db, &name);
                        let generation = families.generation(&name);
                        (name, generation, handle)
                    })
                    .collect();
                snapshots.push(Taken { snapshot: db.snapshot(), model: families.model.clone(), families: handles });
            }
            Op::Check(at) => {
                if let Some(taken) = snapshots.get(at) {
                    families.check_snapshot(taken);
                }
            }
            Op::CheckRange(family, lo, hi, how) => {
                let name = NAMES[family];
                if families.model.contains_key(name) {
                    let handle = families.handle(&db, name);
                    let (lo, hi) = (bound_of(lo), bound_of(hi));
                    let want = expected(&families.model[name], lo, hi);
                    assert_eq!(
                        common::read_range(handle.range((lo, hi)), how),
                        want,
                        "family {name:?}, {lo:?}..{hi:?}"
                    );
                    if name.is_empty() {
                        assert_eq!(common::read_range(db.range((lo, hi)), how), want, "the Db, {lo:?}..{hi:?}");
                    }
                }
            }
            // Snapshots must read through it unchanged.
            Op::Compact(None) => {
                db.compact().unwrap();
                families.check(&db, true);
            }
            Op::Compact(Some((point, skip))) => {
                snapshots.clear();
                families.forget_handles();
                db.set_compaction_failpoint(Some(Failpoint::ALL[point]), skip);
                // Stops at the failpoint, or finishes if it lies beyond this compaction.
                let _ = db.compact();
                db.simulate_crash();
                db = open();
                families.check(&db, true);
            }
            Op::Reopen => {
                snapshots.clear();
                families.forget_handles();
                drop(db);
                db = open();
                families.check(&db, true);
            }
            // In every mode an acknowledged write survives a process crash.
            Op::Crash => {
                snapshots.clear();
                families.forget_handles();
                db.simulate_crash();
                db = open();
                families.check(&db, true);
            }
        }
        families.check(&db, false);
    }
    for taken in &snapshots {
        families.check_snapshot(taken);
    }
    snapshots.clear();
    families.check(&db, true);
    let report = db.verify().unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
    families.forget_handles();
    drop(db);
    let db = open();
    families.check(&db, true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(32), ..ProptestConfig::default() })]

    #[test]
    fn buffered_families_match_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(Durability::Buffered, ops);
    }

    #[test]
    fn sync_families_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(Durability::Sync, ops);
    }
}
