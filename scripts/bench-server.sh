#!/usr/bin/env bash
# rota-server beside nginx on this machine, in one run, with one load tool
# (update-server/benches/server.rs):
#   - "nothing new" check-ins/s (If-None-Match → 304, a live rollout of another class
#     evaluated) against nginx serving a 100-byte static file, same connections and
#     duration: once signed with the device key, once on check-in sessions (one signed
#     request opens each device's session, then each check-in carries an HMAC;
#     rota_protocol::session), both ratios to nginx printed;
#   - download throughput of a 16 MiB artifact from /tuf/targets/… and from nginx, one
#     client in a row and 4 clients at once;
#   - the halt latency of a rollout: from the acknowledged report that crosses the
#     failure threshold until a never-assigned device is told "nothing new".
# rota-server is the release binary as a separate process on its embedded defaults
# (SQLite, artifacts in a temporary data directory); nginx runs in the foreground with a
# generated config. Both are stopped when the bench ends, however it ends.
#
# Usage: scripts/bench-server.sh [DURATION_S] [CONNECTIONS] [-- MORE BENCH FLAGS]
#   (defaults: 10 s per load window, 64 connections; e.g. `-- --halt-reps 50`,
#   `-- --help` for every flag)
# Prints a table; the same as JSON in target/bench-server.json.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-64}"
shift $(( $# < 2 ? $# : 2 ))
[[ "${1:-}" == "--" ]] && shift

if ! command -v nginx > /dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    echo "bench-server: installing nginx" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx > /dev/null
fi
nginx="$(command -v nginx || echo /usr/sbin/nginx)"

# The server measured is this build, copied aside: `cargo bench` builds the package's
# binary again with the dev-dependencies' features and would replace it in target/release.
cargo build --release --quiet -p rota-server
mkdir -p "${CARGO_TARGET_DIR:-target}/bench-server"
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
cp "$target/release/rota-server" "$target/bench-server/rota-server"

export ROTA_BENCH_COMMAND="scripts/bench-server.sh $duration $connections${*:+ -- $*}"
cargo bench --quiet -p rota-server --bench server -- \
    --duration "$duration" --connections "$connections" --nginx "$nginx" \
    --server-bin "$target/bench-server/rota-server" "$@"
