//! A valid store with arbitrary damage: opening and reading it never panics, and no
//! read returns bytes other than those written.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    alexstorage::testing::fuzzing::damage_valid_store_checked(dir.path(), data);
});
