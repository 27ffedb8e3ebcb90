#!/usr/bin/env bash
# The bootloader's power-cut sweep, optimised, with its figures: cut points per geometry
# and wall time. Usage: scripts/power-cut-sweep.sh [TORN_SEEDS]   (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."

export ROTA_SWEEP_TORN_SEEDS="${1:-4}"
cargo test -p rota-boot --release --test power_cut_sweep --no-run
start=$(date +%s.%N)
cargo test -p rota-boot --release --test power_cut_sweep -- --nocapture --test-threads="$(nproc)" 2>&1 |
    grep -E '^(power-cut sweep|test result)'
end=$(date +%s.%N)
printf 'wall time: %.1f s (%s cores, %s torn outcomes per operation)\n' \
    "$(awk "BEGIN { print $end - $start }")" "$(nproc)" "$ROTA_SWEEP_TORN_SEEDS"
