#!/usr/bin/env bash
# Flash and static RAM of the bootloader firmware for QEMU mps2-an386 (Cortex-M4), as
# built for release (opt-level "z", LTO, panic=abort; bootloader/qemu/.cargo/config.toml).
# Flash = .vector_table + .text + .rodata + .data; static RAM = .data + .bss.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/bootloader/qemu"
cargo build --quiet --release -p rota-qemu-boot
sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
size="$sysroot/lib/rustlib/$host/bin/llvm-size"
[[ -x "$size" ]] || rustup component add llvm-tools
"$size" -A target/thumbv7em-none-eabihf/release/rota-qemu-boot | awk '
  $1 == ".vector_table" { v = $2 } $1 == ".text" { t = $2 } $1 == ".rodata" { r = $2 }
  $1 == ".data" { d = $2 } $1 == ".bss" { b = $2 }
  END {
    printf ".vector_table %6d\n.text         %6d\n.rodata       %6d\n.data         %6d\n.bss          %6d\n", v, t, r, d, b
    printf "flash (.text + .rodata + .data): %d bytes (%.1f KiB; with the vector table %d)\n", t + r + d, (t + r + d) / 1024, v + t + r + d
    printf "static RAM (.data + .bss): %d bytes; the stack is measured by scripts/qemu-verify-cost.sh\n", d + b
  }'
