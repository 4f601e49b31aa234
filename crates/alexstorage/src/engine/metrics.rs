//! What the store counts for `Db::stats` and `Db::metrics_prometheus` beyond the
//! writer's counters: reads (in one cell per thread shard, the 16 shards segment
//! leases use, so that gets on threads of different shards never write one cache
//! line), transactions, write stalls, and the latency histograms of `Sync` writes and
//! compactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::stats::HistogramStats;
use crate::value::{thread_shard, LEASE_SHARDS};

/// A counter each thread adds to in its own cell (a cache line of its own); reading
/// sums the cells.
#[derive(Default)]
pub(crate) struct ShardedCounter {
    cells: [CachePadded<AtomicU64>; LEASE_SHARDS],
}

impl ShardedCounter {
    /// Adds one, in the calling thread's cell.
    #[inline]
    pub fn increment(&self) {
        self.add(1);
    }

    /// Adds `amount`, in the calling thread's cell.
    #[inline]
    pub fn add(&self, amount: u64) {
        if let Some(cell) = own_cell(&self.cells) {
            cell.fetch_add(amount, Ordering::Relaxed);
        }
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.cells.iter().map(|cell| cell.load(Ordering::Relaxed)).sum()
    }
}

/// The calling thread's cell of `cells` (one per lease shard).
#[inline]
fn own_cell<T>(cells: &[T; LEASE_SHARDS]) -> Option<&T> {
    const _: () = assert!(LEASE_SHARDS.is_power_of_two());
    cells.get(thread_shard() & (LEASE_SHARDS - 1))
}

/// Point reads and the bytes of the values they returned, both counted in one cell
/// per thread shard, so that a get writes one cache line, its thread's own.
#[derive(Default)]
pub(crate) struct Reads {
    cells: [CachePadded<ReadCell>; LEASE_SHARDS],
}

#[derive(Default)]
struct ReadCell {
    gets: AtomicU64,
    bytes: AtomicU64,
}

impl Reads {
    /// Counts `count` point reads.
    #[inline]
    pub fn gets(&self, count: u64) {
        if let Some(cell) = own_cell(&self.cells) {
            cell.gets.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Counts `count` bytes of values returned.
    #[inline]
    pub fn bytes(&self, count: u64) {
        if let Some(cell) = own_cell(&self.cells) {
            cell.bytes.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The point reads and the bytes returned so far.
    pub fn totals(&self) -> (u64, u64) {
        self.cells.iter().fold((0, 0), |(gets, bytes), cell| {
            (gets + cell.gets.load(Ordering::Relaxed), bytes + cell.bytes.load(Ordering::Relaxed))
        })
    }
}

/// A histogram of durations with fixed bucket bounds (in microseconds).
pub(crate) struct Histogram {
    bounds_micros: &'static [u64],
    /// One count per bound, and one past the last.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

/// Bucket bounds of the `Sync` write latency: 50 µs to 1 s.
pub(crate) const SYNC_WRITE_BOUNDS_MICROS: &[u64] =
    &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];
/// Bucket bounds of compaction durations: 1 ms to 10 min.
pub(crate) const COMPACTION_BOUNDS_MICROS: &[u64] =
    &[1_000, 10_000, 100_000, 1_000_000, 10_000_000, 60_000_000, 600_000_000];

impl Histogram {
    /// An empty histogram with these bucket bounds (ascending).
    pub fn new(bounds_micros: &'static [u64]) -> Histogram {
        Histogram {
            bounds_micros,
            counts: (0..=bounds_micros.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = self.bounds_micros.partition_point(|&bound| bound < micros);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Its counts now.
    pub fn stats(&self) -> HistogramStats {
        HistogramStats {
            bounds_micros: self.bounds_micros.to_vec(),
            counts: self.counts.iter().map(|count| count.load(Ordering::Relaxed)).collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// The store's metrics (see the module docs).
pub(crate) struct Metrics {
    /// Point reads (gets and each key of a `multi_get`, through a `Db`, a family, a
    /// snapshot or a transaction) and the bytes of the values reads returned (gets and
    /// ranges; a compressed value counts its decompressed length).
    pub reads: Reads,
    /// Ranges started (each an ordered scan).
    pub ranges: ShardedCounter,
    /// Transactions whose commit wrote their batch.
    pub transactions_committed: AtomicU64,
    /// Transaction commits refused with `Error::Conflict`.
    pub transaction_conflicts: AtomicU64,
    /// Transaction commits that failed otherwise (I/O, a dropped family).
    pub transaction_errors: AtomicU64,
    /// `Sync` writes that failed after their record was appended (a failed sync).
    pub sync_write_errors: AtomicU64,
    /// Writes that waited for a compaction (write stalls), and how long in all.
    pub write_stalls: AtomicU64,
    /// See `write_stalls`.
    pub write_stall_micros: AtomicU64,
    /// Whole `Sync` writes, from the call to the return (durable).
    pub sync_writes: Histogram,
    /// Compactions that finished, from start to end.
    pub compactions: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            reads: Reads::default(),
            ranges: ShardedCounter::default(),
            transactions_committed: AtomicU64::new(0),
            transaction_conflicts: AtomicU64::new(0),
            transaction_errors: AtomicU64::new(0),
            sync_write_errors: AtomicU64::new(0),
            write_stalls: AtomicU64::new(0),
            write_stall_micros: AtomicU64::new(0),
            sync_writes: Histogram::new(SYNC_WRITE_BOUNDS_MICROS),
            compactions: Histogram::new(COMPACTION_BOUNDS_MICROS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_into_their_buckets() {
        let histogram = Histogram::new(&[10, 100]);
        for micros in [5, 10, 11, 100, 101, 5_000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let stats = histogram.stats();
        assert_eq!(stats.counts, [2, 2, 2]);
        assert_eq!(stats.sum_micros, 5 + 10 + 11 + 100 + 101 + 5_000);
    }

    #[test]
    fn sharded_counters_sum_every_thread() {
        let counter = std::sync::Arc::new(ShardedCounter::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || (0..1000).for_each(|_| counter.increment()))
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().unwrap());
        assert_eq!(counter.get(), 8000);
    }
}
