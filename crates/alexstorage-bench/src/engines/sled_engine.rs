//! sled.

use std::cell::{Cell, RefCell};
use std::path::Path;

use anyhow::Result;
use sled::transaction::{abort, ConflictableTransactionError, TransactionError};

use super::{Class, EngineKind, Feature, Found, Latest, Modify, Reader, Store, Visit};
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
        // sled's background flusher holds its own handle, and with it the directory's
        // lock, a moment after the last `Db` is dropped: a reopen right after a close
        // may find the lock still held. Try again for up to two seconds.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).open() {
                // (sled reports it as an `Other` I/O error with this message.)
                Err(sled::Error::Io(error))
                    if error.to_string().contains("could not acquire lock") && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => break opened?,
            }
        };
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

    fn transaction_settings(&self) -> String {
        "Tree::transaction(): gets, inserts, commit, then Db::flush() in the Sync class (sled re-runs the closure \
         after a conflict: the re-run aborts instead, so that the workload counts the conflict and retries as for \
         every engine)"
            .to_owned()
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Compaction => Some("sled has no compaction call (its log is cleaned in the background)"),
            Feature::Transactions | Feature::Scan | Feature::Persistence => None,
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

    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        /// Why the transaction closure gave up.
        enum Aborted {
            /// sled re-ran it after a conflict.
            Conflicted,
            /// `modify` failed.
            Failed(anyhow::Error),
        }
        let modify = RefCell::new(modify);
        let runs = Cell::new(0u32);
        let outcome = self.db.transaction(|tx| {
            runs.set(runs.get() + 1);
            if runs.get() > 1 {
                return abort(Aborted::Conflicted);
            }
            for &key in keys {
                let current = tx.get(key_bytes(key))?;
                let new = (modify.borrow_mut())(key, current.as_deref())
                    .map_err(|error| ConflictableTransactionError::Abort(Aborted::Failed(error)))?;
                tx.insert(&key_bytes(key)[..], new)?;
            }
            Ok(())
        });
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Abort(Aborted::Conflicted)) => return Ok(false),
            Err(TransactionError::Abort(Aborted::Failed(error))) => return Err(error),
            Err(TransactionError::Storage(error)) => return Err(error.into()),
        }
        if self.sync {
            self.db.flush()?;
        }
        Ok(true)
    }
}
