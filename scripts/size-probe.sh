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
#             RAM and running the probe under qemu-system-arm (mps2-an386, Cortex-M4),
#             for each variant twice: with the normal envelope, and with
#             manifest/testdata/ed25519-envelope-deep.suit (feature `deep`: validly
#             signed, opaque CBOR nested to the limit everywhere rota walks it, the
#             worst case an attacker can send). The larger is the figure to budget for.
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
  # name features flags envelope(normal|deep) -> verify()'s stack bytes; fails unless
  # the probe verified (result=0).
  stack_of() {
    local dir="target/variants/$1-stack" feats="stack-paint${2:+,$2}" out
    if [[ "$4" == deep ]]; then dir="$dir-deep"; feats="$feats,deep"; fi
    # The runner (.cargo/config.toml) starts QEMU with semihosting; the probe exits it.
    if ! out=$(RUSTFLAGS="$3" timeout 300 cargo run --quiet --release \
      --target-dir "$dir" --features "$feats") || [[ "$out" != result=0\ * ]]; then
      echo "$1 ($4): $out" >&2
      return 1
    fi
    sed -n 's/.*verify_stack_bytes=\([0-9]*\).*/\1/p' <<<"$out"
  }
  echo
  echo "stack high-water mark of verify() (painted RAM, qemu-system-arm -M mps2-an386):"
  printf '%-14s %8s %8s\n' variant normal deep
  for v in "${variants[@]}"; do
    IFS='|' read -r name features flags <<<"$v"
    normal=$(stack_of "$name" "$features" "$flags" normal)
    deep=$(stack_of "$name" "$features" "$flags" deep)
    printf '%-14s %8d %8d\n' "$name" "$normal" "$deep"
  done
  echo "(bytes below the caller's stack pointer; deep = ed25519-envelope-deep.suit)"
fi
