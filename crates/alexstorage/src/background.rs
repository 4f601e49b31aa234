//! [`Worker`]: a named background thread that runs one task repeatedly, woken by a
//! timer or on demand, and stopped and joined when the store closes. The periodic
//! syncer, the compactor and the checkpointer are each one.
//!
//! A worker's task holds the store only weakly between runs (an upgraded `Weak` for
//! the length of one run), so that the last `Db` handle's drop, which stops the
//! workers, runs in the caller's thread and never in a worker's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Result;

/// When a worker runs its task next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// After this long, or sooner if woken.
    After(Duration),
    /// When woken.
    OnWake,
    /// Never: the thread ends.
    Exit,
}

/// A background thread; see the module docs.
pub(crate) struct Worker {
    /// Set by [`Worker::stop`]; tasks check it to end a long run early.
    stop: Arc<AtomicBool>,
    /// Wakes the thread (a full channel already holds a wake-up).
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Starts the thread `name`. It waits as `first` says, then runs `task` and waits
    /// as the task's answer says, until the task answers [`Next::Exit`] or the worker
    /// is stopped. The task gets the stop flag to end a long run early.
    pub fn spawn(
        name: &str,
        first: Next,
        mut task: impl FnMut(&AtomicBool) -> Next + Send + 'static,
    ) -> Result<Worker> {
        let (wake, woken) = sync_channel::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut next = first;
            while wait(&woken, next) && !flag.load(Ordering::Acquire) {
                next = task(&flag);
            }
        })?;
        Ok(Worker { stop, wake, thread })
    }

    /// Asks the thread to run its task now (or right after the run in progress).
    /// `false` if the thread has ended (its task said exit, or it panicked): nothing
    /// will run.
    pub fn wake(&self) -> bool {
        // A full channel means a wake-up is pending already: nothing is lost.
        !matches!(self.wake.try_send(()), Err(TrySendError::Disconnected(())))
    }

    /// Raises the stop flag without waiting: a run in progress sees it, and the thread
    /// ends after it. Lets a caller stop several workers at once before joining any.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops the thread (a run in progress sees the stop flag) and waits for it.
    pub fn stop(self) {
        self.request_stop();
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::warn!("a background thread panicked");
        }
    }
}

/// Waits as `next` says; `false` if the thread should end (told to exit, or the
/// worker was dropped or stopped).
fn wait(woken: &Receiver<()>, next: Next) -> bool {
    let outcome = match next {
        Next::Exit => return false,
        Next::OnWake => woken.recv().map_err(|_| RecvTimeoutError::Disconnected),
        Next::After(pause) => woken.recv_timeout(pause),
    };
    match outcome {
        Ok(()) => {
            // Several wake-ups while the task ran count as one.
            while woken.try_recv().is_ok() {}
            true
        }
        Err(RecvTimeoutError::Timeout) => true,
        Err(RecvTimeoutError::Disconnected) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc::channel;
    use std::time::Instant;

    /// Waits (bounded, never asserting on time) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(30), "never happened: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn runs_on_wake_and_stops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let worker = Worker::spawn("test-worker", Next::OnWake, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Next::OnWake
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "an idle worker runs nothing until woken");
        assert!(worker.wake());
        eventually("the woken worker ran", || runs.load(Ordering::SeqCst) == 1);
        worker.wake();
        eventually("the worker ran once per wake-up", || runs.load(Ordering::SeqCst) == 2);
        worker.stop();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_wake_during_a_run_runs_the_task_again() {
        let (release, released) = channel::<()>();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let worker = Worker::spawn("test-busy", Next::OnWake, move |_| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                // The first run blocks until the test lets it go.
                let _ = released.recv();
            }
            Next::OnWake
        })
        .unwrap();
        worker.wake();
        eventually("the first run started", || runs.load(Ordering::SeqCst) == 1);
        // Woken twice while busy: one more run, not two, and not none.
        worker.wake();
        worker.wake();
        release.send(()).unwrap();
        eventually("the wake-up during the run was kept", || runs.load(Ordering::SeqCst) == 2);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), 2, "two wake-ups while busy count as one");
        worker.stop();
    }

    #[test]
    fn a_wake_cuts_a_timed_wait_short() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let hour = Duration::from_secs(3600);
        let worker = Worker::spawn("test-timed", Next::After(hour), move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Next::After(hour)
        })
        .unwrap();
        worker.wake();
        eventually("the wake-up ended the hour's wait", || runs.load(Ordering::SeqCst) == 1);
        worker.stop();
    }

    #[test]
    fn the_thread_ends_when_its_task_says_exit() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let worker = Worker::spawn("test-timer", Next::After(Duration::from_millis(1)), move |_| {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Next::After(Duration::from_millis(1)),
                _ => Next::Exit,
            }
        })
        .unwrap();
        // Ended on its own, before anyone stopped it.
        eventually("the thread ended after its task said exit", || worker.thread.is_finished());
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert!(!worker.wake(), "waking an ended worker reports that nothing will run");
        worker.stop();
    }

    #[test]
    fn a_long_run_sees_the_stop_flag() {
        let entered = Arc::new(AtomicBool::new(false));
        let saw_stop = Arc::new(AtomicBool::new(false));
        let (entered_in_task, saw_stop_in_task) = (Arc::clone(&entered), Arc::clone(&saw_stop));
        let worker = Worker::spawn("test-long", Next::After(Duration::ZERO), move |stop| {
            entered_in_task.store(true, Ordering::SeqCst);
            let started = Instant::now();
            while !stop.load(Ordering::Acquire) && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
            saw_stop_in_task.store(stop.load(Ordering::Acquire), Ordering::SeqCst);
            Next::OnWake
        })
        .unwrap();
        eventually("the long run started", || entered.load(Ordering::SeqCst));
        // Returns only once the run has seen the flag and the thread ended.
        worker.stop();
        assert!(saw_stop.load(Ordering::SeqCst), "the run ended without seeing the stop flag");
    }
}
