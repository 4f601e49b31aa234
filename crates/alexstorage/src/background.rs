//! [`Worker`]: a named background thread that runs one task repeatedly, woken by a
//! timer or on demand, and stopped and joined when the store closes. The periodic
//! syncer, the compactor and the checkpointer are each one.
//!
//! A worker's task holds the store only weakly between runs (an upgraded `Weak` for
//! the length of one run), so that the last `Db` handle's drop, which stops the
//! workers, runs in the caller's thread and never in a worker's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
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
    pub fn wake(&self) {
        // A full channel means a wake-up is pending already: nothing is lost.
        let _ = self.wake.try_send(());
    }

    /// Stops the thread (a run in progress sees the stop flag) and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
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
    use std::time::Instant;

    #[test]
    fn runs_on_wake_and_stops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let worker = Worker::spawn("test-worker", Next::OnWake, move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Next::OnWake
        })
        .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 0, "an idle worker runs nothing until woken");
        worker.wake();
        let started = Instant::now();
        while runs.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "woken worker never ran");
            std::thread::yield_now();
        }
        worker.stop();
        let after_stop = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), after_stop, "a stopped worker runs no more");
    }

    #[test]
    fn timer_runs_until_the_task_exits() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let worker = Worker::spawn("test-timer", Next::After(Duration::from_millis(1)), move |_| {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Next::After(Duration::from_millis(1)),
                _ => Next::Exit,
            }
        })
        .unwrap();
        // `stop` joins: the thread ended on its own after four runs.
        let started = Instant::now();
        while runs.load(Ordering::SeqCst) < 4 {
            assert!(started.elapsed() < Duration::from_secs(30), "timer never fired four times");
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.stop();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_long_run_sees_the_stop_flag() {
        let worker = Worker::spawn("test-long", Next::After(Duration::ZERO), |stop| {
            let started = Instant::now();
            while !stop.load(Ordering::Acquire) {
                assert!(started.elapsed() < Duration::from_secs(30), "stop flag never set");
                std::thread::yield_now();
            }
            Next::OnWake
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Returns only once the run above has seen the flag and the thread ended.
        worker.stop();
    }
}
