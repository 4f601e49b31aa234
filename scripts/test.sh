#!/usr/bin/env bash
# The test command of the README: formatting, lints, every test in debug, the scale
# tests (10M keys) in release, and the comparative benchmark built and run on 10,000
# keys so that its correctness checks run. Bounded: well under 20 minutes on 2 cores
# once RocksDB's C++ is built (the first build on a machine adds 25-45 minutes).
# The benchmark crate is only ever built in release: a debug build would compile
# RocksDB's C++ a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same target directory as scripts/bench.sh (and .ci/run): RocksDB's C++ is built
# once per machine, whichever of the README's two commands runs first.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/alexstorage-target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy -p alexstorage -p alexstorage-keygen -p alexstorage-cli -p alexstorage-raft -p alexstorage-node --all-targets -- -D warnings

echo "== tests (debug)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p alexstorage -p alexstorage-keygen -p alexstorage-cli -p alexstorage-raft -p alexstorage-node --no-fail-fast
else
    cargo test -p alexstorage -p alexstorage-keygen -p alexstorage-cli -p alexstorage-raft -p alexstorage-node --no-fail-fast
fi
cargo test -p alexstorage -p alexstorage-keygen -p alexstorage-raft -p alexstorage-node --doc
RUSTDOCFLAGS="-D warnings" cargo doc -p alexstorage -p alexstorage-raft -p alexstorage-node --no-deps --quiet

echo "== benchmark smoke run (correctness checks of the benchmark itself)"
cargo bench -p alexstorage --bench index -- --keys 20000 --repeats 1 >/dev/null
cargo bench -p alexstorage --bench engine -- --keys 20000 --repeats 1 >/dev/null
cargo bench -p alexstorage --bench compression -- --keys 20000 --repeats 1 >/dev/null
cargo bench -p alexstorage-node --bench replication -- --writes 400 --clients 1,8 >/dev/null

echo "== model check of the lock-free publication protocol (loom)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test --release -p alexstorage --test loom_publish

echo "== scale tests (release)"
cargo test --release -p alexstorage --test index_scale

echo "== stress: threads against an oracle for a minute (release)"
ALEXSTORAGE_STRESS_SECONDS=60 cargo test --release -p alexstorage --test stress threads_against_an_oracle -- --nocapture

echo "== coverage-guided fuzzing (cargo-fuzz, 60 s a target)"
bash scripts/fuzz.sh 60

echo "== comparative benchmark (release): lints, unit tests, a run on 10,000 keys"
bash scripts/deps.sh
cargo clippy --release -p alexstorage-bench --all-targets -- -D warnings
cargo clippy --release -p alexstorage-bench --no-default-features --all-targets -- -D warnings
cargo test --release -p alexstorage-bench
bench_out="$(mktemp -d)"
cargo run --release -p alexstorage-bench -- --keys 10000 --repeats 1 --sync-writes 400 --out "$bench_out" >/dev/null
test -s "$bench_out/results.json" && test -s "$bench_out/results.md"
rm -rf "$bench_out"
