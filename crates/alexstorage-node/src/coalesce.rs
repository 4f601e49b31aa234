//! Group commit for client writes, and linearizable reads checked in groups.
//!
//! openraft 0.9's core appends the entries of one client write, waits for the log
//! flush, and only then takes the next write: one entry a write would mean one sync of
//! the log a write, whatever the number of clients. Writes that arrive while earlier
//! ones are in flight are gathered into one [`Request::Batch`] entry instead: one
//! append, one flush and one replication round for all of them. Each caller is
//! answered with the outcome of the entry that holds its write (the same log index for
//! every write of a batch). Within an entry the writes apply in the order they
//! arrived; two entries in flight at once may be ordered either way (their writes were
//! concurrent: no caller had an answer for one when it sent the other).

// openraft's errors are large, and its API returns them by value.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
/// At most about this many bytes of values in one entry (one larger write goes alone;
/// the server refuses writes past `MAX_WRITE_BYTES`). openraft gives an append one
/// heartbeat interval to reach a follower, be decoded and flushed.
const MOST_BYTES: usize = 1 << 20;
/// Writes waiting for an entry at most; a caller past them waits for room.
const MOST_WAITING: usize = 16_384;

struct Pending {
    request: Request,
    bytes: usize,
    reply: oneshot::Sender<WriteOutcome>,
}

/// Why a write got no index.
#[derive(Clone, Debug)]
pub(crate) enum WriteRefused {
    /// openraft's answer (not the leader, a membership change refused, stopped).
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>),
    /// Not committed within the patience: its outcome is unknown (a leader cut off
    /// from its quorum keeps it pending until the partition heals).
    TimedOut,
}

/// Takes client writes and hands them to openraft in batches.
#[derive(Debug)]
pub(crate) struct Coalescer {
    sender: mpsc::Sender<Pending>,
    patience: Duration,
}

impl Coalescer {
    /// Starts gathering writes for `raft` (on the current Tokio runtime); a caller
    /// waits at most `patience` for its write to commit.
    pub(crate) fn start(raft: Raft<TypeConfig>, patience: Duration) -> Self {
        Self::with(
            move |request| {
                let raft = raft.clone();
                async move { raft.client_write(request).await.map(|written| written.log_id.index) }
            },
            patience,
        )
    }

    /// Starts gathering writes for `submit`, which replicates one entry.
    fn with<F, Fut>(submit: F, patience: Duration) -> Self
    where
        F: Fn(Request) -> Fut + Send + 'static,
        Fut: Future<Output = WriteOutcome> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(MOST_WAITING);
        tokio::spawn(gather(submit, receiver));
        Coalescer { sender, patience }
    }

    /// Replicates `request` with the writes gathered beside it; answers once its entry
    /// is committed and applied, or failed, or after the patience (outcome unknown;
    /// the entry keeps its slot until openraft answers).
    pub(crate) async fn write(&self, request: Request) -> Result<u64, WriteRefused> {
        let stopped = || WriteRefused::Raft(Box::new(RaftError::Fatal(Fatal::Stopped)));
        let (reply, answer) = oneshot::channel();
        let pending = Pending { bytes: value_bytes(&request), request, reply };
        let waited = tokio::time::timeout(self.patience, async {
            if self.sender.send(pending).await.is_err() {
                return Err(stopped());
            }
            match answer.await {
                Ok(outcome) => outcome.map_err(|error| WriteRefused::Raft(Box::new(error))),
                Err(_) => Err(stopped()),
            }
        })
        .await;
        waited.unwrap_or(Err(WriteRefused::TimedOut))
    }
}

/// The bytes of values a write carries: what the server's limit and an entry's
/// [`MOST_BYTES`] count (the keys and framing add a few bytes a write; an entry also
/// holds at most [`MOST_WRITES`] writes).
pub(crate) fn value_bytes(request: &Request) -> usize {
    match request {
        Request::Put { value, .. } => value.len(),
        Request::Delete { .. } => 0,
        Request::Batch(writes) => writes.iter().map(value_bytes).fold(0, usize::saturating_add),
    }
}

