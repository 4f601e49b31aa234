//! Group commit for client writes. openraft 0.9's core appends the entries of one
//! client write, waits for the log flush, and only then takes the next write: one
//! entry a write would mean one sync of the log a write, whatever the number of
//! clients. Writes that arrive while earlier ones are in flight are gathered into one
//! [`Request::Batch`] entry instead: one append, one flush and one replication round
//! for all of them. Each caller is answered with the outcome of the entry that holds
//! its write (the same log index for every write of a batch); a write is applied after
//! the writes gathered before it, in the order they arrived.

// openraft's errors are large, and its API returns them by value.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use alexstorage_raft::{NodeId, Request, TypeConfig};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// What a write comes to: its log index, or openraft's error.
pub(crate) type WriteOutcome = Result<u64, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// Entries in flight at once: while one is being flushed and replicated, the next is
/// already with openraft's core, and the writes after it gather for the one after.
const IN_FLIGHT: usize = 2;
/// At most this many writes in one entry.
const MOST_WRITES: usize = 4096;
/// At most about this many bytes of values in one entry (the store's values are
/// limited to 64 MiB by default; one larger write goes alone).
const MOST_BYTES: usize = 8 << 20;

struct Pending {
    request: Request,
    bytes: usize,
    reply: oneshot::Sender<WriteOutcome>,
}

/// Takes client writes and hands them to openraft in batches.
#[derive(Debug)]
pub(crate) struct Coalescer {
    sender: mpsc::UnboundedSender<Pending>,
}

impl Coalescer {
    /// Starts gathering writes for `raft` (on the current Tokio runtime).
    pub(crate) fn start(raft: Raft<TypeConfig>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(gather(raft, receiver));
        Coalescer { sender }
    }

    /// Replicates `request` with the writes gathered beside it; answers once its entry
    /// is committed and applied (or failed).
    pub(crate) async fn write(&self, request: Request) -> WriteOutcome {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { bytes: size(&request), request, reply };
        if self.sender.send(pending).is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        answer.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

/// The bytes a write adds to an entry (about).
fn size(request: &Request) -> usize {
    match request {
        Request::Put { value, .. } => value.len() + 16,
        Request::Delete { .. } => 16,
        Request::Batch(writes) => writes.iter().map(size).sum::<usize>() + 8,
    }
}

async fn gather(raft: Raft<TypeConfig>, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A write taken from the channel that did not fit the last batch: first in the next.
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => match receiver.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // Wait for a slot, then gather everything that arrived meanwhile.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MOST_WRITES {
            let Ok(next) = receiver.try_recv() else { break };
            if bytes + next.bytes > MOST_BYTES {
                held = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let (mut requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|pending| (pending.request, pending.reply)).unzip();
            let request = match requests.len() {
                1 => requests.remove(0),
                _ => Request::Batch(requests),
            };
            let outcome = raft.client_write(request).await.map(|written| written.log_id.index);
            for reply in replies {
                // The caller may have gone (its connection closed).
                let _ = reply.send(outcome.clone());
            }
        });
    }
}

/// What a linearizability check comes to: nothing, or openraft's error.
pub(crate) type ReadOutcome = Result<(), RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>;

/// Linearizable reads in groups. A read through the leader waits for a read index: the
/// leader confirms with a quorum that it still leads, and applies everything committed
/// before the read. One check serves every read that arrived before it started; reads
/// that arrive while a check is under way wait for the next one (a check that began
/// before a read arrived proves nothing about it).
#[derive(Debug)]
pub(crate) struct ReadIndex {
    sender: mpsc::UnboundedSender<oneshot::Sender<ReadOutcome>>,
}

impl ReadIndex {
    /// Starts checking for `raft` (on the current Tokio runtime).
    pub(crate) fn start(raft: Raft<TypeConfig>) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<oneshot::Sender<ReadOutcome>>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut waiting = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    waiting.push(next);
                }
                let outcome = raft.ensure_linearizable().await.map(drop);
                for reply in waiting {
                    let _ = reply.send(outcome.clone());
                }
            }
        });
        ReadIndex { sender }
    }

    /// Returns once this member, as leader, may serve a linearizable read from its state
    /// machine.
    pub(crate) async fn ready(&self) -> ReadOutcome {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(reply).is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        answer.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}
