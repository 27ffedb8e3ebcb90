//! The agent's side of remote attestation: evidence of the running boot, answering a
//! server's challenge (`rota_protocol::attestation` has the format).
//!
//! On a device whose bootloader ran its DICE layer, the evidence is signed by the Alias
//! key the bootloader handed off and carries the Alias certificate the DeviceID signed:
//! the measurement in it is the bootloader's, which this code cannot change (another
//! measurement is another Alias key). Elsewhere (Linux gateways) it is signed by the
//! device's identity key, wherever that key lives (a file, a token), and says it is
//! software-measured: the image the agent found verified in the running slot.

use rota_boot::dice::Measurement;
use rota_protocol::SoftwareKey;
use rota_protocol::api::Evidence;
use rota_protocol::attestation::{Statement, hardware_evidence, software_evidence};

use crate::device::Device;
use crate::error::DeviceError;

/// Evidence of the running boot, answering `nonce`.
pub fn evidence<D: Device>(device: &D, nonce: &[u8]) -> Result<Evidence, DeviceError> {
    let statement = Statement {
        nonce,
        boot_count: device.boots(),
    };
    let bytes = match device.handoff() {
        Some(handoff) => {
            let alias = SoftwareKey::from_ed25519_seed(*handoff.alias_seed.expose());
            hardware_evidence(
                &alias,
                handoff.certificate(),
                &handoff.device_id,
                &statement,
            )
        }
        None => {
            let running = device.running().ok_or(DeviceError::NothingBootable)?;
            let measurement = Measurement {
                image_digest: running.digest,
                security_version: running.security_version,
                sequence: running.version,
                slot: running.slot,
                signer: running.signer,
                // The agent cannot measure what booted it; the server's expected
                // bootloaders apply to hardware-rooted evidence.
                bootloader: [0; 32],
            };
            software_evidence(&device.identity().key, &measurement, &statement)
        }
    }
    .map_err(|e| DeviceError::Attestation(e.to_string()))?;
    Ok(Evidence(bytes))
}
