//! Random operations against a model (writes, flushes, compactions, snapshots, faults
//! inside any step), with clean reopens, process crashes and power cuts of the
//! simulated disk in between: the store always opens holding a prefix of the writes
//! with every durable one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    alexstorage::testing::power_cuts::run_operations(dir.path(), data);
});
