//! AlexStorage: an embedded, persistent key-value store with `i64` keys and byte
//! values, built around the ALEX updatable learned index.
//!
//! This crate is being built up issue by issue; today it holds the in-memory learned
//! index, [`index::Alex`].
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

mod batch;
mod db;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod keygen;
pub mod log;
mod options;
mod stats;
mod value;

pub use batch::WriteBatch;
pub use db::Db;
pub use error::{Error, Result};
pub use options::{Compression, Durability, Options};
pub use stats::{CorruptRecord, Stats, VerifyReport};
pub use value::Value;
