//! RocksDB through the `rocksdb` crate, with the settings of RocksDB's tuning guide.

use std::path::Path;

use anyhow::Result;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, OptimisticTransactionDB,
    OptimisticTransactionOptions, Options, WriteOptions, DB, DEFAULT_COLUMN_FAMILY_NAME,
};

use super::{hand_over, Class, EngineKind, Found, Indexed, Latest, Modify, Reader, Store, Visit, TRANSACTIONS_ONLY};
use crate::data::{key_bytes, key_from_bytes};

/// Block cache size: larger than the data at 1M x 100 B, as a read-heavy deployment would set.
const BLOCK_CACHE_BYTES: usize = 1 << 30;

/// RocksDB.
pub struct RocksDb;

struct Rocks {
    db: DB,
    write: WriteOptions,
}

impl EngineKind for RocksDb {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        // The default column family opened by name, with the same tuned options, so
        // that the batched MultiGet has a handle for it.
        let family = ColumnFamilyDescriptor::new(DEFAULT_COLUMN_FAMILY_NAME, tuned());
        let db = DB::open_cf_descriptors(&tuned(), dir, [family])?;
        Ok(Box::new(Rocks { db, write: write_options(class) }))
    }

    fn open_transactional(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let db: OptimisticTransactionDB = OptimisticTransactionDB::open(&tuned(), dir)?;
        let mut transaction = OptimisticTransactionOptions::default();
        // Validate against the snapshot taken at begin, as AlexStorage's do.
        transaction.set_snapshot(true);
        Ok(Box::new(RocksTransactional { db, write: write_options(class), transaction }))
    }

    fn transaction_settings(&self) -> String {
        "OptimisticTransactionDB (same options): transaction_opt with set_snapshot(true), get_pinned_for_update, \
         put, commit (Busy or TryAgain counts as a conflict)"
            .to_owned()
    }

    fn settings(&self, class: Class) -> String {
        let sync = match class {
            Class::Buffered => "WriteOptions::set_sync(false) with the WAL on (write() per batch: survives kill -9)",
            Class::Sync => "WriteOptions::set_sync(true) (fdatasync of the WAL per write)",
        };
        format!(
            "{sync}; 1 GiB LRU block cache, full bloom filter 10 bits/key, index and filter blocks in cache with L0 pinned, \
             increase_parallelism(2), max_background_jobs 2, bytes_per_sync 1 MiB, dynamic level bytes, LZ4 \
             (RocksDB's 'Setup Options and Basic Tuning'); reads with get_pinned (no copy)"
        )
    }
}

impl Store for Rocks {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key_bytes(key), value, &self.write)?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        hand_over(self.db.get_pinned(key_bytes(key))?, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    /// RocksDB's batched `MultiGet` (`batched_multi_get_cf`), values pinned.
    fn multi_get(&self, keys: &[i64], found: Indexed<'_>) -> Result<()> {
        let family = self
            .db
            .cf_handle(DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| anyhow::anyhow!("no handle of the default column family"))?;
        let encoded: Vec<[u8; 8]> = keys.iter().map(|&key| key_bytes(key)).collect();
        for (at, value) in self.db.batched_multi_get_cf(family, &encoded, false).into_iter().enumerate() {
            found(at, value?.as_deref())?;
        }
        Ok(())
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let from = key_bytes(start);
        let mut visited = 0;
        // The raw iterator lends its key and value without copying them.
        let mut iter = self.db.raw_iterator();
        iter.seek(from);
        while visited < count {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else { break };
            visit(key_from_bytes(key)?, value)?;
            visited += 1;
            iter.next();
        }
        iter.status()?;
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(self.db.flush()?)
    }

    fn compact(&mut self) -> Result<()> {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        Ok(())
    }
}

/// The options of RocksDB's tuning guide (see `settings`).
fn tuned() -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_block_based_table_factory(&table);
    options.increase_parallelism(2);
    options.set_max_background_jobs(2);
    options.set_bytes_per_sync(1 << 20);
    options.set_level_compaction_dynamic_level_bytes(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

fn write_options(class: Class) -> WriteOptions {
    let mut write = WriteOptions::default();
    write.set_sync(class == Class::Sync);
    write
}

/// RocksDB's `OptimisticTransactionDB`, for the transaction workload.
struct RocksTransactional {
    db: OptimisticTransactionDB,
    write: WriteOptions,
    transaction: OptimisticTransactionOptions,
}

impl Store for RocksTransactional {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key_bytes(key), value, &self.write)?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        hand_over(self.db.get_pinned(key_bytes(key))?, found)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn scan(&self, _start: i64, _count: usize, _visit: Visit<'_>) -> Result<usize> {
        anyhow::bail!(TRANSACTIONS_ONLY)
    }

    fn flush(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }

    fn compact(&mut self) -> Result<()> {
        anyhow::bail!(TRANSACTIONS_ONLY)
    }

    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        let txn = self.db.transaction_opt(&self.write, &self.transaction);
        for &key in keys {
            let new = {
                let current = txn.get_pinned_for_update(key_bytes(key), true)?;
                modify(key, current.as_deref())?
            };
            txn.put(key_bytes(key), new)?;
        }
        match txn.commit() {
            Ok(()) => Ok(true),
            Err(error) if matches!(error.kind(), ErrorKind::Busy | ErrorKind::TryAgain) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
