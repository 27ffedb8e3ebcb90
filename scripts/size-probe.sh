#!/usr/bin/env bash
# Flash and RAM cost of rota-manifest's no_std decode-and-verify path on a Cortex-M4.
#
# Builds manifest/size-probe (thumbv7em-none-eabihf, opt-level "z", LTO, panic=abort),
# which verifies manifest/testdata/ed25519-envelope.suit exactly as the bootloader
# will, in four variants, and prints .text/.rodata/.data/.bss of each:
#   default       ed25519-dalek without precomputed tables, sha2 as shipped (unrolled)
#   sha2-compact  the same with RUSTFLAGS='--cfg sha2_backend_soft="compact"' (rolled
#                 SHA-256/SHA-512 round loops)
#   fast          ed25519-dalek `fast` (precomputed tables), sha2 as shipped
#   fast+compact  both
# The test envelope and image live in a `.fixture` section (see memory.x) and are not
# counted in .rodata: a real bootloader reads them from a flash slot.
#
# Usage: scripts/size-probe.sh [--stack]
#   --stack   also measure the stack high-water mark of the verification by painting
#             RAM and running the probe under qemu-system-arm (mps2-an386, Cortex-M4).
#
# Needs: rustup target thumbv7em-none-eabihf; llvm-size (rustup's llvm-tools, the
# system's, or arm-none-eabi-size). Regenerate the fixture with
#   cargo run --manifest-path manifest/size-probe/fixture/Cargo.toml
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
probe="$root/manifest/size-probe"
target=thumbv7em-none-eabihf
stack=0
[[ "${1:-}" == "--stack" ]] && stack=1

size_tool() {
  local sysroot host
  sysroot="$(rustc --print sysroot)"
  host="$(rustc -vV | sed -n 's/^host: //p')"
  for t in "$sysroot/lib/rustlib/$host/bin/llvm-size" llvm-size arm-none-eabi-size; do
    if command -v "$t" >/dev/null 2>&1; then echo "$t"; return; fi
  done
  # None found: fetch rustup's own copy once, then use it.
  if rustup component add llvm-tools >&2 && [[ -x "$sysroot/lib/rustlib/$host/bin/llvm-size" ]]; then
    echo "$sysroot/lib/rustlib/$host/bin/llvm-size"; return
  fi
  echo "no llvm-size: rustup component add llvm-tools, or install llvm / binutils-arm-none-eabi" >&2
  exit 1
}
SIZE="$(size_tool)"

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  rustup target add "$target"
fi

compact='--cfg sha2_backend_soft="compact"'
# name | cargo features | RUSTFLAGS
variants=(
  "default||"
  "sha2-compact||$compact"
  "fast|fast|"
  "fast+compact|fast|$compact"
)

section() { # elf name -> size in bytes (0 if absent)
  "$SIZE" -A "$1" | awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'
}

cd "$probe"
printf '%-14s %8s %8s %6s %6s %14s %10s\n' variant .text .rodata .data .bss .text+.rodata .fixture
for v in "${variants[@]}"; do
  IFS='|' read -r name features flags <<<"$v"
  dir="target/variants/$name"
  RUSTFLAGS="$flags" cargo build --quiet --release --target-dir "$dir" \
    ${features:+--features "$features"}
  elf="$dir/$target/release/rota-size-probe"
  text=$(section "$elf" .text); rodata=$(section "$elf" .rodata)
  data=$(section "$elf" .data); bss=$(section "$elf" .bss)
  fixture=$(section "$elf" .fixture)
  printf '%-14s %8d %8d %6d %6d %14d %10d\n' "$name" "$text" "$rodata" "$data" "$bss" \
    $((text + rodata)) "$fixture"
done
echo "(bytes; .vector_table adds 1024 to flash in every variant; .fixture = test envelope + 4 KiB image, not code)"

if (( stack )); then
  if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "--stack needs qemu-system-arm (apt-get install qemu-system-arm)" >&2
    exit 1
  fi
  echo
  echo "stack high-water mark (painted RAM, qemu-system-arm -M mps2-an386):"
  for v in "${variants[@]}"; do
    IFS='|' read -r name features flags <<<"$v"
    printf '%-14s ' "$name"
    # The runner (.cargo/config.toml) starts QEMU with semihosting; the probe exits it.
    RUSTFLAGS="$flags" timeout 300 cargo run --quiet --release \
      --target-dir "target/variants/$name-stack" --features "stack-paint${features:+,$features}"
  done
fi
