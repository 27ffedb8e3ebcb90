//! The worst input for the bootloader's stack: `testdata/ed25519-envelope-deep.suit`,
//! written by manifest/size-probe/fixture. It is validly signed (RFC 8032 TEST 1 key) for
//! the same image as the normal fixture, and nests opaque CBOR, through map keys and
//! through map values, to exactly [`MAX_DEPTH`] everywhere rota walks it; the size probe
//! measures its stack (`scripts/size-probe.sh --stack`).
//!
//! If a limit changes, regenerate the fixture:
//! `cargo run --manifest-path manifest/size-probe/fixture/Cargo.toml`.

use rota_manifest::{Ed25519Verifier, Envelope, Error, ImageDigest, MAX_DEPTH, Policy, PublicKey};

const DEEP: &[u8] = include_bytes!("../testdata/ed25519-envelope-deep.suit");
const IMAGE: &[u8] = include_bytes!("../testdata/ed25519-image.bin");

/// RFC 8032 §7.1 TEST 1 public key.
const ANCHOR: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// The innermost item of every chain in the fixture, at depth `MAX_DEPTH`: "rota-depth-leaf".
const LEAF: &[u8] = b"\x6frota-depth-leaf";
/// The same leaf one level deeper, in the same number of bytes: ["rota-depth-lea"].
const DEEPER: &[u8] = b"\x81\x6erota-depth-lea";
/// How many leaves the generator writes (it prints the count).
const LEAVES: usize = 65;

#[test]
fn deep_envelope_verifies_as_the_bootloader_does() {
    let policy = Policy::default();
    let envelope = Envelope::decode(DEEP, &policy).unwrap();
    let verified = envelope
        .authenticate(&[PublicKey::Ed25519(ANCHOR)], &Ed25519Verifier, &policy)
        .unwrap();
    let claims = verified.claims(0, None).unwrap();
    assert_eq!(claims.security_version, Some(1));
    let mut digest = ImageDigest::new();
    for chunk in IMAGE.chunks(256) {
        digest.update(chunk);
    }
    digest
        .check(&claims.image_digest.unwrap(), claims.image_size)
        .unwrap();
}

/// Every walk the bootloader's path makes over an envelope, without checking digests or
/// signatures: a leaf made deeper breaks them, and must still be refused by the walk.
fn walk(bytes: &[u8]) -> Result<(), Error> {
    let envelope = Envelope::decode(bytes, &Policy::default())?;
    for signature in envelope.signatures()? {
        signature?;
    }
    let manifest = envelope.manifest_unauthenticated()?;
    // The sequences again, and the severed payload-fetch sequence.
    envelope.claims(&manifest, 0, None)?;
    Ok(())
}

#[test]
fn deep_envelope_is_exactly_at_the_nesting_limit() {
    assert_eq!(walk(DEEP), Ok(()));
    let leaves: Vec<usize> = DEEP
        .windows(LEAF.len())
        .enumerate()
        .filter_map(|(at, window)| (window == LEAF).then_some(at))
        .collect();
    assert_eq!(leaves.len(), LEAVES, "leaves in the fixture");
    for at in leaves {
        let mut deeper = DEEP.to_vec();
        deeper[at..at + LEAF.len()].copy_from_slice(DEEPER);
        match walk(&deeper) {
            Err(Error::LimitExceeded {
                limit: "nesting depth",
                ..
            }) => {}
            other => panic!(
                "the leaf at offset {at}, one level past MAX_DEPTH = {MAX_DEPTH}, \
                 is not refused: {other:?}"
            ),
        }
    }
}
