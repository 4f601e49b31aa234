//! redb.

use std::path::Path;

use anyhow::Result;
use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Class, EngineKind, Found, Modify, Reader, Store, Visit, READS_PER_TXN};
use crate::data::{key_bytes, key_from_bytes};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

/// redb's page cache: larger than the data at 1M x 100 B.
const CACHE_BYTES: usize = 1 << 30;

/// redb.
pub struct Redb;

struct RedbStore {
    db: Database,
    durability: Durability,
}

impl EngineKind for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(dir.join("bench.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        let durability = match class {
            Class::Buffered => Durability::None,
            Class::Sync => Durability::Immediate,
        };
        Ok(Box::new(RedbStore { db, durability }))
    }

    fn settings(&self, class: Class) -> String {
        let sync = match class {
            Class::Buffered => {
                "Durability::None (redb's only class without fsync; weaker than the row's: after kill -9 redb \
                 recovers to the last durable commit, so this favours redb)"
            }
            Class::Sync => "Durability::Immediate (fsync on every commit)",
        };
        format!(
            "{sync}; 1 GiB cache, one table with &[u8] keys and values, one write transaction per put; \
             reads: one read transaction per {READS_PER_TXN} gets in read-only loops, one per get in mixed workloads"
        )
    }

    fn transaction_settings(&self) -> String {
        RedbStore::describe()
    }
}

impl RedbStore {
    /// redb's write transactions, for the transaction workload.
    fn describe() -> String {
        "Database::begin_write(): gets, inserts, commit (one writer at a time: write transactions never conflict)"
            .to_owned()
    }
}

impl Store for RedbStore {
    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            for &key in keys {
                let current = table.get(&key_bytes(key)[..])?.map(|value| value.value().to_vec());
                let new = modify(key, current.as_deref())?;
                table.insert(&key_bytes(key)[..], &new[..])?;
            }
        }
        txn.commit()?;
        Ok(true)
    }

    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)?;
        {
            let mut table = txn.open_table(TABLE)?;
            table.insert(&key_bytes(key)[..], value)?;
        }
        Ok(txn.commit()?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        let table = self.db.begin_read()?.open_table(TABLE)?;
        read(&table, key, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(RedbReader { store: self, table: None, served: 0 }))
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let table = self.db.begin_read()?.open_table(TABLE)?;
        let from = key_bytes(start);
        let mut visited = 0;
        for entry in table.range::<&[u8]>(&from[..]..)?.take(count) {
            let (key, value) = entry?;
            visit(key_from_bytes(key.value())?, value.value())?;
            visited += 1;
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        // An empty durable commit makes every earlier non-durable commit durable.
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn.commit()?)
    }

    fn compact(&mut self) -> Result<()> {
        // Non-durable commits pin the last durable one as a live read; a durable commit
        // releases it, after which compaction may run.
        self.flush()?;
        self.db.compact()?;
        Ok(())
    }
}

fn read(table: &ReadOnlyTable<&'static [u8], &'static [u8]>, key: i64, found: Found<'_>) -> Result<bool> {
    match table.get(&key_bytes(key)[..])? {
        Some(value) => found(value.value()).map(|()| true),
        None => Ok(false),
    }
}

struct RedbReader<'a> {
    store: &'a RedbStore,
    table: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    served: u32,
}

impl Reader for RedbReader<'_> {
    fn get(&mut self, key: i64, found: Found<'_>) -> Result<bool> {
        if self.served >= READS_PER_TXN {
            self.table = None;
        }
        let table = match &mut self.table {
            Some(table) => table,
            slot => {
                self.served = 0;
                slot.insert(self.store.db.begin_read()?.open_table(TABLE)?)
            }
        };
        self.served += 1;
        read(table, key, found)
    }
}
