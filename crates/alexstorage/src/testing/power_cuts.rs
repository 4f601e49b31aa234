//! Power cuts, played two ways, and the contract they are checked against: after a
//! reopen the store holds a state that existed (a prefix of the write order, batches
//! whole) that includes every write acknowledged as durable (a `Sync` write that
//! returned, everything before a `flush()` that returned), and it goes on working.
//!
//! - `run_operations` (feature `fault-injection`): random puts, deletes, batches
//!   (across column families), creations and drops of column families, flushes,
//!   compactions, snapshots, clean reopens, process crashes and power cuts against a
//!   `BTreeMap` model of every family, on a store of small segments (so roll-overs and the
//!   checkpoints they write happen every few dozen writes). Its power cuts come from
//!   the simulated disk of the I/O seam (`testing::disk`): every file's unsynced pages
//!   kept, lost or torn at a sector independently, unsynced directory entries undone,
//!   unsynced files short. Shared by the cargo-fuzz target `power_cuts` and its
//!   bounded property-test twin, `tests/power_cut_model.rs`.
//! - [`cut_power_after_kill`]: for a parent process that killed a writer, every page of
//!   the newest segment past the end its durable marks claim (or the end the harness
//!   knows was durable, after its own clean close) lost, kept or torn.

// A harness: a broken contract is a panic, which the fuzzer and the tests report. No
// program that uses the store reaches this module.
#![allow(clippy::panic)]

#[cfg(feature = "fault-injection")]
pub use model::{run_operations, Outcome};

use std::os::unix::fs::FileExt;
use std::path::Path;

const PAGE: u64 = 4096;

#[cfg(feature = "fault-injection")]
mod model {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::log::io::faults::{self, Fault, Plan};
    use crate::log::io::power;
    use crate::{ColumnFamily, Db, Durability, Error, Options, Snapshot, WriteBatch};

    /// Writes per run at most.
    const MAX_WRITES: usize = 400;

    /// One family's keys.
    type Keys = BTreeMap<i64, Vec<u8>>;
    /// Every family's keys, by name; the default family is `""` (always there).
    type Model = BTreeMap<String, Keys>;

    /// The families a run writes: the default one, and two named ones it creates on
    /// first use and drops.
    const FAMILIES: [&str; 3] = ["", "a", "b"];

