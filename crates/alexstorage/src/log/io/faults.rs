//! Faults on cue: a test arms a plan that fails the `n`-th I/O operation of chosen
//! kinds with `EIO` or `ENOSPC` before it runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::Op;

/// The error an armed fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An I/O error (`EIO`).
    Io,
    /// No space left on the device (`ENOSPC`).
    NoSpace,
}

/// A plan: fail the operation number `fail_at` (counting from 0, operations of
/// the kinds in `ops` only, on paths inside `dir` only if set, on the thread named
/// `thread` only if set) with `fault`.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Which matching operation fails.
    pub fail_at: u64,
    /// The kinds of operation counted (all if empty).
    pub ops: Vec<Op>,
    /// The error.
    pub fault: Fault,
    /// Only operations on this directory or the files in it count, if set: tests
    /// running at once in one process, each in its own directory, each arm their own.
    pub dir: Option<PathBuf>,
    /// Only operations on the thread with this name count, if set: a test can aim a
    /// fault at one background thread whatever the others do meanwhile.
    pub thread: Option<String>,
}

impl Plan {
    /// Fails operation `fail_at` of any kind, anywhere, with `fault`.
    pub fn at(fail_at: u64, fault: Fault) -> Plan {
        Plan { fail_at, ops: Vec::new(), fault, dir: None, thread: None }
    }

    /// This plan, counting only operations in `dir`.
    pub fn in_dir(self, dir: &Path) -> Plan {
        Plan { dir: Some(dir.to_path_buf()), ..self }
    }

    /// This plan, counting only operations on the thread named `thread`.
    pub fn on_thread(self, thread: &str) -> Plan {
        Plan { thread: Some(thread.to_owned()), ..self }
    }
}

struct Armed {
    plan: Plan,
    seen: u64,
    failed: Option<(Op, PathBuf)>,
    /// The name of the thread the fault failed an operation on.
    thread: Option<String>,
}

/// How many plans are armed: `check` does nothing more while it is 0.
static ARMED: AtomicUsize = AtomicUsize::new(0);
static STATE: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

/// Arms `plan`, replacing the one armed for the same directory (or for none).
pub fn arm(plan: Plan) {
    let mut state = STATE.lock();
    state.retain(|armed| armed.plan.dir != plan.dir);
    state.push(Armed { plan, seen: 0, failed: None, thread: None });
    ARMED.store(state.len(), Ordering::Release);
}

/// Disarms the plan armed for no directory; returns how many matching operations
/// were seen and the one that failed, if any.
pub fn disarm() -> (u64, Option<(Op, PathBuf)>) {
    disarm_in(None)
}

/// Disarms the plan armed for `dir` (or for none); returns how many matching
/// operations were seen and the one that failed, if any.
pub fn disarm_in(dir: Option<&Path>) -> (u64, Option<(Op, PathBuf)>) {
    let mut state = STATE.lock();
    let position = state.iter().position(|armed| armed.plan.dir.as_deref() == dir);
    let removed = position.map(|position| state.swap_remove(position));
    ARMED.store(state.len(), Ordering::Release);
    removed.map_or((0, None), |armed| (armed.seen, armed.failed))
}

/// The operation the plan armed for no directory failed, if it fired yet.
pub fn fired() -> Option<(Op, PathBuf)> {
    fired_in(None)
}

/// The operation the plan armed for `dir` (or for none) failed, if it fired yet.
pub fn fired_in(dir: Option<&Path>) -> Option<(Op, PathBuf)> {
    let state = STATE.lock();
    state.iter().find(|armed| armed.plan.dir.as_deref() == dir).and_then(|armed| armed.failed.clone())
}

/// The name of the thread whose operation the plan armed for `dir` (or for none)
/// failed, if it fired yet (`"unnamed"` for a thread without a name).
pub fn fired_on_thread_in(dir: Option<&Path>) -> Option<String> {
    let state = STATE.lock();
    state.iter().find(|armed| armed.plan.dir.as_deref() == dir).and_then(|armed| armed.thread.clone())
}

pub(super) fn check(op: Op, path: &Path) -> std::io::Result<()> {
    if ARMED.load(Ordering::Acquire) == 0 {
        return Ok(());
    }
    let mut state = STATE.lock();
    let current = std::thread::current();
    let thread = current.name().unwrap_or("unnamed");
    // Every matching plan counts the operation, whichever of them fails it.
    let mut failure = None;
    for armed in state.iter_mut() {
        if !armed.plan.ops.is_empty() && !armed.plan.ops.contains(&op) {
            continue;
        }
        if armed.plan.dir.as_deref().is_some_and(|dir| !path.starts_with(dir)) {
            continue;
        }
        if armed.plan.thread.as_deref().is_some_and(|wanted| wanted != thread) {
            continue;
        }
        let number = armed.seen;
        armed.seen += 1;
        if number != armed.plan.fail_at || failure.is_some() {
            continue;
        }
        armed.failed = Some((op, path.to_path_buf()));
        armed.thread = Some(thread.to_owned());
        failure = Some(match armed.plan.fault {
            Fault::Io => rustix::io::Errno::IO,
            Fault::NoSpace => rustix::io::Errno::NOSPC,
        });
    }
    failure.map_or(Ok(()), |errno| Err(std::io::Error::from(errno)))
}
