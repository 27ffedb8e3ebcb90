//! Image verification: the one check every boot decision and every staged update goes
//! through.
//!
//! A slot's image is bootable only if, in this order:
//! 1. its header is well-formed ([`crate::header`]);
//! 2. the signer's key hash is in a provisioned key slot of the root of trust, and no
//!    slot holding that hash is revoked (rota trust model: the RoT anchor);
//! 3. the envelope decodes and a COSE_Sign1 by that key authenticates the manifest
//!    (draft-ietf-suit-manifest §8.3, RFC 9052 §4.4; `rota-manifest`'s strict Ed25519),
//!    by the [`EnvelopeAuth`] the bootloader is built with: the general SUIT decoder
//!    ([`SuitDecoder`]), or only the layout `rota sign` writes ([`BootProfile`],
//!    `rota_manifest::profile`), which needs a fraction of the general decoder's flash;
//! 4. the manifest describes one component, whose vendor-id and class-id are present
//!    and equal the device's (§8.4.8.3 condition-vendor-identifier, §8.4.8.4
//!    condition-class-identifier);
//! 5. its security version (rota's parameter -256; absent means 0) is at or above the
//!    floor, and within the floor counter's budget so that confirming it can commit it;
//! 6. its image size fits the slot, and the slot's image bytes match the image digest
//!    and size (§8.4.9.2 condition-image-match), read once, in one pass.

use core::marker::PhantomData;

use embedded_storage::nor_flash::NorFlash;
use rota_manifest::claims::ComponentClaims;
use rota_manifest::{Ed25519Verifier, ImageDigest, PublicKey, Verifier, digest::SuitDigest};

use crate::error::Error;
use crate::header::{KEY_LEN, SlotHeader};
use crate::layout::{Layout, Slot};
use crate::rot::RootOfTrust;

/// Bytes hashed per flash read while checking an image.
const READ_CHUNK: usize = 256;

/// Why an image may not boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The slot holds no header.
    EmptySlot,
    /// The slot header is malformed (bad length, non-zero reserved bytes).
    MalformedHeader,
    /// The signer's key is not in the root of trust.
    UntrustedKey,
    /// The signer's key is in key slot `slot`, which is revoked.
    RevokedKey { slot: usize },
    /// The envelope, its signature or its manifest failed `rota-manifest`'s checks.
    Manifest(rota_manifest::Error),
    /// The manifest lacks something a bootable image needs.
    MissingClaim(&'static str),
    /// The manifest describes more than one component; a slot holds one image.
    NotOneComponent,
    /// The manifest's vendor-id is not the device's.
    WrongVendor,
    /// The manifest's class-id is not the device's.
    WrongClass,
    /// The security version is below the device's floor.
    BelowFloor { security_version: u64, floor: u32 },
    /// The security version is beyond what the device's floor counter can record.
    BeyondFloorBudget { security_version: u64, budget: u32 },
    /// The image is larger than the slot.
    TooLarge { image_size: u64, capacity: u32 },
    /// The slot's image does not match the manifest's digest and size.
    ImageMismatch,
    /// The manifest's sequence number is below the running image's (checked by the
    /// updater, draft-ietf-suit-manifest §8.4.2).
    OlderSequence { sequence_number: u64, running: u64 },
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::EmptySlot => f.write_str("the slot holds no image"),
            Self::MalformedHeader => f.write_str("the slot header is malformed"),
            Self::UntrustedKey => {
                f.write_str("the image is signed by a key the device does not trust")
            }
            Self::RevokedKey { slot } => write!(
                f,
                "the image is signed by the revoked key in key slot {slot}"
            ),
            Self::Manifest(e) => write!(f, "the manifest does not verify: {e}"),
            Self::MissingClaim(what) => write!(f, "the manifest names no {what}"),
            Self::NotOneComponent => f.write_str("the manifest describes more than one component"),
            Self::WrongVendor => f.write_str("the image is for another vendor"),
            Self::WrongClass => f.write_str("the image is for another device class"),
            Self::BelowFloor {
                security_version,
                floor,
            } => write!(
                f,
                "security version {security_version} is below the device's floor {floor}"
            ),
            Self::BeyondFloorBudget {
                security_version,
                budget,
            } => write!(
                f,
                "security version {security_version} is beyond the device's counter ({budget})"
            ),
            Self::TooLarge {
                image_size,
                capacity,
            } => write!(
                f,
                "the image ({image_size} bytes) is larger than the slot ({capacity} bytes)"
            ),
            Self::ImageMismatch => {
                f.write_str("the image does not match the manifest's digest and size")
            }
            Self::OlderSequence {
                sequence_number,
                running,
            } => write!(
                f,
                "sequence number {sequence_number} is older than the running image's {running}"
            ),
        }
    }
}

