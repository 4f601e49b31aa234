//! fjall.

use std::path::Path;

use anyhow::Result;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace, PersistMode, Readable,
};

use super::{hand_over, Class, EngineKind, Found, Latest, Modify, Reader, Store, Visit, TRANSACTIONS_ONLY};
use crate::data::{key_bytes, key_from_bytes};

/// Block cache: larger than the data at 1M x 100 B (fjall recommends 20-25% of memory,
/// or more when the data fits).
const CACHE_BYTES: u64 = 1 << 30;

/// fjall.
pub struct Fjall;

struct FjallStore {
    db: Database,
    keyspace: Keyspace,
    persist: PersistMode,
}

impl EngineKind for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let db = Database::builder(dir).cache_size(CACHE_BYTES).open()?;
        let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(Box::new(FjallStore { db, keyspace, persist: persist_mode(class) }))
    }

    fn open_transactional(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let db = OptimisticTxDatabase::builder(dir).cache_size(CACHE_BYTES).open()?;
        let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(Box::new(FjallTransactional { db, keyspace, persist: persist_mode(class) }))
    }

    fn transaction_settings(&self) -> String {
        "OptimisticTxDatabase (same cache): write_tx with durability(Some(mode)), get, insert, commit (Conflict \
         counts as a conflict)"
            .to_owned()
    }

    fn settings(&self, class: Class) -> String {
        let sync = match class {
            Class::Buffered => {
                "Database::persist(PersistMode::Buffer) after each insert (fjall's journal buffers in user space; \
                 this hands each write to the OS, so it survives kill -9)"
            }
            Class::Sync => "Database::persist(PersistMode::SyncData) after each insert (fdatasync)",
        };
        format!("{sync}; 1 GiB cache, default keyspace options (bloom filters, LZ4)")
    }
}

impl Store for FjallStore {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        self.keyspace.insert(key_bytes(key), value)?;
        Ok(self.db.persist(self.persist)?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        hand_over(self.keyspace.get(key_bytes(key))?, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let mut visited = 0;
        for guard in self.keyspace.range(key_bytes(start)..).take(count) {
            let (key, value) = guard.into_inner()?;
            visit(key_from_bytes(&key)?, &value)?;
            visited += 1;
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    fn compact(&mut self) -> Result<()> {
        Ok(self.keyspace.major_compact()?)
    }
}

fn persist_mode(class: Class) -> PersistMode {
    match class {
        Class::Buffered => PersistMode::Buffer,
        Class::Sync => PersistMode::SyncData,
    }
}

/// fjall's `OptimisticTxDatabase`, for the transaction workload.
struct FjallTransactional {
    db: OptimisticTxDatabase,
    keyspace: OptimisticTxKeyspace,
    persist: PersistMode,
}

impl Store for FjallTransactional {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        self.keyspace.insert(key_bytes(key), value)?;
        Ok(self.db.persist(self.persist)?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        hand_over(self.keyspace.get(key_bytes(key))?, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn scan(&self, _start: i64, _count: usize, _visit: Visit<'_>) -> Result<usize> {
        anyhow::bail!(TRANSACTIONS_ONLY)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    fn compact(&mut self) -> Result<()> {
        anyhow::bail!(TRANSACTIONS_ONLY)
    }

    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        let mut tx = self.db.write_tx()?.durability(Some(self.persist));
        for &key in keys {
            let current = tx.get(&self.keyspace, key_bytes(key))?;
            let new = modify(key, current.as_deref())?;
            tx.insert(&self.keyspace, key_bytes(key), new);
        }
        Ok(tx.commit()?.is_ok())
    }
}
