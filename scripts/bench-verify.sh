#!/usr/bin/env bash
# Time to verify an envelope and its 1 MiB image (`rota verify --image`) as a ratio to
# `sha256sum` of the same file, both measured in this one run, same machine, same cache.
#
# Usage: scripts/bench-verify.sh [RUNS] [SIZE_BYTES]     (defaults: 200 runs, 1 MiB)
# Each command runs RUNS times, interleaved (so drift hits both alike); the median
# wall time of each is reported. Both are whole processes, start-up included.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-200}"
size="${2:-1048576}"

cargo build --release --quiet -p rota-cli
rota="${CARGO_TARGET_DIR:-$PWD/target}/release/rota"
work="$(mktemp -d "${TMPDIR:-/tmp}/rota-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

head -c "$size" /dev/urandom > image.bin
"$rota" keygen --out bench > /dev/null
"$rota" sign --key bench.key --image image.bin \
    --vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe \
    --class-id 1492af14-2569-5e48-bf42-9b2d51f2ab45 \
    --sequence 1 --security-version 1 -o image.suit > /dev/null

now_ns() { date +%s%N; }
declare -a t_verify t_sha
for ((i = 0; i < runs; i++)); do
    start=$(now_ns); "$rota" verify --trust-anchor bench.pub image.suit --image image.bin > /dev/null
    t_verify+=($(( $(now_ns) - start )))
    start=$(now_ns); sha256sum image.bin > /dev/null
    t_sha+=($(( $(now_ns) - start )))
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
m_verify=$(median "${t_verify[@]}")
m_sha=$(median "${t_sha[@]}")
awk -v v="$m_verify" -v s="$m_sha" -v n="$runs" -v b="$size" 'BEGIN {
    printf "image: %d bytes, %d runs each, median wall time per process\n", b, n
    printf "  rota verify --image   %8.3f ms\n", v / 1e6
    printf "  sha256sum             %8.3f ms\n", s / 1e6
    printf "  ratio                 %8.2f x\n", v / s
}'
