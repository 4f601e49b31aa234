//! One adapter per engine, behind two small traits: [`EngineKind`] opens a store in a
//! directory with a durability class and says how it is configured; [`Store`] is the
//! open store. Every adapter stores the same `i64` keys (as order-preserving big-endian
//! bytes where the engine wants bytes) and the same value bytes.

mod alex;
mod fjall_engine;
mod lmdb;
mod memory;
mod redb_engine;
#[cfg(feature = "rocksdb")]
mod rocks;
mod sled_engine;

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

/// The durability class of a row: every engine in the row gets the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Class {
    /// Each write returns once it is in the OS's hands (survives `kill -9` of the
    /// process, not power loss); no fsync per write.
    Buffered,
    /// Each write returns once it is on stable storage (fsync/fdatasync/msync).
    Sync,
}

/// Features a workload needs that an engine may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Ordered scans from a start key.
    Scan,
    /// Data that outlives the process (reopen, on-disk size, sync writes).
    Persistence,
    /// An explicit call that reclaims the space of overwritten records.
    Compaction,
    /// Read-modify-write transactions ([`Store::read_modify_write`], on a store from
    /// [`EngineKind::open_transactional`]).
    Transactions,
}

/// Called with the bytes of a value that was found.
pub type Found<'a> = &'a mut dyn FnMut(&[u8]) -> Result<()>;

/// Called with the position of a key in a batch and its value, if present.
pub type Indexed<'a> = &'a mut dyn FnMut(usize, Option<&[u8]>) -> Result<()>;

/// Called with each key and value a scan returns, in order.
pub type Visit<'a> = &'a mut dyn FnMut(i64, &[u8]) -> Result<()>;

/// Hands a value that was looked up to `found`; returns whether there was one.
pub fn hand_over(value: Option<impl AsRef<[u8]>>, found: Found<'_>) -> Result<bool> {
    match value {
        Some(value) => found(value.as_ref()).map(|()| true),
        None => Ok(false),
    }
}

/// Why a store opened for the transaction workload refuses the other workloads.
pub const TRANSACTIONS_ONLY: &str = "the transactional store only runs the transaction workload";

/// Given a key and the value a transaction read for it, the value to write back.
pub type Modify<'a> = &'a mut dyn FnMut(i64, Option<&[u8]>) -> Result<Vec<u8>>;

/// An open store.
pub trait Store: Send + Sync {
    /// Writes `value` under `key` with the store's durability class.
    fn put(&self, key: i64, value: &[u8]) -> Result<()>;

    /// Reads the latest committed value of `key`; calls `found` with it. Returns whether
    /// the key was present.
    fn get(&self, key: i64, found: Found<'_>) -> Result<bool>;

    /// A reader for a run of gets by one thread. Engines whose reads need a transaction
    /// (LMDB, redb) keep one open for a bounded number of gets, as their documentation
    /// recommends for read-heavy loops; the others read the latest state each time.
    fn reader(&self) -> Result<Box<dyn Reader + '_>>;

    /// Reads the latest values of `keys` as one batch, the engine's batched read where
    /// it has one (one read transaction, a `MultiGet`), else one get after another;
    /// calls `found` with each key's position in `keys` and its value, if present.
    fn multi_get(&self, keys: &[i64], found: Indexed<'_>) -> Result<()> {
        for (at, &key) in keys.iter().enumerate() {
            let mut present = false;
            self.get(key, &mut |bytes| {
                present = true;
                found(at, Some(bytes))
            })?;
            if !present {
                found(at, None)?;
            }
        }
        Ok(())
    }

    /// Visits up to `count` entries with keys `>= start`, in ascending key order.
    /// Returns how many it visited. Only called when the engine supports [`Feature::Scan`].
    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize>;

    /// Makes everything written so far durable (and, for engines that buffer in user
    /// space, hands it to the OS).
    fn flush(&self) -> Result<()>;

    /// Reclaims the space of overwritten records now. Only called when the engine
    /// supports [`Feature::Compaction`].
    fn compact(&mut self) -> Result<()>;

    /// One transaction: reads every key of `keys`, writes each back as `modify` makes
    /// it, and commits with the store's durability class. Returns `false` if the commit
    /// conflicted with another transaction (and wrote nothing). Only called on a store
    /// from [`EngineKind::open_transactional`] of an engine that supports
    /// [`Feature::Transactions`].
    fn read_modify_write(&self, _keys: &[i64], _modify: Modify<'_>) -> Result<bool> {
        anyhow::bail!("this store runs no transactions")
    }
}

/// A run of reads by one thread.
pub trait Reader {
    /// As [`Store::get`], possibly from a read transaction opened a few gets ago.
    fn get(&mut self, key: i64, found: Found<'_>) -> Result<bool>;
}

/// Reads through [`Store::get`]: for engines with no read transactions.
pub struct Latest<'a, S: ?Sized>(pub &'a S);

impl<S: Store + ?Sized> Reader for Latest<'_, S> {
    fn get(&mut self, key: i64, found: Found<'_>) -> Result<bool> {
        self.0.get(key, found)
    }
}

/// How many gets a read transaction serves before it is renewed.
pub const READS_PER_TXN: u32 = 1024;

/// An engine: how to open it and how it is configured.
pub trait EngineKind: Sync {
    /// Short name, as `--engines` takes it.
    fn name(&self) -> &'static str;

    /// Opens (creating if needed) a store in `dir` with durability class `class`.
    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>>;

    /// The exact settings used for `class`, for the report.
    fn settings(&self, class: Class) -> String;

    /// Why the engine cannot run workloads needing `feature`, if it cannot.
    fn lacks(&self, _feature: Feature) -> Option<&'static str> {
        None
    }

    /// Opens a store for the transaction workload: for most engines the same as
    /// [`EngineKind::open`]; engines whose transactions need another kind of database
    /// (RocksDB's `OptimisticTransactionDB`, fjall's `OptimisticTxDatabase`) open that.
    fn open_transactional(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        self.open(dir, class)
    }

    /// How its transactions are configured, for the report.
    fn transaction_settings(&self) -> String {
        String::new()
    }

    /// For another setting of an engine (AlexStorage with compression), the engine's
    /// name: such a variant runs only the workloads its setting changes
    /// ([`VARIANT_WORKLOADS`](crate::workloads::VARIANT_WORKLOADS)).
    fn variant_of(&self) -> Option<&'static str> {
        None
    }
}

/// Every engine, in report order: the subject first, then peers, then in-memory references.
pub fn all() -> Vec<&'static dyn EngineKind> {
    vec![
        &alex::AlexStorage,
        &alex::AlexStorageCompressed { name: "alexstorage-lz4", compression: alexstorage::Compression::Lz4 },
        &alex::AlexStorageCompressed { name: "alexstorage-zstd", compression: alexstorage::Compression::Zstd(3) },
        #[cfg(feature = "rocksdb")]
        &rocks::RocksDb,
        &lmdb::Lmdb,
        &redb_engine::Redb,
        &fjall_engine::Fjall,
        &sled_engine::Sled,
        &memory::HashMapRef,
        &memory::BTreeMapRef,
    ]
}

/// The name of the subject.
pub const SUBJECT: &str = "alexstorage";
