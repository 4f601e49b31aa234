//! Flushes the store on a thread of its own for the calls that wait for stable
//! storage (appends, votes, snapshots), so that no sync of the log blocks a thread of
//! the async runtime. Flushes are grouped: every waiter that arrived while one flush
//! ran is served by the next, one flush for all of them.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use alexstorage::Db;
use openraft::storage::LogFlushed;
use openraft::AnyError;
use tokio::sync::{oneshot, watch};

use crate::TypeConfig;

/// Who waits for the next flush. Each is sent only after the write it waits for
/// returned, so the flush that serves it covers that write.
enum Waiter {
    /// An append: openraft's callback, called with the flush's outcome.
    Append(LogFlushed<TypeConfig>),
    /// An async caller awaiting the outcome.
    Notify(oneshot::Sender<Result<(), String>>),
}

/// The flushing thread and the channel to it. Dropping it lets the thread serve what
/// was sent and waits for it to end (it holds a handle of the store).
#[derive(Debug)]
pub(crate) struct Flusher {
    sender: Mutex<Option<Sender<Waiter>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set once the thread ended (after the last handle of the stores was dropped).
    released: watch::Sender<bool>,
}

impl Flusher {
    /// Starts the flushing thread for `db`.
    pub(crate) fn start(db: Db) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("alexstorage-raft-flush".into())
            .spawn(move || serve(&receiver, || db.flush().map_err(|error| error.to_string())))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            released: watch::Sender::new(false),
        })
    }

    /// Becomes true once the flusher was dropped and its thread (and its handle of the
    /// store) ended.
    pub(crate) fn released(&self) -> watch::Receiver<bool> {
        self.released.subscribe()
    }

    fn send(&self, waiter: Waiter) -> Result<(), Waiter> {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        match sender.as_ref() {
            Some(sender) => sender.send(waiter).map_err(|mpsc::SendError(waiter)| waiter),
            None => Err(waiter),
        }
    }

    /// Calls `callback` once a flush that follows this call returned (with an error if
    /// it failed or the flushing thread is gone).
    pub(crate) fn after_flush(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(waiter) = self.send(Waiter::Append(callback)) {
            answer(waiter, &Err("the flushing thread has stopped".into()));
        }
    }

    /// Returns once a flush that follows this call returned: everything written before
    /// the call is then on stable storage.
    pub(crate) async fn flushed(&self) -> Result<(), AnyError> {
        let (sender, receiver) = oneshot::channel();
        if self.send(Waiter::Notify(sender)).is_err() {
            return Err(AnyError::error("the flushing thread has stopped"));
        }
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(AnyError::error(error)),
            Err(_) => Err(AnyError::error("the flushing thread has stopped")),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.sender.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            // A panic of the thread was already reported to its waiters as a stop.
            let _ = thread.join();
        }
        self.released.send_replace(true);
    }
}

/// The flushing thread: one flush for every waiter that is there when it starts.
fn serve(receiver: &Receiver<Waiter>, mut flush: impl FnMut() -> Result<(), String>) {
    while let Ok(first) = receiver.recv() {
        let mut waiters = vec![first];
        waiters.extend(receiver.try_iter());
        let outcome = flush();
        for waiter in waiters {
            answer(waiter, &outcome);
        }
    }
}

fn answer(waiter: Waiter, outcome: &Result<(), String>) {
    match waiter {
        Waiter::Append(callback) => {
            callback.log_io_completed(outcome.clone().map_err(std::io::Error::other));
        }
        Waiter::Notify(sender) => {
            // The caller may have given up waiting (its task was dropped).
            let _ = sender.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_is_awaited_and_the_store_closes_with_the_flusher() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let flusher = Flusher::start(db.clone()).unwrap();
        db.put(1, b"one").unwrap();
        assert!(db.stats().unsynced_bytes > 0, "a buffered put waits for a sync");
        flusher.flushed().await.unwrap();
        assert_eq!(db.stats().unsynced_bytes, 0, "the awaited flush synced it");
        let mut released = flusher.released();
        assert!(!*released.borrow());
        drop(flusher);
        assert!(*released.borrow_and_update(), "released once the flusher is dropped");
        drop(db);
        // Every handle is gone once the flusher is dropped: the store opens again.
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get(1).unwrap().as_deref(), Some(&b"one"[..]));
    }

    /// A waiter that arrives while a flush runs is answered by the next flush, not by
    /// the one under way (which may have started before its write); every waiter
    /// present when a flush starts shares it; a failed flush fails all of them.
    #[test]
    fn waiters_are_answered_by_a_flush_that_starts_after_them() {
        let (sender, receiver) = mpsc::channel();
        // Each flush waits for a go, then reports what it was told.
        let (go, flushes) = mpsc::channel::<Result<(), String>>();
        let (started, flush_started) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            serve(&receiver, || {
                started.send(()).unwrap();
                flushes.recv().unwrap()
            })
        });
        let waiter = || {
            let (reply, answer) = oneshot::channel();
            (Waiter::Notify(reply), answer)
        };
        let (a, mut a_answer) = waiter();
        sender.send(a).unwrap();
        flush_started.recv().unwrap();
        // B arrives during A's flush.
        let (b, mut b_answer) = waiter();
        sender.send(b).unwrap();
        assert!(a_answer.try_recv().is_err(), "A waits for its flush");
        go.send(Ok(())).unwrap();
        flush_started.recv().unwrap();
        assert_eq!(a_answer.try_recv().unwrap(), Ok(()));
        assert!(b_answer.try_recv().is_err(), "B waits for a flush that started after it");
        // C arrives during B's flush; then B's flush fails.
        let (c, mut c_answer) = waiter();
        sender.send(c).unwrap();
        go.send(Err("disk".into())).unwrap();
        flush_started.recv().unwrap();
        assert_eq!(b_answer.try_recv().unwrap(), Err("disk".into()));
        assert!(c_answer.try_recv().is_err());
        // D and E both arrive during C's flush: the next flush serves both.
        let (d, mut d_answer) = waiter();
        let (e, mut e_answer) = waiter();
        sender.send(d).unwrap();
        sender.send(e).unwrap();
        go.send(Ok(())).unwrap();
        flush_started.recv().unwrap();
        assert_eq!(c_answer.try_recv().unwrap(), Ok(()));
        go.send(Err("disk again".into())).unwrap();
        drop(sender);
        thread.join().unwrap();
        assert_eq!(d_answer.try_recv().unwrap(), Err("disk again".into()));
        assert_eq!(e_answer.try_recv().unwrap(), Err("disk again".into()), "one flush for both");
    }
}
