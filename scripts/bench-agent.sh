#!/usr/bin/env bash
# The agent's figures against a real rota-server on loopback: peak memory during a
# 16 MiB update, bytes fetched again after an interruption, and the wall time of a
# 100-device staged rollout. Results: stdout and target/bench-agent.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p rota-agent --bench agent
