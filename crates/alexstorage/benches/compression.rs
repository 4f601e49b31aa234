//! What value compression saves and costs: for each setting (`None`, `Lz4`,
//! `Zstd(3)`) and two kinds of values, the bytes on disk after a compaction, and put,
//! get and scan time per operation, in one run (under zstd the compaction trains a
//! dictionary where one pays); plus what a trained zstd dictionary saves on the same
//! values outside the store, value bytes only.
//!
//! ```text
//! cargo bench -p alexstorage --bench compression -- [--keys 1000000] [--repeats 3] [--markdown FILE]
//! ```
//!
//! Values:
//! - `bench`: the comparative benchmark's 100-byte values (the key, a generation, 44
//!   pseudo-random bytes and a copy of them: they compress to about half, like
//!   `db_bench`'s default);
//! - `json`: JSON-like documents of 300 to 500 bytes (a user record: ids, names from
//!   small vocabularies, timestamps, flags, tags), as session and config stores hold.
//!
//! Every get and every scanned key and value is checked against what was written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use alexstorage::{Compression, Options};
use alexstorage_keygen::{generate, KeyPattern, SplitMix64};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bench,
    Json,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bench => "bench (100 B, half random)",
            Kind::Json => "json (300-500 B documents)",
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of `key`: deterministic, so reads can be checked by regenerating it.
fn value(kind: Kind, key: i64) -> Vec<u8> {
    match kind {
        Kind::Bench => {
            let mut out = vec![0u8; 100];
            out[..8].copy_from_slice(&key.to_le_bytes());
            let filler = &mut out[12..];
            let (first, second) = filler.split_at_mut(44);
            for (index, chunk) in first.chunks_mut(8).enumerate() {
                let word = mix(key as u64 ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            second.copy_from_slice(first);
            out
        }
        Kind::Json => {
            const FIRST: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
            const CITY: [&str; 6] = ["Lisbon", "Berlin", "Osaka", "Denver", "Nairobi", "Lima"];
            const PLAN: [&str; 4] = ["free", "pro", "team", "enterprise"];
            const TAGS: [&str; 10] =
                ["beta", "mobile", "desktop", "newsletter", "trial", "vip", "churn-risk", "eu", "us", "apac"];
            let r = |salt: u64| mix(key as u64 ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let tags: Vec<String> =
                (0..1 + r(1) % 4).map(|index| format!("\"{}\"", TAGS[(r(10 + index) % 10) as usize])).collect();
            let mut doc = format!(
                "{{\"id\":{key},\"user\":\"{}{}\",\"email\":\"{}.{}@example.com\",\"city\":\"{}\",\"plan\":\"{}\",\
                 \"created_at\":\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\",\"last_seen\":{},\"logins\":{},\
                 \"verified\":{},\"tags\":[{}],\"settings\":{{\"theme\":\"{}\",\"lang\":\"{}\",\
                 \"notifications\":{{\"email\":{},\"push\":{}}}}},\"session\":\"{:016x}{:016x}\"}}",
                FIRST[(r(2) % 8) as usize],
                r(3) % 10_000,
                FIRST[(r(2) % 8) as usize],
                r(3) % 10_000,
                CITY[(r(4) % 6) as usize],
                PLAN[(r(5) % 4) as usize],
                1 + r(6) % 12,
                1 + r(7) % 28,
                r(8) % 24,
                r(9) % 60,
                r(11) % 60,
                1_790_000_000 + r(12) % 10_000_000,
                r(13) % 5_000,
                r(14) % 2 == 0,
                tags.join(","),
                if r(15) % 2 == 0 { "dark" } else { "light" },
                ["en", "de", "ja", "pt"][(r(16) % 4) as usize],
                r(17) % 2 == 0,
                r(18) % 3 == 0,
                r(19),
                r(20),
            );
            // Some documents carry a longer free-text note.
            if r(21) % 3 == 0 {
                doc.push_str(" note: customer asked about the invoice for the previous billing period");
            }
            doc.into_bytes()
        }
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|arg| arg == name).and_then(|at| args.get(at + 1).cloned())
}

struct Row {
    kind: Kind,
    setting: &'static str,
    raw: u64,
    disk: u64,
    put: f64,
    get: f64,
    scan: f64,
}

fn main() {
    let keys: usize = arg("--keys").and_then(|value| value.replace('_', "").parse().ok()).unwrap_or(1_000_000);
    let repeats: usize = arg("--repeats").and_then(|value| value.parse().ok()).unwrap_or(3).max(1);
    let markdown = arg("--markdown");
    let key_list = generate(KeyPattern::Uniform, keys, 42);
    // Positions in `key_list` in key order.
    let mut order: Vec<usize> = (0..keys).collect();
    order.sort_unstable_by_key(|&index| key_list[index]);
    let mut random = SplitMix64::new(7);
    let probe: Vec<usize> = (0..keys).map(|_| random.below(keys as u64) as usize).collect();
    let scan_starts: Vec<usize> = (0..(keys / 100).max(1)).map(|_| random.below(keys as u64) as usize).collect();
    let settings = [("None", Compression::None), ("Lz4", Compression::Lz4), ("Zstd(3)", Compression::Zstd(3))];
    let mut rows = Vec::new();
    let mut dictionary_lines = Vec::new();
    for kind in [Kind::Bench, Kind::Json] {
        let values: Vec<Vec<u8>> = key_list.iter().map(|&key| value(kind, key)).collect();
        let raw: u64 = values.iter().map(|value| 8 + value.len() as u64).sum();
        for (name, compression) in settings {
            let (mut puts, mut gets, mut scans, mut disk) = (Vec::new(), Vec::new(), Vec::new(), 0);
            for _ in 0..repeats {
                let dir = tempfile::tempdir().unwrap();
                let db = Options::new().compression(compression).background_compaction(false).open(dir.path()).unwrap();
                let start = Instant::now();
                for (key, value) in key_list.iter().zip(&values) {
                    db.put(*key, value).unwrap();
                }
                puts.push(start.elapsed().as_nanos() as f64 / keys as f64);
                db.compact().unwrap();
                disk = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|entry| entry.unwrap().metadata().unwrap().len())
                    .sum::<u64>();
                let start = Instant::now();
                for &index in &probe {
                    let got = db.get(key_list[index]).unwrap().unwrap();
                    assert!(*got == *values[index], "{name}: key {}", key_list[index]);
                    black_box(&got);
                }
                gets.push(start.elapsed().as_nanos() as f64 / keys as f64);
                let start = Instant::now();
                let mut visited = 0usize;
                for &at in &scan_starts {
                    for (entry, &index) in db.range(key_list[order[at]]..).take(100).zip(&order[at..]) {
                        let (key, got) = entry.unwrap();
                        assert!(key == key_list[index] && *got == *values[index], "{name}: scan at key {key}");
                        visited += 1;
                    }
                }
                scans.push(start.elapsed().as_nanos() as f64 / visited as f64);
            }
            rows.push(Row {
                kind,
                setting: name,
                raw,
                disk,
                put: median(puts),
                get: median(gets),
                scan: median(scans),
            });
            eprintln!("{} {name}: done", kind.name());
        }
        // A trained dictionary: what per-value zstd(3) would store with one, against
        // without, on the same values (record headers and the length varint left out).
        let samples: Vec<&[u8]> = values.iter().step_by((keys / 20_000).max(1)).map(|value| &value[..]).collect();
        let dictionary = zstd::dict::from_samples(&samples, 64 << 10).unwrap();
        let mut with = zstd::bulk::Compressor::with_dictionary(3, &dictionary).unwrap();
        let mut without = zstd::bulk::Compressor::new(3).unwrap();
        let (mut plain_bytes, mut dict_bytes, mut raw_values) = (0u64, 0u64, 0u64);
        for value in &values {
            raw_values += value.len() as u64;
            plain_bytes += without.compress(value).unwrap().len().min(value.len()) as u64;
            dict_bytes += with.compress(value).unwrap().len().min(value.len()) as u64;
        }
        dictionary_lines.push(format!(
            "| {} | {} | {} ({:.2}) | {} ({:.2}) | {} B |",
            kind.name(),
            raw_values,
            plain_bytes,
            plain_bytes as f64 / raw_values as f64,
            dict_bytes,
            dict_bytes as f64 / raw_values as f64,
            dictionary.len()
        ));
    }
    let mut out = format!(
        "Value compression, {keys} uniform keys, median of {repeats} (put: load in random order; disk: the \
         store's files after a compaction; get: random existing keys; scan: 100-key scans from random starts)\n\n\
         | values | setting | disk bytes | disk / raw (keys + values) | put ns/op | get ns/op | scan ns/key |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for row in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.0} | {:.1} |\n",
            row.kind.name(),
            row.setting,
            row.disk,
            row.disk as f64 / row.raw as f64,
            row.put,
            row.get,
            row.scan
        ));
    }
    out.push_str(
        "\nPer-value zstd(3) with and without a dictionary trained on every 50th value (64 KiB; \
         zstd::dict::from_samples), value bytes only:\n\n\
         | values | raw value bytes | zstd(3) per value | with the dictionary | dictionary |\n|---|---|---|---|---|\n",
    );
    for line in &dictionary_lines {
        out.push_str(line);
        out.push('\n');
    }
    print!("{out}");
    if let Some(path) = markdown {
        std::fs::write(path, &out).unwrap();
    }
}
