//! Members of a test cluster as separate `alexstorage-node` processes on 127.0.0.1,
//! killed with SIGKILL and restarted on their own stores; writers that record every
//! acknowledged write; checks that read them back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alexstorage_node::api::Status;
use alexstorage_node::Client;

/// How long any one wait may take before the test fails (generous: a debug build on
/// a loaded two-core machine; no test asserts on time).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// One member process. Its standard input is a pipe the test holds: if the test
/// process dies, the member sees the pipe close and stops (`--stop-on-stdin-eof`).
pub struct Member {
    pub id: u64,
    /// Its address: port 0 until its first start, then the port it bound, which
    /// restarts reuse (the other members know it by that address).
    pub addr: String,
    pub dir: PathBuf,
    log: PathBuf,
    flags: Vec<String>,
    child: Option<Child>,
}

/// A free port on 127.0.0.1 (the listener is dropped; the caller binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Member {
    /// A member with its store and log under `root`, not started.
    pub fn new(root: &Path, id: u64, flags: &[&str]) -> Self {
        std::fs::create_dir_all(root).unwrap();
        Member {
            id,
            addr: "127.0.0.1:0".into(),
            dir: root.join(format!("member-{id}")),
            log: root.join(format!("member-{id}.log")),
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
            child: None,
        }
    }

    /// Replaces the flags the next start passes.
    pub fn set_flags(&mut self, flags: &[&str]) {
        self.flags = flags.iter().map(|flag| flag.to_string()).collect();
    }

    /// Starts the process and waits until it serves.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "member {} is running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_alexstorage-node"))
            .args(["--id", &self.id.to_string(), "--addr", &self.addr, "--stop-on-stdin-eof", "--dir"])
            .arg(&self.dir)
            .args(&self.flags)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Held (with its stdin) from now on: dropped, the member is killed.
        self.child = Some(child);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(PATIENCE).unwrap_or_default();
        let Some(addr) = line.trim().split("listening on ").nth(1) else {
            panic!(
                "member {} did not start ({line:?}); its log: {}",
                self.id,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        };
        if self.addr.ends_with(":0") {
            self.addr = addr.to_owned();
        }
        assert_eq!(addr, self.addr, "member {} restarted at another address", self.id);
    }

    /// SIGKILL, then waits for the process to end.
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGKILL to every member of `members` first, then waits for each: none of them
    /// runs on after another was killed.
    pub fn kill_together(members: &mut [Member]) {
        let mut children: Vec<Child> = members.iter_mut().map(|member| member.child.take().unwrap()).collect();
        for child in &mut children {
            child.kill().unwrap();
        }
        for child in &mut children {
            child.wait().unwrap();
        }
    }

    /// Plays a power cut on the store of this (killed) member: every page of its log
    /// past what it made durable lost, kept or torn, as `choices` say. Returns the
    /// number of pages whose bytes changed.
    pub fn cut_power(&self, choices: &mut impl Iterator<Item = u8>) -> usize {
        assert!(self.child.is_none(), "member {} is running", self.id);
        alexstorage::testing::power_cuts::cut_power_after_kill(&self.dir, &[], choices)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Members `1..=count` under `root`, each started with `flags`.
pub fn start_members(root: &Path, count: u64, flags: &[&str]) -> Vec<Member> {
    let mut members: Vec<Member> = (1..=count).map(|id| Member::new(root, id, flags)).collect();
    for member in &mut members {
        member.start();
    }
    members
}

/// The members' addresses.
pub fn addrs(members: &[Member]) -> Vec<String> {
    members.iter().map(|member| member.addr.clone()).collect()
}

/// The members' ids and addresses, as `/cluster/init` takes them.
pub fn membership(members: &[Member]) -> BTreeMap<u64, String> {
    members.iter().map(|member| (member.id, member.addr.clone())).collect()
}

/// Waits until `check` gives a value, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader as the running `members` agree on it: one of them says it leads, and
/// every other running member follows it.
pub async fn leader(client: &Client, members: &[&Member]) -> Status {
    eventually("a leader every running member follows", || async {
        let mut statuses = Vec::new();
        for member in members.iter().filter(|member| member.is_running()) {
            statuses.push(client.status(&member.addr).await.ok()?);
        }
        let leader = statuses.iter().find(|status| status.state == "Leader")?.clone();
        statuses.iter().all(|status| status.leader == Some(leader.id)).then_some(leader)
    })
    .await
}

/// Writers putting distinct keys through `client` until stopped, each key once with a
/// value derived from it; every acknowledged put is recorded.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<i64, Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

/// The value written at `key` (distinct per key, some bytes not text).
pub fn value_of(key: i64) -> Vec<u8> {
    let mut value = format!("value of {key}:").into_bytes();
    value.extend((0..(key % 97) as u8).map(|at| at.wrapping_mul(31)));
    value
}

impl Writers {
    /// `count` writers; writer `w` puts keys `w`, `w + count`, ...
    pub fn start(client: Arc<Client>, count: i64) -> Self {
        Self::start_from(client, count, 0)
    }

    /// `count` writers; writer `w` puts keys `first + w`, `first + w + count`, ...
    pub fn start_from(client: Arc<Client>, count: i64, first: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..count)
            .map(|writer| {
                let (client, stop, acked) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&acked));
                tokio::spawn(async move {
                    let mut failed = 0;
                    let mut key = first + writer;
                    while !stop.load(Ordering::Relaxed) {
                        match client.put(key, value_of(key)).await {
                            Ok(_) => {
                                acked.lock().unwrap().insert(key, value_of(key));
                            }
                            // Unacknowledged: it may or may not have been applied.
                            Err(_) => failed += 1,
                        }
                        key += count;
                    }
                    failed
                })
            })
            .collect();
        Writers { stop, acked, tasks }
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until at least `count` puts were acknowledged.
    pub async fn until_acked(&self, count: usize) {
        eventually(&format!("{count} acknowledged writes"), || async { (self.acked() >= count).then_some(()) }).await;
    }

    /// Stops the writers; returns every acknowledged write and the number of puts that
    /// failed.
    pub async fn stop(self) -> (BTreeMap<i64, Vec<u8>>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failed = 0;
        for task in self.tasks {
            failed += task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, failed)
    }
}

/// Checks every acknowledged write through the leader (linearizable reads).
pub async fn check_through_leader(client: &Client, acked: &BTreeMap<i64, Vec<u8>>) {
    for (key, value) in acked {
        let read = client.get(*key).await.unwrap();
        assert_eq!(read.as_ref(), Some(value), "acknowledged key {key} through the leader");
    }
}

/// Waits until `member` applied at least `index`, then checks every acknowledged write
/// in its own state machine.
pub async fn check_member(client: &Client, member: &Member, index: u64, acked: &BTreeMap<i64, Vec<u8>>) -> Status {
    let status = eventually(&format!("member {} applying index {index}", member.id), || async {
        let status = client.status(&member.addr).await.ok()?;
        (status.last_applied >= Some(index)).then_some(status)
    })
    .await;
    for (key, value) in acked {
        let read = client.get_local(&member.addr, *key).await.unwrap();
        assert_eq!(read.as_ref(), Some(value), "acknowledged key {key} on member {}", member.id);
    }
    status
}
