//! The `alexstorage` binary run as a user would: every command, negative keys, binary
//! values through stdin, column families, scan's bounds, order and escaping, stats as
//! text and JSON, the exit codes (1 for an absent key, 2 for a usage error, 3 for a
//! store error: a locked store, a corrupt one with file and offset), and read-only
//! commands beside a running writer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;

fn alexstorage() -> Command {
    Command::cargo_bin("alexstorage").unwrap()
}

/// Runs the tool with `args`; returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, Vec<u8>, String) {
    let output = alexstorage().args(args).output().unwrap();
    (output.status.code().unwrap(), output.stdout, String::from_utf8(output.stderr).unwrap())
}

fn text(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn put_get_delete_with_negative_keys_and_binary_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = text(&store);
    assert_eq!(run(&["put", store, "-5", "minus five"]).0, 0);
    assert_eq!(run(&["get", store, "-5"]), (0, b"minus five".to_vec(), String::new()));
    // Binary bytes through stdin, byte for byte.
    let binary: Vec<u8> = (0..=255u8).chain([0, 10, 13, 92]).collect();
    alexstorage().args(["put", store, "7", "-"]).write_stdin(binary.clone()).assert().success();
    assert_eq!(run(&["get", store, "7"]).1, binary);
    assert_eq!(run(&["delete", store, "-5"]).0, 0);
    let (code, stdout, stderr) = run(&["get", store, "-5"]);
    assert_eq!((code, stdout.len(), stderr.as_str()), (1, 0, ""), "an absent key: exit 1, nothing printed");
    assert_eq!(run(&["delete", store, "12345"]).0, 0, "deleting an absent key is no error");
    // The extremes of i64.
    assert_eq!(run(&["put", store, "-9223372036854775808", "min"]).0, 0);
    assert_eq!(run(&["get", store, "-9223372036854775808"]).1, b"min");
}

#[test]
fn scan_orders_bounds_limits_reverses_and_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = text(dir.path());
    for key in [-3, 0, 4, 9] {
        assert_eq!(run(&["put", store, &key.to_string(), &format!("v{key}")]).0, 0);
    }
    alexstorage().args(["put", store, "5", "-"]).write_stdin(b"tab\there\\\xff".to_vec()).assert().success();
    let lines = |args: &[&str]| {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        String::from_utf8(stdout).unwrap()
    };
    assert_eq!(lines(&["scan", store]), "-3\tv-3\n0\tv0\n4\tv4\n5\ttab\\x09here\\x5c\\xff\n9\tv9\n");
    assert_eq!(lines(&["scan", store, "--from", "-3", "--to", "5"]), "-3\tv-3\n0\tv0\n4\tv4\n", "--to is exclusive");
    assert_eq!(lines(&["scan", store, "--reverse", "--limit", "2"]), "9\tv9\n5\ttab\\x09here\\x5c\\xff\n");
    assert_eq!(lines(&["scan", store, "--from", "100"]), "");
}

