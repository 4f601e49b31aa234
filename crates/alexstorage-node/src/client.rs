//! A client of a replicated store: sends each call to the member it believes leads,
//! follows the leader's address members report, and moves on to the next member when
//! one cannot be reached or has no leader, until its retry time runs out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use alexstorage_raft::NodeId;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{
    AddLearnerRequest, BatchRequest, ChangeMembershipRequest, ErrorReply, InitRequest, Operation, Status, WriteReply,
    LEADER_HEADER,
};
use crate::network::http_client;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No member answered the call before the retry time ran out; the last failure.
    /// A write that ends so may or may not have been applied.
    #[error("no member could serve the call: {0}")]
    Unavailable(String),
    /// A member refused the call (a bad request, or an error of the store).
    #[error("{status}: {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The member's message.
        message: String,
    },
    /// The HTTP client could not be built, or an answer could not be read.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
}

/// A client of the members at the given addresses. Calls are safe from many tasks at
/// once (share it behind an `Arc`, or clone the addresses).
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    members: Mutex<Vec<String>>,
    /// The member calls go to first.
    current: AtomicUsize,
    retry_for: Duration,
    attempt_timeout: Duration,
}

/// What one attempt came to.
enum Attempt {
    Done(reqwest::Response),
    /// Try again: the leader the member named (now the current member), or else the
    /// next member (it is down, has no leader, or is not the leader).
    Retry {
        failure: String,
        followed: bool,
    },
    Refused(ClientError),
}

impl Client {
    /// A client of the members at `addrs` (`host:port`), retrying for 30 s; one attempt
    /// waits up to 15 s (a member answers a write it could not commit in 10 s).
    pub fn new(addrs: impl IntoIterator<Item = impl Into<String>>) -> Result<Self, ClientError> {
        Ok(Self {
            http: http_client()?,
            members: Mutex::new(addrs.into_iter().map(Into::into).collect()),
            current: AtomicUsize::new(0),
            retry_for: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(15),
        })
    }

    /// How long a call keeps trying members before it fails with
    /// [`ClientError::Unavailable`].
    pub fn retry_for(mut self, time: Duration) -> Self {
        self.retry_for = time;
        self
    }