async fn gather<F, Fut>(submit: F, mut receiver: mpsc::Receiver<Pending>)
where
    F: Fn(Request) -> Fut + Send + 'static,
    Fut: Future<Output = WriteOutcome> + Send + 'static,
{
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
        // A write whose caller stopped waiting (it was answered "unknown", or its
        // connection closed) is not written: the caller may have written again since,
        // and this one must not land after that.
        if first.reply.is_closed() {
            continue;
        }
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MOST_WRITES {
            let Ok(next) = receiver.try_recv() else { break };
            if next.reply.is_closed() {
                continue;
            }
            if bytes.saturating_add(next.bytes) > MOST_BYTES {
                held = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        let (mut requests, replies): (Vec<Request>, Vec<_>) =
            batch.into_iter().map(|pending| (pending.request, pending.reply)).unzip();
        let request = match requests.len() {
            1 => requests.remove(0),
            _ => Request::Batch(requests),
        };
        let written = submit(request);
        tokio::spawn(async move {
            let outcome = written.await;
            drop(slot);
            for reply in replies {
                // The caller may have gone (its connection closed).
                let _ = reply.send(outcome.clone());
            }
        });
    }
}

/// Why a linearizable read could not be served.
#[derive(Clone, Debug)]
pub(crate) enum ReadRefused {
    /// openraft's answer (not the leader, or no quorum).
    Raft(Box<RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>),
    /// The leader did not confirm its leadership and apply the reads' index in time.
    TimedOut,
}

/// Linearizable reads in groups. A read through the leader waits for a read index: the
/// leader confirms with a quorum that it still leads, and applies everything committed
/// before the read. One check serves every read that arrived before it started; reads
/// that arrive while a check is under way wait for the next one (a check that began
/// before a read arrived proves nothing about it). A check that takes longer than
/// `patience` (a leader cut off from its quorum right after an election may wait for
/// an entry that never commits) fails its group, and the next group gets a fresh one.
#[derive(Debug)]
pub(crate) struct ReadIndex {
    sender: mpsc::Sender<oneshot::Sender<Result<(), ReadRefused>>>,
}

impl ReadIndex {
    /// Starts checking for `raft` (on the current Tokio runtime).
    pub(crate) fn start(raft: Raft<TypeConfig>, patience: Duration) -> Self {
        Self::with(
            move || {
                let raft = raft.clone();
                async move { raft.ensure_linearizable().await.map(drop) }
            },
            patience,
        )
    }

    fn with<F, Fut>(check: F, patience: Duration) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<oneshot::Sender<Result<(), ReadRefused>>>(MOST_WAITING);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut waiting = vec![first];
                while let Ok(next) = receiver.try_recv() {
                    waiting.push(next);
                }
                let outcome = match tokio::time::timeout(patience, check()).await {
                    Ok(checked) => checked.map_err(|error| ReadRefused::Raft(Box::new(error))),
                    Err(_) => Err(ReadRefused::TimedOut),
                };
                for reply in waiting {
                    let _ = reply.send(outcome.clone());
                }
            }
        });
        ReadIndex { sender }
    }

    /// Returns once this member, as leader, may serve a linearizable read from its state
    /// machine.
    pub(crate) async fn ready(&self) -> Result<(), ReadRefused> {
        let stopped = || ReadRefused::Raft(Box::new(RaftError::Fatal(Fatal::Stopped)));
        let (reply, answer) = oneshot::channel();
        if self.sender.send(reply).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Mutex;

    use super::*;

    /// A replication that hands each entry to the test and answers when told to.
    fn held_submissions() -> (Coalescer, mpsc::UnboundedReceiver<(Request, oneshot::Sender<WriteOutcome>)>) {
        let (seen, submissions) = mpsc::unbounded_channel();
        let coalescer = Coalescer::with(
            move |request| {
                let (answer, answered) = oneshot::channel();
                seen.send((request, answer)).unwrap();
                async move { answered.await.unwrap() }
            },
            Duration::from_secs(3600),
        );
        (coalescer, submissions)
    }

    fn put(key: i64, bytes: usize) -> Request {
        Request::Put { key, value: vec![7; bytes] }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_that_arrive_while_entries_are_in_flight_share_the_next_entry() {
        let (coalescer, mut submissions) = held_submissions();
        let coalescer = Arc::new(coalescer);
        let write = |request: Request| {
            let coalescer = Arc::clone(&coalescer);
            tokio::spawn(async move { coalescer.write(request).await })
        };
        // A and B take the two slots, each alone.
        let a = write(put(1, 10));
        let (entry_a, answer_a) = submissions.recv().await.unwrap();
        assert_eq!(entry_a, put(1, 10));
        let b = write(put(2, 10));
        let (entry_b, answer_b) = submissions.recv().await.unwrap();
        assert_eq!(entry_b, put(2, 10));
        // C, D and E wait (400 KiB each: C and D fit one entry, E goes to the next).
        let c = write(put(3, 400 << 10));
        let d = write(put(4, 400 << 10));
        let e = write(put(5, 400 << 10));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(submissions.try_recv().is_err(), "no third entry while two are in flight");
        answer_a.send(Ok(10)).unwrap();
        assert_eq!(a.await.unwrap().ok(), Some(10));
        let (entry_cd, answer_cd) = submissions.recv().await.unwrap();
        assert_eq!(entry_cd, Request::Batch(vec![put(3, 400 << 10), put(4, 400 << 10)]));
        // E was held back, not lost: it goes once a slot frees.
        answer_b.send(Err(RaftError::Fatal(Fatal::Stopped))).unwrap();
        assert!(b.await.unwrap().is_err(), "B gets its entry's failure");
        let (entry_e, answer_e) = submissions.recv().await.unwrap();
        assert_eq!(entry_e, put(5, 400 << 10));
        answer_cd.send(Ok(12)).unwrap();
        answer_e.send(Ok(13)).unwrap();
        assert_eq!(c.await.unwrap().ok(), Some(12));
        assert_eq!(d.await.unwrap().ok(), Some(12), "both writes of one entry get its index");
        assert_eq!(e.await.unwrap().ok(), Some(13));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_read_waits_for_a_check_that_started_after_it() {
        let (started, mut checks) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let count = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&count);
        let reads = Arc::new(ReadIndex::with(
            move || {
                let (release, released) = oneshot::channel();
                started.send(release).unwrap();
                *counted.lock().unwrap() += 1;
                async move {
                    released.await.unwrap();
                    Ok(())
                }
            },
            Duration::from_secs(3600),
        ));
        let read = || {
            let reads = Arc::clone(&reads);
            tokio::spawn(async move { reads.ready().await })
        };
        let first = read();
        let check_one = checks.recv().await.unwrap();
        // Two reads arrive while the first check is under way.
        let second = read();
        let third = read();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        check_one.send(()).unwrap();
        assert!(first.await.unwrap().is_ok());
        let check_two = checks.recv().await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished() && !third.is_finished(), "not answered by the check that began before them");
        check_two.send(()).unwrap();
        assert!(second.await.unwrap().is_ok());
        assert!(third.await.unwrap().is_ok());
        assert_eq!(*count.lock().unwrap(), 2, "one check for both");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_check_that_never_ends_fails_its_reads_and_the_next_gets_a_fresh_one() {
        let calls = Arc::new(Mutex::new(0));
        let counted = Arc::clone(&calls);
        let reads = ReadIndex::with(
            move || {
                let call = {
                    let mut calls = counted.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                async move {
                    if call == 1 {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            },
            Duration::from_secs(2),
        );
        assert!(matches!(reads.ready().await, Err(ReadRefused::TimedOut)));
        assert!(reads.ready().await.is_ok());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_write_not_committed_in_time_is_answered_as_unknown() {
        let coalescer =
            Coalescer::with(|_request| async { std::future::pending::<WriteOutcome>().await }, Duration::from_secs(10));
        assert!(matches!(coalescer.write(put(1, 1)).await, Err(WriteRefused::TimedOut)));
    }

    /// A write still waiting when its caller gave up is dropped, never submitted.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_write_whose_caller_gave_up_is_not_submitted() {
        let (seen, mut submissions) = mpsc::unbounded_channel();
        let coalescer = Arc::new(Coalescer::with(
            move |request| {
                let (answer, answered) = oneshot::channel::<WriteOutcome>();
                seen.send((request, answer)).unwrap();
                async move { answered.await.unwrap() }
            },
            Duration::from_secs(10),
        ));
        // Two writes hold both slots (one after the other, so each goes alone); a third
        // waits, and its caller gives up.
        let (a, b) = (Arc::clone(&coalescer), Arc::clone(&coalescer));
        let _a = tokio::spawn(async move { a.write(put(1, 1)).await });
        let (_, answer_a) = submissions.recv().await.unwrap();
        let _b = tokio::spawn(async move { b.write(put(2, 1)).await });
        let (_, _answer_b) = submissions.recv().await.unwrap();
        assert!(matches!(coalescer.write(put(3, 1)).await, Err(WriteRefused::TimedOut)));
        // A fourth write arrives; a slot frees: the fourth goes, the third never does.
        let d = Arc::clone(&coalescer);
        let d = tokio::spawn(async move { d.write(put(4, 1)).await });
        tokio::task::yield_now().await;
        answer_a.send(Ok(1)).unwrap();
        let (entry, answer_d) = submissions.recv().await.unwrap();
        assert_eq!(entry, put(4, 1), "the abandoned write is skipped");
        answer_d.send(Ok(2)).unwrap();
        assert_eq!(d.await.unwrap().ok(), Some(2));
    }
}
