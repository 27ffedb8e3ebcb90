//! Building and signing envelopes (`builder` feature): what the `rota` CLI uses to
//! release an image.
//!
//! The output is the layout documented in [`crate::envelope`], in the style of
//! draft-ietf-suit-manifest-37 examples 0 and 1:
//!
//! ```text
//! SUIT_Manifest = {
//!   1: 1,                                    ; manifest-version
//!   2: sequence_number,                      ; manifest-sequence-number
//!   3: << {                                  ; common
//!        2: [ component ],                   ;   components (one)
//!        4: << [                             ;   shared-sequence
//!             20, { 1: vendor-id, 2: class-id,  ; override-parameters
//!                   3: << [-16, image_digest] >>, 14: image_size,
//!                   -256: security_version },   ; rota's private-use parameter
//!             1, 15,                         ;   condition-vendor-identifier
//!             2, 15 ] >> } >>,               ;   condition-class-identifier
//!   7: << [3, 15] >>,                        ; validate: condition-image-match
//!   9: << [23, 2] >>,                        ; invoke: directive-invoke
//!   ? 20: << [20, {21: uri}, 21, 2, 3, 15] >>, ; install: set uri, fetch, image-match
//!   ? 23: << {"en": {1: description}} >>     ; text: manifest-description
//! }
//! ```
//!
//! # Why two CBOR libraries
//!
//! - **SUIT structures are written with minicbor's `Encoder`.** No COSE library has SUIT
//!   types (SUIT is not COSE), and the decode-and-verify path already reads SUIT with
//!   minicbor. Writing field by field keeps every choice explicit and deterministic
//!   (RFC 8949 §4.2.1): definite lengths, shortest integer encodings, map keys in
//!   ascending encoded order. The manifest digest and therefore the signature cover
//!   these exact bytes, so the same inputs always give the same manifest.
//! - **COSE_Sign1 is built with `coset`.** coset implements RFC 9052's headers,
//!   `Sig_structure` and tagging; using it here means the bytes the no_std verifier
//!   ([`crate::cose`]) checks were produced by an independent implementation, so the
//!   round-trip tests compare two readings of RFC 9052 rather than one with itself.
//!   coset is not used on the verify path because it decodes into an owned
//!   `ciborium::Value` tree (it needs `alloc`), while the bootloader's path borrows
//!   from the input and never allocates.

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use coset::{TaggedCborSerializable as _, iana};
use minicbor::Encoder;
use sha2::{Digest as _, Sha256};

use crate::crypto::{HostVerifier, SignatureAlgorithm};
use crate::envelope::{Envelope, Policy};
use crate::labels::{
    TAG_ENVELOPE, alg, command as cmd, common as cm, envelope as env, manifest as mf,
    parameter as param, text,
};
use crate::signer::{Sign, SignError};

/// The reporting policy of every condition rota writes: all four report bits
/// (§8.4.9: record on success, record on failure, system info on success and on
/// failure), as in the draft's examples.
const REPORT_ALL: u64 = 15;
/// The reporting policy of `directive-invoke` in the draft's examples (record on failure).
const REPORT_INVOKE: u64 = 2;
/// The reporting policy of `directive-fetch` in the draft's examples.
const REPORT_FETCH: u64 = 2;
/// The language tag of the text rota writes (SUIT_Text_Map is keyed by RFC 5646 tags).
const TEXT_LANGUAGE: &str = "en";

/// Why an envelope could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// SUIT requires at least one authentication block (§8.3).
    #[error("an envelope needs at least one signer")]
    NoSigners,
    /// The COSE algorithm named cannot be made with the signer's key (for example
    /// ES256 with an Ed25519 key).
    #[error("a {key} key cannot sign with {alg}")]
    AlgorithmMismatch {
        key: &'static str,
        alg: &'static str,
    },
    /// A signer could not sign.
    #[error("signing failed: {0}")]
    Sign(#[from] SignError),
    /// coset refused to encode the COSE_Sign1.
    #[error("encoding the COSE_Sign1 failed: {0}")]
    Cose(String),
    /// A signature the signer returned does not verify with its own public key
    /// (a faulty signer or HSM; for ECDSA, often a DER signature instead of `r || s`).
    #[error("signer {signer} returned a signature that does not verify with its own key: {error}")]
    SelfCheck { signer: usize, error: crate::Error },
    /// The envelope built does not decode with rota's own decoder (a rota bug).
    #[error("the envelope built does not decode: {0}")]
    Undecodable(crate::Error),
}

