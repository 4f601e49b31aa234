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
use tokio::sync::oneshot;

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
}

impl Flusher {
    /// Starts the flushing thread for `db`.
    pub(crate) fn start(db: Db) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name("alexstorage-raft-flush".into()).spawn(move || serve(&db, &receiver))?;
        Ok(Self { sender: Mutex::new(Some(sender)), thread: Mutex::new(Some(thread)) })
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
    }
}

/// The flushing thread: one flush for every waiter that is there when it starts.
fn serve(db: &Db, receiver: &Receiver<Waiter>) {
    while let Ok(first) = receiver.recv() {
        let mut waiters = vec![first];
        waiters.extend(receiver.try_iter());
        let outcome = db.flush().map_err(|error| error.to_string());
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
        drop(flusher);
        drop(db);
        // Every handle is gone once the flusher is dropped: the store opens again.
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get(1).unwrap().as_deref(), Some(&b"one"[..]));
    }
}
