//! The Raft network between members: openraft's RPCs as HTTP POSTs to the target's
//! `/raft/append`, `/raft/vote` and `/raft/snapshot`, bodies in `postcard` (a value of
//! bytes travels at its own size). A success answers 200 with the response in
//! `postcard`; the target's own Raft error answers 409 with the error in JSON.

// openraft's RPC errors are large, and its network trait returns them by value.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use alexstorage_raft::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The HTTP status a member answers an RPC with when its Raft returned an error (the
/// body is the error, in JSON).
pub const RAFT_ERROR_STATUS: u16 = 409;

/// An append of more than one entry is sent only if it encodes to at most this many
/// bytes; a larger one is refused with a hint of how many entries fit, and openraft
/// sends fewer (it gives an append one heartbeat interval to be answered, and resends
/// it after that: a payload of hundreds of megabytes would never make it).
pub const APPEND_BUDGET: usize = 4 << 20;

/// Connections to the other members (openraft's `RaftNetworkFactory`): one HTTP client
/// with a pool of kept-alive connections, shared by every target.
#[derive(Clone, Debug)]
pub struct HttpNetwork {
    client: reqwest::Client,
}

impl HttpNetwork {
    /// A network with a client of its own.
    pub fn new() -> reqwest::Result<Self> {
        Ok(Self { client: http_client()? })
    }
}

/// The HTTP client members and clients use: no Nagle delay, connections kept alive,
/// a connect timeout well under an election timeout.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

/// The connection to one member (openraft's `RaftNetwork`).
#[derive(Debug)]
pub struct HttpConnection {
    client: reqwest::Client,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpConnection {
        HttpConnection { client: self.client.clone(), target, addr: node.addr.clone() }
    }
}

impl HttpConnection {
    /// Posts `request` to the target's `/raft/{rpc}` and decodes its answer.
    async fn call<Q, A, E>(
        &self,
        rpc: &str,
        request: &Q,
        option: &RPCOption,
    ) -> Result<A, RPCError<NodeId, BasicNode, E>>
    where
        Q: Serialize,
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = postcard::to_stdvec(request).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        self.post(rpc, body, option).await
    }

    /// Posts an encoded request to the target's `/raft/{rpc}` and decodes its answer.
    async fn post<A, E>(
        &self,
        rpc: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<A, RPCError<NodeId, BasicNode, E>>
    where
        A: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let response = self
            .client
            .post(format!("http://{}/raft/{rpc}", self.addr))
            .timeout(option.hard_ttl())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&error))
                } else {
                    RPCError::Network(NetworkError::new(&error))
                }
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        if status.is_success() {
            postcard::from_bytes(&bytes).map_err(|error| RPCError::Network(NetworkError::new(&error)))
        } else if status.as_u16() == RAFT_ERROR_STATUS {
            let error: E =
                serde_json::from_slice(&bytes).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
            Err(RPCError::RemoteError(RemoteError::new(self.target, error)))
        } else {
            let message =
                format!("{status} from member {} at {}: {}", self.target, self.addr, String::from_utf8_lossy(&bytes));
            Err(RPCError::Network(NetworkError::new(&std::io::Error::other(message))))
        }
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let body = postcard::to_stdvec(&rpc).map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        if body.len() > APPEND_BUDGET && rpc.entries.len() > 1 {
            let fit = (rpc.entries.len() as u128 * APPEND_BUDGET as u128 / body.len() as u128) as u64;
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit.max(1))));
        }
        self.post("append", body, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
