//! rota-agent end to end, in one test binary (one link of the server and the agent):
//! a real rota-server on SQLite over loopback, simulated devices and Linux gateways
//! running the real agent and rota-boot.

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod faults;
mod fleet;
mod linux;
mod tuf_client_cli;
