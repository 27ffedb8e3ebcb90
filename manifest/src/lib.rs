//! rota's signed firmware manifest: a SUIT envelope (draft-ietf-suit-manifest-37)
//! authenticated by a COSE_Sign1 (RFC 9052).
//!
//! Two faces share one set of wire rules:
//! - the `no_std`, allocation-free **decode-and-verify** path ([`Envelope::decode`],
//!   [`Envelope::authenticate`], [`ImageDigest`]) that the bootloader links;
//! - the `std` **builder and signer** (`builder` feature) used by the tools and the server.
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
#[cfg(feature = "builder")]
pub mod signer;

#[cfg(feature = "builder")]
pub use builder::{BuildError, ImageManifest, sign_manifest};
pub use cbor::{BytesItem, Key};
pub use claims::ComponentClaims;
pub use command::{Command, CommandSequence, Condition, Directive, IndexArg, Parameter};
pub use cose::CoseSign1;
#[cfg(feature = "std")]
pub use crypto::HostVerifier;
pub use crypto::{Ed25519Verifier, PublicKey, SignatureAlgorithm, Verifier};
pub use digest::{ImageDigest, SuitDigest};
pub use envelope::{Authenticated, Envelope, Policy};
pub use error::{Error, Result};
pub use manifest::{ComponentId, Manifest, Severable};
#[cfg(feature = "builder")]
pub use signer::{Ed25519Signer, KeyError, SignError, Signer, public_key_from_pem};
