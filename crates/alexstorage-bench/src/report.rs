//! Tables, goal verdicts and JSON from a run's results.

use std::fmt::Write as _;

use serde::Serialize;

use crate::engines::SUBJECT;
use crate::results::{advantage, Results, Row, Unit};
use crate::workloads::{threads_label, AFTER_COMPACTION, AFTER_OVERWRITES, WITH_WRITER, WRITE_AMP_OVERWRITES};

/// How an engine is named in reports.
pub fn display(engine: &str) -> &str {
    match engine {
        "alexstorage" => "AlexStorage",
        "rocksdb" => "RocksDB",
        "lmdb" => "LMDB",
        "redb" => "redb",
        "fjall" => "fjall",
        "sled" => "sled",
        "hashmap" => "HashMap (in memory)",
        "btreemap" => "BTreeMap (in memory)",
        other => other,
    }
}

/// A figure with a sensible number of digits.
pub fn figure(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 10_000.0 {
        let mut digits = format!("{value:.0}");
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        format!("{digits}{grouped}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// One markdown table per workload: a row per engine and variant, with the median
/// figure, throughput, latency percentiles and AlexStorage's advantage.
pub fn workload_tables(results: &Results) -> String {
    let mut out = String::new();
    let sections = results.sections();
    let mut workloads: Vec<&str> = Vec::new();
    for (workload, _) in &sections {
        if !workloads.contains(&workload.as_str()) {
            workloads.push(workload);
        }
    }
    for workload in workloads {
        let rows: Vec<&Row> = results.rows.iter().filter(|row| row.workload == workload).collect();
        let has_variants = rows.iter().any(|row| !row.variant.is_empty());
        let has_latency = rows.iter().any(|row| row.median().is_some_and(|sample| sample.p99_ns.is_some()));
        let has_ops =
            rows.iter().any(|row| row.unit != Unit::OpsPerSec && row.median().is_some_and(|s| s.ops_per_s.is_some()));
        let _ = writeln!(out, "### {workload}\n");
        let mut header = String::from("| engine |");
        let mut rule = String::from("|---|");
        if has_variants {
            header.push_str(" variant |");
            rule.push_str("---|");
        }
        header.push_str(" median | unit |");
        rule.push_str("---:|---|");
        if has_ops {
            header.push_str(" ops/s |");
            rule.push_str("---:|");
        }
        if has_latency {
            header.push_str(" p50 ns | p99 ns |");
            rule.push_str("---:|---:|");
        }
        header.push_str(" AlexStorage's advantage |");
        rule.push_str("---:|");
        let _ = writeln!(out, "{header}\n{rule}");
        let mut ordered = rows.clone();
        ordered.sort_by_key(|row| sections.iter().position(|(w, v)| *w == row.workload && *v == row.variant));
        for row in ordered {
            let mut line = format!("| {} |", display(&row.engine));
            if has_variants {
                let _ = write!(line, " {} |", row.variant);
            }
            if let Some(sample) = row.median() {
                let _ = write!(line, " {} | {} |", figure(sample.value), row.unit.label());
                if has_ops {
                    let _ = write!(line, " {} |", sample.ops_per_s.map(figure).unwrap_or_default());
                }
                if has_latency {
                    let p50 = sample.p50_ns.map(figure).unwrap_or_default();
                    let p99 = sample.p99_ns.map(figure).unwrap_or_default();
                    let _ = write!(line, " {p50} | {p99} |");
                }
                let cell = match results.median(&row.workload, &row.variant, SUBJECT) {
                    _ if row.engine == SUBJECT || row.unit == Unit::Share => "-".to_string(),
                    Some(subject) => format!("{:.2}x", advantage(row.unit, subject.value, sample.value)),
                    None => "n/a".to_string(),
                };
                let _ = write!(line, " {cell} |");
            } else {
                let _ = write!(line, " n/a | {} |", row.unit.label());
                if has_ops {
                    line.push_str(" |");
                }
                if has_latency {
                    line.push_str(" | |");
                }
                let _ = write!(line, " {} |", row.not_available.as_deref().unwrap_or("no sample"));
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Median of the repeats. \"AlexStorage's advantage\" is how many times better AlexStorage's median is \
         (above 1: AlexStorage wins). Percentiles from every {}th operation timed alone.",
        crate::workloads::SAMPLE_EVERY
    );
    out
}

/// The headline columns: (workload, variant, column title).
pub const HEADLINE: [(&str, &str, &str); 10] = [
    ("get", "", "get ns/op"),
    ("get-miss", "", "get-miss ns/op"),
    ("load", "", "load ns/op"),
    ("mixed", "", "mixed ns/op"),
    ("scan", "", "scan ns/key"),
    ("scan", AFTER_COMPACTION, "scan after compaction ns/key"),
    ("ycsb-b", "", "YCSB-B ops/s"),
    ("sync-write", "8 threads", "sync-write 8 thr. ops/s"),
    ("reopen", "", "reopen ms"),
    ("space", AFTER_OVERWRITES, "disk / raw after overwrites"),
];

/// One row per engine, one column per headline measure.
pub fn headline_table(results: &Results, engines: &[&str]) -> String {
    let columns: Vec<_> =
        HEADLINE.iter().filter(|(workload, variant, _)| results.find(workload, variant, SUBJECT).is_some()).collect();
    let mut out = String::from("| engine |");
    let mut rule = String::from("|---|");
    for (_, _, title) in &columns {
        let _ = write!(out, " {title} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "\n{rule}");
    for engine in engines {
        let _ = write!(out, "| {} |", display(engine));
        for (workload, variant, _) in &columns {
            let cell = match results.find(workload, variant, engine) {
                Some(row) => match row.median() {
                    Some(sample) => figure(sample.value),
                    None => "n/a".into(),
                },
                None => "".into(),
            };
            let cell = if *engine == SUBJECT && !cell.is_empty() { format!("**{cell}**") } else { cell };
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
    out
}

/// A goal of BENCHMARKS.md and its verdict in this run.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    /// Workload.
    pub workload: String,
    /// The goal, as BENCHMARKS.md words it.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measurable in this run (`None`).
    pub met: Option<bool>,
}

/// The goals of BENCHMARKS.md, each checked against this run's medians.
pub fn goals(results: &Results, keys: usize, subject_compacts: bool) -> Vec<Goal> {
    let median = |workload: &str, variant: &str, engine: &str| results.median(workload, variant, engine);
    let mut goals = Vec::new();
    let mut push = |workload: &str, goal: &str, measured: Option<(String, bool)>| {
        let (measured, met) = match measured {
            Some((text, met)) => (text, Some(met)),
            None => ("not measured in this run".to_string(), None),
        };
        goals.push(Goal { workload: workload.into(), goal: goal.into(), measured, met });
    };
    // "At least `times` as good as `peer`": AlexStorage's advantage over it.
    let beats = |workload: &str, variant: &str, peer: &str, times: f64| -> Option<(String, bool)> {
        let subject = median(workload, variant, SUBJECT)?;
        let other = median(workload, variant, peer)?;
        let unit = results.find(workload, variant, SUBJECT)?.unit;
        let ratio = advantage(unit, subject.value, other.value);
        Some((format!("{ratio:.2}x {}", display(peer)), ratio >= times))
    };
    push("get", ">= 10x RocksDB", beats("get", "", "rocksdb", 10.0));
    push("get", ">= 1.5x LMDB", beats("get", "", "lmdb", 1.5));
    let within = median("get", "", SUBJECT).zip(median("get", "", "hashmap")).map(|(subject, map)| {
        let ratio = subject.value / map.value;
        (format!("{ratio:.2}x HashMap's ns/op"), ratio <= 1.5)
    });
    push("get", "within 1.5x of the in-memory HashMap", within);
    // Batched reads: batches of 64, per key, against single gets and RocksDB's MultiGet.
    let batch = crate::workloads::batch_label(64);
    let batched = |peer: &str, workload: &str, times: f64, what: &str| {
        median("multi-get", &batch, SUBJECT).zip(median(workload, "", peer)).map(|(ours, theirs)| {
            let ratio = theirs.value / ours.value;
            (format!("{ratio:.2}x {what}"), ratio >= times)
        })
    };
    push("multi-get", "batches of 64 >= 3x our get, per key", batched(SUBJECT, "get", 3.0, "our get"));
    push("multi-get", "batches of 64 >= 1.2x the HashMap's get", batched("hashmap", "get", 1.2, "HashMap get"));
    push("multi-get", "batches of 64 >= 10x RocksDB's get", batched("rocksdb", "get", 10.0, "RocksDB get"));
    push("multi-get", "batches of 64 >= 8x RocksDB's MultiGet", beats("multi-get", &batch, "rocksdb", 8.0));
    let tail = median("get", "", SUBJECT).and_then(|sample| {
        let ratio = sample.p99_ns? / sample.p50_ns?;
        Some((format!("p99 = {ratio:.2}x p50"), ratio <= 3.0))
    });
    push("get", "p99 <= 3x p50", tail);
    push("get-miss", ">= 1.5x LMDB", beats("get-miss", "", "lmdb", 1.5));
    push("load", ">= 2x RocksDB", beats("load", "", "rocksdb", 2.0));
    push("load", ">= LMDB", beats("load", "", "lmdb", 1.0));
    push("mixed", ">= 5x RocksDB", beats("mixed", "", "rocksdb", 5.0));
    push("mixed", ">= 1.5x LMDB", beats("mixed", "", "lmdb", 1.5));
    push("scan", ">= RocksDB per key returned (as loaded)", beats("scan", "", "rocksdb", 1.0));
    push("scan", ">= LMDB per key returned (as loaded)", beats("scan", "", "lmdb", 1.0));
    push(
        "scan",
        ">= RocksDB per key returned (both after compaction)",
        beats("scan", AFTER_COMPACTION, "rocksdb", 1.0),
    );
    // LMDB has no compaction: its B-tree is always in key order.
    let compacted_vs_lmdb =
        median("scan", AFTER_COMPACTION, SUBJECT).zip(median("scan", "", "lmdb")).map(|(subject, lmdb)| {
            let ratio = advantage(Unit::NsPerKey, subject.value, lmdb.value);
            (format!("{ratio:.2}x LMDB"), ratio >= 1.0)
        });
    push("scan", ">= LMDB per key returned (after compaction; LMDB has none)", compacted_vs_lmdb);
    let eight = threads_label(8);
    push("sync-write", ">= RocksDB (sync=true) at 8 threads", beats("sync-write", &eight, "rocksdb", 1.0));
    let scaling = median("sync-write", &eight, SUBJECT).zip(median("sync-write", &threads_label(1), SUBJECT)).map(
        |(eight, one)| {
            let ratio = eight.value / one.value;
            (format!("{ratio:.2}x our 1-thread figure"), ratio >= 5.0)
        },
    );
    push("sync-write", "8 threads >= 5x our 1 thread", scaling);
    let one_thread = threads_label(1);
    push("txn", ">= 3x RocksDB's optimistic transactions at 1 thread", beats("txn", &one_thread, "rocksdb", 3.0));
    let ahead = ["rocksdb", "lmdb", "redb", "fjall", "sled"]
        .iter()
        .map(|peer| beats("txn", &one_thread, peer, 1.0))
        .collect::<Option<Vec<_>>>()
        .map(|ratios| {
            let met = ratios.iter().all(|(_, met)| *met);
            (ratios.into_iter().map(|(text, _)| text).collect::<Vec<_>>().join(", "), met)
        });
    push("txn", "ahead of every peer at 1 thread", ahead);
    let one = median("read-threads", &threads_label(1), SUBJECT);
    let two = one.clone().zip(median("read-threads", &threads_label(2), SUBJECT)).map(|(one, two)| {
        let ratio = two.value / one.value;
        (format!("{ratio:.2}x at 2 threads"), ratio >= 1.8)
    });
    push("read-threads", ">= 1.8x at 2 threads", two);
    let with_writer = one.clone().zip(median("read-threads", WITH_WRITER, SUBJECT));
    let kept = with_writer.clone().map(|(alone, busy)| {
        let ratio = busy.value / alone.value;
        (format!("readers keep {:.0}%", ratio * 100.0), ratio >= 0.7)
    });
    push("read-threads", "with one writer running, readers keep >= 70%", kept);
    let p99 = with_writer.and_then(|(alone, busy)| {
        let ratio = busy.p99_ns? / alone.p99_ns?;
        Some((format!("reader p99 {ratio:.2}x read-only p99"), ratio <= 2.0))
    });
    push("read-threads", "with one writer, reader p99 <= 2x read-only p99 (issue 6)", p99);
    let reopen =
        median("reopen", "", SUBJECT).map(|sample| (format!("{} ms", figure(sample.value)), sample.value < 1000.0));
    push("reopen", "< 1 s at 1M keys", if keys <= 1_000_000 { reopen } else { None });
    let reopen_lmdb = median("reopen", "", SUBJECT).zip(median("reopen", "", "lmdb")).map(|(subject, lmdb)| {
        (format!("{} ms vs LMDB {} ms", figure(subject.value), figure(lmdb.value)), subject.value <= lmdb.value + 500.0)
    });
    push("reopen", "<= LMDB's + 0.5 s (at 10M keys)", if keys >= 10_000_000 { reopen_lmdb } else { None });
    let space = median("space", AFTER_OVERWRITES, SUBJECT).map(|sample| {
        (
            format!("{:.2}x raw after overwrites (+ compaction where the engine has it)", sample.value),
            sample.value <= 1.3,
        )
    });
    push("space", "<= 1.3x raw data after compaction", space);
    // Only comparable once both phases include a compaction: without one, AlexStorage's
    // figure would leave out the very writes the goal is about.
    let write_amplification =
        if subject_compacts { beats("space", WRITE_AMP_OVERWRITES, "rocksdb", 1.0) } else { None };
    push("space", "write amplification <= RocksDB's (with compaction)", write_amplification);
    // With compression: AlexStorage's LZ4 variant against RocksDB, which compresses
    // with LZ4 in the benchmark's settings.
    let compressed = |variant: &str, what: &str| {
        median("space", variant, "alexstorage-lz4").zip(median("space", variant, "rocksdb")).map(|(ours, rocks)| {
            (format!("{:.2} vs RocksDB {:.2} ({what})", ours.value, rocks.value), ours.value <= rocks.value)
        })
    };
    push("space", "with LZ4: disk after compaction <= RocksDB's", compressed(AFTER_OVERWRITES, "disk / raw"));
    let amplification = if subject_compacts { compressed(WRITE_AMP_OVERWRITES, "write amplification") } else { None };
    push("space", "with LZ4: write amplification <= RocksDB's", amplification);
    let memory = median("memory", ANON_GROWTH, SUBJECT).map(|sample| {
        (format!("{:.1} bytes/key (anonymous RSS growth over the load)", sample.value), sample.value <= 32.0)
    });
    push("memory", "heap <= 32 bytes per key", memory);
    goals
}

/// `memory` variant: growth of the process's anonymous memory (heap) per key.
pub const ANON_GROWTH: &str = "anonymous RSS growth";
/// `memory` variant: growth of the process's peak RSS (heap and mapped file pages) per key.
pub const PEAK_GROWTH: &str = "peak RSS growth";

/// The goals as a markdown table.
pub fn goal_table(goals: &[Goal]) -> String {
    let mut out = String::from("| workload | goal | measured | verdict |\n|---|---|---|---|\n");
    for goal in goals {
        let verdict = match goal.met {
            Some(true) => "met",
            Some(false) => "**NOT met**",
            None => "n/a",
        };
        let _ = writeln!(out, "| {} | {} | {} | {verdict} |", goal.workload, goal.goal, goal.measured);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::Class;
    use crate::results::Sample;

    #[test]
    fn figures_and_tables() {
        assert_eq!(figure(1_234_567.0), "1,234,567");
        assert_eq!(figure(123.4), "123");
        assert_eq!(figure(1.234), "1.23");
        let mut results = Results::default();
        let sample = |value| Sample { value, ..Sample::default() };
        results.record("get", "", "alexstorage", Unit::NsPerOp, Class::Buffered, sample(100.0));
        results.record("get", "", "rocksdb", Unit::NsPerOp, Class::Buffered, sample(1500.0));
        results.not_available("scan", "", "alexstorage", Unit::NsPerKey, Class::Buffered, "later");
        let tables = workload_tables(&results);
        assert!(tables.contains("| RocksDB | 1500 | ns/op | 15.00x |"), "{tables}");
        assert!(tables.contains("| AlexStorage | n/a | ns/key | later |"), "{tables}");
        let goals = goals(&results, 1_000_000, true);
        assert_eq!(goals[0].met, Some(true));
        assert!(goals.iter().any(|goal| goal.met.is_none()));
    }
}
