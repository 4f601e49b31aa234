//! `Db::stats` and `Db::metrics_prometheus`: counters that match the operations run
//! (gets from several threads, ranges, puts, deletes, batches, transactions committed
//! and conflicting, `Sync` writes in the latency histogram, a compaction in its
//! histogram, keys per family), and an exposition that parses: `# HELP` and `# TYPE`
//! before each metric's samples, names prefixed, counters ending in `_total`,
//! histogram buckets cumulative up to `+Inf` equal to the count; checked again by
//! `promtool check metrics` where it is installed (`.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};

use alexstorage::{Db, Durability, Error, Options};

/// Sample lines by metric name and label text, checking the exposition's structure.
fn parse(text: &str) -> BTreeMap<(String, String), f64> {
    let mut samples = BTreeMap::new();
    let (mut helped, mut typed) = (HashSet::new(), BTreeMap::new());
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "two HELP lines for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter without _total: {name}");
            }
            assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none(), "two TYPE lines for {name}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        assert!(name.starts_with("alexstorage_"), "{name}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix).filter(|base| typed.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family) && helped.contains(family), "{name} before its HELP and TYPE");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        assert!(samples.insert((name.to_owned(), labels.to_owned()), value).is_none(), "{line} twice");
    }
    samples
}

fn value(samples: &BTreeMap<(String, String), f64>, name: &str, labels: &str) -> f64 {
    *samples.get(&(name.to_owned(), labels.to_owned())).unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
}

/// A histogram's buckets rise to `+Inf`, which is its count.
fn check_histogram(samples: &BTreeMap<(String, String), f64>, name: &str) -> f64 {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((sample, _), _)| *sample == bucket)
        .map(|((_, labels), count)| {
            let le = labels.trim_start_matches("le=\"").trim_end_matches('"');
            (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, *count)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1), "{name}: buckets not cumulative");
    let count = value(samples, &format!("{name}_count"), "");
    assert_eq!(buckets.last().map(|bucket| (bucket.0, bucket.1)), Some((f64::INFINITY, count)), "{name}");
    count
}

/// Runs `promtool check metrics` on `text` where promtool is installed; under CI it
/// must be.
fn promtool(text: &str) {
    use std::io::Write;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error)
            if std::env::var_os("CI").is_none() && std::env::var_os("ALEXSTORAGE_REQUIRE_PROMTOOL").is_none() =>
        {
            println!("promtool not run ({error}); .ci/run installs it");
            return;
        }
        Err(error) => panic!("promtool is needed under CI: {error}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    println!("promtool check metrics: no problem found");
}