/// An image that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedImage {
    pub slot: Slot,
    /// Flash address of the image's first byte (its vector table, on Cortex-M).
    pub address: u32,
    pub size: u32,
    pub security_version: u64,
    pub sequence_number: u64,
    /// The root-of-trust key slot of the signer.
    pub key_slot: usize,
    /// The image's SHA-256 digest, as its envelope signs it and the flash holds it.
    pub digest: [u8; 32],
}

/// What a verified envelope promises about its image.
pub(crate) struct Promise<'e> {
    pub(crate) size: u32,
    pub(crate) digest: SuitDigest<'e>,
    pub(crate) security_version: u64,
    pub(crate) sequence_number: u64,
    pub(crate) key_slot: usize,
}

/// Check 3 and the one-component part of 4, chosen by type as embassy-boot chooses its
/// digest and key types: the envelope decoder and the signature verifier a bootloader
/// (and the updater beside it, which must refuse what its bootloader refuses) is built
/// with. Every choice is compiled and tested together; the firmware links only its own.
pub trait EnvelopeAuth {
    /// The signature verifier, which the updater also checks trust-anchor commands with
    /// ([`crate::anchor`]).
    type Verifier: Verifier + Default;

    /// The envelope authenticated by `key`, as the claims of its one component and its
    /// sequence number.
    fn authenticated_claims<'e>(
        key: &PublicKey,
        envelope: &'e [u8],
    ) -> Result<(ComponentClaims<'e>, u64), Rejection>;
}

/// The general SUIT decoder (`rota_manifest::Envelope`), with the strict Ed25519
/// verifier `V`: ed25519-dalek ([`Ed25519Verifier`], the default), or salty
/// (`CompactEd25519Verifier`, feature `compact-ed25519`: the same verdicts in ~5.5 KB
/// less flash on a Cortex-M4).
pub struct SuitDecoder<V = Ed25519Verifier>(PhantomData<V>);

/// rota-manifest's boot profile (`verify_boot_envelope`): only the canonical layout
/// `rota sign` writes, a strict subset of what [`SuitDecoder`] accepts with the same
/// claims, in ~12.8 KB less flash on a Cortex-M4 (rota's QEMU bootloader: 32,856 ->
/// 19,736 bytes). With the verifier `V`, as for [`SuitDecoder`].
pub struct BootProfile<V = Ed25519Verifier>(PhantomData<V>);

/// What a bootloader short of flash links (rota's QEMU bootloader, its application's
/// updater and the bench): the boot profile with salty's Ed25519.
#[cfg(feature = "compact-ed25519")]
pub type CompactBootAuth = BootProfile<rota_manifest::CompactEd25519Verifier>;

impl<V: Verifier + Default> EnvelopeAuth for SuitDecoder<V> {
    type Verifier = V;

    fn authenticated_claims<'e>(
        key: &PublicKey,
        envelope: &'e [u8],
    ) -> Result<(ComponentClaims<'e>, u64), Rejection> {
        let policy = rota_manifest::Policy::default();
        let authenticated = rota_manifest::Envelope::decode(envelope, &policy)
            .and_then(|e| e.authenticate(&[*key], &V::default(), &policy))
            .map_err(Rejection::Manifest)?;
        // A slot holds one image: a manifest describing several components is not for it.
        if authenticated.manifest.common.component_count() != 1 {
            return Err(Rejection::NotOneComponent);
        }
        let claims = authenticated.claims(0, None).map_err(Rejection::Manifest)?;
        Ok((claims, authenticated.manifest.sequence_number))
    }
}

impl<V: Verifier + Default> EnvelopeAuth for BootProfile<V> {
    type Verifier = V;

    fn authenticated_claims<'e>(
        key: &PublicKey,
        envelope: &'e [u8],
    ) -> Result<(ComponentClaims<'e>, u64), Rejection> {
        let claims = rota_manifest::verify_boot_envelope(envelope, key, &V::default())
            .map_err(Rejection::Manifest)?;
        Ok((claims.into(), claims.sequence_number))
    }
}

