//! One Raft member: its store, its openraft `Raft`, and the HTTP server that answers
//! the other members' RPCs and the clients.
//!
//! # Routes
//! | method and path | what |
//! |---|---|
//! | `PUT /kv/{key}` | sets `key` to the body's bytes; answers `{"index": N}` once committed and applied |
//! | `DELETE /kv/{key}` | removes `key`; answers `{"index": N}` |
//! | `POST /kv` | a batch, `{"ops": [...]}` (see [`Operation`](crate::api::Operation)), applied at one index |
//! | `GET /kv/{key}` | the value's bytes, or 404: a linearizable read through the leader |
//! | `GET /kv/{key}?consistency=local` | this member's own state machine, without asking the leader (may be stale) |
//! | `POST /cluster/init` | the first membership (on one member of a new cluster) |
//! | `POST /cluster/add-learner` | a new member to replicate to; answers once it is within openraft's `replication_lag_threshold` (5,000 entries) of the leader |
//! | `POST /cluster/change-membership` | the voters from now on |
//! | `GET /cluster/status` | this member's view (JSON [`Status`]) |
//! | `GET /cluster/metrics` | openraft's metrics of this member (JSON) |
//! | `POST /raft/{append,vote,snapshot}` | the Raft RPCs between members (see [`network`](crate::network)) |
//!
//! A write carries at most [`MAX_WRITE_BYTES`] of values (413 beyond); one not
//! committed within 10 s (a leader cut off from the others) is answered 503, its
//! outcome unknown.
//!
//! A write, a linearizable read or a membership call sent to a follower is forwarded
//! to the leader, and the answer carries the leader's address in the
//! `x-alexstorage-leader` header; a member that cannot reach a leader answers 421 (with
//! the leader it knows of) or 503. Errors answer JSON [`ErrorReply`].

// openraft's errors are large, and its API returns them by value.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use alexstorage_raft::{stores, NodeId, Request, StateMachineStore, TypeConfig};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{
    AddLearnerRequest, BatchRequest, ChangeMembershipRequest, ErrorReply, InitRequest, LeaderHint, Status, WriteReply,
    FORWARDED_HEADER, LEADER_HEADER,
};
use crate::coalesce::{self, Coalescer, ReadIndex, ReadRefused, WriteRefused};
use crate::network::{http_client, HttpNetwork, RAFT_ERROR_STATUS};

/// The largest body a client request may have (a batch in JSON, with values in
/// hexadecimal, takes about twice its bytes).
pub const MAX_CLIENT_BODY: usize = 10 << 20;

/// The most bytes one write (a put's value, or a batch's values together) may carry.
/// A write is one entry of the Raft log, and openraft 0.9 gives an append one
/// heartbeat interval (150 ms by default) to reach a follower, be decoded and flushed,
/// then sends it again: an entry that cannot make it in time would stop replication
/// for good. 4 MiB crosses a 1 Gbit/s link in about 35 ms. A larger write is refused
/// with 413 before it reaches the log; a longer `--heartbeat-ms` allows no more.
pub const MAX_WRITE_BYTES: usize = 4 << 20;

/// How long a forwarded request may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write waits to be committed before it is answered 503, its outcome
/// unknown (a leader cut off from its quorum keeps writes pending).
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// How long [`Node::stop`] lets requests in flight finish, and then waits for the
/// store to be released.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a member could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] alexstorage::Error),
    /// The address could not be bound, or the server failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// openraft refused the configuration.
    #[error("raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    /// openraft failed to start or stop.
    #[error("raft: {0}")]
    Raft(String),
    /// [`Node::stop`]: the store was still held some seconds after openraft stopped.
    #[error("the store was not released after openraft stopped")]
    NotReleased,
}

/// How to run one member.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its id, unique in the cluster.
    pub id: NodeId,
    /// The address it listens on, `host:port` (port 0 picks a free one; the others must
    /// reach it there, so a real cluster names its port).
    pub addr: String,
    /// The store's directory (created if missing).
    pub dir: PathBuf,
    /// openraft's settings (timeouts, snapshot policy, log kept after a snapshot).
    pub raft: openraft::Config,
}

/// openraft's settings a member uses unless told otherwise: heartbeats every 150 ms
/// (openraft also gives an append this long to be answered), an election after 750 to
/// 1,500 ms without one, a snapshot every `snapshot_every` applied entries,
/// `keep_logs` entries kept behind it for members that lag a little.
pub fn raft_config(snapshot_every: u64, keep_logs: u64) -> openraft::Config {
    openraft::Config {
        cluster_name: "alexstorage".into(),
        heartbeat_interval: 150,
        election_timeout_min: 750,
        election_timeout_max: 1500,
        // A snapshot chunk over HTTP in a debug build on a loaded machine.
        install_snapshot_timeout: 5000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: keep_logs,
        ..Default::default()
    }
}