/// What a release of one image says: the inputs of a one-component manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageManifest {
    /// `vendor-id`: an RFC 4122 UUID naming the vendor (§8.4.8.3).
    pub vendor_id: [u8; 16],
    /// `class-id`: an RFC 4122 UUID naming the device class (§8.4.8.4).
    pub class_id: [u8; 16],
    /// The component identifier's byte-string segments; `[h'00']` by default.
    pub component: Vec<Vec<u8>>,
    /// SHA-256 of the image.
    pub image_digest: [u8; 32],
    /// Length of the image in bytes.
    pub image_size: u64,
    /// `manifest-sequence-number`: orders manifests; devices refuse lower ones.
    pub sequence_number: u64,
    /// rota's anti-rollback level ([`param::ROTA_SECURITY_VERSION`]).
    pub security_version: u64,
    /// Where the device fetches the image; adds an install sequence when set.
    pub uri: Option<String>,
    /// A free-text `manifest-description` (§8.4.4), written as SUIT text.
    pub description: Option<String>,
}

impl Default for ImageManifest {
    fn default() -> Self {
        Self {
            vendor_id: [0; 16],
            class_id: [0; 16],
            component: vec![vec![0x00]],
            image_digest: [0; 32],
            image_size: 0,
            sequence_number: 0,
            security_version: 0,
            uri: None,
            description: None,
        }
    }
}

impl ImageManifest {
    /// The encoded SUIT_Manifest (the content of the envelope's `suit-manifest` bstr).
    pub fn encode_manifest(&self) -> Vec<u8> {
        let common = self.encode_common();
        let validate = encode(|e| {
            e.array(2)?
                .i64(cmd::CONDITION_IMAGE_MATCH)?
                .u64(REPORT_ALL)?;
            Ok(())
        });
        let invoke = encode(|e| {
            e.array(2)?.i64(cmd::DIRECTIVE_INVOKE)?.u64(REPORT_INVOKE)?;
            Ok(())
        });
        let install = self.uri.as_deref().map(|uri| {
            encode(|e| {
                e.array(6)?
                    .i64(cmd::DIRECTIVE_OVERRIDE_PARAMETERS)?
                    .map(1)?
                    .i64(param::URI)?
                    .str(uri)?
                    .i64(cmd::DIRECTIVE_FETCH)?
                    .u64(REPORT_FETCH)?
                    .i64(cmd::CONDITION_IMAGE_MATCH)?
                    .u64(REPORT_ALL)?;
                Ok(())
            })
        });
        let text = self.description.as_deref().map(|description| {
            encode(|e| {
                e.map(1)?
                    .str(TEXT_LANGUAGE)?
                    .map(1)?
                    .i64(text::MANIFEST_DESCRIPTION)?
                    .str(description)?;
                Ok(())
            })
        });

        let entries = 5 + u64::from(install.is_some()) + u64::from(text.is_some());
        // Keys in ascending order (RFC 8949 §4.2.1): 1, 2, 3, 7, 9, 20, 23.
        encode(|e| {
            e.map(entries)?
                .i64(mf::VERSION)?
                .u64(1)?
                .i64(mf::SEQUENCE_NUMBER)?
                .u64(self.sequence_number)?
                .i64(mf::COMMON)?
                .bytes(&common)?
                .i64(mf::VALIDATE)?
                .bytes(&validate)?
                .i64(mf::INVOKE)?
                .bytes(&invoke)?;
            if let Some(install) = &install {
                e.i64(mf::INSTALL)?.bytes(install)?;
            }
            if let Some(text) = &text {
                e.i64(mf::TEXT)?.bytes(text)?;
            }
            Ok(())
        })
    }

