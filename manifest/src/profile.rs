//! The boot profile: rota's canonical envelope, and only it, verified in a fraction of
//! the flash of the general decoder.
//!
//! A bootloader needs five facts from an envelope it trusts (vendor-id, class-id, image
//! digest and size, security version) and its sequence number. The general path
//! ([`crate::Envelope::decode`], [`crate::Envelope::authenticate`],
//! [`crate::Authenticated::claims`]) finds them in any SUIT envelope: it interprets
//! command sequences, `try-each`, `override-parameters` in any order, severed members and
//! opaque extensions. [`verify_boot_envelope`] instead accepts exactly the layout
//! `ImageManifest::build_envelope` (`builder` feature) writes for one Ed25519 signer, so
//! each fact sits at a fixed place; everything else must be the builder's bytes.
//!
//! # The layout
//!
//! `…` marks the only variable parts; every other byte is compared literally. Byte
//! strings (`<< >>`) and integers may use any definite-length head, as the general path
//! reads them with the same `cbor::Reader`.
//!
//! ```text
//! d8 6b a2                              107({                  SUIT_Envelope_Tagged (§8.2)
//!   02 << 82                              2: << [              authentication wrapper (§8.3)
//!     << 82 2f 58 20 …32… >>                << [-16, digest] >>,   SHA-256 of the manifest bstr
//!     << d2 84                              << 18([            COSE_Sign1_Tagged (RFC 9052 §4.2)
//!       << a2 01 32 04 58 20 …32… >>          << {1: -19, 4: kid} >>,  kid = SHA-256(key)
//!       a0 f6 58 40 …64…                      {}, nil, signature ]) >> ] >>,
//!   03 << a5 / a6 / a7                    3: << {              SUIT_Manifest (§8.4)
//!     01 01 02 …uint…                        1: 1, 2: sequence-number,
//!     03 << a2 02 81 [ …bstr… ]              3: << { 2: [ component ],
//!        04 << 86 14 a5                          4: << [ 20, {             override-parameters
//!           01 50 …16… 02 50 …16…                    1: vendor-id, 2: class-id,
//!           03 58 24 82 2f 58 20 …32…                3: << [-16, image digest] >>,
//!           0e …uint… 38 ff …uint…                   14: image-size, -256: security version },
//!           01 0f 02 0f >> } >>                      1, 15, 2, 15 ] >> } >>,
//!     07 43 82 03 0f 09 43 82 17 02          7: << [3, 15] >>, 9: << [23, 2] >>,
//!     ? 14 << 86 14 a1 15 …tstr… 15 02 03 0f >>   ? 20: << [20, {21: uri}, 21, 2, 3, 15] >>,
//!     ? 17 << a1 62 65 6e a1 01 …tstr… >>         ? 23: << {"en": {1: description}} >>
//!   >> })
//! ```
//!
//! # Why it is a strict subset of the general path
//!
//! Whatever this module accepts, the general path accepts with the same claims, because
//! each of its rules is at least as strict as the general path's on the same bytes:
//! - the literal bytes fix every tag (107, 18), map and array length, key and its
//!   order, so keys cannot repeat (RFC 8949 §5.6), no length is indefinite
//!   (RFC 8949 §4.2.1), `alg` is protected and `-19` (RFC 9052 §3.1; `-8` needs a policy
//!   the bootloader does not set), there is no `crit` and nothing unprotected
//!   (RFC 9052 §3), the payload is detached (SUIT §8.3), and every SUIT_Digest is
//!   SHA-256 with 32 bytes (SUIT §10);
//! - every byte string must be filled exactly by its content (`Reader::finish`), and so
//!   must the envelope (RFC 8949 §5.3);
//! - the variable parts are read by the general path's own `cbor::Reader` methods: integers
//!   as `uint`, text as UTF-8 (the URI and the description are checked although unused);
//! - the manifest digest is checked over the manifest bstr, header included (SUIT §8.3),
//!   and the signature over the Sig_structure built from the protected header as
//!   received (RFC 9052 §4.4), by the caller's [`Verifier`], as the general path does;
//! - the `kid` must be the key's id, so the general path tries the same key (RFC 9052
//!   §3.1 makes `kid` a hint; here it must match).
//!
//! `manifest/tests/boot_profile_*.rs` check the property on builder output, mutated
//! envelopes and the byte-rule cases, and `fuzz/fuzz_targets/boot_profile.rs` fuzzes it.
//!
//! # What it refuses that the general path accepts
//!
//! Any departure from the layout, in particular: other signature algorithms (ES256,
//! ESP256, EdDSA -8), more than one authentication block, a `kid` other than the key's
//! id or none, any other protected or unprotected header (`crit`, `content-type`, …),
//! severed members, integrated payloads and delegation chains, other manifest members
//! (`reference-uri`, `load`, `payload-fetch`, extensions) or other member order, more
//! than one component, any other command, parameter, parameter order or reporting
//! policy, a CBOR-PEN vendor-id, SUIT_Digest extensions, and other text.
//!
//! # Versioning
//!
//! The layout is the builder's: a change to `builder.rs` is a change here, and
//! `boot_profile_builder.rs` fails until both agree. Always compiled (no feature): it is
//! `no_std`, allocates nothing, and costs no flash to a binary that does not call it.

