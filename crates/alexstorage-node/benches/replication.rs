//! Replicated writes against a single embedded store, on one machine over loopback.
//!
//! ```text
//! cargo bench -p alexstorage-node --bench replication -- [--writes N] [--clients 1,16]
//!     [--value-size BYTES] [--openraft-example PATH]
//! ```
//! For each number of concurrent clients it measures, with `--writes` puts of
//! `--value-size`-byte values in all (each client putting its own keys, one at a time):
//! - `embedded Sync`: `Db::put` with `Durability::Sync` from that many threads (each put
//!   durable on this machine before it returns: the single-machine counterpart of a
//!   replicated write);
//! - `embedded Buffered`: the same with `Durability::Buffered` (page cache only);
//! - `alexstorage-node x1`: a cluster of one `alexstorage-node` process, over HTTP (the
//!   cost of the server, openraft and the log flush without replication);
//! - `alexstorage-node x3`: three processes, writes through the leader, each
//!   acknowledged once two members flushed it;
//! - `openraft-rocksdb x1` and `x3` (with `--openraft-example PATH`): openraft's own
//!   example `raft-kv-rocksdb` (v0.9.25, its binary `raft-key-value-rocks`; see
//!   `docs/BENCHMARKS.md` for how it was built here), one and three processes, the same
//!   puts (`--openraft-writes` of them, 2,000 by default) through its `/api/write`.
//!
//! Then linearizable reads of the written keys through the leader (`GET /kv/{key}`)
//! for the alexstorage-node clusters. It prints a Markdown table: writes per second,
//! and the latency of one write (median, 99th percentile).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alexstorage::{Durability, Options};
use alexstorage_node::Client;
use common::{free_port, leader, membership, start_members};

struct Args {
    writes: usize,
    clients: Vec<usize>,
    value_size: usize,
    openraft_example: Option<PathBuf>,
    openraft_writes: usize,
}

