//! The I/O seam: every operation of the store's files that a real disk can fail (a
//! sync, a block allocation, a file creation, write, rename or removal, a read) passes
//! through [`check`] first. In normal builds `check` is an empty inline function. With
//! the `fault-injection` feature (tests only), a test can arm a fault that makes the
//! `n`-th such operation fail with `EIO` or `ENOSPC` before it runs, to walk a failure
//! through every step of a write, a flush, a roll-over, a checkpoint or a compaction
//! (`alexstorage::testing::faults`).

use std::path::Path;

/// What an I/O operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `fsync`, `fdatasync`, `msync`, or a directory's sync.
    Sync,
    /// Reserving blocks (`fallocate`) or changing a file's length.
    Allocate,
    /// Creating a file.
    Create,
    /// Writing a file's bytes with `write` (not through a mapping).
    Write,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Reading a file (not through a mapping), or listing a directory.
    Read,
}

/// Fails if a test armed a fault for this operation.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn check(_op: Op, _path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Fails if a test armed a fault for this operation.
#[cfg(feature = "fault-injection")]
pub fn check(op: Op, path: &Path) -> std::io::Result<()> {
    faults::check(op, path)
}

/// The armed faults (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
pub mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};

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
    /// the kinds in `ops` only) with `fault`.
    #[derive(Clone, Debug)]
    pub struct Plan {
        /// Which matching operation fails.
        pub fail_at: u64,
        /// The kinds of operation counted (all if empty).
        pub ops: Vec<Op>,
        /// The error.
        pub fault: Fault,
    }

    struct Armed {
        plan: Plan,
        seen: u64,
        failed: Option<(Op, PathBuf)>,
    }

    static ARMED: AtomicBool = AtomicBool::new(false);
    static STATE: Mutex<Option<Armed>> = Mutex::new(None);

    /// Arms `plan`, replacing any other.
    pub fn arm(plan: Plan) {
        *STATE.lock() = Some(Armed { plan, seen: 0, failed: None });
        ARMED.store(true, Ordering::Release);
    }

    /// Disarms; returns how many matching operations were seen and the one that
    /// failed, if any.
    pub fn disarm() -> (u64, Option<(Op, PathBuf)>) {
        ARMED.store(false, Ordering::Release);
        STATE.lock().take().map_or((0, None), |armed| (armed.seen, armed.failed))
    }

    /// The operation the armed fault failed, if it fired yet.
    pub fn fired() -> Option<(Op, PathBuf)> {
        STATE.lock().as_ref().and_then(|armed| armed.failed.clone())
    }

    pub(super) fn check(op: Op, path: &Path) -> std::io::Result<()> {
        if !ARMED.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut state = STATE.lock();
        let Some(armed) = state.as_mut() else { return Ok(()) };
        if !armed.plan.ops.is_empty() && !armed.plan.ops.contains(&op) {
            return Ok(());
        }
        let number = armed.seen;
        armed.seen += 1;
        if number != armed.plan.fail_at {
            return Ok(());
        }
        armed.failed = Some((op, path.to_path_buf()));
        let errno = match armed.plan.fault {
            Fault::Io => rustix::io::Errno::IO,
            Fault::NoSpace => rustix::io::Errno::NOSPC,
        };
        Err(std::io::Error::from(errno))
    }
}
