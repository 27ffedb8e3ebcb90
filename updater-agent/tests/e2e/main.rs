//! The `rota-agent` binary end to end, in one test binary: Linux gateways provisioned and
//! run by `rota-agent provision` / `run`, and the tuf-conformance client
//! (`rota-agent tuf-client`), against a real rota-server on loopback. They stay in this
//! crate because they run its binary (`CARGO_BIN_EXE_rota-agent`, which cargo gives only
//! to the binary's own package); the fleet, fault and attack scenarios are in the
//! workspace's `tests/` (rota-system-tests), whose harness these use.

use rota_system_tests as support;

mod linux;
mod tuf_client_cli;
