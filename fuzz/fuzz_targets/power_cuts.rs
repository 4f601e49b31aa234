//! Random operations against a model, with clean reopens, process crashes and power
//! cuts (pages past the durable end lost or torn) in between: the store always opens
//! holding a prefix of the writes with every durable one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    alexstorage::testing::power_cuts::run_operations(dir.path(), data);
});
