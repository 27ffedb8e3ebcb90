#!/usr/bin/env bash
# The signing workflow a release engineer runs, on a demo image, in a scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p rota-cli
rota="$PWD/target/release/rota"
work="$(mktemp -d "${TMPDIR:-/tmp}/rota-demo.XXXXXX")"
cd "$work"

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
expect_failure() {
    printf '\n\033[1m$ %s\033[0m\n' "$*"
    if "$@"; then echo "demo error: that should have been refused" >&2; exit 1; fi
}

echo "rota signing workflow demo (working in $work)"

# A 256 KiB demo firmware image.
{ yes "rota demo firmware v1" || true; } | head -c 262144 > firmware-v1.bin

show "$rota" keygen --out release
show "$rota" sign --key release.key --image firmware-v1.bin \
    --vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe \
    --class-id 1492af14-2569-5e48-bf42-9b2d51f2ab45 \
    --sequence 1 --security-version 1 \
    --uri https://updates.example.com/firmware-v1.bin \
    -o firmware-v1.suit
show "$rota" inspect firmware-v1.suit
show "$rota" verify --trust-anchor release.pub firmware-v1.suit --image firmware-v1.bin

echo
echo "What a device refuses:"
cp firmware-v1.bin tampered.bin
printf '\x00' | dd of=tampered.bin bs=1 seek=1000 conv=notrunc status=none
expect_failure "$rota" verify --trust-anchor release.pub firmware-v1.suit --image tampered.bin
show "$rota" keygen --out attacker
expect_failure "$rota" verify --trust-anchor attacker.pub firmware-v1.suit

echo
echo "Done: keys, envelope and image are in $work"
