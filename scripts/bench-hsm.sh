#!/usr/bin/env bash
# Keys in a PKCS#11 token against key files, in one run:
# 1. signatures per second, SoftHSM2 against key files, Ed25519 and ECDSA P-256
#    (keys/benches/sign.rs; target/bench-hsm-sign.json);
# 2. the wall time of `rota release publish` (release binaries, a 1 MiB image, against a
#    rota-server on loopback) with the targets key and both online keys in SoftHSM2,
#    against a repository whose keys are all files; RUNS publishes each, alternating
#    (target/bench-hsm-publish.json).
# Needs softhsm2 (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${RUNS:-7}

cargo bench -p rota-keys --features test-tokens --bench sign
cargo build --release -q -p rota-cli -p rota-server
rota=$root/target/release/rota
server=$root/target/release/rota-server

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# An HSM of our own: SoftHSM2 in this directory.
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$work" >softhsm2.conf
export SOFTHSM2_CONF=$work/softhsm2.conf
softhsm2-util --init-token --free --label release --pin 1234 --so-pin 5678 >/dev/null
printf '1234' >pin
module=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -1)
uri() { echo "pkcs11:token=release;object=$1?module-path=$module&pin-source=file:$work/pin"; }

# Two repositories: every key in the token, and every key in files.
for key in root targets snapshot timestamp firmware; do
    "$rota" keygen --pkcs11 "$(uri "$key")" --out "$key" >/dev/null
done
"$rota" repo init --dir token --root-key "$(uri root)" --targets-key "$(uri targets)" \
    --snapshot-key "$(uri snapshot)" --timestamp-key "$(uri timestamp)" >/dev/null
"$rota" repo init --dir files --root-keys 1 >/dev/null
"$rota" keygen --out firmware-file >/dev/null

# One server per repository, its online keys from the repository (stubs for the token).
start_server() { # NAME PORT
    mkdir -p "$1-data/tuf-online-keys"
    cp "$1"/online/*.key "$1-data/tuf-online-keys/"
    "$server" --data-dir "$1-data" --listen "127.0.0.1:$2" >"$1-server.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && return 0
        sleep 0.05
    done
    echo "rota-server for $1 did not start" >&2
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
token_port=$(port)
files_port=$(port)
start_server token "$token_port"
start_server files "$files_port"
at() { echo --server "http://127.0.0.1:$1" --token-file "$2-data/admin.token"; }
# shellcheck disable=SC2046
"$rota" repo push --dir token $(at "$token_port" token) >/dev/null
# shellcheck disable=SC2046
"$rota" repo push --dir files $(at "$files_port" files) >/dev/null

head -c $((1024 * 1024)) /dev/urandom >fw.bin
sign() { # KEY OUT SEQUENCE
    "$rota" sign --key "$1" --image fw.bin --vendor-id fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe \
        --class-id 8a1c3c1e-3b2a-4f5e-9d3a-0c1b2a3d4e5f --sequence "$3" \
        --security-version 1 -o "$2" >/dev/null
}
publish_ms() { # REPO PORT ENVELOPE NAME
    local start end
    start=$(date +%s%N)
    # shellcheck disable=SC2046
    "$rota" release publish --repo "$1" --image fw.bin --envelope "$3" --name "$4" \
        $(at "$2" "$1") >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
token_ms=()
files_ms=()
for i in $(seq "$runs"); do
    sign "$(uri firmware)" "token-$i.suit" "$i"
    sign firmware-file.key "files-$i.suit" "$i"
    token_ms+=("$(publish_ms token "$token_port" "token-$i.suit" "fw-$i.bin")")
    files_ms+=("$(publish_ms files "$files_port" "files-$i.suit" "fw-$i.bin")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tm=$(median "${token_ms[@]}")
fm=$(median "${files_ms[@]}")
echo "rota release publish (1 MiB image, $runs runs each, median): keys in SoftHSM2 ${tm} ms, key files ${fm} ms"
echo "  SoftHSM2: ${token_ms[*]} ms; files: ${files_ms[*]} ms"
printf '{"runs":%d,"token_median_ms":%d,"files_median_ms":%d,"token_ms":[%s],"files_ms":[%s]}\n' \
    "$runs" "$tm" "$fm" "$(IFS=,; echo "${token_ms[*]}")" "$(IFS=,; echo "${files_ms[*]}")" \
    >"$root/target/bench-hsm-publish.json"