    /// The family an operation byte names: mostly the default one.
    fn family_of(op: u8) -> &'static str {
        match (op / 12) % 5 {
            3 => FAMILIES[1],
            4 => FAMILIES[2],
            _ => FAMILIES[0],
        }
    }

    /// Handles on named families, with their names.
    type Handles = Vec<(String, ColumnFamily)>;

    /// A model with only the empty default family.
    fn empty_model() -> Model {
        BTreeMap::from([(String::new(), Keys::new())])
    }

    /// What a run did.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct Outcome {
        /// Writes acknowledged (and kept: those a power cut took away are not counted).
        pub writes: usize,
        /// Power cuts, each followed by a reopen checked against the contract.
        pub cuts: usize,
        /// Process crashes (no power cut) followed by a checked reopen.
        pub crashes: usize,
        /// Compactions that ran.
        pub compactions: usize,
        /// Of those, incremental ones that left some segments in place (the others
        /// rewrote everything, or found nothing to do).
        pub incremental_compactions: usize,
        /// Snapshots read back whole and found to hold the state they were taken at.
        pub snapshots: usize,
        /// Unsynced pages the power cuts lost or tore.
        pub pages_dropped: usize,
        /// Unsynced directory entry changes the power cuts undid.
        pub entries_undone: usize,
        /// Unsynced files the power cuts left short.
        pub files_cut_short: usize,
        /// Recoveries a fault made fail (each then run again and checked).
        pub recoveries_interrupted: usize,
        /// Faults that fired inside an operation (each then a crash or power cut).
        pub faults: usize,
        /// Acknowledged writes (not durable) that power cuts took away.
        pub writes_lost_to_cuts: usize,
        /// Runs in `Sync` mode (the rest were `Buffered`).
        pub sync_runs: usize,
        /// Column families created and dropped (acknowledged).
        pub family_changes: usize,
    }

    impl Outcome {
        /// Adds `other`'s counts to these.
        pub fn add(&mut self, other: &Outcome) {
            self.writes += other.writes;
            self.cuts += other.cuts;
            self.crashes += other.crashes;
            self.compactions += other.compactions;
            self.incremental_compactions += other.incremental_compactions;
            self.snapshots += other.snapshots;
            self.pages_dropped += other.pages_dropped;
            self.entries_undone += other.entries_undone;
            self.files_cut_short += other.files_cut_short;
            self.recoveries_interrupted += other.recoveries_interrupted;
            self.faults += other.faults;
            self.writes_lost_to_cuts += other.writes_lost_to_cuts;
            self.sync_runs += other.sync_runs;
            self.family_changes += other.family_changes;
        }
    }

    /// The value the harness writes for `key` at write number `write`.
    fn value_of(key: i64, write: usize) -> Vec<u8> {
        let len = (key.unsigned_abs() as usize * 7 + write * 13) % 300;
        (0..len).map(|index| (write as u8).wrapping_mul(31) ^ (key as u8).wrapping_add(index as u8)).collect()
    }

    /// One run: the store, the model, and what is durable.
    struct Run<'a> {
        dir: &'a Path,
        options: Options,
        disk: power::Watched,
        durability: Durability,
        db: Option<Db>,
        /// `states[i]`: the model after the first `i` acknowledged writes (plus, for a
        /// moment after a write failed, the state with that write, which a recovery
        /// may or may not hold).
        states: Vec<Model>,
        /// How many writes are durable.
        durable: usize,
        /// An open snapshot, the write count it was taken at, and handles on the
        /// named families then.
        snapshot: Option<(Snapshot, usize, Handles)>,
        /// Whether a fault plan is armed for `dir`.
        armed: bool,
        outcome: Outcome,
        /// Print each step (`ALEXSTORAGE_HARNESS_TRACE` set): for reading a failure.
        trace: bool,
    }

    /// What a fault that fired failed.
    struct Fired {
        /// It failed a sync: a power cut then is the test of whether the store
        /// acknowledged anything that sync should have made durable.
        sync: bool,
    }

    /// The operations and checks: see the module docs. `data` drives everything; `dir`
    /// must be an empty directory. Panics on a violation of the contract.
    ///
    /// Besides crashes and power cuts between operations, an operation may arm a fault
    /// on the `n`-th I/O operation that follows (in this directory only). Once it
    /// fires, inside a write, a flush, a roll-over, a checkpoint, a compaction, a close
    /// or a recovery, the operation ends (with the error, or past it), and the process
    /// crashes there, with a power cut if the fault failed a sync or as the input says.
    /// What failed must not have been acknowledged; a recovery it interrupted must, run
    /// again (maybe after a power cut), keep everything.
    pub fn run_operations(dir: &Path, data: &[u8]) -> Outcome {
        let Ok(disk) = power::watch(dir) else { panic!("the simulated disk cannot watch {}", dir.display()) };
        let mut bytes = data.iter().copied();
        let first = bytes.next().unwrap_or(0);
        let durability = if first & 1 == 1 { Durability::Sync } else { Durability::Buffered };
        // Early writeback (every page) or none: it must make no difference to what a
        // power cut keeps.
        let writeback = if first & 2 == 2 { 4096 } else { 0 };
        // Small segments: a roll-over, and the checkpoint it writes, every few dozen
        // writes.
        let options = Options::new()
            .segment_size(8 << 10)
            .background_compaction(false)
            .durability(durability)
            .writeback_step(writeback);
        let Ok(db) = options.clone().open(dir) else { panic!("a new store did not open") };
        let mut run = Run {
            dir,
            options,
            disk,
            durability,
            db: Some(db),
            states: vec![empty_model()],
            durable: 0,
            snapshot: None,
            armed: false,
            outcome: Outcome::default(),
            trace: std::env::var_os("ALEXSTORAGE_HARNESS_TRACE").is_some(),
        };
        if durability == Durability::Sync {
            run.outcome.sync_runs = 1;
        }
        while let Some(op) = bytes.next() {
            if run.states.len() > MAX_WRITES {
                break;
            }
            run.step(op, &mut bytes);
        }
        run.finish()
    }

    impl Run<'_> {
        fn db(&self) -> &Db {
            match &self.db {
                Some(db) => db,
                None => panic!("the harness lost its store"),
            }
        }

        fn note(&self, what: impl FnOnce() -> String) {
            if self.trace {
                eprintln!("[harness] {}", what());
            }
        }

        /// The armed fault, if it fired (it is then disarmed).
        fn fault_fired(&mut self) -> Option<Fired> {
            if !self.armed {
                return None;
            }
            let (op, path) = faults::fired_in(Some(self.dir))?;
            self.note(|| format!("fault fired: {op:?} {}", path.display()));
            faults::disarm_in(Some(self.dir));
            self.armed = false;
            self.outcome.faults += 1;
            Some(Fired { sync: op == crate::log::io::Op::Sync })
        }

        /// Checks that the live store reads `key` of `family` as `model` has it.
        fn check_key(&self, model: &Model, family: &str, key: i64, after: &str) {
            let read = match family {
                "" => self.db().get(key),
                _ => self.db().column_family(family).and_then(|handle| handle.get(key)),
            };
            match (read, model.get(family).and_then(|keys| keys.get(&key))) {
                (Ok(Some(read)), Some(value)) if read[..] == value[..] => {}
                (Ok(None), None) => {}
                (read, _) => panic!("after {after} the store reads key {key} of family {family:?} as {read:?}"),
            }
        }

        /// A handle on `family`, created first if the model has no such family: a
        /// creation is a step of the store's history of its own, durable once it
        /// returns. `None` if a fault fired in it (the process then crashed, and the
        /// operation ends).
        fn handle(&mut self, family: &str, bytes: &mut impl Iterator<Item = u8>) -> Option<ColumnFamily> {
            let mut model = self.states.last().cloned().unwrap_or_default();
            if model.contains_key(family) {
                return match self.db().column_family(family) {
                    Ok(handle) => Some(handle),
                    Err(error) => panic!("the existing family {family:?} has no handle: {error}"),
                };
            }
            self.note(|| format!("create family {family:?}"));
            let created = self.db().column_family(family);
            let fired = self.fault_fired();
            model.insert(family.to_owned(), Keys::new());
            let acknowledged = self.states.len() - 1 + usize::from(created.is_ok());
            self.states.push(model);
            match (created, fired) {
                (Ok(handle), None) => {
                    self.durable = self.states.len() - 1;
                    self.outcome.family_changes += 1;
                    Some(handle)
                }
                (created, Some(fired)) => {
                    if created.is_ok() {
                        self.durable = self.states.len() - 1;
                    }
                    self.crash_after_fault(fired, acknowledged, bytes);
                    None
                }
                (Err(error), None) => panic!("creating family {family:?} failed on a healthy store: {error}"),
            }
        }

        /// Drops `family`, a step of the store's history durable once it returns.
        fn drop_family(&mut self, family: &str, bytes: &mut impl Iterator<Item = u8>) {
            let mut model = self.states.last().cloned().unwrap_or_default();
            let dropped = self.db().drop_column_family(family);
            let fired = self.fault_fired();
            if model.remove(family).is_none() {
                match (dropped, fired) {
                    (Err(Error::ColumnFamilyNotFound(_)), None) => return,
                    (_, Some(fired)) => return self.crash_after_fault(fired, self.states.len() - 1, bytes),
                    (other, None) => panic!("dropping the absent family {family:?} gave {other:?}"),
                }
            }
            self.note(|| format!("drop family {family:?}"));
            let acknowledged = self.states.len() - 1 + usize::from(dropped.is_ok());
            self.states.push(model);
            if dropped.is_ok() {
                self.durable = self.states.len() - 1;
                self.outcome.family_changes += 1;
            }
            match (dropped, fired) {
                (_, Some(fired)) => self.crash_after_fault(fired, acknowledged, bytes),
                (Ok(()), None) => {}
                (Err(error), None) => panic!("dropping family {family:?} failed on a healthy store: {error}"),
            }
        }

        /// One operation, `op`, with its arguments from `bytes`.
        fn step(&mut self, op: u8, bytes: &mut impl Iterator<Item = u8>) {
            let family = family_of(op);
            let key = i64::from(bytes.next().unwrap_or(0) % 32) - 8;
            // A write to a named family creates it first, if need be.
            let handle = match (op % 12, family) {
                (0..=4, "") | (5..=11, _) => None,
                (_, named) => match self.handle(named, bytes) {
                    Some(handle) => Some(handle),
                    None => return,
                },
            };
            let mut model = self.states.last().cloned().unwrap_or_default();
            let write = self.states.len();
            let mut keys = vec![(family, key)];
            self.note(|| {
                format!("op {} family {family:?} key {key} (writes {write}, durable {})", op % 12, self.durable)
            });
            let wrote = match op % 12 {
                0..=2 => {
                    let value = value_of(key, write);
                    model.entry(family.to_owned()).or_default().insert(key, value.clone());
                    match &handle {
                        Some(handle) => handle.put(key, &value).is_ok(),
                        None => self.db().put(key, &value).is_ok(),
                    }
                }
                3 => {
                    let delete = |db: &Db| match &handle {
                        Some(handle) => handle.delete(key),
                        None => db.delete(key),
                    };
                    if model.entry(family.to_owned()).or_default().remove(&key).is_none() {
                        // Deleting an absent key writes nothing.
                        let deleted = delete(self.db());
                        if let Some(fired) = self.fault_fired() {
                            return self.crash_after_fault(fired, self.states.len() - 1, bytes);
                        }
                        assert!(deleted.is_ok(), "deleting an absent key failed");
                        return;
                    }
                    delete(self.db()).is_ok()
                }
                4 => {
                    // Alternate writes go to the default family and, when the operation
                    // names one, to a named family: one batch across both.
                    let mut batch = WriteBatch::new();
                    keys.clear();
                    for offset in 0..=(op / 12 % 4) {
                        let key = key + i64::from(offset);
                        let (in_family, target) = match (&handle, offset % 2) {
                            (Some(handle), 0) => (family, Some(handle)),
                            _ => ("", None),
                        };
                        keys.push((in_family, key));
                        let keys_in = model.entry(in_family.to_owned()).or_default();
                        if offset % 3 == 1 && keys_in.contains_key(&key) {
                            match target {
                                Some(handle) => batch.delete_cf(handle, key),
                                None => batch.delete(key),
                            };
                            keys_in.remove(&key);
                        } else {
                            let value = value_of(key, write);
                            match target {
                                Some(handle) => batch.put_cf(handle, key, &value),
                                None => batch.put(key, &value),
                            };
                            keys_in.insert(key, value);
                        }
                    }
                    self.db().write(batch).is_ok()
                }
                5 if !family.is_empty() => {
                    self.drop_family(family, bytes);
                    return;
                }
                5 => {
                    let flushed = self.db().flush();
                    if flushed.is_ok() {
                        // Acknowledged: durable, fault or none.
                        self.durable = self.states.len() - 1;
                    }
                    if let Some(fired) = self.fault_fired() {
                        return self.crash_after_fault(fired, self.states.len() - 1, bytes);
                    }
                    if let Err(error) = flushed {
                        panic!("flush failed on a healthy store: {error}");
                    }
                    return;
                }
                6 => {
                    // Full and incremental compactions by turns.
                    let incremental = self.outcome.compactions % 2 == 1;
                    let compacted = if incremental { self.db().compact_incremental() } else { self.db().compact() };
                    if let Some(fired) = self.fault_fired() {
                        return self.crash_after_fault(fired, self.states.len() - 1, bytes);
                    }
                    let stats = match compacted {
                        Ok(stats) => stats,
                        Err(error) => panic!("compaction failed on a healthy store: {error}"),
                    };
                    if incremental && !stats.full && stats.segments_removed > 0 {
                        self.outcome.incremental_compactions += 1;
                    }
                    let found = read_store(self.db(), "the store after a compaction");
                    assert!(found == *model_of(&self.states), "a compaction changed what the store reads");
                    self.outcome.compactions += 1;
                    return;
                }
                7 => {
                    // Take a snapshot, or check and let go of the one open.
                    match self.snapshot.take() {
                        Some(taken) => {
                            self.snapshot = Some(taken);
                            self.close_snapshot();
                        }
                        None => {
                            let handles = self
                                .db()
                                .column_families()
                                .into_iter()
                                .filter_map(|name| Some((name.clone(), self.db().column_family(&name).ok()?)))
                                .collect();
                            self.snapshot = Some((self.db().snapshot(), self.states.len() - 1, handles));
                        }
                    }
                    return;
                }
                8 => {
                    self.close_snapshot();
                    self.db = None;
                    // A fault in the close (its sync, its checkpoint) loses nothing a
                    // process crash would not: the page cache still holds every write.
                    // Without one, the close made everything durable: a power cut
                    // right after it must lose nothing.
                    let fired = self.fault_fired();
                    if fired.is_none() {
                        self.durable = self.states.len() - 1;
                        if bytes.next().unwrap_or(0) & 1 == 1 {
                            self.cut(bytes);
                        }
                    }
                    self.reopen(self.states.len() - 1, bytes);
                    return;
                }
                9 | 10 => {
                    let power_cut = bytes.next().unwrap_or(0) & 1 == 1;
                    self.crash(power_cut, self.states.len() - 1, bytes);
                    return;
                }
                _ => {
                    if !self.armed {
                        let choice = bytes.next().unwrap_or(0);
                        let fault = if choice & 1 == 1 { Fault::NoSpace } else { Fault::Io };
                        faults::arm(Plan::at(u64::from(choice / 2 % 48), fault).in_dir(self.dir));
                        self.armed = true;
                    }
                    return;
                }
            };
            let fired = self.fault_fired();
            if !wrote && fired.is_none() {
                panic!("write {write} failed on a healthy store");
            }
            let acknowledged = self.states.len() - 1 + usize::from(wrote);
            self.states.push(model);
            if wrote {
                let model = model_of(&self.states).clone();
                for (family, key) in keys {
                    self.check_key(&model, family, key, &format!("write {write}"));
                }
                if self.durability == Durability::Sync {
                    self.durable = self.states.len() - 1;
                }
            }
            if let Some(fired) = fired {
                // A failed write may be there after recovery or not; an acknowledged
                // one must be.
                self.crash_after_fault(fired, acknowledged, bytes);
            }
        }

        /// A fault fired: the process crashes, with a power cut if it failed a sync.
        fn crash_after_fault(&mut self, fired: Fired, acknowledged: usize, bytes: &mut impl Iterator<Item = u8>) {
            let power_cut = fired.sync || bytes.next().unwrap_or(0) & 1 == 1;
            self.crash(power_cut, acknowledged, bytes);
        }

        /// Plays a power cut on the directory (the store is closed or crashed).
        fn cut(&mut self, bytes: &mut impl Iterator<Item = u8>) {
            let cut = match self.disk.cut(bytes) {
                Ok(cut) => cut,
                Err(error) => panic!("the simulated power cut failed: {error}"),
            };
            self.note(|| format!("power cut: {cut:?}"));
            self.outcome.cuts += 1;
            self.outcome.pages_dropped += cut.pages_lost + cut.pages_torn;
            self.outcome.entries_undone += cut.entries_undone;
            self.outcome.files_cut_short += cut.files_cut_short;
        }

        /// The process dies (`acknowledged`: how many writes were acknowledged), and
        /// if `power_cut` the power too; then the store reopens.
        fn crash(&mut self, power_cut: bool, acknowledged: usize, bytes: &mut impl Iterator<Item = u8>) {
            self.close_snapshot();
            if let Some(db) = self.db.take() {
                db.simulate_crash();
            }
            // A process crash keeps every acknowledged write; a power cut a prefix
            // holding the durable ones.
            let least = if power_cut {
                self.cut(bytes);
                self.durable
            } else {
                self.outcome.crashes += 1;
                acknowledged
            };
            let kept = self.reopen(least, bytes);
            if power_cut {
                self.outcome.writes_lost_to_cuts += acknowledged.saturating_sub(kept);
            }
        }

        /// Reopens, and checks the store holds one of `states[least..]`; returns which.
        /// A fault armed now may fire inside the recovery: then the open must fail
        /// cleanly, and the next one (maybe after a power cut) succeed.
        fn reopen(&mut self, mut least: usize, bytes: &mut impl Iterator<Item = u8>) -> usize {
            let mut attempts = 0;
            let db = loop {
                attempts += 1;
                match self.options.clone().open(self.dir) {
                    Ok(db) => break db,
                    Err(error) if attempts < 3 && !matches!(error, Error::Corruption { .. }) => {
                        if self.fault_fired().is_none() {
                            panic!("the store did not open: {error}");
                        }
                        self.outcome.recoveries_interrupted += 1;
                        if bytes.next().unwrap_or(0) & 1 == 1 {
                            // Now only what was durable is sure to be there.
                            self.cut(bytes);
                            least = least.min(self.durable);
                        }
                    }
                    Err(error) => panic!("the store did not open: {error}"),
                }
            };
            // A fault that fired in a recovery that still succeeded (a failed removal
            // of a leftover, say) is spent here; one that did not fire stays armed.
            let _ = self.fault_fired();
            let found = read_store(&db, "the recovered store");
            for (family, keys) in &found {
                let handle = match db.column_family(if family.is_empty() { "default" } else { family }) {
                    Ok(handle) => handle,
                    Err(error) => panic!("the recovered family {family:?} has no handle: {error}"),
                };
                assert_eq!(handle.len(), keys.len(), "len() of family {family:?} disagrees with the keys read");
                for (key, value) in keys {
                    match handle.get(*key) {
                        Ok(Some(read)) if read[..] == value[..] => {}
                        other => panic!("the recovered store reads key {key} as {other:?}, its range as {value:?}"),
                    }
                }
            }
            if let Err(error) = db.verify() {
                panic!("verify after recovery: {error}");
            }
            // The latest matching state: equal states are indistinguishable, and the
            // latest keeps the most writes counted as durable.
            let states = &self.states;
            self.note(|| format!("reopened: {found:?}, least {least}"));
            let Some(kept) = (least..states.len()).rev().find(|&index| states[index] == found) else {
                panic!(
                    "the recovered store ({} families) is no state between write {least} (durable) and write {}",
                    found.len(),
                    states.len() - 1
                );
            };
            self.states.truncate(kept + 1);
            // Recovery makes what it kept durable before it returns.
            self.durable = kept;
            self.db = Some(db);
            kept
        }

        /// Checks the open snapshot, if any, and lets it go.
        fn close_snapshot(&mut self) {
            if let Some((taken, at, handles)) = self.snapshot.take() {
                check_snapshot(&taken, &handles, &self.states[at], at);
                self.outcome.snapshots += 1;
            }
        }

        /// Disarms any fault, closes cleanly, and checks every write is there.
        fn finish(mut self) -> Outcome {
            if self.armed {
                faults::disarm_in(Some(self.dir));
                self.armed = false;
            }
            self.close_snapshot();
            self.db = None;
            let writes = self.states.len() - 1;
            let kept = self.reopen(writes, &mut std::iter::empty());
            assert_eq!(kept, writes, "after the final clean close the store holds the state after write {kept}");
            self.db = None;
            self.outcome.writes = writes;
            self.outcome
        }
    }

    /// The newest state.
    fn model_of(states: &[Model]) -> &Model {
        match states.last() {
            Some(model) => model,
            None => panic!("the harness has no state"),
        }
    }

    /// Checks that `snapshot` reads exactly `expected` (the state after write `at`),
    /// whole and key by key: the default family, and each named family of `handles`
    /// (taken with it) unless it was dropped since (then its reads must say so).
    fn check_snapshot(snapshot: &Snapshot, handles: &[(String, ColumnFamily)], expected: &Model, at: usize) {
        let mut found = BTreeMap::from([(String::new(), read_all(snapshot.iter(), "a snapshot"))]);
        for (name, handle) in handles {
            if matches!(handle.get(0), Err(Error::ColumnFamilyNotFound(_))) {
                assert!(
                    matches!(snapshot.get_cf(handle, 0), Err(Error::ColumnFamilyNotFound(_))),
                    "a snapshot reads the dropped family {name:?}"
                );
                found.insert(name.clone(), expected.get(name).cloned().unwrap_or_default());
                continue;
            }
            let keys = read_all(snapshot.range_cf(handle, ..), "a snapshot's family");
            for (key, value) in &keys {
                match snapshot.get_cf(handle, *key) {
                    Ok(Some(read)) if read[..] == value[..] => {}
                    other => panic!("a snapshot taken after write {at} reads key {key} of {name:?} as {other:?}"),
                }
            }
            found.insert(name.clone(), keys);
        }
        assert!(found == *expected, "a snapshot taken after write {at} reads another state: {found:?}");
        for (key, value) in expected.get("").into_iter().flatten() {
            match snapshot.get(*key) {
                Ok(Some(read)) if read[..] == value[..] => {}
                other => panic!("a snapshot taken after write {at} reads key {key} as {other:?}"),
            }
        }
    }

    /// Every family's entries, or a panic naming `what` on an error.
    fn read_store(db: &Db, what: &str) -> Model {
        let mut found = BTreeMap::from([(String::new(), read_all(db.iter(), what))]);
        for name in db.column_families() {
            let handle = match db.column_family(&name) {
                Ok(handle) => handle,
                Err(error) => panic!("reading {what}: family {name:?} has no handle: {error}"),
            };
            found.insert(name, read_all(handle.iter(), what));
        }
        found
    }

    /// Every entry of `range`, or a panic naming `what` on an error.
    fn read_all(range: crate::Range, what: &str) -> Keys {
        let mut found = Keys::new();
        for entry in range {
            match entry {
                Ok((key, value)) => {
                    found.insert(key, value.to_vec());
                }
                Err(error) => panic!("reading {what} failed: {error}"),
            }
        }
        found
    }
}

