//! Open options: a by-value builder ending in [`Options::open`] (defined with the
//! rest of opening, in `db/open.rs`).

use std::time::Duration;

/// When a write is acknowledged, and so what it survives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged once in the OS page cache: survives a process crash (`kill -9`).
    #[default]
    Buffered,
    /// Acknowledged once on stable storage: survives an OS crash or power loss.
    Sync,
    /// Like `Buffered`, plus a background sync at this interval: loses at most the
    /// interval on power loss.
    Periodic(Duration),
}

/// Value compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Values are stored as given and read with zero copies.
    #[default]
    None,
    /// LZ4 block compression: fast to write and read, a modest ratio.
    Lz4,
    /// Zstandard at the given level (1 to 22, higher is smaller and slower to write;
    /// 0 is zstd's default, 3; negative levels, down to -131072, are faster than
    /// level 1). Reads cost about the same at every level. Compaction also trains a
    /// dictionary on the store's values and compresses what it copies with it, when
    /// that stores them in at most nine tenths of the space: small values alike in
    /// shape (JSON documents, records) then take a fraction of what they take alone.
    Zstd(i32),
}

/// Settings for opening a store.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub(crate) durability: Durability,
    pub(crate) compression: Compression,
    /// Whether `compression` was called: if not, the store's own setting applies.
    pub(crate) compression_chosen: bool,
    pub(crate) max_value_size: usize,
    pub(crate) segment_size: u64,
    pub(crate) writeback_step: u64,
    pub(crate) background_compaction: bool,
    pub(crate) compaction_threshold: f64,
    pub(crate) read_only: bool,
}

/// Default `max_value_size`: 64 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 64 << 20;
/// Largest `max_value_size` accepted (a record must fit a 4 GiB segment).
pub(crate) const MAX_VALUE_SIZE_LIMIT: usize = 1 << 30;
/// Default `segment_size`: 256 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 256 << 20;
/// Smallest accepted `segment_size`.
pub const MIN_SEGMENT_SIZE: u64 = 4096;
/// Default `compaction_threshold`: compact once 30 % of the log is garbage.
pub const DEFAULT_COMPACTION_THRESHOLD: f64 = 0.3;

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Buffered,
            compression: Compression::None,
            compression_chosen: false,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            segment_size: DEFAULT_SEGMENT_SIZE,
            writeback_step: 0,
            background_compaction: true,
            compaction_threshold: DEFAULT_COMPACTION_THRESHOLD,
            read_only: false,
        }
    }
}

impl Options {
    /// The defaults: buffered durability, no compression, 64 MiB values, 256 MiB
    /// segments.
    pub fn new() -> Self {
        Self::default()
    }

    /// When writes are acknowledged.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Value compression for new writes and for the records compaction rewrites
    /// (default for a new store: `None`). The store remembers it (in its identity
    /// file): an open that does not call `compression` writes as the store did, and
    /// one that does changes the store's setting. Each value is compressed on its own, before the write takes
    /// the writer's lock; one that does not shrink by at least an eighth, or is
    /// shorter than 32 bytes, is stored as given. Reads of compressed values are
    /// checksummed like all reads, then decompressed into a `Value` that owns its
    /// bytes (values stored uncompressed stay zero-copy). A store may be reopened with
    /// another setting: its old records are read as they were written, and a
    /// compaction rewrites them with the new one (a change of zstd level alone is not
    /// a reason to rewrite them). A zstd level outside the library's
    /// range fails the open with `Error::InvalidArgument`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self.compression_chosen = true;
        self
    }

    /// Largest value accepted; larger ones fail with `Error::ValueTooLarge`.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Capacity of each log segment file, in bytes (a record larger than this gets a
    /// segment of its own).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Starts the kernel writing the log's unsynced bytes back to the disk every
    /// `bytes` written (at least a page; `sync_file_range`, from a background thread;
    /// `0`, the default: never; RocksDB's `wal_bytes_per_sync` is the like). Outside
    /// `Durability::Sync`, a full segment is sealed with one sync of everything not
    /// yet synced, and writers wait for it: 40.6 ms on average for a 64 MiB segment
    /// here (70 ms at most; more for the default 256 MiB). With a step of 8 MiB that
    /// sync finds the bytes already written and takes 2.5 ms (6 ms at most), but the
    /// writes meanwhile cost more (20 % more per put here, with 100-byte values;
    /// probably the writeback competing with the writers' page faults on the same
    /// file). It makes nothing durable by itself: durability is still what
    /// the mode promises. Ignored in `Durability::Sync` (every write syncs), by a
    /// read-only open, and on systems other than Linux.
    pub fn writeback_step(mut self, bytes: u64) -> Self {
        self.writeback_step = bytes;
        self
    }

    /// Whether space is reclaimed in the background (default: on). A background
    /// thread compacts the store (see [`crate::Db::compact`]) whenever the garbage
    /// (records of overwritten and deleted keys) passes `compaction_threshold`. To
    /// keep disk use bounded when writes outrun it, a write waits while a compaction
    /// runs if the log has grown past `1 / (1 - threshold)` times the live records
    /// plus a segment (or a sixteenth of the live data). Off: no background work and
    /// no waiting; the log grows until [`crate::Db::compact`] is called.
    pub fn background_compaction(mut self, enabled: bool) -> Self {
        self.background_compaction = enabled;
        self
    }

    /// The share of the log's bytes that must be garbage, above `0.0` and below
    /// `1.0`, before a background compaction starts (default `0.3`; garbage must also
    /// reach a quarter of `segment_size`, so that small stores are not rewritten for a
    /// few records). The log then holds at most about `1 / (1 - threshold)` times the
    /// live records (1.43x at the default; about 2x the keys' and values' bytes with
    /// record headers and the segment being filled). Lower means less disk and more
    /// rewriting.
    pub fn compaction_threshold(mut self, ratio: f64) -> Self {
        self.compaction_threshold = ratio;
        self
    }

    /// Open an existing store without the write lock; writes fail with
    /// `Error::ReadOnly`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}
