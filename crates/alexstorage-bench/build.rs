//! Records the versions of the engines this benchmark links, read from the workspace's
//! Cargo.lock, so that the report states exactly what it measured.

use std::fmt::Write as _;

fn main() {
    // Read at run time: a build script compiled for a checkout elsewhere (a shared
    // target directory) must still find this checkout's lock file.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = format!("{manifest_dir}/../../Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(lock_path).unwrap_or_default();
    let wanted = ["alexstorage", "rocksdb", "librocksdb-sys", "heed", "lmdb-master-sys", "redb", "fjall", "sled"];
    let mut versions = String::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(rest) = line.strip_prefix("name = ") {
            name = Some(rest.trim_matches('"').to_string());
        } else if let (Some(rest), Some(current)) = (line.strip_prefix("version = "), name.take()) {
            if wanted.contains(&current.as_str()) {
                let _ = write!(versions, "{current}={};", rest.trim_matches('"'));
            }
        }
    }
    println!("cargo:rustc-env=BENCH_CRATE_VERSIONS={versions}");
}