/// A running member: its server answers until [`Node::stop`].
pub struct Node {
    local_addr: SocketAddr,
    raft: Raft<TypeConfig>,
    state_machine: StateMachineStore,
    /// The handlers' state, to take the store out of it when stopping.
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Opens the store, starts openraft and serves on `config.addr`. A member whose
    /// store holds a log and a vote resumes from them; a new one waits for
    /// `/cluster/init` or for a leader to add it.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let listener = tokio::net::TcpListener::bind(&config.addr).await?;
        let local_addr = listener.local_addr()?;
        let client = http_client()?;
        let network = HttpNetwork::new()?;
        let (log, state_machine) = stores(alexstorage::Db::open(&config.dir)?)?;
        let raft_config = Arc::new(config.raft.validate()?);
        // A read check gets two election timeouts: a leader that cannot confirm itself
        // by then is not going to.
        let patience = Duration::from_millis(raft_config.election_timeout_max.saturating_mul(2).max(1000));
        let raft = Raft::new(config.id, raft_config, network, log, state_machine.clone())
            .await
            .map_err(|error| NodeError::Raft(error.to_string()))?;
        let app = Arc::new(App {
            id: config.id,
            raft: raft.clone(),
            writes: Coalescer::start(raft.clone(), WRITE_PATIENCE),
            reads: ReadIndex::start(raft.clone(), patience),
            state_machine: std::sync::RwLock::new(Some(state_machine.clone())),
            client,
        });
        let server_app = Arc::clone(&app);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // Answers go out at once (no Nagle delay behind a delayed ACK).
            let listener = listener.tap_io(|stream| {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::warn!("TCP_NODELAY: {error}");
                }
            });
            axum::serve(listener, router(app))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Node { local_addr, raft, state_machine, app: server_app, stop: Some(stop), server })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its openraft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Its state machine, as applied on this member.
    pub fn state_machine(&self) -> &StateMachineStore {
        &self.state_machine
    }

    /// Resolves when openraft stopped on an error of its own (a failed write to the
    /// store, for one): the member no longer takes part, and should be stopped and
    /// looked at. Returns the error.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(error) = &metrics.borrow_and_update().running_state {
                return error.to_string();
            }
            if metrics.changed().await.is_err() {
                return "openraft stopped".into();
            }
        }
    }

    /// Stops serving (requests in flight get a few seconds to finish), shuts openraft
    /// down (what still waits is answered with an error), and waits until the store
    /// is released: closed, everything acknowledged made durable.
    pub async fn stop(self) -> Result<(), NodeError> {
        let Node { raft, state_machine, stop, mut server, app, .. } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(STOP_GRACE, &mut server).await;
        let shutdown = raft.shutdown().await.map_err(|error| NodeError::Raft(error.to_string()));
        let served = match served {
            Ok(served) => Some(served),
            // Requests that waited on openraft are answered now; connections that still
            // linger are cut.
            Err(_) => match tokio::time::timeout(STOP_GRACE, &mut server).await {
                Ok(served) => Some(served),
                Err(_) => {
                    server.abort();
                    None
                }
            },
        };
        // Connections that outlived the server's task (each is a task of its own) hold
        // the handlers' state, but no longer the store: their reads answer 503.
        app.state_machine.write().unwrap_or_else(PoisonError::into_inner).take();
        let released = state_machine.released();
        drop((state_machine, raft, app));
        // openraft's detached tasks (state machine, replication) drop their handles of
        // the store as they see the shutdown.
        let released = tokio::time::timeout(STOP_GRACE, released.wait()).await;
        shutdown?;
        if released.is_err() {
            return Err(NodeError::NotReleased);
        }
        match served {
            Some(Ok(outcome)) => outcome.map_err(NodeError::from),
            Some(Err(error)) => Err(NodeError::Raft(error.to_string())),
            None => Ok(()),
        }
    }
}

/// What the handlers share.
struct App {
    id: NodeId,
    raft: Raft<TypeConfig>,
    /// Client writes, gathered into batches.
    writes: Coalescer,
    /// Linearizable reads, checked in groups.
    reads: ReadIndex,
    /// The state machine; taken out by [`Node::stop`] (connections that outlive the
    /// server must not hold the store open).
    state_machine: std::sync::RwLock<Option<StateMachineStore>>,
    /// For requests forwarded to the leader.
    client: reqwest::Client,
}

type Shared = State<Arc<App>>;