    /// SUIT_Common: the component and the shared sequence.
    fn encode_common(&self) -> Vec<u8> {
        let digest = encode_suit_digest(&self.image_digest);
        let shared = encode(|e| {
            e.array(6)?.i64(cmd::DIRECTIVE_OVERRIDE_PARAMETERS)?;
            // Keys in deterministic order: 1, 2, 3, 14, then -256 (major type 1 sorts
            // after major type 0).
            e.map(5)?
                .i64(param::VENDOR_IDENTIFIER)?
                .bytes(&self.vendor_id)?
                .i64(param::CLASS_IDENTIFIER)?
                .bytes(&self.class_id)?
                .i64(param::IMAGE_DIGEST)?
                .bytes(&digest)?
                .i64(param::IMAGE_SIZE)?
                .u64(self.image_size)?
                .i64(param::ROTA_SECURITY_VERSION)?
                .u64(self.security_version)?;
            e.i64(cmd::CONDITION_VENDOR_IDENTIFIER)?
                .u64(REPORT_ALL)?
                .i64(cmd::CONDITION_CLASS_IDENTIFIER)?
                .u64(REPORT_ALL)?;
            Ok(())
        });
        encode(|e| {
            e.map(2)?.i64(cm::COMPONENTS)?.array(1)?;
            e.array(self.component.len() as u64)?;
            for segment in &self.component {
                e.bytes(segment)?;
            }
            e.i64(cm::SHARED_SEQUENCE)?.bytes(&shared)?;
            Ok(())
        })
    }

    /// Builds the manifest and signs it: a tagged SUIT envelope with one COSE_Sign1
    /// per signer, in the order given.
    pub fn build_envelope(&self, signers: &[&dyn Sign]) -> Result<Vec<u8>, BuildError> {
        sign_manifest(&self.encode_manifest(), signers)
    }

    /// [`ImageManifest::build_envelope`] with the COSE algorithm of each signer named
    /// (for example EdDSA, -8, for verifiers that predate RFC 9864).
    pub fn build_envelope_as(
        &self,
        signers: &[(&dyn Sign, SignatureAlgorithm)],
    ) -> Result<Vec<u8>, BuildError> {
        sign_manifest_as(&self.encode_manifest(), signers)
    }
}

/// Wraps an encoded SUIT_Manifest in a signed envelope:
/// `107({2: << [<< digest >>, << COSE_Sign1 >>…] >>, 3: << manifest >>})`.
///
/// Every signature is checked with the signer's public key before the envelope is
/// returned, so a faulty signer is caught at release time rather than on devices.
pub fn sign_manifest(manifest: &[u8], signers: &[&dyn Sign]) -> Result<Vec<u8>, BuildError> {
    let signers: Vec<_> = signers
        .iter()
        .map(|s| (*s, SignatureAlgorithm::for_key(&s.public_key())))
        .collect();
    sign_manifest_as(manifest, &signers)
}

/// [`sign_manifest`] with the COSE algorithm of each signer named; each must fit its key.
pub fn sign_manifest_as(
    manifest: &[u8],
    signers: &[(&dyn Sign, SignatureAlgorithm)],
) -> Result<Vec<u8>, BuildError> {
    if signers.is_empty() {
        return Err(BuildError::NoSigners);
    }
    // §8.3: the SUIT_Digest covers the manifest bstr, CBOR header included.
    let manifest_bstr = encode(|e| {
        e.bytes(manifest)?;
        Ok(())
    });
    let digest = encode_suit_digest(&Sha256::digest(&manifest_bstr).into());

    let mut blocks = Vec::with_capacity(signers.len());
    for (signer, algorithm) in signers {
        blocks.push(cose_sign1(*signer, *algorithm, &digest)?);
    }

    let wrapper = encode(|e| {
        e.array(1 + blocks.len() as u64)?.bytes(&digest)?;
        for block in &blocks {
            e.bytes(block)?;
        }
        Ok(())
    });
    let envelope = encode(|e| {
        e.tag(minicbor::data::Tag::new(TAG_ENVELOPE))?
            .map(2)?
            .i64(env::AUTHENTICATION_WRAPPER)?
            .bytes(&wrapper)?
            .i64(env::MANIFEST)?
            .bytes(manifest)?;
        Ok(())
    });
    self_check(&envelope, signers)?;
    Ok(envelope)
}