use crate::cbor::Reader;
use crate::claims::ComponentClaims;
use crate::cose::sig_structure;
use crate::crypto::{PublicKey, SignatureAlgorithm, Verifier};
use crate::digest::{ImageDigest, SuitDigest};
use crate::error::{Error, Result, msg};
use crate::labels::alg;

/// The facts a bootloader acts on, from an envelope in the boot profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootClaims<'a> {
    /// `vendor-id` (§8.4.8.3), an RFC 4122 UUID.
    pub vendor_id: &'a [u8; 16],
    /// `class-id` (§8.4.8.4), an RFC 4122 UUID.
    pub class_id: &'a [u8; 16],
    /// `image-digest` (§8.4.8.6), always SHA-256.
    pub image_digest: SuitDigest<'a>,
    /// `image-size` (§8.4.8.7).
    pub image_size: u64,
    /// rota's anti-rollback level (parameter -256).
    pub security_version: u64,
    /// `manifest-sequence-number` (§8.4.2).
    pub sequence_number: u64,
}

impl<'a> From<BootClaims<'a>> for ComponentClaims<'a> {
    /// The claims as the general path states them for component 0; `uri` (install
    /// sequence) and `component_slot` are not read by the boot profile, so `None`.
    fn from(c: BootClaims<'a>) -> Self {
        Self {
            vendor_id: Some(c.vendor_id),
            class_id: Some(c.class_id),
            image_digest: Some(c.image_digest),
            image_size: Some(c.image_size),
            security_version: Some(c.security_version),
            ..Self::default()
        }
    }
}

/// Length of the Sig_structure of the profile's COSE_Sign1 (RFC 9052 §4.4):
/// `84`, `6a "Signature1"`, the 38-byte protected header and the 36-byte SUIT_Digest
/// each behind a 2-byte head, and an empty external_aad (`40`).
const SIG_STRUCTURE_LEN: usize = 1 + 11 + (2 + 38) + 1 + (2 + 36);

/// Verifies an envelope in rota's boot profile signed by `key`, and returns its claims.
///
/// Order as in §8.3: the envelope's shape, the manifest digest, the signature, and only
/// then the manifest. Errors name the failed check as the general path does; a
/// departure from the layout is [`Error::NotBootProfile`] at its offset.
pub fn verify_boot_envelope<'a>(
    bytes: &'a [u8],
    key: &PublicKey,
    verifier: &impl Verifier,
) -> Result<BootClaims<'a>> {
    // §8.2: SUIT_Envelope_Tagged, a map of the wrapper (2) and the manifest (3) only.
    let mut r = Reader::new(bytes);
    r.literal(&[0xd8, 0x6b, 0xa2])?;
    // §8.3: the wrapper comes first; the manifest before it is refused by name, as the
    // general path refuses it, not as a mere departure from the layout.
    let first_member = r.offset();
    if r.literal_if(&[0x03]) {
        return Err(Error::AuthenticationWrapperNotFirst {
            offset: first_member,
        });
    }
    r.literal(&[0x02])?;
    let wrapper = r.bytes_item(msg!("authentication-wrapper (bstr)"))?;
    r.literal(&[0x03])?;
    let manifest = r.bytes_item(msg!("manifest (bstr)"))?;
    r.finish()?;

    // §8.3: [ bstr .cbor SUIT_Digest, one bstr .cbor COSE_Sign1_Tagged ].
    let mut w = r.nested(wrapper);
    w.literal(&[0x82])?;
    let digest = w.bytes_item(msg!("the manifest digest (bstr)"))?;
    let cose = w.bytes_item(msg!("an authentication block (bstr)"))?;
    w.finish()?;

    // §10: SHA-256 (-16) and its 32 bytes, no extensions.
    let mut d = w.nested(digest);
    d.literal(&[0x82, 0x2f, 0x58, 0x20])?;
    let manifest_hash = d.raw::<32>()?;
    d.finish()?;

    // RFC 9052 §4.2: tag 18, [protected, unprotected, payload, signature]; the
    // unprotected bucket empty (so no label is in both, §3, and no crit outside the
    // protected one, §3.1), the payload nil (detached, SUIT §8.3).
    let mut c = w.nested(cose);
    c.literal(&[0xd2, 0x84])?;
    let protected = c.bytes_item(msg!("the protected header (bstr)"))?;
    c.literal(&[0xa0, 0xf6, 0x58, 0x40])?;
    let signature = c.raw::<64>()?;
    c.finish()?;

    // RFC 9052 §3.1: alg protected and Ed25519 (-19), the kid, nothing else (no crit).
    let mut h = c.nested(protected);
    h.literal(&[0xa2, 0x01, 0x32, 0x04, 0x58, 0x20])?;
    let kid = h.raw::<32>()?;
    h.finish()?;

    // §8.3: the digest covers the manifest bstr, CBOR header included.
    let mut hasher = ImageDigest::new();
    hasher.update(manifest.encoded);
    if hasher.finalize() != *manifest_hash {
        return Err(Error::ManifestDigestMismatch);
    }
    // The signer must be `key`, named by its id (a hint in RFC 9052 §3.1, required here).
    if !SignatureAlgorithm::Ed25519.fits(key) || *kid != key.key_id() {
        return Err(Error::NoTrustedKey);
    }
    // RFC 9052 §4.4: signed over the protected header as received and the detached
    // payload, the encoded SUIT_Digest.
    let mut buf = [0u8; SIG_STRUCTURE_LEN];
    let message = sig_structure(protected.content, &[], digest.content, &mut buf)?;
    verifier.verify(SignatureAlgorithm::Ed25519, key, message, signature)?;

    read_manifest(r.nested(manifest))
}

