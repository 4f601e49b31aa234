//! The index benchmark: ALEX against `BTreeMap<i64, u64>` and binary search on a sorted
//! `Vec`, in one run, on several key distributions and sizes.
//!
//! ```text
//! cargo bench -p alexstorage --bench index -- [--keys 1000000,10000000]
//!     [--dist uniform,lognormal,clustered,sequential] [--repeats 3] [--markdown FILE]
//! ```
//!
//! Each figure is the median of `--repeats` runs. Every lookup checks its payload and
//! the run aborts on a wrong one, so no structure can win by skipping work. Ratios are
//! `other / alex` for times (above 1 means ALEX is faster) and are computed within the
//! same run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use alexstorage::index::Alex;
use alexstorage_keygen::{generate, KeyPattern, SplitMix64};

struct Settings {
    sizes: Vec<usize>,
    patterns: Vec<KeyPattern>,
    repeats: usize,
    markdown: Option<String>,
}

fn parse_args() -> Settings {
    let mut settings = Settings {
        sizes: vec![1_000_000, 10_000_000],
        patterns: vec![KeyPattern::Uniform, KeyPattern::Lognormal, KeyPattern::Clustered, KeyPattern::Sequential],
        repeats: 3,
        markdown: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--keys" => {
                settings.sizes = value.split(',').filter_map(|size| size.replace('_', "").parse().ok()).collect();
                index += 1;
            }
            "--dist" => {
                settings.patterns = value.split(',').filter_map(KeyPattern::from_name).collect();
                index += 1;
            }
            "--repeats" => {
                settings.repeats = value.parse().unwrap_or(3).max(1);
                index += 1;
            }
            "--markdown" => {
                settings.markdown = Some(value);
                index += 1;
            }
            _ => {} // cargo bench passes --bench; ignore what we do not know
        }
        index += 1;
    }
    settings
}

/// Median of `repeats` runs of `f`, in nanoseconds per operation.
fn median_ns(repeats: usize, operations: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut runs: Vec<f64> = (0..repeats).map(|_| f() / operations.max(1) as f64).collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_nanos() as f64
}

#[derive(Default)]
struct Row {
    pattern: &'static str,
    keys: usize,
    sort_ns: f64,
    bulk_ns: f64,
    lookup: [f64; 3],
    insert: [f64; 2],
    scan: [f64; 3],
    erase: [f64; 2],
    bytes_per_key_bulk: f64,
    bytes_per_key_inserts: f64,
    depth: usize,
    data_nodes: usize,
}

fn bench(pattern: KeyPattern, count: usize, repeats: usize) -> Row {
    let keys = generate(pattern, count, 20261125);
    let mut sorted = keys.clone();
    let mut random = SplitMix64::new(99);
    let mut probe = keys.clone();
    random.shuffle(&mut probe);
    let mut row = Row { pattern: pattern.name(), keys: count, ..Row::default() };

    // The baseline a bulk load is held to: sorting the same keys from random order.
    row.sort_ns = median_ns(repeats, count, || {
        let mut copy = probe.clone();
        time(|| copy.sort_unstable())
    });
    sorted.sort_unstable();
    let pairs: Vec<(i64, u64)> = sorted.iter().map(|&key| (key, payload(key))).collect();
    // Each repeat frees the previous index first, so that every build meets the same
    // allocator state (the first one also pays for faulting in fresh pages).
    let mut alex = None;
    row.bulk_ns = median_ns(repeats, count, || {
        alex = None;
        let mut built = None;
        let elapsed = time(|| built = Some(Alex::bulk_load(&pairs).expect("sorted input")));
        alex = built;
        elapsed
    });
    let alex = alex.expect("built");
    let stats = alex.stats();
    row.bytes_per_key_bulk = alex.size_in_bytes() as f64 / count as f64;
    row.depth = stats.max_depth;
    row.data_nodes = stats.data_nodes;
    let btree: BTreeMap<i64, u64> = pairs.iter().copied().collect();

    // Lookups of existing keys in random order.
    row.lookup[0] = median_ns(repeats, count, || time(|| lookups(&probe, |key| alex.get(key))));
    row.lookup[1] = median_ns(repeats, count, || time(|| lookups(&probe, |key| btree.get(&key).copied())));
    row.lookup[2] = median_ns(repeats, count, || {
        time(|| lookups(&probe, |key| pairs.binary_search_by_key(&key, |pair| pair.0).ok().map(|at| pairs[at].1)))
    });

    // Scans of 100 keys from random starting keys.
    let starts: Vec<i64> = probe.iter().take(10_000).copied().collect();
    let scanned = starts.len() * 100;
    row.scan[0] = median_ns(repeats, scanned, || time(|| scans(&starts, |start| alex.range(start..).take(100))));
    row.scan[1] = median_ns(repeats, scanned, || {
        time(|| scans(&starts, |start| btree.range(start..).take(100).map(|(&k, &v)| (k, v))))
    });
    row.scan[2] = median_ns(repeats, scanned, || {
        time(|| {
            scans(&starts, |start| {
                let at = pairs.partition_point(|pair| pair.0 < start);
                pairs[at..].iter().take(100).copied()
            })
        })
    });
    drop(btree);
    drop(alex);

    // Inserts: bulk load every other key of the sorted order, insert the rest randomly.
    let half: Vec<(i64, u64)> = pairs.iter().step_by(2).copied().collect();
    let rest: Vec<(i64, u64)> = pairs.iter().skip(1).step_by(2).copied().collect();
    let mut rest_keys: Vec<i64> = rest.iter().map(|pair| pair.0).collect();
    random.shuffle(&mut rest_keys);
    let mut after_inserts = 0.0;
    row.insert[0] = median_ns(repeats, rest_keys.len(), || {
        let mut index = Alex::bulk_load(&half).expect("sorted input");
        let elapsed = time(|| {
            for &key in &rest_keys {
                index.insert(key, payload(key));
            }
        });
        assert_eq!(index.len(), count);
        after_inserts = index.size_in_bytes() as f64 / count as f64;
        elapsed
    });
    row.bytes_per_key_inserts = after_inserts;
    row.insert[1] = median_ns(repeats, rest_keys.len(), || {
        let mut map: BTreeMap<i64, u64> = half.iter().copied().collect();
        let elapsed = time(|| {
            for &key in &rest_keys {
                map.insert(key, payload(key));
            }
        });
        assert_eq!(map.len(), count);
        elapsed
    });

    // Erase every key in random order.
    row.erase[0] = median_ns(repeats, count, || {
        let mut index = Alex::bulk_load(&pairs).expect("sorted input");
        let elapsed = time(|| {
            for &key in &probe {
                assert_eq!(index.remove(key), Some(payload(key)));
            }
        });
        assert!(index.is_empty());
        elapsed
    });
    row.erase[1] = median_ns(repeats, count, || {
        let mut map: BTreeMap<i64, u64> = pairs.iter().copied().collect();
        time(|| {
            for &key in &probe {
                assert_eq!(map.remove(&key), Some(payload(key)));
            }
        })
    });
    row
}