fn router(app: Arc<App>) -> Router {
    let raft = Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        // Entries and snapshot chunks from the leader are as large as it sends them.
        .layer(DefaultBodyLimit::disable());
    let clients = Router::new()
        .route("/kv", post(batch))
        .route("/kv/{key}", put(put_key).delete(delete_key).get(get_key))
        .route("/cluster/init", post(init))
        .route("/cluster/add-learner", post(add_learner))
        .route("/cluster/change-membership", post(change_membership))
        .route("/cluster/status", get(status))
        .route("/cluster/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_CLIENT_BODY));
    raft.merge(clients).with_state(app)
}

/// An error as JSON.
fn error_reply(status: StatusCode, error: impl std::fmt::Display, leader: Option<LeaderHint>) -> Response {
    (status, Json(ErrorReply { error: error.to_string(), leader })).into_response()
}

/// The answer to a Raft RPC: the response in postcard, or the Raft error in JSON.
fn rpc_reply<A: Serialize, E: Serialize>(outcome: Result<A, E>) -> Response {
    match outcome {
        Ok(answer) => match postcard::to_stdvec(&answer) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
            Err(error) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, error, None),
        },
        Err(error) => {
            let status = StatusCode::from_u16(RAFT_ERROR_STATUS).unwrap_or(StatusCode::CONFLICT);
            (status, Json(error)).into_response()
        }
    }
}

/// A client request's JSON body, or the 400 that answers it.
fn json_request<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|error| error_reply(StatusCode::BAD_REQUEST, error, None))
}

fn rpc_request<T: for<'a> Deserialize<'a>>(body: &[u8]) -> Result<T, Response> {
    postcard::from_bytes(body).map_err(|error| error_reply(StatusCode::BAD_REQUEST, error, None))
}

async fn raft_append(State(app): Shared, body: Bytes) -> Response {
    match rpc_request::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(rpc) => rpc_reply(app.raft.append_entries(rpc).await),
        Err(refused) => refused,
    }
}

async fn raft_vote(State(app): Shared, body: Bytes) -> Response {
    match rpc_request::<VoteRequest<NodeId>>(&body) {
        Ok(rpc) => rpc_reply(app.raft.vote(rpc).await),
        Err(refused) => refused,
    }
}

async fn raft_snapshot(State(app): Shared, body: Bytes) -> Response {
    match rpc_request::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(rpc) => rpc_reply(app.raft.install_snapshot(rpc).await),
        Err(refused) => refused,
    }
}

/// A client request as it came, to forward it to the leader unchanged.
struct Incoming {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl App {
    /// The state machine, unless the member is stopping.
    fn state_machine(&self) -> Option<StateMachineStore> {
        self.state_machine.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends `incoming` to the leader `to` names and answers with the leader's answer
    /// (and its address in `x-alexstorage-leader`); 421 if the leader is unknown or the
    /// request was already forwarded once, 503 if the leader cannot be reached.
    async fn forward(&self, to: ForwardToLeader<NodeId, BasicNode>, incoming: Incoming) -> Response {
        let hint =
            to.leader_id.map(|id| LeaderHint { id, addr: to.leader_node.as_ref().map(|node| node.addr.clone()) });
        let Some(leader) = to.leader_node.filter(|_| !incoming.headers.contains_key(FORWARDED_HEADER)) else {
            return error_reply(StatusCode::MISDIRECTED_REQUEST, "this member is not the leader", hint);
        };
        let path = incoming.uri.path_and_query().map_or("/", |path| path.as_str());
        let mut request = self
            .client
            .request(incoming.method, format!("http://{}{path}", leader.addr))
            .timeout(FORWARD_TIMEOUT)
            .header(FORWARDED_HEADER, self.id.to_string())
            .body(incoming.body);
        if let Some(content_type) = incoming.headers.get(header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        match request.send().await {
            Ok(answer) => {
                let status = answer.status();
                let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
                match answer.bytes().await {
                    Ok(body) => {
                        let mut response = (status, body).into_response();
                        if let Some(content_type) = content_type {
                            response.headers_mut().insert(header::CONTENT_TYPE, content_type);
                        }
                        if let Ok(addr) = HeaderValue::from_str(&leader.addr) {
                            response.headers_mut().insert(LEADER_HEADER, addr);
                        }
                        response
                    }
                    Err(error) => error_reply(StatusCode::SERVICE_UNAVAILABLE, error, hint),
                }
            }
            Err(error) => error_reply(StatusCode::SERVICE_UNAVAILABLE, error, hint),
        }
    }

    /// Replicates `request` and answers once it is committed and applied.
    async fn write(&self, request: Request, incoming: Incoming) -> Response {
        let bytes = coalesce::value_bytes(&request);
        if bytes > MAX_WRITE_BYTES {
            let error = format!("a write of {bytes} bytes of values; at most {MAX_WRITE_BYTES}");
            return error_reply(StatusCode::PAYLOAD_TOO_LARGE, error, None);
        }
        match self.writes.write(request).await {
            Ok(index) => Json(WriteReply { index }).into_response(),
            Err(WriteRefused::Raft(error)) => self.write_failed(*error, incoming).await,
            Err(WriteRefused::TimedOut) => {
                let error = format!("not committed within {WRITE_PATIENCE:?}: the write's outcome is unknown");
                error_reply(StatusCode::SERVICE_UNAVAILABLE, error, None)
            }
        }
    }

    /// The answer to a write or a membership change openraft refused: forwarded to the
    /// leader, 409 for a change that cannot be made, 503 when no quorum or no Raft.
    async fn write_failed(
        &self,
        error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
        incoming: Incoming,
    ) -> Response {
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(to)) => self.forward(to, incoming).await,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
                error_reply(StatusCode::CONFLICT, error, None)
            }
            RaftError::Fatal(error) => error_reply(StatusCode::SERVICE_UNAVAILABLE, error, None),
        }
    }
}