#[test]
fn column_families_are_chosen_with_cf() {
    let dir = tempfile::tempdir().unwrap();
    let store = text(dir.path());
    assert_eq!(run(&["put", store, "1", "in users", "--cf", "users"]).0, 0);
    assert_eq!(run(&["put", store, "1", "in default"]).0, 0);
    assert_eq!(run(&["get", store, "1", "--cf", "users"]).1, b"in users");
    assert_eq!(run(&["get", store, "1"]).1, b"in default");
    assert_eq!(String::from_utf8(run(&["scan", store, "--cf", "users"]).1).unwrap(), "1\tin users\n");
    assert_eq!(run(&["delete", store, "1", "--cf", "users"]).0, 0);
    assert_eq!(run(&["get", store, "1", "--cf", "users"]).0, 1);
    let (code, _, stderr) = run(&["get", store, "1", "--cf", "nobody"]);
    assert_eq!(code, 3, "a family that does not exist: {stderr}");
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[test]
fn stats_verify_compact_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = text(&store);
    for key in 0..50 {
        assert_eq!(run(&["put", store, &key.to_string(), "first"]).0, 0);
        assert_eq!(run(&["put", store, &key.to_string(), "second"]).0, 0);
    }
    let (code, stdout, _) = run(&["stats", store]);
    let stdout = String::from_utf8(stdout).unwrap();
    assert_eq!(code, 0);
    assert!(stdout.lines().any(|line| line == "keys: 50"), "{stdout}");
    // The text leaves out the counters of the command's own open (all zero).
    assert!(!stdout.lines().any(|line| line.starts_with("puts:") || line.starts_with("gets:")), "{stdout}");
    let (code, stdout, _) = run(&["stats", store, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!((code, json["keys"].as_u64(), json["puts"].as_u64()), (0, Some(50), Some(0)));
    let (code, stdout, _) = run(&["verify", store]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stdout));
    let (code, stdout, _) = run(&["compact", store]);
    assert!(code == 0 && String::from_utf8(stdout).unwrap().starts_with("compacted: 50 records"));
    let target = dir.path().join("backup");
    assert_eq!(run(&["backup", store, text(&target)]).0, 0);
    assert_eq!(run(&["get", text(&target), "49"]).1, b"second");
    let (code, _, stderr) = run(&["backup", store, text(&target)]);
    assert_eq!(code, 3, "an existing target is refused: {stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = text(dir.path());
    let long_name = "n".repeat(256);
    for args in [
        vec![],
        vec!["frobnicate", store],
        vec!["get", store],
        vec!["get", store, "not-a-number"],
        vec!["get", store, "99999999999999999999"],
        vec!["put", store, "1"],
        vec!["scan", store, "--limit", "many"],
        vec!["get", store, "1", "--cf", ""],
        vec!["put", store, "1", "x", "--cf", &long_name],
    ] {
        let (code, stdout, _) = run(&args);
        assert_eq!((code, stdout.len()), (2, 0), "{args:?}");
    }
    assert_eq!(run(&["--help"]).0, 0);
    assert_eq!(run(&["--version"]).0, 0);
}

#[test]
fn store_errors_exit_3_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = text(dir.path());
    assert_eq!(run(&["put", store, "1", "one"]).0, 0);
    // Locked: a writer holds the store; writing commands fail, reading ones work.
    let writer = alexstorage::Db::open(dir.path()).unwrap();
    let (code, _, stderr) = run(&["put", store, "2", "two"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("locked") && stderr.lines().count() == 1, "{stderr}");
    writer.put(3, b"three").unwrap();
    writer.flush().unwrap();
    assert_eq!(run(&["get", store, "3"]).1, b"three", "read-only beside the writer");
    assert_eq!(run(&["verify", store]).0, 0);
    drop(writer);
    // Corrupt: a byte of a record flipped; verify names the file and the offset.
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[64 + 30] ^= 0xff; // inside the first record's value
    std::fs::write(&segment, bytes).unwrap();
    let (code, _, stderr) = run(&["verify", store]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains(segment.file_name().unwrap().to_str().unwrap()) && stderr.contains("offset"), "{stderr}");
    // Not a store at all.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
    assert_eq!(run(&["get", text(other.path()), "1"]).0, 3);
}

#[test]
fn values_that_look_like_flags_are_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = text(dir.path());
    for (key, value) in [("1", "-5"), ("2", "-hello"), ("5", "")] {
        let (code, stdout, stderr) = run(&["put", store, key, value]);
        assert_eq!((code, stdout.len()), (0, 0), "put {value:?}: {stderr}");
        assert_eq!(run(&["get", store, key]), (0, value.as_bytes().to_vec(), String::new()), "{value:?}");
    }
    // The help flags stay flags; after `--` they are values too.
    for (key, value) in [("3", "--help"), ("4", "-h")] {
        assert_eq!(run(&["put", store, "--", key, value]).0, 0, "put -- {key} {value}");
        assert_eq!(run(&["get", store, key]), (0, value.as_bytes().to_vec(), String::new()), "{value:?}");
    }
    let (code, help, _) = run(&["put", store, "9", "--help"]);
    assert!(code == 0 && String::from_utf8(help).unwrap().contains("Usage"), "put --help shows the help");
    assert_eq!(run(&["get", store, "9"]).0, 1, "and writes nothing");
    alexstorage().args(["put", store, "6", "-"]).write_stdin(Vec::new()).assert().success();
    assert_eq!(run(&["get", store, "6"]), (0, Vec::new(), String::new()), "an empty value from stdin");
    assert_eq!(run(&["scan", store, "--limit", "0"]), (0, Vec::new(), String::new()));
    let (code, stdout, _) = run(&["scan", store, "--from", "2", "--to", "5", "--reverse"]);
    assert_eq!((code, String::from_utf8(stdout).unwrap().as_str()), (0, "4\t-h\n3\t--help\n2\t-hello\n"));
    assert_eq!(run(&["scan", store, "--from", "5", "--to", "2"]), (0, Vec::new(), String::new()));
}

#[test]
fn only_put_creates_a_store_or_a_family() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for args in [
        vec!["get", text(&missing), "1"],
        vec!["scan", text(&missing)],
        vec!["stats", text(&missing)],
        vec!["verify", text(&missing)],
        vec!["delete", text(&missing), "1"],
        vec!["compact", text(&missing)],
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 3, "{args:?}: {stderr}");
        assert!(!missing.exists(), "{args:?} created the store");
    }
    let (code, _, _) = run(&["backup", text(&missing), text(&dir.path().join("copy"))]);
    assert!(code == 3 && !missing.exists() && !dir.path().join("copy").exists());
    let store = dir.path().join("store");
    assert_eq!(run(&["put", text(&store), "1", "one"]).0, 0);
    assert_eq!(run(&["delete", text(&store), "1", "--cf", "typo"]).0, 0);
    let db = alexstorage::Db::open(&store).unwrap();
    assert!(db.column_families().is_empty(), "delete --cf created a family");
    assert_eq!(db.get(1).unwrap().unwrap(), b"one");
}

