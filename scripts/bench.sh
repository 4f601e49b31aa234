#!/usr/bin/env bash
# The main job of the README: the comparative benchmark (docs/BENCHMARKS.md) at its
# defaults (1M keys, 100-byte values, uniform keys, 3 repeats) against RocksDB,
# LMDB, redb, fjall, sled and std's maps. Installs what the peer engines need to build
# (the first build compiles RocksDB's C++: 15-45 minutes on 2 cores), then runs.
# Results: bench-out/results.md, results.json, all.png, headline.png.
# Extra arguments go to the benchmark, e.g. `--keys 10000000 --repeats 1`.
#
#   bash scripts/bench.sh --quick [ARGS]
# is a first look that needs no C++ build: the benchmark built without RocksDB, run on
# 100,000 keys, one repeat, against LMDB, redb, fjall, sled and std's maps (results in
# bench-out-quick/; ARGS given after --quick take the place of these, e.g. `--keys 1000000`).
#
# Both this script and scripts/test.sh build in one target directory
# (~/.cache/alexstorage-target unless CARGO_TARGET_DIR is set), so RocksDB's C++ is
# compiled once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/alexstorage-target}"
if [ "${1:-}" = "--quick" ]; then
    shift
    bash scripts/deps.sh --fonts-only
    cargo build --release -p alexstorage-bench --no-default-features
    exec "$CARGO_TARGET_DIR/release/alexstorage-bench" --keys 100000 --repeats 1 \
        --engines alexstorage,lmdb,redb,fjall,sled,hashmap,btreemap --out bench-out-quick "$@"
fi
bash scripts/deps.sh
cargo build --release -p alexstorage-bench
exec "$CARGO_TARGET_DIR/release/alexstorage-bench" "$@"
