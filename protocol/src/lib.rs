//! rota's network contract between devices, the update server and the CLI.
//!
//! - [`identity`]: device certificates, issued by a manufacturer CA, that bind a device id,
//!   its class and tags to the device's Ed25519 key.
//! - [`auth`]: the signature every device request carries (`Rota-*` headers), and the
//!   server-side verifier with its clock-skew window and replay cache.
//! - [`session`]: check-in sessions: an X25519 key agreement in a signed request, then
//!   check-ins and reports authenticated by an HMAC under the session key.
//! - [`api`]: the JSON (and query-string) types of the device and management HTTP APIs,
//!   and the deterministic stage-membership function of staged rollouts.
//! - [`attestation`]: the evidence (an RFC 9711 EAT, with the DICE chain where the device
//!   has one) by which a device proves what firmware its bootloader measured.
//! - [`target`]: rota's fields in a signed TUF target (`custom.rota`), written by the CLI,
//!   checked by the server and read by the agent.
//!
//! The crate is synchronous and has no HTTP dependency, so the device agent links it as
//! it is; the `openapi` feature adds `utoipa::ToSchema` for the server's `/openapi.json`.
//!
//! Versioning rule for everything on the wire: inputs (what a server accepts) are strict
//! and refuse unknown fields, so a typo never passes silently; outputs (what a server
//! answers) may gain fields in a compatible release, so clients must ignore fields they do
//! not know. Incompatible changes take a new signing context (`-v2`) or a new `/api/v2`.

pub mod api;
pub mod attestation;
pub mod auth;
pub mod identity;
pub mod order;
pub mod session;
pub mod target;

mod encoding;

pub use api::rollout_bucket;
pub use auth::{AuthError, Nonce, RequestVerifier, SignedHeaders, parse_headers, sign_request};
pub use identity::{
    CertBody, DeviceCertificate, IdentityError, certify, issue, valid_device_id, valid_tag,
    valid_uuid, validate_tags,
};
pub use target::RotaTarget;

/// Re-exported so users name the same key types this crate takes: rota's one key seam.
pub use rota_keys::{PublicKey, Sign, SignError, SoftwareKey};

/// A signature as carried on the wire: 64 bytes, Ed25519 `R || S` or ECDSA P-256 `r || s`
/// (the algorithm is the signing key's).
pub type Signature = [u8; rota_keys::SIGNATURE_LEN];

/// The operating system's random number generator failed (making a nonce or an event id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `N` bytes from the operating system's random number generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RandomError(e.to_string()))?;
    Ok(bytes)
}