#[test]
fn the_exposition_counts_what_ran_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().durability(Durability::Sync).background_compaction(false).open(dir.path()).unwrap();
    let users = db.column_family("users \"quoted\"\\").unwrap();
    for key in 0..20 {
        db.put(key, b"value").unwrap();
    }
    for key in 0..5 {
        users.put(key, b"user").unwrap();
    }
    db.delete(0).unwrap();
    db.delete(1000).unwrap(); // absent: writes nothing, counts nothing
    let mut batch = alexstorage::WriteBatch::new();
    batch.put(100, b"a").put(101, b"b").delete(2);
    db.write(batch).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for key in 0..25 {
                    db.get(key).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    users.get(1).unwrap();
    let snapshot = db.snapshot();
    snapshot.get(5).unwrap();
    snapshot.get_cf(&users, 1).unwrap();
    drop(snapshot);
    assert_eq!(db.range(..).count(), 20);
    // One transaction commits; one conflicts.
    let mut tx = db.transaction();
    tx.get(3).unwrap();
    tx.put(3, b"tx");
    tx.commit().unwrap();
    let mut tx = db.transaction();
    tx.get(4).unwrap();
    tx.put(4, b"tx");
    db.put(4, b"other").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict { .. })));
    let compaction = db.compact().unwrap();

    let stats = db.stats();
    // Gets: 100 from the threads, 1 through the family, 2 through a snapshot, 2 inside
    // the transactions.
    assert_eq!((stats.gets, stats.ranges), (105, 1));
    // Value bytes returned: the threads' gets find keys 1 and 3 to 19 (5 bytes each)
    // 4 times, 360; the family's get 4; the snapshot's 5 and 4; the range keys 1, 3 to
    // 19 and 100, 101 (1 byte each), 92; the transactions' gets 5 and 5.
    assert_eq!(stats.bytes_read, 360 + 4 + 5 + 4 + 92 + 5 + 5);
    assert!(compaction.bytes_reclaimed > 0);
    assert_eq!(stats.compaction_bytes_reclaimed, compaction.bytes_reclaimed);
    assert!(!stats.writes_refused);
    assert_eq!((stats.transaction_errors, stats.sync_write_errors), (0, 0));
    assert_eq!((stats.transactions_committed, stats.transaction_conflicts), (1, 1));
    // Sync writes: 20 + 5 puts, 1 delete, 1 batch, 1 commit, 1 put: each in the histogram.
    assert_eq!(stats.sync_write_latency.count(), 29);
    assert!(stats.sync_write_latency.sum_micros > 0);
    assert_eq!(stats.compaction_duration.count(), 1);
    let families: Vec<(&str, usize)> =
        stats.families.iter().map(|family| (family.name.as_str(), family.keys)).collect();
    assert_eq!(families, [("default", 20), ("users \"quoted\"\\", 5)]);
    assert_eq!(stats.families.iter().map(|family| family.live_bytes).sum::<u64>(), stats.live_bytes);
    // Each of the family's 5 records: a 28-byte header and a 4-byte value.
    assert_eq!(stats.families[1].live_bytes, 5 * (28 + 4));

    let text = db.metrics_prometheus();
    let samples = parse(&text);
    let operations = [("get", 105.0), ("range", 1.0), ("put", 26.0), ("delete", 1.0), ("batch", 2.0)];
    for (operation, count) in operations {
        assert_eq!(value(&samples, "alexstorage_operations_total", &format!("operation=\"{operation}\"")), count);
    }
    assert_eq!(value(&samples, "alexstorage_batch_writes_total", ""), 4.0);
    assert_eq!(value(&samples, "alexstorage_transactions_total", "outcome=\"error\""), 0.0);
    assert_eq!(value(&samples, "alexstorage_writes_refused", ""), 0.0);
    assert_eq!(value(&samples, "alexstorage_transactions_total", "outcome=\"committed\""), 1.0);
    assert_eq!(value(&samples, "alexstorage_transactions_total", "outcome=\"conflict\""), 1.0);
    assert_eq!(value(&samples, "alexstorage_keys", "family=\"default\""), 20.0);
    assert_eq!(value(&samples, "alexstorage_keys", "family=\"users \\\"quoted\\\"\\\\\""), 5.0);
    assert_eq!(value(&samples, "alexstorage_compactions_total", ""), 1.0);
    assert_eq!(
        value(&samples, "alexstorage_compaction_reclaimed_bytes_total", ""),
        stats.compaction_bytes_reclaimed as f64
    );
    assert_eq!(check_histogram(&samples, "alexstorage_sync_write_duration_seconds"), 29.0);
    assert_eq!(check_histogram(&samples, "alexstorage_compaction_duration_seconds"), 1.0);
    assert!(value(&samples, "alexstorage_sync_write_duration_seconds_sum", "") > 0.0);
    promtool(&text);
}

/// Gets on several threads at once land in per-thread cells: none is lost.
#[test]
fn gets_from_many_threads_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(1, b"one").unwrap();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    db.get(1).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(db.stats().gets, 16_000);
}

/// Contended transactions from several threads: every commit's outcome is counted once,
/// whichever check (before or inside the writer's section) finds the conflict.
#[test]
fn every_commit_outcome_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put(0, 0u64.to_le_bytes()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let (mut committed, mut conflicts) = (0u64, 0u64);
                for _ in 0..300 {
                    let mut tx = db.transaction();
                    let count = u64::from_le_bytes(tx.get(0).unwrap().unwrap()[..8].try_into().unwrap());
                    std::thread::yield_now();
                    tx.put(0, (count + 1).to_le_bytes());
                    match tx.commit() {
                        Ok(()) => committed += 1,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(error) => panic!("{error}"),
                    }
                }
                (committed, conflicts)
            })
        })
        .collect();
    let (mut committed, mut conflicts) = (0, 0);
    for thread in threads {
        let (ok, refused) = thread.join().unwrap();
        committed += ok;
        conflicts += refused;
    }
    let stats = db.stats();
    assert_eq!((stats.transactions_committed, stats.transaction_conflicts), (committed, conflicts));
    assert_eq!(u64::from_le_bytes(db.get(0).unwrap().unwrap()[..8].try_into().unwrap()), committed);
    println!("{committed} commits, {conflicts} conflicts");
}
