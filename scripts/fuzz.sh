#!/usr/bin/env bash
# Run each cargo-fuzz target for FUZZ_SECONDS (default 25). Installs cargo-fuzz when missing.
# cargo-fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-25}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install -q cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in parse pcap rules; do
    echo "fuzzing $target for ${seconds}s"
    # The first corpus folder collects what the fuzzer finds; the second holds committed seeds.
    mkdir -p "rust/fuzz/corpus/$target"
    if ! cargo fuzz run --fuzz-dir rust/fuzz "$target" "rust/fuzz/corpus/$target" \
        "rust/fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed; the crashing input is under rust/fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E "^Done|stat::number_of_executed_units" "$log" || true
done
