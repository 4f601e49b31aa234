//! A store whose files hold arbitrary bytes: opening and reading it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let _ = alexstorage::testing::fuzzing::open_arbitrary_store(dir.path(), data);
});