/// `COSE_Sign1_Tagged` over the detached payload `digest` (the encoded SUIT_Digest):
/// protected `{1: alg, 4: kid}`, unprotected `{}`, payload `nil`.
fn cose_sign1(
    signer: &dyn Sign,
    algorithm: SignatureAlgorithm,
    digest: &[u8],
) -> Result<Vec<u8>, BuildError> {
    let public_key = signer.public_key();
    if !algorithm.fits(&public_key) {
        return Err(BuildError::AlgorithmMismatch {
            key: match public_key {
                crate::PublicKey::Ed25519(_) => "Ed25519",
                crate::PublicKey::P256(_) => "P-256",
            },
            alg: algorithm.name(),
        });
    }
    let protected = coset::HeaderBuilder::new()
        .algorithm(match algorithm {
            SignatureAlgorithm::Ed25519 => iana::Algorithm::Ed25519,
            SignatureAlgorithm::EdDsa => iana::Algorithm::EdDSA,
            SignatureAlgorithm::Es256 => iana::Algorithm::ES256,
            SignatureAlgorithm::Esp256 => iana::Algorithm::ESP256,
        })
        .key_id(public_key.key_id().to_vec())
        .build();
    let sign1 = coset::CoseSign1Builder::new()
        .protected(protected)
        .try_create_detached_signature(digest, &[], |tbs| signer.sign(tbs))?
        .build();
    sign1
        .to_tagged_vec()
        .map_err(|e| BuildError::Cose(e.to_string()))
}

/// Verifies each signer's block with that signer's key, with rota's own verifier.
fn self_check(
    envelope: &[u8],
    signers: &[(&dyn Sign, SignatureAlgorithm)],
) -> Result<(), BuildError> {
    let fail = |signer, error| BuildError::SelfCheck { signer, error };
    let policy = Policy {
        allow_eddsa_8: true,
        ..Policy::default()
    };
    let decoded = Envelope::decode(envelope, &policy).map_err(BuildError::Undecodable)?;
    let (digest, _, blocks) = decoded
        .authentication_wrapper()
        .map_err(BuildError::Undecodable)?;
    for (i, (block, (signer, _))) in blocks.zip(signers).enumerate() {
        let cose = block.map_err(|e| fail(i, e))?;
        let algorithm = SignatureAlgorithm::from_cose(cose.alg)
            .ok_or(crate::Error::UnsupportedAlgorithm { alg: cose.alg })
            .map_err(|e| fail(i, e))?;
        cose.verify(
            algorithm,
            Some(digest.content),
            &[],
            &[signer.public_key()],
            &HostVerifier,
        )
        .map_err(|e| fail(i, e))?;
    }
    Ok(())
}

/// `SUIT_Digest = [-16, h'<sha256>']`, encoded.
fn encode_suit_digest(digest: &[u8; 32]) -> Vec<u8> {
    encode(|e| {
        e.array(2)?.i64(alg::SHA256)?.bytes(digest)?;
        Ok(())
    })
}

type EncodeResult = Result<(), minicbor::encode::Error<core::convert::Infallible>>;

