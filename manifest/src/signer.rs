//! Signing keys for the builder (`builder` feature): rota's one key seam, from rota-keys.
//!
//! The builder asks a [`Sign`] for its public key and a signature over the COSE
//! `Sig_structure` bytes, so a key that never leaves hardware (PKCS#11, TPM) signs
//! envelopes exactly as a [`SoftwareKey`] does. The COSE algorithm follows the key
//! ([`crate::SignatureAlgorithm::for_key`]) unless the caller names another that fits.

pub use rota_keys::{
    Algorithm, KeyError, KeyFile, KeySource, Sign, SignError, SoftwareKey, public_key_from_pem,
};
