#!/usr/bin/env bash
# Seeds and runs the fuzz targets of fuzz/ (cargo-fuzz + libFuzzer): rota-tuf's metadata
# parsers and trusted metadata set, device certificates and signed requests
# (rota-protocol), and the server's inputs (API bodies, TUF metadata uploads).
# rota-manifest's own targets are scripts/fuzz-manifest.sh.
#
# Usage: scripts/fuzz.sh [TARGET...]        (default: every target, one after another)
# Environment:
#   FUZZ_RUNS     executions per target (default 100000; 0 with FUZZ_SECONDS)
#   FUZZ_SECONDS  seconds per target instead of a count
#   FUZZ_ARGS     more libFuzzer flags (for example -max_len=65536)
#   FUZZ_SEED_ONLY=1  write the seeds and stop
#   ROTA_VECTORS  test vectors (default: shared/vectors beside the repository)
#   CARGO_TARGET_DIR  default fuzz/target (fuzz builds share nothing with normal builds)
#
# Seeds (copied into fuzz/corpus/<target>, which is git-ignored):
#   tuf_metadata, tuf_trusted_set  the static TUF repositories of the vectors
#                  (tuf-conformance-static), rota-tuf's test data and fuzz/seeds/tuf;
#   device_certificate, signed_request, api_json, repo_upload  valid inputs made here
#                  with the harnesses' fixed keys (python3 `cryptography` when present).
# Crashes land in fuzz/artifacts/<target>/; replay one with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> artifacts/<target>/<file>)
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). Without a nightly toolchain,
# cargo-fuzz's -Z flags run on stable through RUSTC_BOOTSTRAP=1; the targets build
# without a sanitizer (`-s none`: the code under test is safe Rust, and libFuzzer's
# coverage and crash detection need none), with debug assertions (overflow checks) on.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
vectors="${ROTA_VECTORS:-$root/../shared/vectors}"
all=(tuf_metadata tuf_trusted_set device_certificate signed_request api_json repo_upload)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$fuzz/target}"

if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  cargo=(env RUSTC_BOOTSTRAP=1 cargo)
fi
command -v cargo-fuzz >/dev/null || {
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
}

python3 - "$fuzz" "$vectors" "$root" <<'PY'
import glob, hashlib, json, os, sys

fuzz, vectors, root = sys.argv[1:]
corpus = lambda t: os.makedirs(os.path.join(fuzz, "corpus", t), exist_ok=True) or os.path.join(fuzz, "corpus", t)

def put(target, name, data):
    with open(os.path.join(corpus(target), "seed-" + name), "wb") as f:
        f.write(data)

# TUF metadata: the static vector repositories, rota-tuf's test data, the harness's fixture.
tuf = sorted(glob.glob(os.path.join(vectors, "tuf-conformance-static", "**", "*.json"), recursive=True))
tuf += sorted(glob.glob(os.path.join(root, "updater-agent", "tuf", "tests", "data", "*.json")))
fixture = os.path.join(fuzz, "seeds", "tuf")
steps = {"root": (0, 1), "timestamp": (2, 3), "snapshot": (4, 5), "targets": (6, 7)}
n = 0
for path in tuf + sorted(glob.glob(os.path.join(fixture, "*.json"))):
    data = open(path, "rb").read()
    name = "_".join(path.split(os.sep)[-3:])
    put("tuf_metadata", name, data)
    try:
        kind = json.loads(data)["signed"]["_type"]
    except Exception:
        continue
    for step in steps.get(kind, ()):
        put("tuf_trusted_set", f"{step}-{name}", bytes([step]) + data)
    n += 1
# Signed by the harness (byte | 8): each step's fixture as the `signed` object.
for step, file in enumerate(["root", "root-2", "timestamp", "timestamp-2", "snapshot",
                             "snapshot", "targets", "role1"]):
    put("tuf_trusted_set", f"signed-{step}-{file}",
        bytes([step | 8]) + open(os.path.join(fixture, file + ".json"), "rb").read())
print(f"tuf_metadata, tuf_trusted_set: {n} metadata files, 8 fixture steps", file=sys.stderr)

# The harnesses' fixed keys (their Ed25519 seeds).
NOW_S = 1_893_456_000
CLASS = "1492af14-2569-5e48-bf42-9b2d51f2ab45"
try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    def key(seed):
        k = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return k, raw
except ImportError:
    key = None
    print("note: no python3 cryptography; device_certificate and signed_request get "
          "harness-signed seeds only", file=sys.stderr)
import base64
b64 = lambda b: base64.b64encode(b).decode()

# device_certificate: a body the harness signs (odd byte), and a whole enrolment (even byte).
ca_id = device_pub = None
if key:
    ca, ca_pub = key(3)
    _, device_pub = key(10)
    ca_id = hashlib.sha256(ca_pub).hexdigest()
body = json.dumps({
    "version": 1, "device_id": "sensor-01", "public_key": (device_pub or bytes(32)).hex(),
    "class_id": CLASS, "tags": ["region:eu", "ring-0"], "issued_at": NOW_S,
    "issuer": ca_id or "00" * 32}, separators=(",", ":")).encode()
