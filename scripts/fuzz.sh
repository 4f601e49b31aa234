#!/usr/bin/env bash
# Coverage-guided fuzzing of the targets in fuzz/ with cargo-fuzz (libFuzzer):
#   open_arbitrary  stores whose files hold arbitrary bytes
#   damage_store    valid stores with arbitrary damage
#   power_cuts      operations against a model with crashes and power cuts
# Each runs for SECONDS (default 60) from the committed seed corpus in fuzz/corpus/
# (new inputs go to a scratch directory, not into the repository). A finding (a panic,
# a broken contract, a sanitizer report) fails the script and leaves its input in
# fuzz/artifacts/. Needs a nightly toolchain; without one it says so and skips.
#   bash scripts/fuzz.sh 600    # ten minutes a target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

toolchain=""
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain="+nightly"
else
    echo "fuzz: no nightly toolchain on this machine; coverage-guided fuzzing skipped (the property-test twins in crates/alexstorage/tests/ still ran)"
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz >/dev/null 2>&1 || {
        echo "fuzz: cargo-fuzz could not be installed; coverage-guided fuzzing skipped"
        exit 0
    }
fi
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-$HOME/.cache/alexstorage-fuzz-target}"
cargo $toolchain fuzz build --fuzz-dir fuzz >/dev/null
for target in open_arbitrary damage_store power_cuts; do
    scratch="$(mktemp -d)"
    log="$(mktemp)"
    if ! cargo $toolchain fuzz run --fuzz-dir fuzz "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)"
        exit 1
    fi
    runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)"
    echo "fuzz: $target: ${runs:-done}, no finding"
    rm -rf "$scratch" "$log"
done
