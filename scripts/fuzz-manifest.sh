#!/usr/bin/env bash
# Seeds and runs rota-manifest's fuzz targets (manifest/fuzz, cargo-fuzz + libFuzzer).
#
# Usage: scripts/fuzz-manifest.sh [SECONDS] [TARGET...]
#   SECONDS  time per target (default 300)
#   TARGET   envelope_decode, cose_sign1_decode and/or boot_profile (default: all)
# Environment: ROTA_VECTORS (default: shared/vectors beside the repository),
#              FUZZ_JOBS (parallel libFuzzer jobs per target, default 1).
#
# Seeds (copied into manifest/fuzz/corpus/<target>, which is git-ignored):
#   envelope_decode   every .suit of the draft-37 examples and of libcsuit, and
#                     manifest/testdata/ed25519-envelope.suit;
#   cose_sign1_decode the COSE authentication blocks of those envelopes, and the
#                     COSE_Sign1 messages of the cose-wg examples;
#   boot_profile      each envelope behind a 0 byte, and its manifest behind a 1 byte.
# Crashes land in manifest/fuzz/artifacts/<target>/; replay one with
#   (cd manifest && cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>)
# Needs cargo-fuzz (cargo install cargo-fuzz --locked) and the nightly toolchain, or on
# stable RUSTC_BOOTSTRAP=1 for cargo-fuzz's -Z flags (used when there is no nightly).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-300}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(envelope_decode cose_sign1_decode boot_profile)
vectors="${ROTA_VECTORS:-$root/../shared/vectors}"
fuzz="$root/manifest/fuzz"

mkdir -p "$fuzz/corpus/envelope_decode" "$fuzz/corpus/cose_sign1_decode" "$fuzz/corpus/boot_profile"
envelopes=("$root/manifest/testdata/ed25519-envelope.suit")
if [[ -d "$vectors" ]]; then
  for f in "$vectors"/suit-manifest-draft37/*.suit "$vectors"/libcsuit/*.suit; do
    [[ -f "$f" ]] && envelopes+=("$f")
  done
else
  echo "note: no test vectors at $vectors (set ROTA_VECTORS); seeding with the fixture only" >&2
fi
for f in "${envelopes[@]}"; do
  cp "$f" "$fuzz/corpus/envelope_decode/seed-$(basename "$f")"
done

# The COSE blocks of each envelope's authentication wrapper, and the cose-wg messages.
python3 - "$fuzz/corpus/cose_sign1_decode" "$vectors" "${envelopes[@]}" <<'PY'
import glob, json, os, sys

out, vectors, envelopes = sys.argv[1], sys.argv[2], sys.argv[3:]

def head(b, i):
    """(major, argument, next offset) of the CBOR item at i (definite lengths only)."""
    major, info = b[i] >> 5, b[i] & 31
    i += 1
    if info < 24:
        return major, info, i
    n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return major, int.from_bytes(b[i:i + n], "big"), i + n

def skip(b, i):
    major, arg, i = head(b, i)
    if major in (2, 3):
        return i + arg
    if major == 4:
        for _ in range(arg):
            i = skip(b, i)
    elif major == 5:
        for _ in range(2 * arg):
            i = skip(b, i)
    elif major == 6:
        i = skip(b, i)
    return i

def blocks(b):
    major, arg, i = head(b, 0)
    if major == 6:
        major, arg, i = head(b, i)
    assert major == 5
    for _ in range(arg):
        kmaj, key, i = head(b, i)
        start = i
        i = skip(b, i)
        if kmaj == 0 and key == 2:
            _, n, j = head(b, start)          # the wrapper bstr
            _, count, j = head(b, j)          # its array
            j = skip(b, j)                    # the digest
            for _ in range(count - 1):
                _, n, k = head(b, j)
                yield b[k:k + n]
                j = k + n

n = 0
for path in envelopes:
    try:
        for k, block in enumerate(blocks(open(path, "rb").read())):
            name = f"seed-{os.path.basename(path)}-{k}"
            open(os.path.join(out, name), "wb").write(block)
            n += 1
    except Exception as e:  # a seed we cannot take apart is simply not a seed
        print(f"note: {path}: {e}", file=sys.stderr)
for path in sorted(glob.glob(os.path.join(vectors, "cose-wg", "*", "*.json"))):
    cbor = json.load(open(path)).get("output", {}).get("cbor")
    if cbor:
        open(os.path.join(out, "seed-" + os.path.basename(path) + ".cbor"), "wb").write(
            bytes.fromhex(cbor))
        n += 1
print(f"cose_sign1_decode: {n} seeds", file=sys.stderr)
PY

# boot_profile: mode byte 0 + the envelope, mode byte 1 + its manifest (key 3's bstr content).
python3 - "$fuzz/corpus/boot_profile" "${envelopes[@]}" <<'PY'
import os, sys

out, envelopes = sys.argv[1], sys.argv[2:]

def head(b, i):
    major, info = b[i] >> 5, b[i] & 31
    i += 1
    if info < 24:
        return major, info, i
    n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return major, int.from_bytes(b[i:i + n], "big"), i + n

def manifest(b):
    major, arg, i = head(b, 0)
    if major == 6:
        major, arg, i = head(b, i)
    for _ in range(arg):
        _, key, i = head(b, i)
        _, n, i = head(b, i)          # every envelope member is a bstr
        if key == 3:
            return b[i:i + n]
        i += n

n = 0
for path in envelopes:
    b = open(path, "rb").read()
    name = os.path.basename(path)
    open(os.path.join(out, f"seed-{name}"), "wb").write(b"\x00" + b)
    try:
        open(os.path.join(out, f"seed-{name}-manifest"), "wb").write(b"\x01" + manifest(b))
        n += 1
    except Exception as e:
        print(f"note: {path}: {e}", file=sys.stderr)
print(f"boot_profile: {len(envelopes) + n} seeds", file=sys.stderr)
PY
echo "envelope_decode: ${#envelopes[@]} seeds" >&2

jobs="${FUZZ_JOBS:-1}"
parallel=()
# libFuzzer's -jobs runs workers in the background, logging to fuzz-N.log.
((jobs > 1)) && parallel=(-jobs="$jobs" -workers="$jobs")
if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  cargo=(env RUSTC_BOOTSTRAP=1 cargo)
fi
cd "$root/manifest"
for t in "${targets[@]}"; do
  echo "==> $t for ${seconds}s" >&2
  "${cargo[@]}" fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 "${parallel[@]}"
done
