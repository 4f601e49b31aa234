//! `alexstorage`: look inside an AlexStorage store, and change it, without writing a
//! program.
//!
//! ```text
//! alexstorage put     DIR KEY VALUE      # VALUE "-" reads the value's bytes from stdin
//! alexstorage get     DIR KEY            # the value's bytes on stdout; exit 1 if absent
//! alexstorage delete  DIR KEY
//! alexstorage scan    DIR [--from KEY] [--to KEY] [--limit N] [--reverse]
//! alexstorage dump    DIR                # every family's entries (docs/DUMP.md)
//! alexstorage load    DIR [--compression C]   # a dump from stdin into DIR (created if missing)
//! alexstorage stats   DIR [--json]      # text: the store's state; --json: every Stats field
//! alexstorage verify  DIR
//! alexstorage compact DIR [--compression C]   # C: none, lz4, zstd or zstd:LEVEL
//! alexstorage backup  DIR TARGET
//! ```
//!
//! `--cf NAME` picks a column family for put, get, delete and scan. Commands that only
//! read open the store read-only, so they work beside a running writer. Exit codes: 0
//! success, 1 key absent (`get`), 2 usage error, 3 store error (corruption, locked,
//! I/O), with a one-line message on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use alexstorage::{Compression, Db, Options, Range};
use clap::{Parser, Subcommand};

mod dump;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(name = "alexstorage", version, about = "Read, write, scan, verify, compact and back up an AlexStorage store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One command.
#[derive(Subcommand, Debug)]
enum Command {
    /// Sets KEY to VALUE ("-" reads the value's bytes from stdin).
    Put {
        /// The store's directory (created if missing).
        dir: PathBuf,
        /// A decimal i64 key (negative keys work as plain arguments).
        #[arg(allow_negative_numbers = true)]
        key: i64,
        /// The value, or "-" to read its bytes from stdin (any other text, a leading
        /// "-" included, is the value itself).
        #[arg(allow_hyphen_values = true)]
        value: std::ffi::OsString,
        /// The column family (created if missing).
        #[arg(long, value_parser = parse_family)]
        cf: Option<String>,
    },
    /// Prints the value of KEY (its bytes, nothing else); exit 1 if absent.
    Get {
        /// The store's directory.
        dir: PathBuf,
        /// A decimal i64 key.
        #[arg(allow_negative_numbers = true)]
        key: i64,
        /// The column family.
        #[arg(long, value_parser = parse_family)]
        cf: Option<String>,
    },
    /// Deletes KEY (an absent key is no error).
    Delete {
        /// The store's directory.
        dir: PathBuf,
        /// A decimal i64 key.
        #[arg(allow_negative_numbers = true)]
        key: i64,
        /// The column family.
        #[arg(long, value_parser = parse_family)]
        cf: Option<String>,
    },
    /// Prints entries in key order, one a line: KEY, a tab, the value with bytes that
    /// are not printable ASCII (and backslash) written as \xNN.
    Scan {
        /// The store's directory.
        dir: PathBuf,
        /// The first key (inclusive).
        #[arg(long, allow_negative_numbers = true)]
        from: Option<i64>,
        /// The key to stop before (exclusive).
        #[arg(long, allow_negative_numbers = true)]
        to: Option<i64>,
        /// At most this many entries.
        #[arg(long)]
        limit: Option<usize>,
        /// From the highest key down.
        #[arg(long)]
        reverse: bool,
        /// The column family.
        #[arg(long, value_parser = parse_family)]
        cf: Option<String>,
    },
    /// Prints the store's state (keys, bytes, segments, families, recovery); --json adds
    /// the operation counters, which count this command's own open.
    Stats {
        /// The store's directory.
        dir: PathBuf,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads every record and checks every checksum; exit 3 with file and offset on
    /// stderr for the first bad one.
    Verify {
        /// The store's directory.
        dir: PathBuf,
    },
    /// Compacts the store now (with the compression it writes with, or --compression).
    Compact {
        /// The store's directory.
        dir: PathBuf,
        /// Value compression from now on: none, lz4, zstd or zstd:LEVEL. Records
        /// stored another way are rewritten with it (a new zstd level alone rewrites
        /// nothing); without it, the store keeps its setting.
        #[arg(long, value_parser = parse_compression)]
        compression: Option<Compression>,
    },
    /// Writes every family's entries to stdout in the dump format (docs/DUMP.md).
    Dump {
        /// The store's directory.
        dir: PathBuf,
    },
    /// Reads a dump from stdin into DIR (created if missing).
    Load {
        /// The store's directory.
        dir: PathBuf,
        /// Value compression from now on: none, lz4, zstd or zstd:LEVEL; without it, a
        /// new store stores values uncompressed and an existing one keeps its setting.
        #[arg(long, value_parser = parse_compression)]
        compression: Option<Compression>,
    },
    /// Writes a consistent copy of the store to TARGET (which must not exist).
    Backup {
        /// The store's directory.
        dir: PathBuf,
        /// Where the copy goes.
        target: PathBuf,
    },
}

/// How a command ended, short of a store error.
enum Outcome {
    Done,
    Absent,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Absent) => ExitCode::from(1),
        // The reader of the output went away (`| head`): nothing left to say.
        Err(error)
            if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            let message = error.to_string().replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "alexstorage: {message}");
            ExitCode::from(3)
        }
    }
}