/// Reading commands and backups work while another handle holds the store for
/// writing (and writes); writing commands are refused.
#[test]
fn reading_commands_and_backups_work_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let writer = alexstorage::Options::new().segment_size(64 << 10).open(&store).unwrap();
    for key in 0..3000i64 {
        writer.put(key, [7u8; 50]).unwrap();
    }
    writer.compact().unwrap();
    writer.put(-1, b"after the compaction").unwrap();
    writer.flush().unwrap();
    let store = text(&store);
    let (code, stdout, _) = run(&["scan", store, "--limit", "2"]);
    assert_eq!((code, String::from_utf8(stdout).unwrap().lines().count()), (0, 2));
    let (code, stdout, _) = run(&["stats", store, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!((code, json["keys"].as_u64()), (0, Some(3001)));
    let target = dir.path().join("copy");
    let (code, _, stderr) = run(&["backup", store, text(&target)]);
    assert_eq!(code, 0, "{stderr}");
    writer.put(-2, b"after the backup").unwrap();
    drop(writer);
    let copy = alexstorage::Db::open(&target).unwrap();
    assert_eq!(copy.len(), 3001);
    assert_eq!(copy.get(-1).unwrap().unwrap(), b"after the compaction");
    assert_eq!(copy.get(-2).unwrap(), None);
    copy.verify().unwrap();
}

/// `dump | load` round-trips every family and every value byte for byte; a malformed
/// dump fails with its line number and loads nothing past it.
#[test]
fn dump_and_load_round_trip_every_family_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    {
        let db = alexstorage::Db::open(&source).unwrap();
        let all: Vec<u8> = (0..=255u8).collect();
        db.put(i64::MIN, &all).unwrap();
        db.put(i64::MAX, b"").unwrap();
        db.put(0, b"line\nbreak\ttab\\back").unwrap();
        let odd = db.column_family("tab\there \"and\" \\ nl\n").unwrap();
        for key in -300..300i64 {
            odd.put(key, key.to_le_bytes()).unwrap();
        }
        db.column_family("empty").unwrap();
    }
    let dump = alexstorage().args(["dump", text(&source)]).output().unwrap();
    assert!(dump.status.success());
    let target = dir.path().join("target");
    let load = alexstorage().args(["load", text(&target)]).write_stdin(dump.stdout.clone()).output().unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let again = alexstorage().args(["dump", text(&target)]).output().unwrap();
    // `empty` held no entry: its family line is in the dump, and load creates it.
    assert_eq!(String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&dump.stdout));
    let (source, target) = (alexstorage::Db::open(&source).unwrap(), alexstorage::Db::open(&target).unwrap());
    assert_eq!(target.column_families(), source.column_families());
    for name in std::iter::once("default".to_owned()).chain(source.column_families()) {
        let read = |db: &alexstorage::Db| -> Vec<(i64, Vec<u8>)> {
            db.column_family(&name).unwrap().iter().map(|entry| entry.map(|(k, v)| (k, v.to_vec())).unwrap()).collect()
        };
        assert_eq!(read(&target), read(&source), "family {name:?}");
    }
    drop((source, target));
    // Malformed dumps: exit 3 naming the line.
    for (input, line) in [
        (&b"not a dump\n"[..], "line 1"),
        (b"alexstorage-dump 1\n5\tbefore any family\n", "line 2"),
        (b"alexstorage-dump 1\nfamily default\nnot a key\tx\n", "line 3"),
        (b"alexstorage-dump 1\nfamily default\n5\tbad \\xZZ escape\n", "line 3"),
        (b"alexstorage-dump 1\nfamily default\nno tab here\n", "line 3"),
    ] {
        let output =
            alexstorage().args(["load", text(&dir.path().join("bad"))]).write_stdin(input.to_vec()).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(line), "{line}: {stderr}");
    }
}