fn payload(key: i64) -> u64 {
    (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn lookups(probe: &[i64], get: impl Fn(i64) -> Option<u64>) {
    for &key in probe {
        let found = black_box(get(black_box(key)));
        assert_eq!(found, Some(payload(key)), "wrong payload for {key}");
    }
}

fn scans<I: Iterator<Item = (i64, u64)>>(starts: &[i64], scan: impl Fn(i64) -> I) {
    let mut total = 0u64;
    for &start in starts {
        for (key, value) in scan(start) {
            assert_eq!(value, payload(key));
            total = total.wrapping_add(value);
        }
    }
    black_box(total);
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn report(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| keys | dist | bulk load / sort | lookup ns: ALEX / BTreeMap / Vec | insert ns: ALEX / BTreeMap | scan ns/key: ALEX / BTreeMap / Vec | erase ns: ALEX / BTreeMap | bytes/key bulk, after inserts | depth, data nodes |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} / {:.0} ns = {:.2}x | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} / {:.2} | {:.0} / {:.0} | {:.1}, {:.1} | {}, {} |\n",
            row.keys, row.pattern, row.bulk_ns, row.sort_ns, row.bulk_ns / row.sort_ns,
            row.lookup[0], row.lookup[1], row.lookup[2], row.insert[0], row.insert[1],
            row.scan[0], row.scan[1], row.scan[2], row.erase[0], row.erase[1],
            row.bytes_per_key_bulk, row.bytes_per_key_inserts, row.depth, row.data_nodes,
        ));
    }
    out.push_str("\n| keys | dist | lookup vs BTreeMap (goal ≥ 4) | lookup vs Vec (≥ 3) | insert vs BTreeMap (≥ 2) | scan vs BTreeMap (≥ 1.5) | bulk load / sort (≤ 2) | bytes/key bulk (≤ 24) | after inserts (≤ 32) |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        let lookup_btree = row.lookup[1] / row.lookup[0];
        let lookup_vec = row.lookup[2] / row.lookup[0];
        let insert = row.insert[1] / row.insert[0];
        let scan = row.scan[1] / row.scan[0];
        let bulk = row.bulk_ns / row.sort_ns;
        out.push_str(&format!(
            "| {} | {} | {:.2}x {} | {:.2}x {} | {:.2}x {} | {:.2}x {} | {:.2}x {} | {:.1} {} | {:.1} {} |\n",
            row.keys,
            row.pattern,
            lookup_btree,
            verdict(lookup_btree >= 4.0),
            lookup_vec,
            verdict(lookup_vec >= 3.0),
            insert,
            verdict(insert >= 2.0),
            scan,
            verdict(scan >= 1.5),
            bulk,
            verdict(bulk <= 2.0),
            row.bytes_per_key_bulk,
            verdict(row.bytes_per_key_bulk <= 24.0),
            row.bytes_per_key_inserts,
            verdict(row.bytes_per_key_inserts <= 32.0),
        ));
    }
    out
}

fn main() {
    let settings = parse_args();
    let mut rows = Vec::new();
    for &count in &settings.sizes {
        for &pattern in &settings.patterns {
            eprintln!("index bench: {} keys, {} ...", count, pattern.name());
            rows.push(bench(pattern, count, settings.repeats));
        }
    }
    let table = report(&rows);
    println!("{table}");
    if let Some(path) = settings.markdown {
        if let Err(error) = std::fs::write(&path, &table) {
            eprintln!("could not write {path}: {error}");
        }
    }
}
