//! `alexstorage-node`: runs one member of a replicated AlexStorage store.
//!
//! ```text
//! alexstorage-node --id 1 --addr 127.0.0.1:21001 --dir data/1
//! ```
//! It prints `alexstorage-node <id> listening on <addr>` once it serves, and stops
//! cleanly on SIGINT or SIGTERM (its store closed, everything acknowledged durable; a
//! signal while it stops ends it at once). It exits with status 1 if openraft stops on an
//! error of its own (a failed write to the store, for one).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use alexstorage_node::{raft_config, Node, NodeConfig};
use clap::Parser;

/// Runs one member of a replicated AlexStorage store (openraft over HTTP).
#[derive(Debug, Parser)]
#[command(name = "alexstorage-node", version)]
struct Args {
    /// This member's id (unique in the cluster, never reused for another store).
    #[arg(long)]
    id: u64,
    /// The address to listen on and to be reached at, host:port.
    #[arg(long)]
    addr: String,
    /// The store's directory (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// A snapshot of the state machine every this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Log entries kept behind a snapshot for members that lag a little.
    #[arg(long, default_value_t = 1_000)]
    keep_logs: u64,
    /// Heartbeat interval, in milliseconds (also the time an append to another member
    /// may take before it is sent again).
    #[arg(long, default_value_t = 150)]
    heartbeat_ms: u64,
    /// The shortest election timeout, in milliseconds (the longest is twice it).
    #[arg(long, default_value_t = 750)]
    election_timeout_ms: u64,
    /// Stop when standard input reaches its end (for a supervisor that holds the
    /// other end of a pipe: the member stops with it).
    #[arg(long)]
    stop_on_stdin_eof: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("alexstorage-node: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("alexstorage-node: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut raft = raft_config(args.snapshot_every, args.keep_logs);
    raft.heartbeat_interval = args.heartbeat_ms;
    raft.election_timeout_min = args.election_timeout_ms;
    raft.election_timeout_max = args.election_timeout_ms.saturating_mul(2);
    let node = Node::start(NodeConfig { id: args.id, addr: args.addr, dir: args.dir, raft }).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "alexstorage-node {} listening on {}", args.id, node.local_addr())?;
        out.flush()?;
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let stdin_closed = stdin_eof(args.stop_on_stdin_eof);
    let failed = tokio::select! {
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
        _ = stdin_closed => None,
        error = node.failed() => Some(error),
    };
    // A signal while stopping ends the process at once (128 + the signal's number).
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = interrupt.recv() => 130,
            _ = terminate.recv() => 143,
        };
        eprintln!("alexstorage-node: ended by a signal while stopping");
        std::process::exit(code);
    });
    node.stop().await?;
    match failed {
        Some(error) => Err(format!("openraft stopped: {error}").into()),
        None => Ok(()),
    }
}

/// Resolves when standard input reaches its end, if `watch`; never otherwise.
async fn stdin_eof(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (closed, eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let _ = eof.await;
}
