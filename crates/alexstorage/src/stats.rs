//! Counters and reports.

use std::path::PathBuf;

use serde::Serialize;

/// Counters and gauges of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Live keys in the default family.
    pub keys: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes of the records of writes in the log (compacted segments' dictionaries
    /// left out).
    pub log_bytes: u64,
    /// Bytes of heap the index uses.
    pub index_bytes: usize,
    /// Highest sequence number written.
    pub sequence: u64,
    /// Single puts since open.
    pub puts: u64,
    /// Single deletes since open (of present keys; others write nothing).
    pub deletes: u64,
    /// Batches written since open.
    pub batches: u64,
    /// Writes inside those batches.
    pub batch_writes: u64,
    /// Record bytes appended since open (compaction's writes not included).
    pub bytes_written: u64,
    /// Bytes of the records of live keys, every family's; `log_bytes - live_bytes` is
    /// the garbage compaction would reclaim.
    pub live_bytes: u64,
    /// Point reads since open (gets through the store, a family, a snapshot or a
    /// transaction).
    pub gets: u64,
    /// Ranges (ordered scans) started since open.
    pub ranges: u64,
    /// Bytes of the values reads returned since open (gets and ranges; a compressed
    /// value counts its decompressed length).
    pub bytes_read: u64,
    /// Transactions with writes committed since open (a read-only one's commit writes
    /// nothing and is not counted).
    pub transactions_committed: u64,
    /// Transaction commits refused since open because of a conflict.
    pub transaction_conflicts: u64,
    /// Transaction commits that failed otherwise since open (I/O, a dropped family).
    pub transaction_errors: u64,
    /// `Sync` writes that failed since open after their record was appended (a
    /// failed sync: the store then refuses writes until reopened).
    pub sync_write_errors: u64,
    /// Whether the store refuses writes until it is reopened (after a failed sync).
    pub writes_refused: bool,
    /// Writes that waited for a compaction since open (write stalls).
    pub write_stalls: u64,
    /// How long those writes waited in all, in microseconds.
    pub write_stall_micros: u64,
    /// Latency of `Durability::Sync` writes since open, from the call to the durable
    /// return.
    pub sync_write_latency: HistogramStats,
    /// Durations of the compactions finished since open.
    pub compaction_duration: HistogramStats,
    /// Every column family, the default one first: keys and live bytes.
    pub families: Vec<FamilyStats>,
    /// Named column families.
    pub column_families: usize,
    /// Live keys of the named column families, all together (`keys` counts the
    /// default family's).
    pub column_family_keys: usize,
    /// Compactions completed since open (background and [`crate::Db::compact`]).
    pub compactions: u64,
    /// Record bytes those compactions wrote.
    pub compaction_bytes_written: u64,
    /// Disk bytes those compactions gave back (segment files deleted, less those
    /// written).
    pub compaction_bytes_reclaimed: u64,
    /// Syncs (`msync` of a segment) since open.
    pub syncs: u64,
    /// `Durability::Sync` writes acknowledged since open, each after its record was
    /// durable. `sync_writes / syncs` is the mean group-commit size.
    pub sync_writes: u64,
    /// Bytes acknowledged but not yet on stable storage.
    pub unsynced_bytes: u64,
    /// Live snapshots (ranges and background checkpoints hold one each).
    pub snapshots: usize,
    /// Superseded versions kept in memory for live snapshots (while several overlap,
    /// also a few that no live snapshot needs any more, pruned in batches); 0 once
    /// every snapshot is dropped.
    pub retained_versions: usize,
    /// Index checkpoints written since open (after roll-overs, compactions).
    pub checkpoints: u64,
    /// Whether open loaded the index from a checkpoint.
    pub opened_from_checkpoint: bool,
    /// Distinct keys that open replayed from the log (after the checkpoint, if any).
    pub replayed_keys: usize,
    /// Bytes of torn tail (an interrupted last write) that open discarded.
    pub torn_tail_bytes: u64,
}

/// A histogram of durations: how many fell in each bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HistogramStats {
    /// Upper bounds of the buckets, in microseconds, ascending.
    pub bounds_micros: Vec<u64>,
    /// How many durations fell in each bucket (at most its bound, above the one
    /// before), and last how many above every bound: `bounds_micros.len() + 1` counts.
    pub counts: Vec<u64>,
    /// The sum of every duration counted, in microseconds.
    pub sum_micros: u64,
}

impl HistogramStats {
    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One column family's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FamilyStats {
    /// Its name (`"default"` for the store's own keys).
    pub name: String,
    /// Live keys.
    pub keys: usize,
    /// Bytes of its live keys' records.
    pub live_bytes: u64,
}

/// What [`crate::Db::verify`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: usize,
    /// Writes (puts and deletes, batch members included) whose records checked out.
    pub records: u64,
    /// Bytes of records in the segments that checked out.
    pub bytes: u64,
    /// Every bad record found (at most one per segment: a scan cannot resume after
    /// one).
    pub corrupt: Vec<CorruptRecord>,
}

/// A record that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CorruptRecord {
    /// Its segment file.
    pub file: PathBuf,
    /// Its offset in the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}
