#!/usr/bin/env bash
# The test command of the README: formatting, lints, every test in debug, and the
# scale tests (10M keys) in release. Bounded: well under 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests (debug)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
cargo test --workspace --doc

echo "== benchmark smoke run (correctness checks of the benchmark itself)"
cargo bench -p alexstorage --bench index -- --keys 20000 --repeats 1 >/dev/null
cargo bench -p alexstorage --bench engine -- --keys 20000 --repeats 1 >/dev/null

echo "== scale tests (release)"
cargo test --release -p alexstorage --test index_scale
