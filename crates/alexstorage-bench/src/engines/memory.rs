//! The in-memory references: std's `HashMap` and `BTreeMap` behind a `RwLock` (so that
//! they can be shared by threads, as every engine here can). No persistence.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::RwLock;

use anyhow::{anyhow, Result};

use super::{Class, EngineKind, Feature, Found, Latest, Reader, Store, Visit};

const NO_PERSISTENCE: &str = "in-memory reference: nothing is persisted";

/// `HashMap<i64, Box<[u8]>>`: the point-lookup limit.
pub struct HashMapRef;

/// `BTreeMap<i64, Box<[u8]>>`: the ordered in-memory limit.
pub struct BTreeMapRef;

struct Map<M>(RwLock<M>);

/// What the two maps have in common.
trait MapLike: Send + Sync {
    fn insert_value(&mut self, key: i64, value: Box<[u8]>);
    fn lookup(&self, key: i64) -> Option<&[u8]>;
    fn scan_from(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize>;
}

impl MapLike for HashMap<i64, Box<[u8]>> {
    fn insert_value(&mut self, key: i64, value: Box<[u8]>) {
        self.insert(key, value);
    }
    fn lookup(&self, key: i64) -> Option<&[u8]> {
        self.get(&key).map(|value| &value[..])
    }
    fn scan_from(&self, _start: i64, _count: usize, _visit: Visit<'_>) -> Result<usize> {
        anyhow::bail!("a HashMap is unordered")
    }
}

impl MapLike for BTreeMap<i64, Box<[u8]>> {
    fn insert_value(&mut self, key: i64, value: Box<[u8]>) {
        self.insert(key, value);
    }
    fn lookup(&self, key: i64) -> Option<&[u8]> {
        self.get(&key).map(|value| &value[..])
    }
    fn scan_from(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let mut visited = 0;
        for (key, value) in self.range(start..).take(count) {
            visit(*key, value)?;
            visited += 1;
        }
        Ok(visited)
    }
}

fn poisoned<T>(_: T) -> anyhow::Error {
    anyhow!("in-memory map lock poisoned")
}

impl<M: MapLike> Store for Map<M> {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        self.0.write().map_err(poisoned)?.insert_value(key, value.into());
        Ok(())
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        match self.0.read().map_err(poisoned)?.lookup(key) {
            Some(value) => found(value).map(|()| true),
            None => Ok(false),
        }
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        self.0.read().map_err(poisoned)?.scan_from(start, count, visit)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        anyhow::bail!("{NO_PERSISTENCE}")
    }
}

impl EngineKind for HashMapRef {
    fn name(&self) -> &'static str {
        "hashmap"
    }

    fn open(&self, _dir: &Path, _class: Class) -> Result<Box<dyn Store>> {
        Ok(Box::new(Map(RwLock::new(HashMap::<i64, Box<[u8]>>::new()))))
    }

    fn settings(&self, _class: Class) -> String {
        "std HashMap<i64, Box<[u8]>> (SipHash) behind std RwLock; no persistence".into()
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Scan => Some("a HashMap is unordered"),
            Feature::Persistence | Feature::Compaction | Feature::Transactions => Some(NO_PERSISTENCE),
        }
    }
}

impl EngineKind for BTreeMapRef {
    fn name(&self) -> &'static str {
        "btreemap"
    }

    fn open(&self, _dir: &Path, _class: Class) -> Result<Box<dyn Store>> {
        Ok(Box::new(Map(RwLock::new(BTreeMap::<i64, Box<[u8]>>::new()))))
    }

    fn settings(&self, _class: Class) -> String {
        "std BTreeMap<i64, Box<[u8]>> behind std RwLock; no persistence".into()
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Scan => None,
            Feature::Persistence | Feature::Compaction | Feature::Transactions => Some(NO_PERSISTENCE),
        }
    }
}
