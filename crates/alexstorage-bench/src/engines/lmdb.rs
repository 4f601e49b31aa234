//! LMDB through `heed`.

use std::path::Path;

use anyhow::Result;
use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, RoTxn, WithTls};

use super::{Class, EngineKind, Feature, Found, Indexed, Modify, Reader, Store, Visit, READS_PER_TXN};
use crate::data::{key_bytes, key_from_bytes};

/// The map size: LMDB needs its maximum size up front; this leaves room for 10M keys
/// overwritten several times.
const MAP_SIZE: usize = 64 << 30;

/// LMDB.
pub struct Lmdb;

struct LmdbStore {
    env: Env,
    db: Database<Bytes, Bytes>,
}

impl EngineKind for Lmdb {
    fn name(&self) -> &'static str {
        "lmdb"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let mut options = EnvOpenOptions::new();
        options.map_size(MAP_SIZE).max_dbs(1);
        if class == Class::Buffered {
            // SAFETY: NO_SYNC gives up durability on power loss (not on a process crash),
            // which is exactly this row's class; heed marks `flags` unsafe for that reason.
            unsafe { options.flags(EnvFlags::NO_SYNC) };
        }
        // SAFETY: the directory is fresh or was written only by this adapter, and no other
        // process or environment in this process opens it at the same time.
        let env = unsafe { options.open(dir)? };
        let mut txn = env.write_txn()?;
        let db = env.create_database(&mut txn, Some("bench"))?;
        txn.commit()?;
        Ok(Box::new(LmdbStore { env, db }))
    }

    fn settings(&self, class: Class) -> String {
        let sync = match class {
            Class::Buffered => "EnvFlags::NO_SYNC (commit writes the pages with write(): survives kill -9, no fsync)",
            Class::Sync => "default flags (fsync on every commit)",
        };
        format!(
            "{sync}; map size 64 GiB, one named database, one write transaction per put; \
             reads: one read transaction per {READS_PER_TXN} gets in read-only loops, one per get in mixed workloads; \
             zero-copy reads from the map"
        )
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Compaction => Some("LMDB reuses freed pages in place; it has no compaction call"),
            Feature::Scan | Feature::Persistence | Feature::Transactions => None,
        }
    }

    fn transaction_settings(&self) -> String {
        "Env::write_txn(): gets, puts, commit (one writer at a time: write transactions never conflict)".to_owned()
    }
}

impl Store for LmdbStore {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        self.db.put(&mut txn, &key_bytes(key), value)?;
        Ok(txn.commit()?)
    }

    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        let mut txn = self.env.write_txn()?;
        for &key in keys {
            let new = modify(key, self.db.get(&txn, &key_bytes(key))?)?;
            self.db.put(&mut txn, &key_bytes(key), &new)?;
        }
        txn.commit()?;
        Ok(true)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        let txn = self.env.read_txn()?;
        match self.db.get(&txn, &key_bytes(key))? {
            Some(value) => found(value).map(|()| true),
            None => Ok(false),
        }
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(LmdbReader { store: self, txn: None, served: 0 }))
    }

    /// The batch's gets in one read transaction.
    fn multi_get(&self, keys: &[i64], found: Indexed<'_>) -> Result<()> {
        let txn = self.env.read_txn()?;
        for (at, &key) in keys.iter().enumerate() {
            found(at, self.db.get(&txn, &key_bytes(key))?)?;
        }
        Ok(())
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let txn = self.env.read_txn()?;
        let from = key_bytes(start);
        let range = (std::ops::Bound::Included(&from[..]), std::ops::Bound::Unbounded);
        let mut visited = 0;
        for entry in self.db.range(&txn, &range)?.take(count) {
            let (key, value) = entry?;
            visit(key_from_bytes(key)?, value)?;
            visited += 1;
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }

    fn compact(&mut self) -> Result<()> {
        anyhow::bail!("LMDB has no compaction call")
    }
}

struct LmdbReader<'a> {
    store: &'a LmdbStore,
    txn: Option<RoTxn<'a, WithTls>>,
    served: u32,
}

impl Reader for LmdbReader<'_> {
    fn get(&mut self, key: i64, found: Found<'_>) -> Result<bool> {
        if self.served >= READS_PER_TXN {
            self.txn = None;
        }
        let txn = match &mut self.txn {
            Some(txn) => txn,
            slot => {
                self.served = 0;
                slot.insert(self.store.env.read_txn()?)
            }
        };
        self.served += 1;
        match self.store.db.get(txn, &key_bytes(key))? {
            Some(value) => found(value).map(|()| true),
            None => Ok(false),
        }
    }
}