/// A store or output error.
type Failure = Box<dyn std::error::Error>;

fn run(command: Command) -> Result<Outcome, Failure> {
    match command {
        Command::Put { dir, key, value, cf } => {
            let value = if value == "-" {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes)?;
                bytes
            } else {
                std::os::unix::ffi::OsStringExt::into_vec(value)
            };
            let db = Db::open(&dir)?;
            match cf {
                Some(name) => db.column_family(&name)?.put(key, &value)?,
                None => db.put(key, &value)?,
            }
            // Durable before the exit code says it is done.
            db.flush()?;
            Ok(Outcome::Done)
        }
        Command::Get { dir, key, cf } => {
            let db = read_only(&dir)?;
            let value = match cf {
                Some(name) => db.column_family(&name)?.get(key)?,
                None => db.get(key)?,
            };
            match value {
                Some(value) => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&value)?;
                    out.flush()?;
                    Ok(Outcome::Done)
                }
                None => Ok(Outcome::Absent),
            }
        }
        Command::Delete { dir, key, cf } => {
            let db = existing(&dir, Options::new())?;
            match cf {
                // A family that does not exist holds no key: nothing to delete (and
                // none to create).
                Some(name) if name != "default" && !db.column_families().contains(&name) => {}
                Some(name) => db.column_family(&name)?.delete(key)?,
                None => db.delete(key)?,
            }
            db.flush()?;
            Ok(Outcome::Done)
        }
        Command::Scan { dir, from, to, limit, reverse, cf } => {
            let db = read_only(&dir)?;
            let lo = from.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
            let hi = to.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let range: Range = match cf {
                Some(name) => db.column_family(&name)?.range((lo, hi)),
                None => db.range((lo, hi)),
            };
            let entries: Box<dyn Iterator<Item = alexstorage::Result<(i64, alexstorage::Value)>>> =
                if reverse { Box::new(range.rev()) } else { Box::new(range) };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for entry in entries.take(limit.unwrap_or(usize::MAX)) {
                let (key, value) = entry?;
                writeln!(out, "{key}\t{}", escape(&value))?;
            }
            out.flush()?;
            Ok(Outcome::Done)
        }
        Command::Stats { dir, json } => {
            let stats = read_only(&dir)?.stats();
            let value = serde_json::to_value(&stats)?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
            } else if let serde_json::Value::Object(fields) = value {
                // The store's state; the operation counters count this process's own
                // (read-only) open, zero, and are left to --json and the service's
                // own `Db::stats`.
                for (name, field) in fields.iter().filter(|(name, _)| !PER_OPEN_COUNTERS.contains(&name.as_str())) {
                    writeln!(out, "{name}: {field}")?;
                }
            }
            Ok(Outcome::Done)
        }
        Command::Verify { dir } => {
            let db = read_only(&dir)?;
            let report = with_progress("verifying", || db.verify())?;
            writeln!(std::io::stdout(), "ok: {} records in {} segments", report.records, report.segments)?;
            Ok(Outcome::Done)
        }
        Command::Compact { dir, compression } => {
            let db = existing(&dir, with_compression(Options::new(), compression))?;
            let stats = with_progress("compacting", || db.compact())?;
            writeln!(
                std::io::stdout(),
                "compacted: {} records, {} bytes written, {} bytes reclaimed",
                stats.records,
                stats.bytes_written,
                stats.bytes_reclaimed
            )?;
            Ok(Outcome::Done)
        }
        Command::Dump { dir } => {
            let db = read_only(&dir)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            // A bar over every family's entries (counted before the walk: a writer
            // beside it may change the total a little).
            let total = std::iter::once(db.len() as u64)
                .chain(
                    db.column_families().iter().filter_map(|name| db.column_family(name).ok()).map(|f| f.len() as u64),
                )
                .sum();
            // Not over the dump itself, when stdout is the same terminal.
            let bar = match std::io::stdout().is_terminal() {
                true => indicatif::ProgressBar::hidden(),
                false => progress_bar("dumping", Some(total)),
            };
            let entries = dump::write(&db, &mut out, &bar);
            bar.finish_and_clear();
            let entries = entries?;
            out.flush()?;
            drop(out);
            if std::io::stderr().is_terminal() {
                let _ = writeln!(std::io::stderr(), "dumped {entries} entries");
            }
            Ok(Outcome::Done)
        }
        Command::Load { dir, compression } => {
            // The header first: input that is no dump creates no store.
            let mut input = std::io::BufReader::new(std::io::stdin().lock());
            dump::read_header(&mut input)?;
            let db = with_compression(Options::new(), compression).open(&dir)?;
            let bar = progress_bar("loading", None);
            let entries = dump::read(&db, input, &bar);
            bar.finish_and_clear();
            let entries = entries?;
            db.flush()?;
            if std::io::stderr().is_terminal() {
                let _ = writeln!(std::io::stderr(), "loaded {entries} entries");
            }
            Ok(Outcome::Done)
        }
        Command::Backup { dir, target } => {
            // Read-only: a backup works beside the store's running writer.
            let db = read_only(&dir)?;
            let stats = with_progress("backing up", || db.backup_with_stats(&target))?;
            writeln!(
                std::io::stdout(),
                "backed up to {}: {} segments linked, {} copied",
                target.display(),
                stats.segments_linked,
                stats.segments_copied
            )?;
            Ok(Outcome::Done)
        }
    }
}