/// Every page of the file at `path` past `durable` (the page holding it keeps its
/// durable part) kept, lost (back to zeros), or torn at a 512-byte sector (lost from
/// there on), as `choices` say: what a page cache writing dirty pages back in any order
/// leaves after a power cut. Returns the pages whose bytes changed.
fn drop_unsynced_pages(path: &Path, durable: u64, choices: &mut impl Iterator<Item = u8>) -> usize {
    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(path) else { return 0 };
    let Ok(length) = file.metadata().map(|metadata| metadata.len()) else { return 0 };
    let mut changed = 0;
    let mut page = durable / PAGE;
    while page * PAGE < length {
        let start = (page * PAGE).max(durable);
        let end = ((page + 1) * PAGE).min(length);
        let choice = choices.next().unwrap_or(0);
        let lost_from = match choice % 3 {
            0 => None,
            1 => Some(start),
            _ => Some(((page * PAGE) + u64::from(choice / 3 % 8) * 512).max(start)),
        };
        if let Some(from) = lost_from.filter(|&from| from < end) {
            let mut old = vec![0u8; (end - from) as usize];
            if file.read_exact_at(&mut old, from).is_err() {
                return changed;
            }
            // Zeros lost are no change (a segment's reserved blocks past its records).
            if old.iter().any(|&byte| byte != 0) {
                if file.write_all_at(&vec![0u8; old.len()], from).is_err() {
                    return changed;
                }
                changed += 1;
            }
        }
        page += 1;
    }
    changed
}