/// The authenticated manifest, in the builder's layout.
fn read_manifest(mut m: Reader<'_>) -> Result<BootClaims<'_>> {
    let at = m.offset();
    // Five members, plus install and text when present.
    let optional = m
        .map(msg!("the manifest (map)"))?
        .checked_sub(5)
        .filter(|&n| n <= 2)
        .ok_or(Error::NotBootProfile { offset: at })?;
    // §8.4.1: manifest-version 1; §8.4.2: the sequence number.
    m.literal(&[0x01, 0x01, 0x02])?;
    let sequence_number = m.uint(msg!("manifest-sequence-number (uint)"))?;
    m.literal(&[0x03])?;
    let common = m.bytes_item(msg!("common (bstr)"))?;
    // validate: condition-image-match; invoke: directive-invoke.
    m.literal(&[0x07, 0x43, 0x82, 0x03, 0x0f, 0x09, 0x43, 0x82, 0x17, 0x02])?;
    let mut left = optional;
    if left > 0 && m.literal_if(&[0x14]) {
        // install: override-parameters {uri}, directive-fetch, condition-image-match.
        let install = m.bytes_item(msg!("install (bstr)"))?;
        let mut i = m.nested(install);
        i.literal(&[0x86, 0x14, 0xa1, 0x15])?;
        i.text(msg!("uri (tstr)"))?;
        i.literal(&[0x15, 0x02, 0x03, 0x0f])?;
        i.finish()?;
        left -= 1;
    }
    if left > 0 {
        // text (§8.4.4): {"en": {manifest-description: tstr}}.
        m.literal(&[0x17])?;
        let text = m.bytes_item(msg!("text (bstr)"))?;
        let mut t = m.nested(text);
        t.literal(&[0xa1, 0x62, b'e', b'n', 0xa1, 0x01])?;
        t.text(msg!("manifest-description (tstr)"))?;
        t.finish()?;
        left -= 1;
    }
    if left > 0 {
        return Err(Error::NotBootProfile { offset: m.offset() });
    }
    m.finish()?;

    // §8.4.5: one component, whatever its identifier's segments, and the shared sequence.
    let mut c = m.nested(common);
    c.literal(&[0xa2, 0x02, 0x81])?;
    for _ in 0..c.array(msg!("a component identifier (array of bstr)"))? {
        c.bytes(msg!("a component identifier segment (bstr)"))?;
    }
    c.literal(&[0x04])?;
    let shared = c.bytes_item(msg!("shared-sequence (bstr)"))?;
    c.finish()?;

    // The shared sequence: override-parameters (§8.4.10.3) with the five parameters in
    // the builder's order, then condition-vendor-identifier and -class-identifier.
    let mut s = c.nested(shared);
    s.literal(&[0x86, 0x14, 0xa5, 0x01, 0x50])?;
    let vendor_id = s.raw::<16>()?;
    s.literal(&[0x02, 0x50])?;
    let class_id = s.raw::<16>()?;
    s.literal(&[0x03, 0x58, 0x24, 0x82, 0x2f, 0x58, 0x20])?;
    let image_digest = s.raw::<32>()?;
    s.literal(&[0x0e])?;
    let image_size = s.uint(msg!("image-size (uint)"))?;
    s.literal(&[0x38, 0xff])?;
    let security_version = s.uint(msg!("the rota security version (uint)"))?;
    s.literal(&[0x01, 0x0f, 0x02, 0x0f])?;
    s.finish()?;

    Ok(BootClaims {
        vendor_id,
        class_id,
        image_digest: SuitDigest {
            alg: alg::SHA256,
            bytes: image_digest,
        },
        image_size,
        security_version,
        sequence_number,
    })
}
