#!/usr/bin/env bash
# What remote attestation costs rota-server per report (tests/benches/attestation.rs):
# evidence verification alone on one core, then through a real rota-server (SQLite,
# loopback) a whole appraisal beside a plain signed device request, and the challenge.
# Usage: RUNS=2000 scripts/bench-attestation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p rota-system-tests --bench attestation
