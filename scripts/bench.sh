#!/usr/bin/env bash
# The main job of the README. Until the comparative benchmark of ../shared/BENCHMARKS.md
# exists (it will take this place), it runs the learned-index benchmark (ALEX against
# BTreeMap and binary search on a sorted Vec) at 1M and 10M keys on four key
# distributions, then the store benchmark at 1M keys x 100 B, and writes the tables to
# bench-out/. Extra arguments go to the index benchmark, e.g. `--keys 1000000`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out
cargo bench -p alexstorage --bench index -- --markdown bench-out/index.md "$@"
cargo bench -p alexstorage --bench engine -- --keys 1000000 --markdown bench-out/engine.md
echo "tables written to bench-out/index.md and bench-out/engine.md"
