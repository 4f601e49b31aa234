//! Test support, hidden from the docs and outside any stability promise: the harnesses
//! the fuzz targets (`fuzz/`) and their bounded property-test twins share (damaged
//! and arbitrary files; operations against a model with crashes and power cuts), and the
//! on-disk format types that tests use to build and damage store files byte by byte.
//! Programs that use the store have no need of it; its contents may change in any
//! release.

pub mod fuzzing;
pub mod power_cuts;

/// Faults on cue for the I/O seam (`fault-injection` feature): arm a plan, run, disarm.
#[cfg(feature = "fault-injection")]
pub mod faults {
    pub use crate::log::io::faults::{arm, disarm, disarm_in, fired, fired_in, fired_on_thread_in, Fault, Plan};
    pub use crate::log::io::Op;
}

/// The simulated disk for power cuts (`fault-injection` feature): watch a directory,
/// run, then rewrite it into what a power cut could leave.
#[cfg(feature = "fault-injection")]
pub mod disk {
    pub use crate::log::io::power::{watch, Cut, Watched};
}

/// The on-disk format's types and sizes (`docs/FORMAT.md`), for tests that write or
/// damage store files themselves.
pub mod format {
    pub use crate::log::checkpoint::{CHECKPOINT_FILE, CHECKPOINT_HEADER_SIZE};
    pub use crate::log::format::{
        Decoded, RecordHeader, RecordKind, SegmentHeader, StoreHeader, FORMAT_VERSION, RECORD_HEADER_SIZE,
        SEGMENT_COMPACTED, SEGMENT_HEADER_SIZE,
    };
}