put("device_certificate", "body", b"\x01" + body)
if key:
    sig = ca.sign(b"rota-device-cert-v1\0" + body)
    enroll = json.dumps({"certificate": {"body": b64(body), "signature": b64(sig)}}).encode()
    put("device_certificate", "enroll", b"\x00" + enroll)
    put("api_json", "enroll", b"\x01" + enroll)
    put("api_json", "register", b"\x03" + enroll)

# signed_request: device, timestamp, nonce, signature, method, path, body.
report = json.dumps({"event_id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "kind": "confirmed",
                     "version": 3, "rollout_id": "r1"}).encode()
now_ms = str(NOW_S * 1000).encode()
put("signed_request", "signed-report",
    b"\x01sensor-01\n" + now_ms + b"\n\n\nPOST\n/api/v1/device/report\n" + report)
put("signed_request", "signed-checkin",
    b"\x01sensor-01\n" + now_ms + b"\n\n\nGET\n/api/v1/device/checkin?version=3&slot=confirmed\n")
if key:
    device, _ = key(5)
    nonce = "00112233445566778899aabbccddeeff"
    path = "/api/v1/device/report"
    msg = ("rota-request-v1\nPOST\n%s\n%s\n%s\n%s" % (
        path, now_ms.decode(), nonce, hashlib.sha256(report).hexdigest())).encode()
    put("signed_request", "report", b"\x00" + b"\n".join([
        b"sensor-01", now_ms, nonce.encode(), b64(device.sign(msg)).encode(), b"POST",
        path.encode(), report]))

# api_json: one valid value of each type the server decodes.
for which, name, value in [
    (0, "report", report),
    (2, "token", b'{"name":"ci publisher","role":"publisher"}'),
    (4, "state", b'{"state":"suspended"}'),
    (5, "rollout", json.dumps({
        "release_id": "rel-1", "selector": {"class_id": CLASS, "tags": ["ring-0"], "versions": [2]},
        "stages": [{"count": 5}, {"percent": 10}, {"percent": 100}], "success_gate": 0.95,
        "failure_threshold": 0.05, "min_sample": 20, "device_timeout_s": 3600, "soak_s": 600,
        "max_retries": 1}).encode()),
    (6, "selector", json.dumps({"class_id": CLASS, "tags": ["a", "b:c"], "versions": [1, 2]}).encode()),
    (7, "checkin", b"version=3&slot=trial&last=reverted"),
]:
    put("api_json", name, bytes([which]) + value)

# repo_upload: the `signed` objects of a root and targets over the harness's keys (the
# harness signs them, byte | 8); key ids as tough computes them.
if key:
    def tuf_key(seed):
        pub = key(seed)[1].hex()
        k = {"keytype": "ed25519", "keyval": {"public": pub}, "scheme": "ed25519"}
        return hashlib.sha256(json.dumps(k, sort_keys=True, separators=(",", ":")).encode()).hexdigest(), k
    ids = {seed: tuf_key(seed) for seed in (6, 7, 8, 9)}
    def root_signed(version):
        return json.dumps({
            "_type": "root", "spec_version": "1.0.34", "consistent_snapshot": True,
            "version": version, "expires": "2039-12-29T00:00:00Z",
            "keys": {i: k for i, k in ids.values()},
            "roles": {role: {"keyids": [ids[seed][0]], "threshold": 1} for role, seed in
                      [("root", 6), ("targets", 7), ("snapshot", 8), ("timestamp", 9)]},
        }, indent=1).encode()
    put("repo_upload", "root-1", b"\x08" + root_signed(1))
    put("repo_upload", "root-2", b"\x09" + root_signed(2))
    image, envelope = b"firmware image", b"suit envelope"
    def target(data, custom):
        return {"length": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest(),
                "sha512": hashlib.sha512(data).hexdigest()}, "custom": {"rota": custom}}
    for version, byte in ((1, 10), (2, 11)):
        put("repo_upload", f"targets-{version}", bytes([byte]) + json.dumps({
            "_type": "targets", "spec_version": "1.0.34", "version": version,
            "expires": "2030-06-01T00:00:00Z", "targets": {
                "class-a/fw-3.bin": target(image, {"kind": "image", "class_id": CLASS,
                    "version": 3, "security_version": 1, "envelope": "class-a/fw-3.suit"}),
                "class-a/fw-3.suit": target(envelope, {"kind": "envelope",
                    "image": "class-a/fw-3.bin"})}}, indent=1).encode())
PY

[[ -n "${FUZZ_SEED_ONLY:-}" ]] && exit 0
if [[ -n "${FUZZ_SECONDS:-}" ]]; then
  limit=(-max_total_time="$FUZZ_SECONDS")
else
  limit=(-runs="${FUZZ_RUNS:-100000}")
fi
cd "$fuzz"
for t in "${targets[@]}"; do
  echo "==> $t (${limit[*]})" >&2
  # One process, one job: the machine is shared. -a: debug assertions (overflow checks).
  "${cargo[@]}" fuzz run -s none -a "$t" -- "${limit[@]}" -fork=0 -jobs=1 \
    -print_final_stats=1 ${FUZZ_ARGS:-}
done
