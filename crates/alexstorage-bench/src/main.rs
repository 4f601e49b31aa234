//! The comparative benchmark (specified in `docs/BENCHMARKS.md`): AlexStorage against RocksDB,
//! LMDB (heed), redb, fjall, sled and std's in-memory maps, in one process run.
//!
//! ```text
//! alexstorage-bench [--keys 1000000] [--value-size 100] [--dist uniform] [--repeats 3]
//!                   [--engines alexstorage,rocksdb,...] [--workloads get,load,...]
//!                   [--threads 1,2,4] [--sync-threads 1,8] [--out bench-out]
//! ```
//!
//! Every engine gets a fresh directory, its documented recommended settings and the
//! same durability class per row; the settings are written into the report. Requests are
//! drawn from fixed seeds before timing; every read checks every byte of its value, and a
//! wrong or missing value aborts the run. Repeats are interleaved (repeat 1 of every
//! engine, then repeat 2, ...) so that a slow phase of the machine does not land on one
//! engine only; the median is reported. Results go to `--out`: `results.md`,
//! `results.json`, `all.png` and `headline.png`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod chart;
mod data;
mod engines;
mod report;
mod results;
mod sys;
mod workloads;

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use alexstorage_keygen::KeyPattern;
use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::{fill_value, DataSet};
use crate::engines::{Class, EngineKind, SUBJECT};
use crate::results::{Results, Sample, Unit};
use crate::workloads::{Bench, Plan, Streams, Workload};

/// Command-line options.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(
    name = "alexstorage-bench",
    about = "AlexStorage against RocksDB, LMDB, redb, fjall, sled and std's maps",
    args_override_self = true
)]
struct Args {
    /// Keys to load (underscores allowed: 10_000_000).
    #[arg(long, default_value = "1000000", value_parser = parse_count)]
    keys: usize,
    /// Value size in bytes (at least 16).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key distribution: uniform, sequential, lognormal, clustered.
    #[arg(long, default_value = "uniform")]
    dist: String,
    /// Repeats of every workload; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Engines, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Workloads, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Reader thread counts of read-threads.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    threads: Vec<usize>,
    /// Writer thread counts of sync-write.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    sync_threads: Vec<usize>,
    /// Durable writes per sync-write variant.
    #[arg(long, default_value_t = 10_000)]
    sync_writes: usize,
    /// Operations per YCSB workload (default: a fifth of the key count).
    #[arg(long)]
    ycsb_ops: Option<usize>,
    /// Seed of every key and request stream.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory for results.md, results.json and the charts.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Where the engines' stores go (default: OUT/data). Use a disk, not tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Internal: load one engine in this (child) process and print its memory growth.
    #[arg(long, hide = true)]
    memory_probe: Option<String>,
}

fn parse_count(text: &str) -> std::result::Result<usize, String> {
    text.replace('_', "").parse().map_err(|error| format!("{text}: {error}"))
}