/// The durable end of a version-3 log segment file as its durable marks claim it (the
/// furthest end a valid mark claims; 64, the header, if none): what a parent process
/// playing the disk after killing a writer may take as surely on stable storage.
/// `None` for a file that is not such a segment.
pub fn claimed_durable_end(path: &Path) -> Option<u64> {
    use crate::log::format::{
        Decoded, DurableMark, RecordHeader, SegmentHeader, DURABLE_MARKS_VERSION, DURABLE_MARK_SIZE, SEGMENT_COMPACTED,
        SEGMENT_HEADER_SIZE,
    };
    let bytes = std::fs::read(path).ok()?;
    let header = SegmentHeader::decode(&bytes).ok()?;
    if header.version < DURABLE_MARKS_VERSION || header.flags & SEGMENT_COMPACTED != 0 {
        return None;
    }
    let mut durable = SEGMENT_HEADER_SIZE as u64;
    for at in SEGMENT_HEADER_SIZE..bytes.len().saturating_sub(DURABLE_MARK_SIZE) {
        if bytes.get(at + 4) != Some(&4) || bytes.get(at + 20..at + 28) != Some(&(at as u64).to_le_bytes()[..]) {
            continue;
        }
        if let Decoded::Record { header: record, len } = RecordHeader::decode(&bytes[at..]) {
            if let Some(mark) = DurableMark::check(&record, &bytes[at..at + len], header.id, at as u64) {
                durable = durable.max(mark.durable);
            }
        }
    }
    Some(durable)
}

