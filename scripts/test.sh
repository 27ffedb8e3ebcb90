#!/usr/bin/env bash
# Every check rota's CI runs, in the order a failure is cheapest to find.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# The bootloader target: rota-manifest must keep building without std.
if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    step "installing the thumbv7em-none-eabihf target"
    rustup target add thumbv7em-none-eabihf
fi

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests (no_std default features: the bootloader's verify path)"
cargo test -p rota-manifest

step "tests (all crates, all features)"
cargo test --workspace --all-features

step "rota-manifest and rota-boot build for a bare-metal Cortex-M without std or alloc"
cargo build -p rota-manifest -p rota-boot --target thumbv7em-none-eabihf --no-default-features

step "size of the no_std Ed25519 envelope verifier"
scripts/size-probe.sh