const DISTRIBUTIONS: [KeyPattern; 4] =
    [KeyPattern::Uniform, KeyPattern::Sequential, KeyPattern::Lognormal, KeyPattern::Clustered];

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("alexstorage-bench: error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let pattern = DISTRIBUTIONS
        .into_iter()
        .find(|pattern| pattern.name() == args.dist)
        .with_context(|| format!("--dist {}: expected uniform, sequential, lognormal or clustered", args.dist))?;
    let engines = select_engines(&args.engines)?;
    let scratch = args.dir.clone().unwrap_or_else(|| args.out.join("data"));
    if let Some(name) = &args.memory_probe {
        let engine = engines::all().into_iter().find(|engine| engine.name() == name).context("unknown engine")?;
        return memory_probe(engine, &args, pattern, &scratch);
    }
    let workloads = select_workloads(&args.workloads)?;
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let plan = Plan {
        workloads: workloads.clone(),
        read_threads: args.threads.iter().copied().filter(|&threads| threads > 0).collect(),
        sync_threads: args.sync_threads.iter().copied().filter(|&threads| threads > 0).collect(),
        sync_writes: args.sync_writes.max(1),
        scans: (args.keys / 10).clamp(1, 10_000),
        scan_length: 100,
        ycsb_ops: args.ycsb_ops.unwrap_or(args.keys / 5).max(1),
        overwrite_passes: 3,
        txn_threads: vec![1, 4],
        txn_commits: (args.keys / 10).clamp(100, 100_000),
        txn_keys: args.keys.clamp(100, 100_000),
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    clear_dir(&scratch)?;
    let machine = sys::Machine::read(&scratch);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!(
        "alexstorage-bench: {} keys x {} B, {} keys, {} repeats",
        args.keys, args.value_size, args.dist, args.repeats
    );
    println!(
        "machine: {} ({} cpus), {}, stores in {}",
        machine.cpu,
        machine.cpus,
        machine.filesystem,
        scratch.display()
    );

    let started = Instant::now();
    let data = DataSet::new(pattern, args.keys, args.value_size, args.seed)?;
    let streams = Streams::new(&data, &plan);
    // Variants (AlexStorage with compression) run only the workloads their setting
    // changes: no memory probe of their own.
    let probed: Vec<&dyn EngineKind> = engines.iter().copied().filter(|engine| engine.variant_of().is_none()).collect();
    let probes = if workloads.contains(&Workload::Memory) { probed.len() } else { 0 };
    let progress = progress_bar((args.repeats * engines.len() + probes) as u64);
    let mut results = Results::default();
    for repeat in 0..args.repeats {
        for engine in &engines {
            let label = format!("repeat {}/{} {}", repeat + 1, args.repeats, engine.name());
            let step = |step: &str| say(&progress, format!("{label}: {step}"));
            let bench = Bench { data: &data, streams: &streams, plan: &plan, scratch: &scratch, step: &step };
            bench.run(*engine, repeat, &mut results)?;
            progress.inc(1);
        }
    }
    if workloads.contains(&Workload::Memory) {
        for engine in &probed {
            say(&progress, format!("memory: {} (child process)", engine.name()));
            if let Err(error) = memory_rows(*engine, &args, &scratch, &mut results) {
                // Keep the rest of the run: the row says why it is missing.
                let why = format!("memory probe failed: {error:#}");
                for variant in [report::PEAK_GROWTH, report::ANON_GROWTH] {
                    results.not_available("memory", variant, engine.name(), Unit::BytesPerKey, Class::Buffered, &why);
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    clear_dir(&scratch)?;
    std::fs::remove_dir(&scratch).ok();

    let names: Vec<&str> = engines.iter().map(|engine| engine.name()).collect();
    let subject_compacts = engines::all()
        .iter()
        .find(|engine| engine.name() == SUBJECT)
        .is_some_and(|engine| engine.lacks(engines::Feature::Compaction).is_none());
    let goals = report::goals(&results, args.keys, subject_compacts);
    let headline = report::headline_table(&results, &names);
    let goal_table = report::goal_table(&goals);
    let settings: Vec<EngineSettings> = engines
        .iter()
        .map(|engine| EngineSettings {
            engine: engine.name(),
            buffered: engine.settings(Class::Buffered),
            sync: engine.settings(Class::Sync),
            transactions: match engine.lacks(engines::Feature::Transactions) {
                Some(why) => format!("n/a: {why}"),
                None => engine.transaction_settings(),
            },
        })
        .collect();
    let minutes = started.elapsed().as_secs_f64() / 60.0;

    let mut markdown = String::new();
    let _ = writeln!(markdown, "# AlexStorage comparative benchmark\n");
    let _ = writeln!(markdown, "Command: `{command}` ({minutes:.1} min)\n");
    let _ = writeln!(
        markdown,
        "{} keys ({}), {}-byte values, {} repeats (median), seed {}. Machine: {}, {} cpus, {:.0} GiB, \
         kernel {}, {}; {}.\n",
        args.keys,
        args.dist,
        args.value_size,
        args.repeats,
        args.seed,
        machine.cpu,
        machine.cpus,
        machine.memory_bytes as f64 / (1u64 << 30) as f64,
        machine.kernel,
        machine.filesystem,
        machine.rustc
    );
    let crates: Vec<String> = machine.crates.iter().map(|(name, version)| format!("{name} {version}")).collect();
    let _ = writeln!(markdown, "Crates: {}.\n", crates.join(", "));
    let _ = writeln!(markdown, "## Headline (medians)\n\n{headline}");
    let _ = writeln!(markdown, "## Goals of BENCHMARKS.md\n\n{goal_table}");
    let _ = writeln!(markdown, "## Settings and durability classes\n");
    let _ = writeln!(
        markdown,
        "Rows marked Buffered: a write returns once the OS has it (survives kill -9 of the process, not power \
         loss). Rows marked Sync (sync-write): a write returns once it is on stable storage. The txn rows run \
         in the Buffered class, each engine's transactions as the last column says.\n"
    );
    let _ = writeln!(markdown, "| engine | Buffered rows | Sync rows | txn rows |\n|---|---|---|---|");
    for setting in &settings {
        let _ = writeln!(
            markdown,
            "| {} | {} | {} | {} |",
            report::display(setting.engine),
            setting.buffered,
            setting.sync,
            setting.transactions
        );
    }
    let _ = writeln!(markdown, "\n## Every workload\n\n{}", report::workload_tables(&results));
    let markdown_path = args.out.join("results.md");
    std::fs::write(&markdown_path, &markdown).with_context(|| format!("writing {}", markdown_path.display()))?;

    let json = serde_json::json!({
        "command": command,
        "minutes": minutes,
        "args": args,
        "plan": plan,
        "machine": machine,
        "settings": settings,
        "results": results,
        "goals": goals,
    });
    let json_path = args.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;

    let charts = draw_charts(&results, &names, &args.out, args.keys, args.value_size);
    println!("\n{headline}\n{goal_table}");
    println!("wrote {}, {}{}", markdown_path.display(), json_path.display(), charts);
    Ok(())
}

/// The settings of one engine, for the report.
#[derive(Serialize)]
struct EngineSettings {
    engine: &'static str,
    buffered: String,
    sync: String,
    transactions: String,
}

fn select_engines(names: &[String]) -> Result<Vec<&'static dyn EngineKind>> {
    let all = engines::all();
    if names.is_empty() {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for name in names {
        match all.iter().find(|engine| engine.name() == name) {
            Some(engine) => chosen.push(*engine),
            None if name == "rocksdb" => {
                bail!("this build has no RocksDB (built without the `rocksdb` feature: `scripts/bench.sh --quick`)")
            }
            None => {
                let known: Vec<_> = all.iter().map(|engine| engine.name()).collect();
                bail!("unknown engine {name}; known: {}", known.join(", "))
            }
        }
    }
    Ok(chosen)
}

fn select_workloads(ids: &[String]) -> Result<Vec<Workload>> {
    if ids.is_empty() {
        return Ok(Workload::ALL.to_vec());
    }
    ids.iter()
        .map(|id| {
            Workload::from_id(id).with_context(|| {
                let known: Vec<_> = Workload::ALL.iter().map(|workload| workload.id()).collect();
                format!("unknown workload {id}; known: {}", known.join(", "))
            })
        })
        .collect()
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} engine runs  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Shows a step in the progress bar, or as a line when stderr is not a terminal.
fn say(bar: &ProgressBar, message: String) {
    if std::io::stderr().is_terminal() {
        bar.set_message(message);
    } else {
        eprintln!("{message}");
    }
}

fn clear_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("clearing {}", dir.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// What a memory probe prints.
#[derive(Serialize, serde::Deserialize)]
struct MemoryGrowth {
    peak_rss_bytes: u64,
    anon_rss_bytes: u64,
}

/// The child side of `memory`: load every key into a fresh store of `engine` and print
/// how much the peak RSS and the anonymous RSS grew.
fn memory_probe(engine: &dyn EngineKind, args: &Args, pattern: KeyPattern, scratch: &Path) -> Result<()> {
    let data = DataSet::new(pattern, args.keys, args.value_size, args.seed)?;
    let dir = scratch.join(format!("{}-memory", engine.name()));
    clear_dir(&dir)?;
    let anon_before = sys::status_bytes("RssAnon").context("no RssAnon in /proc/self/status")?;
    if !sys::reset_peak_rss() {
        bail!("cannot reset the peak RSS (/proc/self/clear_refs)");
    }
    let peak_before = sys::status_bytes("VmHWM").context("no VmHWM in /proc/self/status")?;
    let store = engine.open(&dir, Class::Buffered)?;
    let mut value = vec![0u8; args.value_size];
    for &key in &data.keys {
        fill_value(&mut value, key, 0);
        store.put(key, &value)?;
    }
    let peak_after = sys::status_bytes("VmHWM").context("no VmHWM")?;
    let anon_after = sys::status_bytes("RssAnon").context("no RssAnon")?;
    let growth = MemoryGrowth {
        peak_rss_bytes: peak_after.saturating_sub(peak_before),
        anon_rss_bytes: anon_after.saturating_sub(anon_before),
    };
    println!("{}", serde_json::to_string(&growth)?);
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The parent side of `memory`: runs the probe in a child process so that every engine
/// starts from the same empty process.
fn memory_rows(engine: &dyn EngineKind, args: &Args, scratch: &Path, results: &mut Results) -> Result<()> {
    let name = engine.name();
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--memory-probe", name, "--dist", &args.dist, "--seed", &args.seed.to_string()])
        .args(["--keys", &args.keys.to_string(), "--value-size", &args.value_size.to_string()])
        .arg("--dir")
        .arg(scratch)
        .output()
        .with_context(|| format!("running the memory probe of {name}"))?;
    if !output.status.success() {
        bail!("memory probe of {name} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let growth: MemoryGrowth = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("memory probe of {name} printed {}", String::from_utf8_lossy(&output.stdout)))?;
    let per_key = |bytes: u64| Sample { value: bytes as f64 / args.keys as f64, ..Sample::default() };
    let class = Class::Buffered;
    results.record("memory", report::PEAK_GROWTH, name, Unit::BytesPerKey, class, per_key(growth.peak_rss_bytes));
    results.record("memory", report::ANON_GROWTH, name, Unit::BytesPerKey, class, per_key(growth.anon_rss_bytes));
    Ok(())
}

/// Draws `all.png` (every workload) and `headline.png`; returns what it wrote, or why not.
fn draw_charts(results: &Results, engines: &[&str], out: &Path, keys: usize, value_size: usize) -> String {
    if let Err(error) = chart::load_font() {
        eprintln!("charts skipped: {error:#}");
        return String::new();
    }
    let title = format!("AlexStorage vs peers: {} keys x {value_size} B (medians)", report::figure(keys as f64));
    let all = chart::panels(results, &results.sections(), engines);
    let headline_sections: Vec<(String, String)> = report::HEADLINE
        .iter()
        .filter(|(workload, variant, _)| results.find(workload, variant, SUBJECT).is_some())
        .map(|(workload, variant, _)| (workload.to_string(), variant.to_string()))
        .collect();
    let headline = chart::panels(results, &headline_sections, engines);
    let mut written = String::new();
    for (file, panels, columns) in [("all.png", &all, 4), ("headline.png", &headline, 3)] {
        let path = out.join(file);
        match chart::draw(&path, panels, columns, &title) {
            Ok(()) => {
                let _ = write!(written, ", {}", path.display());
            }
            Err(error) => eprintln!("chart {} not written: {error:#}", path.display()),
        }
    }
    written
}