    /// The address calls go to first.
    pub fn current(&self) -> Option<String> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.get(self.current.load(Ordering::Relaxed) % members.len().max(1)).cloned()
    }

    /// Sets `key` to `value`; returns the log index it was applied at. A put retried
    /// after a member failed mid-call may be applied twice (at two indexes, the same
    /// value).
    pub async fn put(&self, key: i64, value: impl Into<Vec<u8>>) -> Result<u64, ClientError> {
        let reply: WriteReply = self.json(Method::PUT, &format!("/kv/{key}"), Some(value.into())).await?;
        Ok(reply.index)
    }

    /// Removes `key`; returns the log index. Like a put, a delete retried after a
    /// member failed mid-call may be applied twice.
    pub async fn delete(&self, key: i64) -> Result<u64, ClientError> {
        let reply: WriteReply = self.json(Method::DELETE, &format!("/kv/{key}"), None).await?;
        Ok(reply.index)
    }

    /// Applies `ops` together at one log index, which it returns. A batch retried after
    /// a member failed mid-call may be applied twice (at two indexes): make its writes
    /// idempotent, as puts of fixed values and deletes are.
    pub async fn batch(&self, ops: Vec<Operation>) -> Result<u64, ClientError> {
        let body = serde_json::to_vec(&BatchRequest { ops }).map_err(refused_locally)?;
        let reply: WriteReply = self.json(Method::POST, "/kv", Some(body)).await?;
        Ok(reply.index)
    }

    /// The value of `key`, read linearizably through the leader.
    pub async fn get(&self, key: i64) -> Result<Option<Vec<u8>>, ClientError> {
        match self.call(Method::GET, &format!("/kv/{key}"), None, None).await {
            Ok(answer) => Ok(Some(answer.bytes().await?.to_vec())),
            Err(ClientError::Refused { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The value of `key` in the state machine of the member at `addr`, as it is there
    /// (no leader asked; no retry).
    pub async fn get_local(&self, addr: &str, key: i64) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!("/kv/{key}?consistency=local");
        match self.call(Method::GET, &path, None, Some(addr)).await {
            Ok(answer) => Ok(Some(answer.bytes().await?.to_vec())),
            Err(ClientError::Refused { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// What the member at `addr` knows (no retry).
    pub async fn status(&self, addr: &str) -> Result<Status, ClientError> {
        let answer = self.call(Method::GET, "/cluster/status", None, Some(addr)).await?;
        Ok(answer.json().await?)
    }

    /// Starts a new cluster, on the member at `addr`, with `members` (ids and addresses)
    /// as its first membership.
    pub async fn init(&self, addr: &str, members: BTreeMap<NodeId, String>) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&InitRequest { members }).map_err(refused_locally)?;
        self.call(Method::POST, "/cluster/init", Some(body), Some(addr)).await.map(drop)
    }

    /// Adds the member `id` at `addr` as a learner; returns once it is within openraft's
    /// `replication_lag_threshold` (5,000 entries) of the leader.
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<u64, ClientError> {
        let body = serde_json::to_vec(&AddLearnerRequest { id, addr: addr.to_owned() }).map_err(refused_locally)?;
        let reply: WriteReply = self.json(Method::POST, "/cluster/add-learner", Some(body)).await?;
        Ok(reply.index)
    }

    /// Makes `members` the voters.
    pub async fn change_membership(&self, members: BTreeSet<NodeId>) -> Result<u64, ClientError> {
        let body = serde_json::to_vec(&ChangeMembershipRequest { members }).map_err(refused_locally)?;
        let reply: WriteReply = self.json(Method::POST, "/cluster/change-membership", Some(body)).await?;
        Ok(reply.index)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let answer = self.call(method, path, body, None).await?;
        Ok(answer.json().await?)
    }

    /// Sends the call to `only`, or to the members in turn until one serves it.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        only: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let now = Instant::now();
        let deadline = now.checked_add(self.retry_for).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        loop {
            let at = self.current.load(Ordering::Relaxed);
            let addr = match only {
                Some(addr) => addr.to_owned(),
                None => self.current().ok_or_else(|| ClientError::Unavailable("no member address".into()))?,
            };
            let failure = match self.attempt(&method, &addr, path, body.clone()).await {
                Attempt::Done(answer) => {
                    self.follow(answer.headers().get(LEADER_HEADER).and_then(|value| value.to_str().ok()));
                    return Ok(answer);
                }
                Attempt::Refused(error) => return Err(error),
                Attempt::Retry { failure, followed } => (failure, followed),
            };
            let (failure, followed) = failure;
            if only.is_some() || Instant::now() >= deadline {
                return Err(ClientError::Unavailable(format!("{addr}: {failure}")));
            }
            // The leader named, or the next member; a short pause so that an election
            // can finish.
            // Unless another call moved it meanwhile (to a leader it was told of).
            if !followed {
                let _ = self.current.compare_exchange(at, at.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn attempt(&self, method: &Method, addr: &str, path: &str, body: Option<Vec<u8>>) -> Attempt {
        let mut request =
            self.http.request(method.clone(), format!("http://{addr}{path}")).timeout(self.attempt_timeout);
        if let Some(body) = body {
            request = request.body(body);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(error) => return Attempt::Retry { failure: error.to_string(), followed: false },
        };
        let status = answer.status();
        if status.is_success() {
            return Attempt::Done(answer);
        }
        let text = answer.text().await.unwrap_or_default();
        let reply: Option<ErrorReply> = serde_json::from_str(&text).ok();
        let message = reply.as_ref().map_or(text.clone(), |reply| reply.error.clone());
        match status {
            StatusCode::MISDIRECTED_REQUEST | StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
                let leader = reply.and_then(|reply| reply.leader).and_then(|leader| leader.addr);
                // A member that names itself (or the member just asked) is no lead.
                let followed = match leader {
                    Some(leader) if leader != addr => {
                        self.follow(Some(&leader));
                        true
                    }
                    _ => false,
                };
                Attempt::Retry { failure: format!("{status}: {message}"), followed }
            }
            _ => Attempt::Refused(ClientError::Refused { status, message }),
        }
    }

    /// Sends later calls to `leader` first (added to the members if new).
    fn follow(&self, leader: Option<&str>) {
        let Some(leader) = leader else { return };
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let at = match members.iter().position(|addr| addr == leader) {
            Some(at) => at,
            None => {
                members.push(leader.to_owned());
                members.len() - 1
            }
        };
        self.current.store(at, Ordering::Relaxed);
    }
}

fn refused_locally(error: serde_json::Error) -> ClientError {
    ClientError::Refused { status: StatusCode::BAD_REQUEST, message: error.to_string() }
}