/// Runs `f` on an encoder writing to a new `Vec`.
fn encode(f: impl FnOnce(&mut Encoder<Vec<u8>>) -> EncodeResult) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    match f(&mut e) {
        Ok(()) => e.into_writer(),
        // Writing to a Vec cannot fail (its error type is `Infallible`), and the
        // encoder methods used here report no other error.
        Err(err) => unreachable!("CBOR encoding into memory failed: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Ed25519Verifier, PublicKey};
    use crate::signer::SoftwareKey;
    use crate::{Error, ImageDigest};

    /// RFC 8032 §7.1 TEST 1 secret key.
    const TEST1_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const TEST1_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn test1() -> SoftwareKey {
        SoftwareKey::from_ed25519_seed(hex::decode(TEST1_SEED).unwrap().try_into().unwrap())
    }

    fn release() -> ImageManifest {
        let image = b"firmware image bytes";
        let mut digest = ImageDigest::new();
        digest.update(image);
        ImageManifest {
            vendor_id: hex::decode("fa6b4a53d5ad5fdfbe9de663e4d41ffe")
                .unwrap()
                .try_into()
                .unwrap(),
            class_id: hex::decode("1492af1425695e48bf429b2d51f2ab45")
                .unwrap()
                .try_into()
                .unwrap(),
            component: vec![b"fw".to_vec(), vec![0x01]],
            image_size: digest.len(),
            image_digest: digest.finalize(),
            sequence_number: 7,
            security_version: 3,
            uri: Some("https://updates.example/fw/7.bin".into()),
            description: Some("rota test release".into()),
        }
    }

    #[test]
    fn round_trip_through_the_no_std_verifier() {
        let signer = test1();
        assert_eq!(
            signer.public_key(),
            PublicKey::Ed25519(hex::decode(TEST1_PUBLIC).unwrap().try_into().unwrap())
        );
        let input = release();
        let bytes = input.build_envelope(&[&signer]).unwrap();

        let policy = Policy::default();
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        let auth = envelope
            .authenticate(&[signer.public_key()], &Ed25519Verifier, &policy)
            .unwrap();
        assert_eq!(auth.algorithm, SignatureAlgorithm::Ed25519);
        assert_eq!(auth.signer, 0);
        assert_eq!(auth.manifest.sequence_number, 7);

        let claims = auth.claims(0, None).unwrap();
        assert_eq!(claims.vendor_id, Some(&input.vendor_id[..]));
        assert_eq!(claims.class_id, Some(&input.class_id[..]));
        let digest = claims.image_digest.unwrap();
        assert_eq!(digest.alg, alg::SHA256);
        assert_eq!(digest.bytes, &input.image_digest[..]);
        assert_eq!(claims.image_size, Some(input.image_size));
        assert_eq!(claims.security_version, Some(3));
        assert_eq!(claims.uri, input.uri.as_deref());

        let components: Vec<Vec<&[u8]>> = auth
            .manifest
            .common
            .components()
            .map(|c| c.segments().collect())
            .collect();
        assert_eq!(components, vec![vec![&b"fw"[..], &[0x01][..]]]);

        // The image the manifest was built for passes the streaming check.
        let mut image = ImageDigest::new();
        image.update(b"firmware ");
        image.update(b"image bytes");
        image.check(&digest, claims.image_size).unwrap();
    }

    #[test]
    fn cose_headers_are_as_documented() {
        let signer = test1();
        let bytes = release().build_envelope(&[&signer]).unwrap();
        let envelope = Envelope::decode(&bytes, &Policy::default()).unwrap();
        let mut signatures = envelope.signatures().unwrap();
        let cose = signatures.next().unwrap().unwrap();
        assert!(signatures.next().is_none());
        // {1: -19, 4: h'<32 bytes>'}
        let mut expected = hex::decode("a201320458 20".replace(' ', "")).unwrap();
        expected.extend_from_slice(&signer.public_key().key_id());
        assert_eq!(cose.protected, &expected[..]);
        assert_eq!(cose.alg, -19);
        assert_eq!(cose.kid, Some(&signer.public_key().key_id()[..]));
        assert_eq!(cose.payload, None);
        assert_eq!(cose.signature.len(), 64);
        // Keys 2 then 3, nothing else.
        let keys: Vec<_> = envelope.member_keys().collect();
        assert_eq!(keys, [crate::Key::Int(2), crate::Key::Int(3)]);
    }

    #[test]
    fn deterministic() {
        let signer = test1();
        let a = release().build_envelope(&[&signer]).unwrap();
        let b = release().build_envelope(&[&signer]).unwrap();
        assert_eq!(a, b);
    }

    /// Without a URI and with security version 0, the manifest is draft-37 example 0
    /// byte for byte, plus the `-256: 0` parameter (3 bytes, so each enclosing bstr
    /// header grows by 3).
    #[test]
    fn matches_draft37_example0_layout() {
        const EXAMPLE0: &str = "a50101020003585fa202818141000458568614a40150fa6b4a53d5ad5fdfbe9de663e4d41ffe02501492af1425695e48bf429b2d51f2ab45035824822f582000112233445566778899aabbccddeeff0123456789abcdeffedcba98765432100e1987d0010f020f074382030f0943821702";
        let expected = EXAMPLE0
            .replace("03585fa2", "035862a2")
            .replace("0458568614a401", "0458598614a501")
            .replace("0e1987d0", "0e1987d038ff00");
        let input = ImageManifest {
            vendor_id: hex::decode("fa6b4a53d5ad5fdfbe9de663e4d41ffe")
                .unwrap()
                .try_into()
                .unwrap(),
            class_id: hex::decode("1492af1425695e48bf429b2d51f2ab45")
                .unwrap()
                .try_into()
                .unwrap(),
            image_digest: hex::decode(
                "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210",
            )
            .unwrap()
            .try_into()
            .unwrap(),
            image_size: 34768,
            ..ImageManifest::default()
        };
        assert_eq!(hex::encode(input.encode_manifest()), expected);
    }

    /// With a URI, the install sequence is draft-37 example 1's, byte for byte.
    #[test]
    fn install_matches_draft37_example1() {
        const EXAMPLE1_INSTALL: &str =
            "1458258614a115781b687474703a2f2f6578616d706c652e636f6d2f66696c652e62696e1502030f";
        let input = ImageManifest {
            uri: Some("http://example.com/file.bin".into()),
            ..ImageManifest::default()
        };
        let manifest = hex::encode(input.encode_manifest());
        assert!(
            manifest.ends_with(EXAMPLE1_INSTALL),
            "manifest {manifest} does not end with example 1's install sequence"
        );
    }

    #[test]
    fn wrong_anchor_is_no_trusted_key() {
        let bytes = release().build_envelope(&[&test1()]).unwrap();
        let other = SoftwareKey::from_ed25519_seed([7; 32]).public_key();
        let policy = Policy::default();
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        assert_eq!(
            envelope.authenticate(&[other], &Ed25519Verifier, &policy),
            Err(Error::NoTrustedKey)
        );
    }

    #[test]
    fn flipped_signature_byte_is_bad_signature() {
        let signer = test1();
        let mut bytes = release().build_envelope(&[&signer]).unwrap();
        let policy = Policy::default();
        let offset = {
            let envelope = Envelope::decode(&bytes, &policy).unwrap();
            let cose = envelope.signatures().unwrap().next().unwrap().unwrap();
            cose.signature.as_ptr() as usize - bytes.as_ptr() as usize
        };
        bytes[offset + 10] ^= 0x01;
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        assert_eq!(
            envelope.authenticate(&[signer.public_key()], &Ed25519Verifier, &policy),
            Err(Error::BadSignature)
        );
    }

    #[test]
    fn tampered_manifest_is_a_digest_mismatch() {
        let signer = test1();
        let input = release();
        let mut bytes = input.build_envelope(&[&signer]).unwrap();
        // The sequence number 7 is `02 07` in the manifest.
        let at = bytes
            .windows(4)
            .position(|w| w == [0x01, 0x01, 0x02, 0x07])
            .unwrap();
        bytes[at + 3] = 0x08;
        let policy = Policy::default();
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        assert_eq!(
            envelope.authenticate(&[signer.public_key()], &Ed25519Verifier, &policy),
            Err(Error::ManifestDigestMismatch)
        );
    }

    #[test]
    fn two_signers_either_anchor_verifies() {
        let a = test1();
        let b = SoftwareKey::from_ed25519_seed([42; 32]);
        let bytes = release().build_envelope(&[&a, &b]).unwrap();
        let policy = Policy::default();
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        assert_eq!(envelope.signatures().unwrap().count(), 2);
        for (key, index) in [(a.public_key(), 0), (b.public_key(), 0)] {
            let auth = envelope
                .authenticate(&[key], &Ed25519Verifier, &policy)
                .unwrap();
            assert_eq!(auth.signer, index);
        }
    }

    #[test]
    fn eddsa_8_needs_the_policy() {
        let signer = test1();
        let bytes = release()
            .build_envelope_as(&[(&signer, SignatureAlgorithm::EdDsa)])
            .unwrap();
        let strict = Policy::default();
        let envelope = Envelope::decode(&bytes, &strict).unwrap();
        assert_eq!(
            envelope.authenticate(&[signer.public_key()], &Ed25519Verifier, &strict),
            Err(Error::UnsupportedAlgorithm { alg: -8 })
        );
        let lenient = Policy {
            allow_eddsa_8: true,
            ..Policy::default()
        };
        let auth = envelope
            .authenticate(&[signer.public_key()], &Ed25519Verifier, &lenient)
            .unwrap();
        assert_eq!(auth.algorithm, SignatureAlgorithm::EdDsa);
    }

    #[test]
    fn an_algorithm_that_does_not_fit_the_key_is_refused() {
        let err = release()
            .build_envelope_as(&[(&test1(), SignatureAlgorithm::Es256)])
            .unwrap_err();
        assert!(matches!(err, BuildError::AlgorithmMismatch { .. }), "{err}");
    }

    /// A P-256 release key signs ES256 envelopes that rota's host verifier accepts.
    #[test]
    fn p256_key_signs_es256() {
        let key = SoftwareKey::generate(crate::signer::Algorithm::EcdsaP256Sha256).unwrap();
        let bytes = release().build_envelope(&[&key]).unwrap();
        let policy = Policy::default();
        let envelope = Envelope::decode(&bytes, &policy).unwrap();
        let host = envelope.authenticate(&[key.public_key()], &crate::HostVerifier, &policy);
        assert_eq!(host.unwrap().algorithm, SignatureAlgorithm::Es256);
        let boot = envelope.authenticate(&[key.public_key()], &crate::EcdsaP256Verifier, &policy);
        assert_eq!(boot.unwrap().algorithm, SignatureAlgorithm::Es256);
        // The bootloader's default verifier has no P-256: it refuses, never accepts.
        assert_eq!(
            envelope
                .authenticate(&[key.public_key()], &Ed25519Verifier, &policy)
                .map(|_| ()),
            Err(Error::UnsupportedAlgorithm { alg: -7 })
        );
    }

    #[test]
    fn no_signers_is_refused() {
        assert!(matches!(
            release().build_envelope(&[]),
            Err(BuildError::NoSigners)
        ));
    }

    /// A signer whose signatures do not verify is caught before the envelope leaves.
    #[test]
    fn faulty_signer_fails_the_self_check() {
        struct Broken(SoftwareKey);
        impl Sign for Broken {
            fn public_key(&self) -> PublicKey {
                self.0.public_key()
            }
            fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
                let mut sig = self.0.sign(message)?;
                sig[0] ^= 1;
                Ok(sig)
            }
        }
        let err = release()
            .build_envelope(&[&test1(), &Broken(test1())])
            .unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::SelfCheck {
                    signer: 1,
                    error: Error::BadSignature
                }
            ),
            "{err}"
        );
    }
}
