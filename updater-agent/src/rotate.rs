//! The agent's side of a key rotation (`docs/design/lifecycle.md`, section 2): a new
//! identity key made where the device keeps its identity, proof that its holder asks,
//! the new certificate from the operator's device CA, then the new key in use and the
//! old one destroyed.
//!
//! A lost answer is safe: the server revoked the old key when it certified the new one,
//! so the device asks again signed by the new key, and the server answers with the
//! certificate it issued (its idempotency rule).

use rota_protocol::api::{KeyRotation, rotation_message};
use rota_protocol::{DeviceCertificate, PublicKey};

use crate::device::{Device, Identity};
use crate::error::DeviceError;
use crate::server::{ServerClient, ServerError};

/// Why a rotation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// Rotates `device`'s identity key through `server`; returns the new certificate, which
/// the caller keeps (and enrols with, on a device that enrols again).
pub fn rotate<D: Device>(
    device: &mut D,
    server: &ServerClient,
) -> Result<DeviceCertificate, RotateError> {
    let device_id = device.identity().device_id.clone();
    let current = device.identity().key.public_key();
    let new_key = device.new_identity_key(current.algorithm())?;
    let new_public = new_key.public_key();
    let proof = new_key
        .sign(&rotation_message(&device_id, &current, &new_public))
        .map_err(|e| DeviceError::Rotation(e.to_string()))?
        .try_into()
        .map_err(|_| DeviceError::Rotation("the new key's signature is not 64 bytes".into()))?;
    // Evidence of the running boot (its DICE measurement where it has one), answering a
    // fresh challenge: the server rotates only a device whose state passes appraisal, in
    // classes that attest. A server that gives no challenge gets none.
    let evidence = match server.attestation_nonce(device.identity()) {
        Ok(nonce) => Some(crate::attest::evidence(device, &nonce)?),
        Err(ServerError::Refused { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let request = KeyRotation {
        public_key: hex::encode(new_public.as_bytes()),
        proof,
        evidence,
    };
    let rotated = match server.rotate(device.identity(), &request) {
        Ok(rotated) => rotated,
        // The old key is refused (no longer the device's key: 401): the server may have
        // certified the new one already and the answer was lost; ask again, signed by the
        // new key.
        Err(ServerError::Refused { status: 401, .. }) => {
            let as_new = Identity {
                device_id: device_id.clone(),
                key: new_key,
            };
            let rotated = server.rotate(&as_new, &request)?;
            return finish(
                device,
                as_new.key,
                rotated.certificate,
                &device_id,
                &new_public,
            );
        }
        Err(e) => return Err(e.into()),
    };
    finish(
        device,
        new_key,
        rotated.certificate,
        &device_id,
        &new_public,
    )
}

/// Checks that the certificate names this device and the new key, then commits the key.
fn finish<D: Device>(
    device: &mut D,
    key: Box<dyn rota_keys::Sign>,
    certificate: DeviceCertificate,
    device_id: &str,
    new_public: &PublicKey,
) -> Result<DeviceCertificate, RotateError> {
    let claims = certificate
        .claims_unverified()
        .map_err(|e| DeviceError::Rotation(format!("the new certificate is malformed: {e}")))?;
    if claims.device_id != device_id || claims.device_key().ok().as_ref() != Some(new_public) {
        return Err(DeviceError::Rotation(
            "the server's certificate is not for this device and its new key".into(),
        )
        .into());
    }
    device.commit_identity(key, &certificate)?;
    Ok(certificate)
}
