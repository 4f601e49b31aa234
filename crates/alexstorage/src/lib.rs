//! AlexStorage: an embedded, persistent key-value store with `i64` keys and byte
//! values, built around the ALEX updatable learned index ([`index`]) held in memory and
//! append-only, checksummed log segments read through memory maps with zero copies.
//!
//! ```
//! use alexstorage::{Db, WriteBatch};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Db::open(dir.path())?;
//! db.put(7, b"seven")?;
//! let mut batch = WriteBatch::new();
//! batch.put(8, b"eight").delete(7);
//! db.write(batch)?;
//! assert_eq!(db.get(8)?.unwrap(), b"eight");
//! assert!(db.get(7)?.is_none());
//! # Ok::<(), alexstorage::Error>(())
//! ```
//!
//! A [`Db`] is a cheap, `Clone + Send + Sync` handle: share it between threads.
//! [`Db::snapshot`] gives a point-in-time view, and [`Db::range`] a lazy, ordered,
//! double-ended iterator over a snapshot taken when it starts:
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! let db = alexstorage::Db::open(dir.path())?;
//! db.put(1, b"a")?;
//! let snapshot = db.snapshot();
//! let writer = std::thread::spawn({
//!     let db = db.clone();
//!     move || db.put(2, b"b")
//! });
//! writer.join().unwrap()?;
//! assert_eq!(snapshot.len(), 1);
//! let keys: Vec<i64> = db.range(..).map(|entry| entry.map(|(key, _)| key)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, [1, 2]);
//! # Ok::<(), alexstorage::Error>(())
//! ```
//!
//! Overwrites and deletes leave old records behind until compaction copies the live
//! records, in key order, into new segments and deletes the old ones: in the
//! background when garbage passes [`Options::compaction_threshold`], or now with
//! [`Db::compact`]. Values, snapshots and ranges taken before keep reading their own
//! bytes.
//!
//! # Durability
//!
//! [`Options::durability`] says when a write is acknowledged, and so what it survives:
//!
//! | mode | a write returns once | survives |
//! |---|---|---|
//! | [`Durability::Buffered`] (default) | it is in the OS page cache | a process crash (`kill -9`): no acknowledged write is lost |
//! | [`Durability::Sync`] | it is on stable storage, group-committed across threads | a process crash, an OS crash, a power cut |
//! | [`Durability::Periodic`] | like `Buffered`, plus a background sync at that interval | loses at most that interval on a power cut |
//!
//! [`Db::flush`] makes everything acknowledged so far durable in any mode.
//!
//! # Integrity
//!
//! Every record carries a CRC-32C. No read returns bytes that fail their checksum: it
//! returns [`Error::Corruption`] naming the file and offset. Recovery discards only a
//! torn tail (the last, incompletely written records); any other bad record is
//! reported by `open`, [`Db::verify`] or the read that meets it, never dropped. No
//! public function panics on any input, file contents or I/O failure. After a failed
//! sync the store refuses writes ([`Error::Poisoned`]) until it is reopened.
//!
//! # Column families
//!
//! [`Db::column_family`] gives a [`ColumnFamily`]: an independent keyspace in the same
//! store, created on first use. Batches ([`WriteBatch::put_cf`]), snapshots
//! ([`Snapshot::get_cf`]) and transactions ([`Transaction::get_cf`]) span families;
//! [`Db::drop_column_family`] removes one durably and atomically.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! let db = alexstorage::Db::open(dir.path())?;
//! let users = db.column_family("users")?;
//! users.put(1, b"ada")?;
//! assert_eq!(users.get(1)?.unwrap(), b"ada");
//! assert!(db.get(1)?.is_none(), "the default family is another keyspace");
//! # Ok::<(), alexstorage::Error>(())
//! ```
//!
//! # Handles and lifetimes
//!
//! [`Value`], [`Snapshot`], [`Range`], [`Transaction`] and [`ColumnFamily`] borrow
//! nothing from the [`Db`]: they can move to other threads and outlive the handle they
//! came from (a `ColumnFamily` then fails with [`Error::Closed`]). Dropping the last `Db`
//! clone closes the store cleanly (everything acknowledged made durable, the index
//! checkpointed, the lock released); another process may then open it. A read-only
//! open ([`Options::read_only`]) works beside a running writer.
//!
//! The learned index is usable on its own:
//!
//! ```
//! use alexstorage::index::Alex;
//!
//! let mut index: Alex<i64> = Alex::new();
//! for key in [30, -10, 20] {
//!     index.insert(key, key * 2);
//! }
//! assert_eq!(index.get(20), Some(40));
//! assert_eq!(index.iter().map(|(key, _)| key).collect::<Vec<_>>(), [-10, 20, 30]);
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

// Layers, lowest first; a module imports only from layers below its own.
// 1. Leaves, then what names a column family, then batches.
mod batch;
mod compression;
mod error;
mod family;
mod options;
mod stats;
mod value;
// 2. The learned index (a product of its own) and the log.
pub mod index;
mod log;
// 3. The engine core: shared state split by concern, the lock table, record reads.
mod engine;
// 4. Built on the core, each on those before it (`tests/layers.rs` checks the order).
mod background;
mod checkpointer;
mod compaction;
mod range;
mod snapshot;
// 5. The public store.
mod db;
// 6. Built on the store: transactions.
mod transaction;
// Test support (hidden, not part of the API).
#[doc(hidden)]
pub mod testing;

pub use batch::WriteBatch;
pub use compaction::CompactionStats;
#[doc(hidden)]
pub use compaction::Failpoint;
#[doc(hidden)]
pub use db::BackupStage;
pub use db::{BackupStats, ColumnFamily, Db};
pub use error::{Error, Result};
pub use options::{Compression, Durability, Options};
pub use range::Range;
pub use snapshot::Snapshot;
pub use stats::{CorruptRecord, FamilyStats, HistogramStats, Stats, VerifyReport};
pub use transaction::{Transaction, DEFAULT_ATTEMPTS};
pub use value::Value;
