//! sled.

use std::path::Path;

use anyhow::Result;

use super::{Class, EngineKind, Feature, Found, Latest, Reader, Store, Visit};
use crate::data::{key_bytes, key_from_bytes};

/// sled's page cache: larger than the data at 1M x 100 B.
const CACHE_BYTES: u64 = 1 << 30;

/// sled.
pub struct Sled;

struct SledStore {
    db: sled::Db,
    sync: bool,
}

impl EngineKind for Sled {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let db = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).open()?;
        Ok(Box::new(SledStore { db, sync: class == Class::Sync }))
    }

    fn settings(&self, class: Class) -> String {
        let sync = match class {
            Class::Buffered => {
                "no call per insert: sled buffers writes in user space and flushes every 500 ms (its default); it \
                 has no cheaper per-write hand-off, so its class is weaker than the row's (this favours sled)"
            }
            Class::Sync => "Db::flush() after each insert (fsync)",
        };
        format!("{sync}; 1 GiB cache, default mode")
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Compaction => Some("sled has no compaction call (its log is cleaned in the background)"),
            Feature::Transactions => Some("sled's transactions are not measured (its closure API retries by itself)"),
            Feature::Scan | Feature::Persistence => None,
        }
    }
}

impl Store for SledStore {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        self.db.insert(key_bytes(key), value)?;
        if self.sync {
            self.db.flush()?;
        }
        Ok(())
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        match self.db.get(key_bytes(key))? {
            Some(value) => found(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let mut visited = 0;
        for entry in self.db.range(key_bytes(start)..).take(count) {
            let (key, value) = entry?;
            visit(key_from_bytes(&key)?, &value)?;
            visited += 1;
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        anyhow::bail!("sled has no compaction call")
    }
}