async fn put_key(
    State(app): Shared,
    Path(key): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request::Put { key, value: body.to_vec() };
    app.write(request, Incoming { method, uri, headers, body }).await
}

async fn delete_key(
    State(app): Shared,
    Path(key): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    app.write(Request::Delete { key }, Incoming { method, uri, headers, body: Bytes::new() }).await
}

async fn batch(State(app): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: BatchRequest = match json_request(&body) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    let requests: Result<Vec<Request>, String> = parsed.ops.into_iter().map(|op| op.into_request()).collect();
    match requests {
        Ok(requests) => app.write(Request::Batch(requests), Incoming { method, uri, headers, body }).await,
        Err(error) => error_reply(StatusCode::BAD_REQUEST, error, None),
    }
}

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Consistency {
    /// Through the leader, after it confirmed it still leads (a read index).
    #[default]
    Linearizable,
    /// From this member's state machine as it is.
    Local,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    #[serde(default)]
    consistency: Consistency,
}

async fn get_key(
    State(app): Shared,
    Path(key): Path<i64>,
    Query(query): Query<ReadQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if query.consistency == Consistency::Linearizable {
        // Waits until this member, as leader, confirmed its leadership with a quorum and
        // applied everything committed before the read.
        match app.reads.ready().await {
            Ok(()) => {}
            Err(ReadRefused::Raft(error)) => match *error {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to)) => {
                    return app.forward(to, Incoming { method, uri, headers, body: Bytes::new() }).await
                }
                error => return error_reply(StatusCode::SERVICE_UNAVAILABLE, error, None),
            },
            Err(ReadRefused::TimedOut) => {
                let error = "the leader could not confirm its leadership in time";
                return error_reply(StatusCode::SERVICE_UNAVAILABLE, error, None);
            }
        }
    }
    let Some(state_machine) = app.state_machine() else {
        return error_reply(StatusCode::SERVICE_UNAVAILABLE, "the member is stopping", None);
    };
    match state_machine.get(key) {
        Ok(Some(value)) => ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response(),
        Ok(None) => error_reply(StatusCode::NOT_FOUND, format!("key {key} not found"), None),
        Err(error) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, error, None),
    }
}

async fn init(State(app): Shared, body: Bytes) -> Response {
    let request: InitRequest = match json_request(&body) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    let members: BTreeMap<NodeId, BasicNode> =
        request.members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
    if !members.contains_key(&app.id) {
        return error_reply(StatusCode::BAD_REQUEST, format!("the members must include this one, {}", app.id), None);
    }
    match app.raft.initialize(members).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(error) => error_reply(StatusCode::CONFLICT, error, None),
    }
}

async fn add_learner(State(app): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: AddLearnerRequest = match json_request(&body) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    match app.raft.add_learner(request.id, BasicNode { addr: request.addr }, true).await {
        Ok(written) => Json(WriteReply { index: written.log_id.index }).into_response(),
        Err(error) => app.write_failed(error, Incoming { method, uri, headers, body }).await,
    }
}

async fn change_membership(State(app): Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: ChangeMembershipRequest = match json_request(&body) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    match app.raft.change_membership(request.members, false).await {
        Ok(written) => Json(WriteReply { index: written.log_id.index }).into_response(),
        Err(error) => app.write_failed(error, Incoming { method, uri, headers, body }).await,
    }
}

async fn status(State(app): Shared) -> Response {
    let metrics = app.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.get_joint_config().last().cloned().unwrap_or_default();
    let nodes = membership.nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
    Json(Status {
        id: metrics.id,
        state: format!("{:?}", metrics.state),
        leader: metrics.current_leader,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        last_applied: metrics.last_applied.map(|id| id.index),
        snapshot: metrics.snapshot.map(|id| id.index),
        purged: metrics.purged.map(|id| id.index),
        voters,
        nodes,
        keys: app.state_machine().map_or(0, |state_machine| state_machine.len()),
    })
    .into_response()
}

async fn metrics(State(app): Shared) -> Response {
    let metrics = app.raft.metrics().borrow().clone();
    Json(metrics).into_response()
}