/// The log segment files of the store in `dir`, by id.
fn segment_files(dir: &Path) -> Vec<(u32, std::path::PathBuf)> {
    let mut segments: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter_map(|path| {
            let id = path.file_name()?.to_str().and_then(crate::log::segment::parse_file_name)?;
            Some((id, path))
        })
        .collect();
    segments.sort();
    segments
}

/// For a harness that just closed the store in `dir` cleanly (a close syncs
/// everything): each segment file's end of bytes (past its last nonzero byte), all of
/// them durable now, whatever the store's own files say (a durable mark claims the
/// writes before it, not itself). The floor to give [`cut_power_after_kill`] after the
/// next writer is killed.
pub fn durable_after_close(dir: &Path) -> Vec<(u32, u64)> {
    segment_files(dir)
        .into_iter()
        .filter_map(|(id, path)| {
            let bytes = std::fs::read(path).ok()?;
            Some((id, bytes.iter().rposition(|&byte| byte != 0).map_or(0, |last| last as u64 + 1)))
        })
        .collect()
}

/// Plays a power cut on the newest log segment of the store in `dir` after its writer
/// was killed: every page past what is surely durable (the end its durable marks
/// claim, or the segment's end in `floor`, what the harness knows was durable, from
/// [`durable_after_close`]) lost, kept or torn at a sector, as `choices` say. Returns
/// the number of pages whose bytes changed.
pub fn cut_power_after_kill(dir: &Path, floor: &[(u32, u64)], choices: &mut impl Iterator<Item = u8>) -> usize {
    let segments = segment_files(dir);
    let Some((id, durable, path)) = segments
        .iter()
        .rev()
        .find_map(|(id, path)| claimed_durable_end(path).map(|durable| (*id, durable, path.clone())))
    else {
        return 0;
    };
    let known = floor.iter().find(|(segment, _)| *segment == id).map_or(0, |(_, end)| *end);
    drop_unsynced_pages(&path, durable.max(known), choices)
}
