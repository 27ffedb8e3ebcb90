//! rota end to end, in one test binary: a real rota-server on SQLite over loopback,
//! fleets of simulated devices running the real agent and the real rota-boot, staged
//! rollouts through the management API (`fleet`), power cuts, outages and a
//! fault-injecting proxy (`faults`), a hostile network, server or release (`attacks`),
//! and firmware trust-anchor rollover through TUF (`anchors`). The harness is this
//! crate's library (`src/`).

use rota_system_tests as support;

mod anchors;
mod attacks;
mod attestation;
mod faults;
mod fleet;
mod lifecycle;
