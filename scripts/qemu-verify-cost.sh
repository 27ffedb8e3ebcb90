#!/usr/bin/env bash
# Instructions rota-boot spends verifying a 256 KiB image on a Cortex-M4, against bare
# SHA-256 of the same bytes, counted exactly by QEMU (-icount shift=0: one virtual
# nanosecond per instruction; see bootloader/qemu/bench).
# Usage: scripts/qemu-verify-cost.sh [BYTES]   (default 262144)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bytes="${1:-262144}"
cd "$root"

cargo build --quiet --release -p rota-cli
(cd bootloader/qemu && cargo build --quiet --release -p rota-qemu-bench)
rota="${CARGO_TARGET_DIR:-$root/target}/release/rota"
bench="$root/bootloader/qemu/target/thumbv7em-none-eabihf/release/rota-qemu-bench"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 - "$bytes" <<'PY'
import sys, uuid
n = int(sys.argv[1])
open("bench.img", "wb").write(bytes((i * 131 + (i >> 8)) & 0xFF for i in range(n)))
open("ids", "w").write(f"{uuid.UUID(bytes=b'rota-bench-vndr!')} {uuid.UUID(bytes=b'rota-bench-class')}\n")
PY
read -r vendor class < ids
"$rota" keygen --out signer >/dev/null
"$rota" sign --key signer.key --image bench.img --vendor-id "$vendor" --class-id "$class" \
    --sequence 1 --security-version 1 -o bench.suit >/dev/null
python3 -c 'import base64,sys; d=base64.b64decode("".join(l for l in open("signer.pub") if "-----" not in l)); open("bench.key","wb").write(d[-32:])'
qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -monitor none -serial none \
    -icount shift=0 -semihosting-config enable=on,target=native -kernel "$bench"
