//! rota's signed firmware manifest: a SUIT envelope (draft-ietf-suit-manifest-37)
//! authenticated by a COSE_Sign1 (RFC 9052).
//!
//! Two faces share one set of wire rules:
//! - the `no_std`, allocation-free **decode-and-verify** path ([`Envelope::decode`],
//!   [`Envelope::authenticate`], [`ImageDigest`], and the boot profile's
//!   `verify_boot_envelope` that rota's own bootloader links);
//! - the `std` **builder and signer** (`builder` feature) used by the `rota` CLI (and by
//!   the tests of rota-boot and rota-agent). The server never parses SUIT.
//!
//! # Verifying, as the bootloader does
//!
//! ```
//! use rota_manifest::{Ed25519Verifier, Envelope, ImageDigest, Policy, PublicKey};
//!
//! # fn main() -> Result<(), rota_manifest::Error> {
//! // The device's trusted key (here the RFC 8032 TEST 1 key that signed the fixture).
//! let anchor = PublicKey::Ed25519([
//!     0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
//!     0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
//!     0xf7, 0x07, 0x51, 0x1a,
//! ]);
//! let envelope_bytes = include_bytes!("../testdata/ed25519-envelope.suit");
//! let image = include_bytes!("../testdata/ed25519-image.bin");
//!
//! let policy = Policy::default();
//! let envelope = Envelope::decode(envelope_bytes, &policy)?;
//! let verified = envelope.authenticate(&[anchor], &Ed25519Verifier, &policy)?;
//! let claims = verified.claims(0, None)?;
//! assert_eq!(claims.security_version, Some(1));
//!
//! // The image is hashed as it is read (from flash, from the network), never whole.
//! let mut digest = ImageDigest::new();
//! for chunk in image.chunks(512) {
//!     digest.update(chunk);
//! }
//! digest.check(&claims.image_digest.ok_or(rota_manifest::Error::NoImageDigest)?, claims.image_size)?;
//! # Ok(())
//! # }
//! ```
//!
//! Every check cites the rule it enforces; [`Error`] names the one that failed.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "builder")]
pub mod builder;
mod cbor;
pub mod claims;
pub mod command;
pub mod cose;
pub mod crypto;
pub mod digest;
pub mod envelope;
pub mod error;
pub mod labels;
pub mod manifest;
pub mod profile;
#[cfg(feature = "builder")]
pub mod signer;

#[cfg(feature = "builder")]
pub use builder::{BuildError, ImageManifest, sign_manifest, sign_manifest_as};
pub use cbor::{BytesItem, Key, MAX_DEPTH, MAX_MAP_ENTRIES};
pub use claims::ComponentClaims;
pub use command::{Command, CommandSequence, Condition, Directive, IndexArg, Parameter};
pub use cose::CoseSign1;
#[cfg(feature = "compact-ed25519")]
pub use crypto::CompactEd25519Verifier;
#[cfg(feature = "p256")]
pub use crypto::EcdsaP256Verifier;
#[cfg(feature = "std")]
pub use crypto::HostVerifier;
pub use crypto::{Ed25519Verifier, PublicKey, SignatureAlgorithm, Verifier};
pub use digest::{ImageDigest, SuitDigest};
pub use envelope::{Authenticated, Envelope, Policy};
pub use error::{Error, Result};
pub use manifest::{ComponentId, Manifest, Severable};
pub use profile::{BootClaims, verify_boot_envelope};
#[cfg(feature = "builder")]
pub use signer::{
    Algorithm, KeyError, KeyFile, KeySource, Sign, SignError, SoftwareKey, public_key_from_pem,
};
