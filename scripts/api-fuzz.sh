#!/usr/bin/env bash
# Schemathesis against rota-server's own /openapi.json, on loopback, with an admin token:
# no 5xx answer, and every answer as the document publishes it (status codes, content
# types, headers, bodies), every schema-invalid request refused, authentication never
# ignored, a deleted token never usable again.
#
# Usage: scripts/api-fuzz.sh
# Environment:
#   API_FUZZ_EXAMPLES  test cases per operation and phase (default 20: the CI run;
#                      a real run takes 500 or more)
#   API_FUZZ_SEED      schemathesis' random seed (default: a fresh one, printed)
#   API_FUZZ_ARGS      more `schemathesis run` flags
#   ROTA_BIN           where rota-server and rota are (default: built here, debug)
#
# The server runs on embedded defaults (SQLite and files) in a temporary directory, with
# a TUF repository pushed (`rota repo init` / `rota repo push`) and a device CA, so the
# release, device and rollout operations reach their checks. Its log and schemathesis'
# report are kept in that directory when a check fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
examples="${API_FUZZ_EXAMPLES:-20}"
if ! command -v schemathesis >/dev/null 2>&1; then
  python3 -m pip install -q schemathesis
fi
if [[ -z "${ROTA_BIN:-}" ]]; then
  # --all-features: the same build as the test suite's, so nothing is rebuilt.
  cargo build -q --manifest-path "$root/Cargo.toml" --all-features -p rota-cli -p rota-server
  ROTA_BIN="${CARGO_TARGET_DIR:-$root/target}/debug"
fi
export PATH="$ROTA_BIN:$PATH"
# The server takes its settings from its flags alone.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^ROTA_SERVER_' || true)

work="$(mktemp -d "${TMPDIR:-/tmp}/rota-api-fuzz.XXXXXX")"
server_pid=''
cleanup() {
  local status=$?
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if ((status == 0)); then
    rm -rf "$work"
  else
    echo "api-fuzz: the server log and schemathesis' report are in $work" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
cd "$work"

rota keygen --out factory-ca >/dev/null
rota repo init --dir repo >/dev/null
mkdir -p data/tuf-online-keys data/device-ca
cp repo/online/*.key data/tuf-online-keys/
cp factory-ca.pub data/device-ca/

# The refusal limiter answers 429 after 20 refused requests from one address (tested in
# update-server/tests/api.rs); schemathesis sends hundreds without a valid token and checks
# that each one gets its 401, so the limit is lifted here, where the API contract is tested.
rota-server --data-dir data --listen 127.0.0.1:0 \
  --refusals-per-minute 1000000 --refusal-burst 1000000 > server.log 2>&1 &
server_pid=$!
port=''
for _ in $(seq 150); do
  kill -0 "$server_pid" 2>/dev/null || { tail -n 20 server.log >&2; exit 1; }
  port="$(sed -n 's/.*rota-server listening.*127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' server.log | head -n 1)"
  [[ -n "$port" && -s data/admin.token ]] && break
  sleep 0.2
done
[[ -n "$port" ]] || { echo "api-fuzz: the server did not start" >&2; tail -n 20 server.log >&2; exit 1; }
token="$(cat data/admin.token)"
ROTA_SERVER="http://127.0.0.1:$port" ROTA_TOKEN="$token" rota repo push --dir repo >/dev/null

# positive_data_acceptance is left out: a schema cannot say that a certificate must be
# signed by a trusted CA, or that a release must exist, so schema-valid requests are
# rightly refused. object_level_authorization: the management API has one tenant.
checks=not_a_server_error,response_schema_conformance,status_code_conformance
checks+=,content_type_conformance,response_headers_conformance,negative_data_rejection
checks+=,missing_required_header,unsupported_method,ignored_auth,use_after_free
checks+=,ensure_resource_availability
seed=()
[[ -n "${API_FUZZ_SEED:-}" ]] && seed=(--seed "$API_FUZZ_SEED")
# One worker: the machine is shared, and the server's rate limits stay out of the way.
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks "$checks" \
  --max-examples "$examples" \
  --workers 1 \
  --no-color \
  --report junit --report-dir "$work/report" \
  "${seed[@]}" ${API_FUZZ_ARGS:-}