/// Opens the existing store at `dir` for writing with `options` (never creating one:
/// only `put` and `load` do).
fn existing(dir: &Path, options: Options) -> Result<Db, Failure> {
    if !dir.join("ALEXSTORAGE").is_file() {
        return Err(format!("no store at {}", dir.display()).into());
    }
    Ok(options.open(dir)?)
}

/// `options` with `compression`, if one was given (otherwise the store's own).
fn with_compression(options: Options, compression: Option<Compression>) -> Options {
    match compression {
        Some(compression) => options.compression(compression),
        None => options,
    }
}

/// Parses `none`, `lz4`, `zstd` (level 3) or `zstd:LEVEL`.
fn parse_compression(text: &str) -> Result<Compression, String> {
    match text {
        "none" => Ok(Compression::None),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd(3)),
        _ => match text.strip_prefix("zstd:").map(str::parse::<i32>) {
            Some(Ok(level)) if (-131_072..=22).contains(&level) => Ok(Compression::Zstd(level)),
            _ => Err(format!("{text:?}: expected none, lz4, zstd or zstd:LEVEL (-131072 to 22)")),
        },
    }
}

/// Opens the store at `dir` read-only (beside a running writer, if any).
fn read_only(dir: &Path) -> alexstorage::Result<Db> {
    Options::new().read_only(true).open(dir)
}

/// `Stats` fields that count operations since the store was opened: in a `stats`
/// command, this process's own read-only open (all zero).
const PER_OPEN_COUNTERS: &[&str] = &[
    "puts",
    "deletes",
    "batches",
    "batch_writes",
    "bytes_written",
    "gets",
    "ranges",
    "bytes_read",
    "transactions_committed",
    "transaction_conflicts",
    "transaction_errors",
    "sync_write_errors",
    "write_stalls",
    "write_stall_micros",
    "sync_write_latency",
    "compaction_duration",
    "compactions",
    "compaction_bytes_written",
    "compaction_bytes_reclaimed",
    "syncs",
    "sync_writes",
    "checkpoints",
    "snapshots",
    "retained_versions",
    "unsynced_bytes",
    "writes_refused",
];

/// A column family name as `--cf` takes it: 1 to 255 bytes.
fn parse_family(name: &str) -> Result<String, String> {
    match name.len() {
        1..=255 => Ok(name.to_owned()),
        _ => Err(format!("a column family name has 1 to 255 bytes, not {}", name.len())),
    }
}

/// A progress bar on stderr when it is a terminal (hidden otherwise): over `total`
/// items with the time left, or, without a total, a spinner counting them.
fn progress_bar(what: &str, total: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => {
            (indicatif::ProgressBar::new(total), "{msg} [{bar:40}] {human_pos}/{human_len} entries, {eta} left")
        }
        None => (indicatif::ProgressBar::new_spinner(), "{spinner} {msg}: {human_pos} entries"),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Runs `work`, with a spinner on stderr while it runs if stderr is a terminal.
fn with_progress<T>(what: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(what.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = work();
    spinner.finish_and_clear();
    result
}

/// A value as `scan` (and `dump`) prints it: printable ASCII as it is, every other
/// byte (and the backslash) as `\xNN`.
fn escape(value: &[u8]) -> String {
    let mut text = String::with_capacity(value.len());
    for &byte in value {
        if (0x20..0x7f).contains(&byte) && byte != b'\\' {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_escapes_what_is_not_printable_ascii() {
        assert_eq!(escape(b"plain text ~"), "plain text ~");
        assert_eq!(escape(b"a\\b\tc\n\x00\xff"), "a\\x5cb\\x09c\\x0a\\x00\\xff");
    }
}