/// `load --compression` makes a compressed store; `compact` keeps the store's
/// compression unless `--compression` changes it; `get`, `dump` and `verify` read
/// compressed values byte for byte; a bad setting is a usage error.
#[test]
fn compression_is_kept_by_compact_and_set_by_load_or_compact() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let document = |key: i64| format!("{{\"id\":{key},\"status\":\"active\",\"region\":\"eu-west\"}}").repeat(20);
    let mut dump = String::from("alexstorage-dump 1\nfamily default\n");
    for key in 0..50 {
        dump.push_str(&format!("{key}\t{}\n", document(key).replace('\\', "\\\\")));
    }
    dump.push_str("end 50\n");
    let load =
        alexstorage().args(["load", text(&store), "--compression", "zstd:5"]).write_stdin(dump).output().unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));
    let compressed = |expect: bool| {
        let db = alexstorage::Options::new().read_only(true).open(&store).unwrap();
        for key in 0..50 {
            let value = db.get(key).unwrap().unwrap();
            assert_eq!(&*value, document(key).as_bytes());
            assert_eq!(value.is_zero_copy(), !expect, "key {key}");
        }
    };
    compressed(true);
    assert_eq!(run(&["compact", text(&store)]).0, 0);
    compressed(true);
    let (code, stdout, _) = run(&["get", text(&store), "7"]);
    assert_eq!((code, stdout), (0, document(7).into_bytes()));
    assert_eq!(run(&["verify", text(&store)]).0, 0);
    assert_eq!(run(&["compact", text(&store), "--compression", "none"]).0, 0);
    compressed(false);
    assert_eq!(run(&["compact", text(&store), "--compression", "lz4"]).0, 0);
    compressed(true);
    for bad in ["gzip", "zstd:x", "zstd:99"] {
        let (code, _, stderr) = run(&["compact", text(&store), "--compression", bad]);
        assert_eq!(code, 2, "{bad}: {stderr}");
    }
    compressed(true);
}

/// A dump cut short (no trailer, a wrong count, a last line without its line feed),
/// CR LF line ends, keys not written as a dump writes them, and text after the
/// trailer are refused (exit 3, naming the line); input that is no dump creates no
/// store; loading into a store with data merges.
#[test]
fn load_refuses_cut_and_mangled_dumps_and_merges_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let good = "alexstorage-dump 1\nfamily default\n1\tone\n2\ttwo\nend 2\n";
    for (input, line) in [
        ("alexstorage-dump 1\nfamily default\n1\tone\n2\ttwo\n", "trailer"),
        ("alexstorage-dump 1\nfamily default\n1\tone\n2\ttwo\nend 2", "line 5"),
        ("alexstorage-dump 1\nfamily default\n1\tone\n2\ttw", "line 4"),
        ("alexstorage-dump 1\nfamily default\n1\tone\nend 2\n", "line 4"),
        ("alexstorage-dump 1\nfamily default\n1\tone\nend 1\n3\tthree\n", "line 5"),
        ("alexstorage-dump 1\nfamily default\r\n1\tone\r\nend 1\r\n", "line 2"),
        ("alexstorage-dump 1\nfamily default\n+1\tone\nend 1\n", "line 3"),
        ("alexstorage-dump 1\nfamily default\n007\tone\nend 1\n", "line 3"),
        ("alexstorage-dump 1\nfamily default\n1\ta\\x+fb\nend 1\n", "line 3"),
    ] {
        let store = dir.path().join("cut");
        let output = alexstorage().args(["load", text(&store)]).write_stdin(input).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(3), "{input:?}: {stderr}");
        assert!(stderr.contains(line), "{input:?}: {stderr}");
        std::fs::remove_dir_all(&store).ok();
    }
    // Not a dump at all (CR LF from the first line on): no store is created.
    let nothing = dir.path().join("nothing");
    let output = alexstorage().args(["load", text(&nothing)]).write_stdin(good.replace('\n', "\r\n")).output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8(output.stderr).unwrap().contains("CR LF"));
    assert!(!nothing.exists(), "a refused dump created a store");
    assert_eq!(run(&["load", text(&nothing), "--compression", "gzip"]).0, 2);

    // Merging: the dump's keys overwrite, others stay.
    let store = dir.path().join("merge");
    assert_eq!(run(&["put", text(&store), "2", "old"]).0, 0);
    assert_eq!(run(&["put", text(&store), "3", "kept"]).0, 0);
    let output = alexstorage().args(["load", text(&store)]).write_stdin(good).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for (key, value) in [("1", "one"), ("2", "two"), ("3", "kept")] {
        assert_eq!(run(&["get", text(&store), key]).1, value.as_bytes(), "key {key}");
    }
}
