#!/usr/bin/env bash
# The main job of the README. Today it runs the learned-index benchmark (ALEX against
# BTreeMap and binary search on a sorted Vec) at 1M and 10M keys on four key
# distributions, and writes the tables to bench-out/index.md. The comparative engine
# benchmark of ../shared/BENCHMARKS.md will take its place here once it exists.
# Extra arguments go to the benchmark, e.g. `bash scripts/bench.sh --keys 1000000`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out
cargo bench -p alexstorage --bench index -- --markdown bench-out/index.md "$@"
echo "tables written to bench-out/index.md"