fn parse_args() -> Args {
    let mut args =
        Args { writes: 10_000, clients: vec![1, 16], value_size: 100, openraft_example: None, openraft_writes: 2_000 };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--writes" => args.writes = value().parse().unwrap(),
            "--clients" => args.clients = value().split(',').map(|count| count.parse().unwrap()).collect(),
            "--value-size" => args.value_size = value().parse().unwrap(),
            "--openraft-example" => args.openraft_example = Some(PathBuf::from(value())),
            "--openraft-writes" => args.openraft_writes = value().parse().unwrap(),
            // What cargo bench passes to every bench target.
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// What one run measured.
struct Measured {
    what: String,
    clients: usize,
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn new(what: impl Into<String>, clients: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        Measured { what: what.into(), clients, ops: latencies.len(), elapsed, latencies }
    }

    fn percentile(&self, fraction: f64) -> Duration {
        let at = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies.get(at).copied().unwrap_or_default()
    }

    fn row(&self, baseline: Option<f64>) -> String {
        let rate = self.ops as f64 / self.elapsed.as_secs_f64();
        let ratio = baseline.map_or(String::from("-"), |baseline| format!("{:.2}", rate / baseline));
        format!(
            "| {} | {} | {} | {:.0} | {ratio} | {:.1} | {:.1} |",
            self.what,
            self.clients,
            self.ops,
            rate,
            self.percentile(0.5).as_secs_f64() * 1e6,
            self.percentile(0.99).as_secs_f64() * 1e6,
        )
    }
}

/// The value put at `key`: `size` ASCII digits (the same bytes for every engine; JSON
/// carries them as they are).
fn value(key: i64, size: usize) -> Vec<u8> {
    let mut value = format!("{key:020}").into_bytes().repeat(size / 20 + 1);
    value.truncate(size);
    value
}

/// `writes` puts from `clients` threads into a new embedded store.
fn embedded(durability: Durability, clients: usize, writes: usize, value_size: usize) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let db = Options::new().durability(durability).open(dir.path()).unwrap();
    let per_client = writes / clients;
    let start = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|client| {
                let db = &db;
                scope.spawn(move || {
                    (0..per_client)
                        .map(|at| {
                            let key = (at * clients + client) as i64;
                            let value = value(key, value_size);
                            let began = Instant::now();
                            db.put(key, &value).unwrap();
                            began.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    Measured::new(format!("embedded {durability:?}"), clients, elapsed, latencies)
}

/// `writes` operations from `clients` tasks, each calling `operation(key)`.
async fn load<F, Fut>(what: &str, clients: usize, writes: usize, operation: F) -> Measured
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_client = writes / clients;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let operation = operation.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for at in 0..per_client {
                    let key = (at * clients + client) as i64;
                    let began = Instant::now();
                    operation(key).await;
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Measured::new(what, clients, start.elapsed(), latencies)
}

/// A cluster of `size` alexstorage-node processes: writes, then linearizable reads.
async fn alexstorage_cluster(root: &Path, size: u64, args: &Args, clients: usize) -> [Measured; 2] {
    let members = start_members(root, size, &[]);
    let client = Client::new(members.iter().map(|member| member.addr.clone())).unwrap();
    client.init(&members[0].addr, membership(&members)).await.unwrap();
    let leading = leader(&client, &members.iter().collect::<Vec<_>>()).await;
    let client = Arc::new(Client::new([members[(leading.id - 1) as usize].addr.clone()]).unwrap());
    let value_size = args.value_size;
    let writer = Arc::clone(&client);
    let what = format!("alexstorage-node x{size}");
    let writes = load(&format!("{what}: put"), clients, args.writes, move |key| {
        let client = Arc::clone(&writer);
        async move {
            client.put(key, value(key, value_size)).await.unwrap();
        }
    })
    .await;
    let reader = Arc::clone(&client);
    let reads = load(&format!("{what}: linearizable get"), clients, args.writes, move |key| {
        let client = Arc::clone(&reader);
        async move {
            assert_eq!(client.get(key).await.unwrap(), Some(value(key, value_size)));
        }
    })
    .await;
    drop(members);
    [writes, reads]
}

/// openraft's raft-kv-rocksdb example: `size` processes, the same writes (as many as
/// `--openraft-writes` says: its three-member cluster committed a write every 176 ms
/// with one client on this machine).
async fn openraft_example(binary: &Path, root: &Path, size: usize, args: &Args, clients: usize) -> Measured {
    struct Killed(Vec<Child>);
    impl Drop for Killed {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let addrs: Vec<(String, String)> =
        (0..size).map(|_| (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()))).collect();
    let mut children = Killed(Vec::new());
    for (index, (http, rpc)) in addrs.iter().enumerate() {
        let dir = root.join(format!("openraft-x{size}-{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(binary)
            .args(["--id", &(index + 1).to_string(), "--http-addr", http, "--rpc-addr", rpc])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    // A new connection for every request: the example's HTTP server (tide) answers a
    // request on a kept-alive connection about 40 ms late on this machine (by its size,
    // Nagle's algorithm against a delayed ACK), and a client should not pay that.
    let http = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(0).build().unwrap();
    let post = |addr: &str, path: &'static str, body: serde_json::Value| {
        let request = http.post(format!("http://{addr}{path}")).json(&body);
        async move {
            // The example answers 200 with {"Err": ...} when it refuses: only "Ok" counts.
            let mut last = serde_json::Value::Null;
            for _ in 0..100 {
                if let Ok(answer) = request.try_clone().unwrap().send().await {
                    if let Ok(answer) = answer.json::<serde_json::Value>().await {
                        if let Some(ok) = answer.get("Ok") {
                            return ok.clone();
                        }
                        last = answer;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{path} failed: {last}");
        }
    };
    let first = &addrs[0].0;
    post(first, "/cluster/init", serde_json::json!({})).await;
    for (index, (http, rpc)) in addrs.iter().enumerate().skip(1) {
        post(first, "/cluster/add-learner", serde_json::json!([index + 1, http, rpc])).await;
    }
    let voters: Vec<usize> = (1..=size).collect();
    let changed = post(first, "/cluster/change-membership", serde_json::json!(voters)).await;
    let configs = changed.pointer("/membership/configs").cloned().unwrap_or_default();
    assert_eq!(configs, serde_json::json!([voters]), "the example's voters");
    let leader = first.clone();
    let value_size = args.value_size;
    let what = format!("openraft-rocksdb x{size}: put");
    let measured = load(&what, clients, args.openraft_writes, move |key| {
        let (http, leader) = (http.clone(), leader.clone());
        async move {
            let text = String::from_utf8(value(key, value_size)).unwrap();
            let body = serde_json::json!({"Set": {"key": key.to_string(), "value": text}});
            let answer: serde_json::Value =
                http.post(format!("http://{leader}/api/write")).json(&body).send().await.unwrap().json().await.unwrap();
            assert!(answer.get("Ok").is_some(), "write refused: {answer}");
        }
    })
    .await;
    drop(children);
    measured
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let root = tempfile::tempdir().unwrap();
        let sync = embedded(Durability::Sync, clients, args.writes, args.value_size);
        let baseline = sync.ops as f64 / sync.elapsed.as_secs_f64();
        rows.push(sync.row(Some(baseline)));
        rows.push(embedded(Durability::Buffered, clients, args.writes, args.value_size).row(Some(baseline)));
        for size in [1, 3] {
            let cluster_root = root.path().join(format!("x{size}"));
            let [writes, reads] = runtime.block_on(alexstorage_cluster(&cluster_root, size, &args, clients));
            rows.push(writes.row(Some(baseline)));
            // Reads are not compared with durable writes.
            rows.push(reads.row(None));
        }
        if let Some(binary) = &args.openraft_example {
            for size in [1, 3] {
                let measured = runtime.block_on(openraft_example(binary, root.path(), size, &args, clients));
                rows.push(measured.row(Some(baseline)));
            }
        }
    }
    println!("| what | clients | operations | per second | vs embedded Sync | p50 µs | p99 µs |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
