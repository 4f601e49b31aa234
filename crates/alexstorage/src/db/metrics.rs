//! [`Db::metrics_prometheus`]: the store's counters, gauges and histograms in the
//! Prometheus text exposition format (version 0.0.4), rendered from [`Db::stats`].
//!
//! Every name starts with `alexstorage_`; counters end in `_total`; units are in the
//! names (`_bytes`, `_seconds`); operations, transaction outcomes and column families
//! are labels. Reads are counted in per-thread cells (`engine/metrics.rs`), so that
//! counting a get writes no cache line another core reads.

use std::fmt::{Display, Write};

use crate::stats::HistogramStats;

use super::Db;

impl Db {
    /// The store's metrics in the Prometheus text exposition format (version 0.0.4),
    /// for a `/metrics` endpoint (serve it as `text/plain; version=0.0.4;
    /// charset=utf-8`): operations by kind, bytes, syncs, compactions, transactions,
    /// write stalls, keys and live bytes per column family, snapshots, recovery, and
    /// histograms of `Sync` write latency and compaction duration. One store's whole
    /// exposition: two stores served together need a label each (a `store` label added
    /// by the scraper's configuration, say).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = alexstorage::Db::open(dir.path()).unwrap();
    /// db.put(1, b"one").unwrap();
    /// let text = db.metrics_prometheus();
    /// assert!(text.contains("alexstorage_operations_total{operation=\"put\"} 1\n"));
    /// assert!(text.contains("alexstorage_keys{family=\"default\"} 1\n"));
    /// ```
    pub fn metrics_prometheus(&self) -> String {
        let stats = self.stats();
        let mut out = Exposition::default();
        let operations = [
            ("get", stats.gets),
            ("range", stats.ranges),
            ("put", stats.puts),
            ("delete", stats.deletes),
            ("batch", stats.batches),
        ];
        out.header("alexstorage_operations_total", "counter", "Operations since the store was opened, by kind.");
        for (operation, count) in operations {
            out.sample("alexstorage_operations_total", &[("operation", operation)], count);
        }
        out.single(
            "alexstorage_batch_writes_total",
            "counter",
            "Writes inside batches (and transaction commits) since open.",
            stats.batch_writes,
        );
        out.single(
            "alexstorage_written_bytes_total",
            "counter",
            "Record bytes appended to the log by writes since open.",
            stats.bytes_written,
        );
        out.single(
            "alexstorage_read_bytes_total",
            "counter",
            "Bytes of the values gets and ranges returned since open (decompressed).",
            stats.bytes_read,
        );
        out.single("alexstorage_syncs_total", "counter", "Segment syncs (msync) since open.", stats.syncs);
        out.single(
            "alexstorage_sync_writes_total",
            "counter",
            "Durability::Sync writes acknowledged since open (each once durable).",
            stats.sync_writes,
        );
        out.single("alexstorage_compactions_total", "counter", "Compactions finished since open.", stats.compactions);
        out.single(
            "alexstorage_compaction_written_bytes_total",
            "counter",
            "Record bytes written by compactions since open.",
            stats.compaction_bytes_written,
        );
        out.single(
            "alexstorage_compaction_reclaimed_bytes_total",
            "counter",
            "Disk bytes compactions gave back since open (segment files deleted, less those written).",
            stats.compaction_bytes_reclaimed,
        );
        out.single(
            "alexstorage_checkpoints_total",
            "counter",
            "Index checkpoints written since open.",
            stats.checkpoints,
        );
        out.header(
            "alexstorage_transactions_total",
            "counter",
            "Commits of transactions with writes since open, by outcome.",
        );
        out.sample("alexstorage_transactions_total", &[("outcome", "committed")], stats.transactions_committed);
        out.sample("alexstorage_transactions_total", &[("outcome", "conflict")], stats.transaction_conflicts);
        out.sample("alexstorage_transactions_total", &[("outcome", "error")], stats.transaction_errors);
        out.single(
            "alexstorage_sync_write_errors_total",
            "counter",
            "Durability::Sync writes that failed after their record was appended (a failed sync).",
            stats.sync_write_errors,
        );
        out.single(
            "alexstorage_write_stalls_total",
            "counter",
            "Writes that waited for a compaction since open (write stalls).",
            stats.write_stalls,
        );
        out.single(
            "alexstorage_write_stall_seconds_total",
            "counter",
            "Time writes spent in write stalls since open, summed over writers (waiting for a compaction to start, then to end).",
            Seconds(stats.write_stall_micros),
        );
        out.header("alexstorage_keys", "gauge", "Live keys, by column family.");
        for family in &stats.families {
            out.sample("alexstorage_keys", &[("family", &family.name)], family.keys);
        }
        out.header("alexstorage_live_bytes", "gauge", "Bytes of the live keys' records, by column family.");
        for family in &stats.families {
            out.sample("alexstorage_live_bytes", &[("family", &family.name)], family.live_bytes);
        }
        let gauges = [
            ("alexstorage_log_bytes", "Bytes of every segment's records (live and garbage).", stats.log_bytes),
            ("alexstorage_unsynced_bytes", "Bytes acknowledged but not yet on stable storage.", stats.unsynced_bytes),
            ("alexstorage_index_bytes", "Heap bytes of the default family's learned index.", stats.index_bytes as u64),
            ("alexstorage_segments", "Segment files.", stats.segments as u64),
            ("alexstorage_column_families", "Named column families.", stats.column_families as u64),
            (
                "alexstorage_snapshots",
                "Live snapshots (ranges and transactions hold one each).",
                stats.snapshots as u64,
            ),
            (
                "alexstorage_retained_versions",
                "Superseded versions kept in memory for live snapshots.",
                stats.retained_versions as u64,
            ),
            ("alexstorage_sequence", "The sequence number of the last write.", stats.sequence),
            (
                "alexstorage_opened_from_checkpoint",
                "1 if the last open loaded the index from a checkpoint, else 0.",
                u64::from(stats.opened_from_checkpoint),
            ),
            ("alexstorage_replayed_keys", "Keys the last open replayed from the log.", stats.replayed_keys as u64),
            ("alexstorage_torn_tail_bytes", "Bytes of torn tail the last open discarded.", stats.torn_tail_bytes),
            (
                "alexstorage_writes_refused",
                "1 if the store refuses writes until reopened (after a failed sync), else 0.",
                u64::from(stats.writes_refused),
            ),
        ];
        for (name, help, value) in gauges {
            out.single(name, "gauge", help, value);
        }
        out.histogram(
            "alexstorage_sync_write_duration_seconds",
            "Latency of Durability::Sync writes, from taking the writer's turn (write stalls included) to the durable return.",
            &stats.sync_write_latency,
        );
        out.histogram(
            "alexstorage_compaction_duration_seconds",
            "Duration of the compactions finished since open.",
            &stats.compaction_duration,
        );
        out.text
    }
}

/// Microseconds, written as seconds.
struct Seconds(u64);

impl Display for Seconds {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// The `# HELP` and `# TYPE` lines of a metric.
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(value, true));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A metric with one sample and no labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.header(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram: cumulative buckets with `le` labels in seconds, `+Inf`, the sum
    /// and the count.
    fn histogram(&mut self, name: &str, help: &str, histogram: &HistogramStats) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, count) in histogram.bounds_micros.iter().zip(&histogram.counts) {
            cumulative += count;
            self.sample(&bucket, &[("le", &Seconds(*bound).to_string())], cumulative);
        }
        let count = histogram.count();
        self.sample(&bucket, &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], Seconds(histogram.sum_micros));
        self.sample(&format!("{name}_count"), &[], count);
    }
}

/// Escapes text for a `# HELP` line (backslash, line feed) or a label value (also
/// the double quote).
fn escape(text: &str, label: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if label => escaped.push_str("\\\""),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd", true), "a\\\\b\\\"c\\nd");
        assert_eq!(escape("a\"b", false), "a\"b");
        assert_eq!(Seconds(1_500_000).to_string(), "1.500000");
        assert_eq!(Seconds(50).to_string(), "0.000050");
    }
}
