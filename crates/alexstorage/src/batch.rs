//! [`WriteBatch`]: writes applied all together or not at all, in any column
//! families.

use crate::compression;
use crate::family::FamilyRef;
use crate::options::Compression;

/// A set of puts and deletes that [`crate::Db::write`] applies atomically: readers see
/// all of them or none, and after any crash the store holds all of them or none.
/// Values are checked (against `max_value_size`) when the batch is written. A batch
/// may span column families (`put_cf`, `delete_cf`); it is still one atomic write.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub(crate) operations: Vec<BatchOperation>,
    /// The named families the writes go to, each once: the write fails with
    /// `Error::ColumnFamilyNotFound`, writing nothing, if one no longer exists.
    pub(crate) families: Vec<FamilyRef>,
    /// All values, back to back; operations refer to ranges of it.
    pub(crate) values: Vec<u8>,
}

/// One write of a batch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BatchOperation {
    /// `value_len` bytes at `value_start` of the batch's values, stored with
    /// `compression` (a `compression` flag: raw until [`WriteBatch::compressed`]).
    Put {
        column_family: u16,
        key: i64,
        value_start: usize,
        value_len: usize,
        compression: u8,
    },
    Delete {
        column_family: u16,
        key: i64,
    },
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: i64, value: impl AsRef<[u8]>) -> &mut Self {
        self.put_in(FamilyRef::default_family(), key, value.as_ref())
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: i64) -> &mut Self {
        self.operations.push(BatchOperation::Delete { column_family: 0, key });
        self
    }

    /// Sets `key` of `family` to `value`.
    pub(crate) fn put_in(&mut self, family: &FamilyRef, key: i64, value: &[u8]) -> &mut Self {
        self.note_family(family);
        let value_start = self.values.len();
        self.values.extend_from_slice(value);
        let column_family = family.id;
        self.operations.push(BatchOperation::Put {
            column_family,
            key,
            value_start,
            value_len: value.len(),
            compression: compression::RAW,
        });
        self
    }

    /// Deletes `key` of `family`.
    pub(crate) fn delete_in(&mut self, family: &FamilyRef, key: i64) -> &mut Self {
        self.note_family(family);
        self.operations.push(BatchOperation::Delete { column_family: family.id, key });
        self
    }

    /// Makes the write fail (writing nothing) unless `family` still exists when it is
    /// applied: a transaction requires the families it read.
    pub(crate) fn require_family(&mut self, family: &FamilyRef) {
        self.note_family(family);
    }

    fn note_family(&mut self, family: &FamilyRef) {
        if !family.is_default() && !self.families.iter().any(|known| known.incarnation == family.incarnation) {
            self.families.push(family.clone());
        }
    }

    /// Number of writes in the batch.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The batch with each value compressed as `compression` asks (those that do not
    /// shrink stay as given); the batch itself when compression is off.
    pub(crate) fn compressed(self, compression: Compression) -> WriteBatch {
        if compression == Compression::None {
            return self;
        }
        let mut values = Vec::with_capacity(self.values.len());
        let mut scratch = Vec::new();
        let operations = self
            .operations
            .iter()
            .map(|&operation| match operation {
                BatchOperation::Put { column_family, key, value_start, value_len, .. } => {
                    let value = self.value(value_start, value_len);
                    let flag = compression::compress(compression, value, &mut scratch);
                    let stored = if flag == compression::RAW { value } else { &scratch[..] };
                    let value_start = values.len();
                    values.extend_from_slice(stored);
                    BatchOperation::Put { column_family, key, value_start, value_len: stored.len(), compression: flag }
                }
                delete @ BatchOperation::Delete { .. } => delete,
            })
            .collect();
        WriteBatch { operations, families: self.families, values }
    }

    /// Removes every write.
    pub fn clear(&mut self) {
        self.operations.clear();
        self.values.clear();
        self.families.clear();
    }

    /// The value bytes of a put.
    pub(crate) fn value(&self, start: usize, len: usize) -> &[u8] {
        self.values.get(start..start + len).unwrap_or(&[])
    }
}
