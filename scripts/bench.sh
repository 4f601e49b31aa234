#!/usr/bin/env bash
# The main job of the README: the comparative benchmark (docs/BENCHMARKS.md) at its
# defaults (1M keys, 100-byte values, uniform keys, 3 repeats) against RocksDB,
# LMDB, redb, fjall, sled and std's maps. Installs what the peer engines need to build
# (the first build compiles RocksDB's C++: 25-45 minutes on 2 cores), then runs.
# Results: bench-out/results.md, results.json, all.png, headline.png.
# Extra arguments go to the benchmark, e.g. `--keys 10000000 --repeats 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/alexstorage-target}"
cargo build --release -p alexstorage-bench
exec "$CARGO_TARGET_DIR/release/alexstorage-bench" "$@"
