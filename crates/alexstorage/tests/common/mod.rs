//! Helpers shared by the integration tests (each test binary uses some of them).

#![allow(dead_code)]

pub mod sync_writers;

use std::path::{Path, PathBuf};

/// A value that names its key and version, `len` bytes long.
pub fn versioned_value(key: i64, version: u32, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    let seed = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(version);
    while bytes.len() < len {
        bytes.extend_from_slice(&seed.wrapping_add(bytes.len() as u64).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The segment files of the store in `dir`, in id order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    files.sort();
    files
}

/// Cases per property test: `PROPTEST_CASES` when set (for long runs), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default)
}

/// CRC-32C (Castagnoli), bitwise: the tests' own implementation, independent of the
/// crate's, so that a test that forges a checksum does not trust the code under test.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Runs the ignored test `child` of the current test binary as a child process with
/// `envs`, waits until it prints `READY` (it has opened the store), lets it run for
/// `run`, kills it with SIGKILL, and returns every line it printed.
pub fn run_and_kill(child: &str, envs: &[(&str, String)], run: std::time::Duration) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([child, "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut process = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let stdout = process.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    // Start the clock once the child has recovered the store and begun writing.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|line: &String| line.ends_with("READY")) {
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the child {child} never started ({} lines of output)", lines.len()),
        }
    }
    std::thread::sleep(run);
    process.kill().unwrap();
    process.wait().unwrap();
    reader.join().unwrap();
    lines.extend(receiver.try_iter());
    lines
}

/// Reads `range` forward (`how` 0), backward (1), or alternately from both ends (2),
/// returning the entries in ascending order.
pub fn read_range(range: alexstorage::Range, how: u8) -> Vec<(i64, Vec<u8>)> {
    let mut range = range;
    let owned = |entry: alexstorage::Result<(i64, alexstorage::Value)>| {
        let (key, value) = entry.unwrap();
        (key, value.to_vec())
    };
    match how {
        0 => range.map(owned).collect(),
        1 => {
            let mut entries: Vec<_> = range.rev().map(owned).collect();
            entries.reverse();
            entries
        }
        _ => {
            let (mut front, mut back) = (Vec::new(), Vec::new());
            let mut from_front = true;
            loop {
                let next = if from_front { range.next() } else { range.next_back() };
                match next {
                    None => break,
                    Some(entry) if from_front => front.push(owned(entry)),
                    Some(entry) => back.push(owned(entry)),
                }
                from_front = !from_front;
            }
            assert!(range.next().is_none() && range.next_back().is_none(), "a finished range must stay finished");
            back.reverse();
            front.extend(back);
            front
        }
    }
}
