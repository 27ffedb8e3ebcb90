//! The boot profile is a strict subset of the general path: whatever
//! `verify_boot_envelope` accepts, `Envelope::decode` → `authenticate` → `claims(0, None)`
//! accepts with one component and the same claims (tests/subset, shared with the tests).
//!
//! The first byte picks what the rest is:
//! - `0`: an envelope, as is;
//! - anything else: a manifest, which the harness wraps in the profile's envelope with
//!   its correct SHA-256 digest, so that every input reaches the manifest readers.
//!
//! Signatures are not what this target explores (envelope_decode and cose_sign1_decode
//! do): both paths verify through one verifier that accepts any signature by the
//! RFC 8032 TEST 1 key, so the two decoders are all that can differ.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_manifest::{Error, PublicKey, SignatureAlgorithm, Verifier};
use sha2::{Digest as _, Sha256};

#[path = "../../tests/subset/mod.rs"]
mod subset;

/// RFC 8032 §7.1 TEST 1 public key.
const TEST1_PUBLIC: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// Accepts every Ed25519 signature by the TEST 1 key, whatever it signs.
struct AnySignatureByTest1;

impl Verifier for AnySignatureByTest1 {
    fn verify(
        &self,
        alg: SignatureAlgorithm,
        key: &PublicKey,
        _message: &[u8],
        _signature: &[u8],
    ) -> Result<(), Error> {
        match (alg, key) {
            (SignatureAlgorithm::Ed25519, PublicKey::Ed25519(k)) if *k == TEST1_PUBLIC => Ok(()),
            _ => Err(Error::BadSignature),
        }
    }
}

/// A definite-length byte string, shortest head (RFC 8949 §4.2.1).
fn bstr(content: &[u8]) -> Vec<u8> {
    let n = content.len() as u64;
    let mut out = match n {
        0..=23 => vec![0x40 | n as u8],
        24..=0xff => vec![0x58, n as u8],
        0x100..=0xffff => [&[0x59][..], &(n as u16).to_be_bytes()].concat(),
        _ => [&[0x5a][..], &(n as u32).to_be_bytes()].concat(),
    };
    out.extend_from_slice(content);
    out
}

/// `manifest` in the profile's envelope, with its digest and a signature placeholder.
fn envelope_around(manifest: &[u8], key: &PublicKey) -> Vec<u8> {
    let manifest_bstr = bstr(manifest);
    let digest = [
        &[0x82, 0x2f, 0x58, 0x20][..],
        &Sha256::digest(&manifest_bstr),
    ]
    .concat();
    let protected = [&[0xa2, 0x01, 0x32, 0x04, 0x58, 0x20][..], &key.key_id()].concat();
    let cose = [
        &[0xd2, 0x84][..],
        &bstr(&protected),
        &[0xa0, 0xf6, 0x58, 0x40],
        &[0; 64],
    ]
    .concat();
    let wrapper = [&[0x82][..], &bstr(&digest), &bstr(&cose)].concat();
    [
        &[0xd8, 0x6b, 0xa2, 0x02][..],
        &bstr(&wrapper),
        &[0x03],
        &manifest_bstr,
    ]
    .concat()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = PublicKey::Ed25519(TEST1_PUBLIC);
    let envelope = if mode == 0 {
        rest.to_vec()
    } else {
        envelope_around(rest, &key)
    };
    if subset::assert_subset(&envelope, &key, &AnySignatureByTest1).is_ok() {
        trace_acceptance();
    }
});

/// With `ROTA_FUZZ_TRACE` set, reports the count of the profile's acceptances (each
/// checked against the general path) at each power of two.
fn trace_acceptance() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static TRACE: OnceLock<bool> = OnceLock::new();
    static ACCEPTED: AtomicU64 = AtomicU64::new(0);
    if *TRACE.get_or_init(|| std::env::var_os("ROTA_FUZZ_TRACE").is_some()) {
        let n = ACCEPTED.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            eprintln!("rota-fuzz: {n} boot-profile acceptances checked");
        }
    }
}
