//! The agent's errors, by what failed. Network and server trouble is `ServerError` (in
//! [`crate::server`]) and is retried; an update the device must not install is
//! `install::Failure::Refused` and is reported; what is here stops the agent.

use std::path::PathBuf;

/// The device itself failed (flash, root of trust, its file system): the agent stops
/// until the device restarts ([`crate::Agent::restart`]), and resumes from flash and
/// from its persisted state.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// rota-boot could not open or act on the flash and root of trust. rota-boot's error
    /// is generic over the flash and OTP drivers' own error types; its words are kept.
    #[error("rota-boot: {0}")]
    Boot(String),
    /// The agent's persisted state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A part of the device (its flash, its OTP, its state directory) cannot be opened.
    #[error("cannot open {what} {}: {detail}", path.display())]
    Open {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The factory image cannot be programmed into its slot.
    #[error("programming the factory image failed: {0}")]
    Factory(String),
    /// Nothing on the device is bootable.
    #[error("nothing on the device is bootable")]
    NothingBootable,
    /// Attestation evidence could not be made (a key that cannot sign, a hand-off whose
    /// certificate does not name its Alias key).
    #[error("cannot make attestation evidence: {0}")]
    Attestation(String),
    /// The identity key could not be rotated.
    #[error("cannot rotate the identity key: {0}")]
    Rotation(String),
    /// A firmware key a trust-anchor command added to the root of trust could not be
    /// added to the keys the agent verifies envelopes with (`crate::anchors`).
    #[error("cannot add a firmware trust anchor: {0}")]
    TrustAnchor(String),
    /// The device's credentials could not be erased (a decommission).
    #[error("cannot erase the device's credentials: {0}")]
    Zeroize(String),
    /// The operating system's random number generator failed (an event id).
    #[error("no randomness for a report id: {0}")]
    Random(#[from] rota_protocol::RandomError),
}

/// The agent's state file (`agent-state.json`) or another file it replaces atomically.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not the agent's state: the agent does not guess what it meant.
    #[error("{} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Written, synced, renamed or its directory synced: any step failing leaves the old
    /// file in place.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The running firmware failed its health check after a trial boot: why, in words (a
/// self-test's message, a health command's exit status). The trial is reverted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

/// A simulated device could not be made (`fleet::provision`, `Fleet::start`).
#[cfg(feature = "sim")]
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot make a device key: {0}")]
    Key(#[from] rota_keys::KeyError),
    #[error("cannot issue the device certificate: {0}")]
    Certificate(#[from] rota_protocol::IdentityError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("no randomness for the device's UDS: {0}")]
    Random(String),
    /// The fleet itself could not be set up (its fault plan, runtime or relays).
    #[error("{0}")]
    Fleet(String),
}

#[cfg(feature = "sim")]
impl From<StateError> for ProvisionError {
    fn from(e: StateError) -> Self {
        ProvisionError::Device(e.into())
    }
}
