//! AlexStorage, the subject.

use std::path::Path;

use alexstorage::{Compression, Db, Durability, Options};
use anyhow::Result;

use super::{Class, EngineKind, Feature, Found, Indexed, Latest, Modify, Reader, Store, Visit};

/// AlexStorage with its defaults, durability per class.
pub struct AlexStorage;

impl EngineKind for AlexStorage {
    fn name(&self) -> &'static str {
        "alexstorage"
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let durability = match class {
            Class::Buffered => Durability::Buffered,
            Class::Sync => Durability::Sync,
        };
        Ok(Box::new(Options::new().durability(durability).open(dir)?))
    }

    fn settings(&self, class: Class) -> String {
        let mode = match class {
            Class::Buffered => "Durability::Buffered (record written into the shared writable mmap of the segment before put returns: survives kill -9, no fsync)",
            Class::Sync => "Durability::Sync (msync of the record's pages before put returns, group-committed across threads)",
        };
        format!("{mode}; defaults otherwise (256 MiB segments, background compaction at 30% garbage, no compression)")
    }

    fn lacks(&self, feature: Feature) -> Option<&'static str> {
        match feature {
            Feature::Compaction | Feature::Scan | Feature::Persistence | Feature::Transactions => None,
        }
    }

    fn transaction_settings(&self) -> String {
        "Db::transaction(): gets, puts, commit (optimistic, serializable for what it read; Error::Conflict on a \
         conflict)"
            .to_owned()
    }
}

/// AlexStorage with value compression: a variant of the subject that runs only the
/// workloads compression changes (load, get, scan, space).
pub struct AlexStorageCompressed {
    /// Its `--engines` name.
    pub name: &'static str,
    /// The setting.
    pub compression: Compression,
}

impl EngineKind for AlexStorageCompressed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn open(&self, dir: &Path, class: Class) -> Result<Box<dyn Store>> {
        let durability = match class {
            Class::Buffered => Durability::Buffered,
            Class::Sync => Durability::Sync,
        };
        Ok(Box::new(Options::new().durability(durability).compression(self.compression).open(dir)?))
    }

    fn settings(&self, class: Class) -> String {
        let base = AlexStorage.settings(class);
        let base = base.trim_end_matches(", no compression)");
        format!(
            "{base}), Compression::{:?}: each value compressed on its own, stored raw unless it shrinks by 1/8",
            self.compression
        )
    }

    fn variant_of(&self) -> Option<&'static str> {
        Some(AlexStorage.name())
    }
}

impl Store for Db {
    fn put(&self, key: i64, value: &[u8]) -> Result<()> {
        Ok(Db::put(self, key, value)?)
    }

    fn get(&self, key: i64, found: Found<'_>) -> Result<bool> {
        match Db::get(self, key)? {
            Some(value) => found(&value).map(|()| true),
            None => Ok(false),
        }
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>> {
        Ok(Box::new(Latest(self)))
    }

    fn multi_get(&self, keys: &[i64], found: Indexed<'_>) -> Result<()> {
        for (at, value) in Db::multi_get(self, keys)?.iter().enumerate() {
            found(at, value.as_deref())?;
        }
        Ok(())
    }

    fn scan(&self, start: i64, count: usize, visit: Visit<'_>) -> Result<usize> {
        let mut visited = 0;
        for entry in self.range(start..).take(count) {
            let (key, value) = entry?;
            visit(key, &value)?;
            visited += 1;
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<()> {
        Ok(Db::flush(self)?)
    }

    fn compact(&mut self) -> Result<()> {
        Db::compact(self)?;
        Ok(())
    }

    fn read_modify_write(&self, keys: &[i64], modify: Modify<'_>) -> Result<bool> {
        let mut tx = self.transaction();
        for &key in keys {
            let value = tx.get(key)?;
            let new = modify(key, value.as_deref())?;
            tx.put(key, new);
        }
        match tx.commit() {
            Ok(()) => Ok(true),
            Err(alexstorage::Error::Conflict { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}