/// Verifies the image in `slot`: the checks 1–6 of the module documentation, with the
/// envelope authenticated by `A`.
pub fn verify_slot<A: EnvelopeAuth, F: NorFlash, R: RootOfTrust>(
    flash: &mut F,
    rot: &mut R,
    layout: &Layout,
    slot: Slot,
    scratch: &mut [u8],
) -> Result<VerifiedImage, Error<F::Error, R::Error>> {
    let header = SlotHeader::read(flash, layout, slot, scratch)
        .map_err(Error::Flash)?
        .map_err(Error::Rejected)?;
    let promise = check_envelope::<A, _, _>(rot, layout, slot, &header.key, header.envelope)?;
    check_image(flash, layout.image_address(slot), &promise)?;
    // `check_image` matched a SHA-256 digest (the only algorithm it accepts).
    let mut digest = [0; 32];
    if let Some(bytes) = promise.digest.bytes.get(..32) {
        digest.copy_from_slice(bytes);
    }
    Ok(VerifiedImage {
        slot,
        address: layout.image_address(slot),
        size: promise.size,
        security_version: promise.security_version,
        sequence_number: promise.sequence_number,
        key_slot: promise.key_slot,
        digest,
    })
}

/// Checks 2–5 and the size part of 6: everything but the image bytes.
pub(crate) fn check_envelope<'e, A: EnvelopeAuth, FE, R: RootOfTrust>(
    rot: &mut R,
    layout: &Layout,
    slot: Slot,
    key: &[u8; KEY_LEN],
    envelope: &'e [u8],
) -> Result<Promise<'e>, Error<FE, R::Error>> {
    let reject = |r| Err(Error::Rejected(r));
    let key = PublicKey::Ed25519(*key);
    let key_slot = trusted_key_slot(rot, &key.key_id())?;

    let (claims, sequence_number) =
        A::authenticated_claims(&key, envelope).map_err(Error::Rejected)?;

    // §8.4.8.3 / §8.4.8.4: rota requires both identifiers, so that an image is never
    // accepted by a device it does not name.
    let vendor = claims
        .vendor_id
        .ok_or(Error::Rejected(Rejection::MissingClaim("vendor-id")))?;
    if vendor != rot.vendor_id().map_err(Error::Rot)? {
        return reject(Rejection::WrongVendor);
    }
    let class = claims
        .class_id
        .ok_or(Error::Rejected(Rejection::MissingClaim("class-id")))?;
    if class != rot.class_id().map_err(Error::Rot)? {
        return reject(Rejection::WrongClass);
    }

    let security_version = claims.security_version.unwrap_or(0);
    let floor = rot.floor().map_err(Error::Rot)?;
    if security_version < u64::from(floor) {
        return reject(Rejection::BelowFloor {
            security_version,
            floor,
        });
    }
    let budget = rot.floor_budget();
    if security_version > u64::from(budget) {
        return reject(Rejection::BeyondFloorBudget {
            security_version,
            budget,
        });
    }

    let image_size = claims
        .image_size
        .ok_or(Error::Rejected(Rejection::MissingClaim("image-size")))?;
    let capacity = layout.image_capacity(slot);
    if image_size > u64::from(capacity) {
        return reject(Rejection::TooLarge {
            image_size,
            capacity,
        });
    }
    let digest = claims
        .image_digest
        .ok_or(Error::Rejected(Rejection::MissingClaim("image-digest")))?;
    Ok(Promise {
        size: image_size as u32,
        digest,
        security_version,
        sequence_number,
        key_slot,
    })
}

/// The key slot holding `key_id`, if one does and no slot holding it is revoked.
pub(crate) fn trusted_key_slot<FE, R: RootOfTrust>(
    rot: &mut R,
    key_id: &[u8; 32],
) -> Result<usize, Error<FE, R::Error>> {
    let mut found = None;
    for slot in 0..rot.key_slots() {
        if rot.key_hash(slot).map_err(Error::Rot)?.as_ref() != Some(key_id) {
            continue;
        }
        if rot.is_revoked(slot).map_err(Error::Rot)? {
            return Err(Error::Rejected(Rejection::RevokedKey { slot }));
        }
        found.get_or_insert(slot);
    }
    found.ok_or(Error::Rejected(Rejection::UntrustedKey))
}

/// Check 6: hashes `promise.size` bytes at `address` in one pass.
pub(crate) fn check_image<F: NorFlash, RE>(
    flash: &mut F,
    address: u32,
    promise: &Promise<'_>,
) -> Result<(), Error<F::Error, RE>> {
    let mut digest = ImageDigest::new();
    let mut chunk = [0u8; READ_CHUNK];
    let mut at = 0u32;
    while at < promise.size {
        let n = (promise.size - at).min(READ_CHUNK as u32) as usize;
        flash
            .read(address + at, &mut chunk[..n])
            .map_err(Error::Flash)?;
        digest.update(&chunk[..n]);
        at += n as u32;
    }
    digest
        .check(&promise.digest, Some(u64::from(promise.size)))
        .map_err(|_| Error::Rejected(Rejection::ImageMismatch))
}
