//! The one error type of the crate.

use std::ops::Bound;
use std::path::PathBuf;

/// Everything that can go wrong in AlexStorage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed (a full disk shows up here).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk failed their checksum or do not parse. Nothing was returned from
    /// them.
    #[error("corruption in {}, offset {offset}: {reason}", file.display())]
    Corruption {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset of the bad record (or header) in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A transaction read something that another write changed after the transaction
    /// began; it wrote nothing. Retrying it (see `Db::transact`) reads the new state.
    #[error("transaction conflict in {family}: key {key} {}", describe_conflict(.range))]
    Conflict {
        /// The column family (`"default"` for the store's own keys).
        family: String,
        /// The key written by another transaction or write since this one began:
        /// one it read (or found absent), or one written into a range it read.
        key: i64,
        /// The part of a range the transaction had read that `key` was written into,
        /// if the conflict came from a range.
        range: Option<(Bound<i64>, Bound<i64>)>,
    },
    /// A value is larger than the store's `max_value_size`; nothing was written.
    #[error("value of {size} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge {
        /// The value's size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Another process has the store open for writing.
    #[error("the store at {} is locked by another writer", path.display())]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// A write on a store opened read-only.
    #[error("the store was opened read-only")]
    ReadOnly,
    /// A bad argument or path (a file where a directory is expected, a directory that
    /// holds something other than a store, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A column family that does not exist (or was dropped).
    #[error("column family not found: {0}")]
    ColumnFamilyNotFound(String),
    /// A file written by a newer version of AlexStorage.
    #[error("{} has format version {found}; this build reads up to {supported}", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// Its format version.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The store was closed (its last `Db` handle dropped) while a handle on one of
    /// its column families was still in use.
    #[error("the store was closed")]
    Closed,
    /// An earlier write failed part-way; the store refuses writes until reopened.
    #[error("an earlier write failed ({0}); reopen the store to recover")]
    Poisoned(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The rest of a conflict's message: what the transaction had read of the key.
fn describe_conflict(range: &Option<(Bound<i64>, Bound<i64>)>) -> String {
    let Some((low, high)) = range else {
        return "was read by the transaction and written by another since it began".to_owned();
    };
    let low = match low {
        Bound::Included(key) => format!("[{key}"),
        Bound::Excluded(key) => format!("({key}"),
        Bound::Unbounded => "(-inf".to_owned(),
    };
    let high = match high {
        Bound::Included(key) => format!("{key}]"),
        Bound::Excluded(key) => format!("{key})"),
        Bound::Unbounded => "+inf)".to_owned(),
    };
    format!("was written by another since the transaction began, into the range {low}, {high} it had read")
}

impl Error {
    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_thread_safe_and_describe_themselves() {
        fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        let error = Error::corruption("/tmp/x.seg", 42, "bad checksum");
        assert_eq!(error.to_string(), "corruption in /tmp/x.seg, offset 42: bad checksum");
        assert!(matches!(Error::from(std::io::Error::other("disk")), Error::Io(_)));
    }
}
