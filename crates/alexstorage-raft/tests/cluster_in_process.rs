//! Three openraft members in one process, each on its own AlexStorage store, talking
//! through an in-process router (calls into the target's `Raft` directly): writes go
//! through the leader and reach every member's state machine; the leader is stopped
//! mid-run (its Raft shut down, its store closed), a new leader is elected and
//! writes go on; the stopped member is started again from its own store and catches
//! up. (The test with separate processes and a network is the next step; this
//! one checks the storage under a real Raft.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// openraft's RPC errors are large, and its network trait returns them by value.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alexstorage_raft::{stores, NodeId, Request, StateMachineStore, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Config, Raft};

type Rafts = Arc<Mutex<HashMap<NodeId, Raft<TypeConfig>>>>;

/// Routes each call to the target member's `Raft`, if it is running.
#[derive(Clone, Default)]
struct Router {
    rafts: Rafts,
}

struct Connection {
    target: NodeId,
    rafts: Rafts,
}

#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("member is down")
    }
}

impl std::error::Error for Down {}

impl Connection {
    fn raft<E: std::error::Error>(&self) -> Result<Raft<TypeConfig>, RPCError<NodeId, BasicNode, E>> {
        self.rafts
            .lock()
            .unwrap()
            .get(&self.target)
            .cloned()
            .ok_or_else(|| RPCError::Unreachable(Unreachable::new(&Down)))
    }

    /// The target's own error, as the caller receives it.
    fn remote<E: std::error::Error>(&self, error: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, error))
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection { target, rafts: Arc::clone(&self.rafts) }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.raft()?;
        raft.append_entries(rpc).await.map_err(|error| self.remote(error))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let raft = self.raft()?;
        raft.install_snapshot(rpc).await.map_err(|error| self.remote(error))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.raft()?;
        raft.vote(rpc).await.map_err(|error| self.remote(error))
    }
}

fn config() -> Arc<Config> {
    // Small snapshots and log retention, so that the restarted member may need one.
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(100),
        max_in_snapshot_log_to_keep: 20,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

async fn start(id: NodeId, dir: &std::path::Path, router: &Router) -> (Raft<TypeConfig>, StateMachineStore) {
    let db = alexstorage::Db::open(dir).unwrap();
    let (log, state_machine) = stores(db).unwrap();
    let raft = Raft::new(id, config(), router.clone(), log, state_machine.clone()).await.unwrap();
    router.rafts.lock().unwrap().insert(id, raft.clone());
    (raft, state_machine)
}

/// Writes `keys` through whichever member leads, retrying while a leader is elected.
async fn write_all(router: &Router, keys: std::ops::Range<i64>, model: &mut BTreeMap<i64, Vec<u8>>) {
    for key in keys {
        let value = format!("value {key}").into_bytes();
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 400, "no leader took write {key}");
            let leader = {
                let rafts = router.rafts.lock().unwrap();
                let any = rafts.values().next().cloned();
                match any {
                    Some(raft) => raft.metrics().borrow().current_leader.and_then(|leader| rafts.get(&leader).cloned()),
                    None => None,
                }
            };
            let Some(leader) = leader else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match leader.client_write(Request::Put { key, value: value.clone() }).await {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        model.insert(key, value);
    }
}

async fn wait_applied(raft: &Raft<TypeConfig>, index: u64, what: &str) {
    raft.wait(Some(Duration::from_secs(30))).applied_index_at_least(Some(index), what).await.unwrap();
}

fn check(state_machine: &StateMachineStore, model: &BTreeMap<i64, Vec<u8>>, who: &str) {
    for (key, value) in model {
        assert_eq!(state_machine.get(*key).unwrap().as_ref(), Some(value), "{who}: key {key}");
    }
    assert_eq!(state_machine.len(), model.len(), "{who}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_a_stopped_leader_and_catch_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = Router::default();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        members.insert(id, start(id, dirs[id as usize - 1].path(), &router).await);
    }
    let nodes: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::new(format!("in-process {id}")))).collect();
    members[&1].0.initialize(nodes).await.unwrap();

    let mut model = BTreeMap::new();
    write_all(&router, 0..300, &mut model).await;
    let last = members[&1].0.metrics().borrow().last_log_index.unwrap();
    for (id, (raft, state_machine)) in &members {
        wait_applied(raft, last, "all applied").await;
        check(state_machine, &model, &format!("member {id}"));
    }

    // Stop the leader mid-run: its Raft shut down and its store closed; it takes no
    // part until it starts again. (Killed processes are the next step's test.)
    let leader = members[&1].0.metrics().borrow().current_leader.unwrap();
    let (raft, state_machine) = members.remove(&leader).unwrap();
    router.rafts.lock().unwrap().remove(&leader);
    raft.shutdown().await.unwrap();
    drop((raft, state_machine));

    write_all(&router, 300..600, &mut model).await;
    let survivor = members.values().next().unwrap().0.clone();
    let new_leader = survivor.metrics().borrow().current_leader.unwrap();
    assert_ne!(new_leader, leader, "a new leader was elected");
    let last = survivor.metrics().borrow().last_log_index.unwrap();
    for (id, (raft, state_machine)) in &members {
        wait_applied(raft, last, "survivors applied").await;
        check(state_machine, &model, &format!("survivor {id}"));
    }

    // The stopped member starts again from its own store and catches up (from the log
    // or, once it was purged, from a snapshot).
    let (raft, state_machine) = start(leader, dirs[leader as usize - 1].path(), &router).await;
    wait_applied(&raft, last, "restarted member caught up").await;
    check(&state_machine, &model, "restarted member");
    for (raft, _) in members.values() {
        raft.shutdown().await.unwrap();
    }
    raft.shutdown().await.unwrap();
}
