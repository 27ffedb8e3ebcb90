//! SUIT_Envelope (draft-ietf-suit-manifest-37 §8.2) and its authentication (§8.3).
//!
//! On-wire format, as rota writes it (and the draft's examples do):
//!
//! ```text
//! 107({                                   ; SUIT_Envelope_Tagged
//!   2: bstr .cbor [                       ; suit-authentication-wrapper
//!        bstr .cbor [-16, h'<sha256>'],   ;   SUIT_Digest of the manifest bstr, header included
//!        bstr .cbor 18([                  ;   COSE_Sign1_Tagged, one or more
//!          bstr .cbor {1: -19, 4: kid},   ;     protected: alg Ed25519, kid = SHA-256(public key)
//!          {},                            ;     unprotected
//!          nil,                           ;     detached payload = the SUIT_Digest bytes above
//!          bstr                           ;     signature over Sig_structure
//!        ])
//!      ],
//!   3: bstr .cbor SUIT_Manifest,          ; suit-manifest
//!   ? 16 / 20 / 23: bstr                  ; severed payload-fetch / install / text
//! })
//! ```
//!
//! Versioning: the envelope format is the draft's; the manifest carries
//! `manifest-version = 1` (§8.4.1) and anything else is refused. rota-specific data
//! (the security version) lives in a private-use custom parameter, so standard SUIT
//! processors read rota envelopes unchanged.
//!
//! The authentication wrapper precedes every other member but `suit-delegation` (§8.3):
//! an envelope whose manifest, severed members or integrated payloads come first is
//! refused ([`Error::AuthenticationWrapperNotFirst`]), as the boot profile's fixed layout
//! refuses it.
//!
//! Processing order follows §8.3: the envelope and its authentication wrapper are
//! decoded first ([`Envelope::decode`]); the manifest is parsed only once the digest
//! and a signature have been checked ([`Envelope::authenticate`]).

use crate::cbor::{BytesItem, Key, KeySet, Reader, checked_entries};
use crate::claims::{self, ComponentClaims};
use crate::command::CommandSequence;
use crate::cose::CoseSign1;
use crate::crypto::{PublicKey, SignatureAlgorithm, Verifier};
use crate::digest::SuitDigest;
use crate::error::{Error, Result, msg};
use crate::labels::{TAG_ENVELOPE, envelope as env, manifest as mf};
use crate::manifest::{Manifest, Severable};

/// How many severed members, and how many integrated payloads, an envelope may carry.
/// Stack: none; [`Envelope`] finds them again when asked, so it is 52 B (Cortex-M4), not 440.
pub const MAX_ENVELOPE_MEMBERS: usize = 8;

/// Choices a verifier makes about inputs the strict defaults refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept COSE alg -8 (polymorphic EdDSA) as Ed25519. Off by default: a fully
    /// specified algorithm (-19) cannot be confused with Ed448 (RFC 9864 §2).
    pub allow_eddsa_8: bool,
    /// Accept an envelope without tag 107, as TEEP carries them. Off by default.
    pub allow_untagged_envelope: bool,
}

/// A decoded envelope, borrowing from its bytes.
///
/// Severed members and integrated payloads are found again in the (checked) envelope map
/// when asked for, not stored: the bootloader holds an `Envelope` on its stack for the
/// whole verification, so it is kept small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    bytes: &'a [u8],
    /// Offset of the envelope map (after the tag).
    map_offset: usize,
    authentication: BytesItem<'a>,
    manifest: BytesItem<'a>,
}

/// An envelope whose manifest digest and signature have been verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticated<'a> {
    pub envelope: Envelope<'a>,
    pub manifest: Manifest<'a>,
    /// The algorithm of the signature that verified.
    pub algorithm: SignatureAlgorithm,
    /// Index, in the anchors passed in, of the key that verified.
    pub signer: usize,
}

impl<'a> Envelope<'a> {
    /// Decodes `bytes`, which must hold exactly one envelope.
    pub fn decode(bytes: &'a [u8], policy: &Policy) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::NotAnEnvelope);
        }
        let mut r = Reader::new(bytes);
        match r.tag()? {
            Some(TAG_ENVELOPE) => {}
            Some(tag) => return Err(Error::WrongEnvelopeTag { tag }),
            None if r.datatype()? != minicbor::data::Type::Map => {
                return Err(Error::NotAnEnvelope);
            }
            None if policy.allow_untagged_envelope => {}
            None => return Err(Error::UntaggedEnvelope),
        }
        let map_offset = r.offset();
        let mut keys = KeySet::new();
        let mut authentication = None;
        let mut manifest = None;
        let (mut n_severed, mut n_integrated) = (0, 0);
        let count = |n: &mut usize, offset| {
            *n += 1;
            if *n > MAX_ENVELOPE_MEMBERS {
                return Err(Error::LimitExceeded {
                    offset,
                    limit: msg!("envelope members"),
                });
            }
            Ok(())
        };
        for _ in 0..r.map(msg!("a SUIT envelope (map)"))? {
            let (key, offset) = r.map_key(&mut keys)?;
            // §8.3: "The suit-authentication-wrapper MUST come before any element in the
            // SUIT_Envelope, except for the OPTIONAL suit-delegation, regardless of canonical
            // encoding of CBOR", so that a streaming processor authenticates before it
            // processes; validators must reject any other first element.
            if authentication.is_none()
                && matches!(key, Key::Int(_) | Key::Text(_))
                && !matches!(key, Key::Int(env::AUTHENTICATION_WRAPPER | env::DELEGATION))
            {
                return Err(Error::AuthenticationWrapperNotFirst { offset });
            }
            match key {
                Key::Int(env::AUTHENTICATION_WRAPPER) => {
                    authentication = Some(r.bytes_item(msg!("authentication-wrapper (bstr)"))?)
                }
                Key::Int(env::MANIFEST) => manifest = Some(r.bytes_item(msg!("manifest (bstr)"))?),
                // Delegation chains (Appendix C.1) extend trust; rota trusts only its
                // anchors, so it checks the member's shape and otherwise ignores it.
                Key::Int(env::DELEGATION) => {
                    r.bytes_item(msg!("delegation (bstr)"))?;
                }
                // Integer-keyed members besides 1, 2 and 3: severed members (§8.4.11).
                Key::Int(_) => {
                    count(&mut n_severed, offset)?;
                    r.bytes_item(msg!("a severed member (bstr)"))?;
                }
                // Text-keyed members: integrated payloads (§7.6).
                Key::Text(_) => {
                    count(&mut n_integrated, offset)?;
                    r.bytes(msg!("an integrated payload (bstr)"))?;
                }
                _ => {
                    return Err(Error::InvalidMember {
                        offset,
                        member: msg!("envelope key (integer or text)"),
                    });
                }
            }
        }
        r.finish()?;
        let missing = |member| Error::MissingMember {
            structure: msg!("envelope"),
            member,
        };
        let envelope = Self {
            bytes,
            map_offset,
            authentication: authentication.ok_or(missing(msg!("authentication-wrapper")))?,
            manifest: manifest.ok_or(missing(msg!("manifest")))?,
        };
        // The wrapper's shape is checked now, so that every later step can rely on it.
        envelope.authentication_wrapper()?;
        Ok(envelope)
    }

    /// The whole envelope as given.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The manifest bstr, header included: what the SUIT_Digest covers (§8.3).
    pub fn manifest_bytes(&self) -> &'a [u8] {
        self.manifest.encoded
    }

    /// The top-level keys, in wire order.
    pub fn member_keys(&self) -> impl Iterator<Item = Key<'a>> + 'a {
        checked_entries(&self.bytes[self.map_offset..], self.map_offset).map(|e| e.key)
    }

    /// Integrated payloads, by name.
    pub fn integrated_payloads(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.extra_members().filter_map(|(key, item)| match key {
            Key::Text(name) => Some((name, item.content)),
            _ => None,
        })
    }

    /// The members besides 1, 2 and 3, in wire order: severed members (integer keys)
    /// and integrated payloads (text keys), each a bstr, as [`Envelope::decode`] checked.
    fn extra_members(&self) -> impl Iterator<Item = (Key<'a>, BytesItem<'a>)> + 'a {
        checked_entries(&self.bytes[self.map_offset..], self.map_offset).filter_map(|e| {
            match e.key {
                Key::Int(env::DELEGATION | env::AUTHENTICATION_WRAPPER | env::MANIFEST) => None,
                key => Reader::at(e.value, e.value_offset)
                    .bytes_item("")
                    .ok()
                    .map(|item| (key, item)),
            }
        })
    }

    /// The manifest digest and the authentication blocks (each a bstr).
    ///
    /// `SUIT_Authentication = [ bstr .cbor SUIT_Digest, * bstr .cbor SUIT_Authentication_Block ]`
    pub fn authentication_wrapper(
        &self,
    ) -> Result<(BytesItem<'a>, SuitDigest<'a>, AuthBlocks<'a>)> {
        let mut r = Reader::at(
            self.authentication.content,
            self.authentication.content_offset,
        );
        let at = r.offset();
        let n = r.array(msg!("the authentication wrapper (array)"))?;
        if n == 0 {
            return Err(Error::Malformed {
                offset: at,
                expected: msg!("an authentication wrapper starting with the manifest digest"),
            });
        }
        let digest_item = r.bytes_item(msg!("the manifest digest (bstr .cbor SUIT_Digest)"))?;
        let digest = SuitDigest::read_whole(r.nested(digest_item))?;
        let blocks = AuthBlocks {
            r: r.clone(),
            remaining: n - 1,
        };
        for _ in 1..n {
            r.bytes_item(msg!("an authentication block (bstr)"))?;
        }
        r.finish()?;
        Ok((digest_item, digest, blocks))
    }

    /// The signatures, decoded (for inspection; [`Envelope::authenticate`] verifies them).
    pub fn signatures(&self) -> Result<impl Iterator<Item = Result<CoseSign1<'a>>> + 'a> {
        Ok(self.authentication_wrapper()?.2)
    }

    /// The manifest, parsed **without** authenticating it: for display only.
    pub fn manifest_unauthenticated(&self) -> Result<Manifest<'a>> {
        Manifest::decode(self.manifest)
    }

    /// Verifies the envelope (§8.3): the manifest digest, then a signature by one of
    /// `anchors`, then the manifest itself and every severed member against its digest.
    pub fn authenticate(
        &self,
        anchors: &[PublicKey],
        verifier: &impl Verifier,
        policy: &Policy,
    ) -> Result<Authenticated<'a>> {
        let (digest_item, digest, blocks) = self.authentication_wrapper()?;
        // §8.3: the SUIT_Digest covers the manifest bstr including its CBOR header.
        if !digest.matches(self.manifest.encoded)? {
            return Err(Error::ManifestDigestMismatch);
        }

        // §8.3: at least one authentication block must verify; the first failure is
        // reported when none does.
        let mut first_error = Error::Unauthenticated;
        let mut verified = None;
        for (i, block) in blocks.enumerate() {
            match verify_block(block, digest_item.content, anchors, verifier, policy) {
                Ok(v) => {
                    verified = Some(v);
                    break;
                }
                Err(e) if i == 0 => first_error = e,
                Err(_) => {}
            }
        }
        let (algorithm, signer) = verified.ok_or(first_error)?;

        let manifest = Manifest::decode(self.manifest)?;
        self.check_severed(&manifest)?;
        Ok(Authenticated {
            envelope: *self,
            manifest,
            algorithm,
            signer,
        })
    }

    /// §8.4.11: every severed member in the envelope must match the digest the
    /// (authenticated) manifest holds for it, including its bstr header.
    fn check_severed(&self, manifest: &Manifest<'a>) -> Result<()> {
        for (key, item) in self.extra_members() {
            let Key::Int(key) = key else { continue };
            let member = member_name(key);
            match manifest.severable(key) {
                Some(Severable::Severed(digest)) => {
                    if !digest.matches(item.encoded)? {
                        return Err(Error::SeverableMemberDigestMismatch { member });
                    }
                }
                Some(Severable::Inline(_)) => return Err(Error::SeverableMemberTwice { member }),
                None => return Err(Error::SeverableMemberWithoutDigest { member }),
            }
        }
        Ok(())
    }

    /// The severed member `key`, if the envelope carries it.
    fn severed(&self, key: i64) -> Option<BytesItem<'a>> {
        self.extra_members()
            .find(|(k, _)| *k == Key::Int(key))
            .map(|(_, item)| item)
    }
}

/// Verifies one authentication block; returns the algorithm and the anchor that signed.
fn verify_block(
    block: Result<CoseSign1<'_>>,
    payload: &[u8],
    anchors: &[PublicKey],
    verifier: &impl Verifier,
    policy: &Policy,
) -> Result<(SignatureAlgorithm, usize)> {
    let cose = block?;
    // §8.3: the payload is detached; the signed payload is the SUIT_Digest.
    if cose.payload.is_some() {
        return Err(Error::AttachedPayload);
    }
    let alg = match SignatureAlgorithm::from_cose(cose.alg) {
        Some(SignatureAlgorithm::EdDsa) if !policy.allow_eddsa_8 => None,
        other => other,
    }
    .ok_or(Error::UnsupportedAlgorithm { alg: cose.alg })?;
    let signer = cose.verify(alg, Some(payload), &[], anchors, verifier)?;
    Ok((alg, signer))
}

/// The name of a severable member, for messages.
fn member_name(key: i64) -> &'static str {
    match key {
        mf::PAYLOAD_FETCH => msg!("payload-fetch sequence"),
        mf::INSTALL => msg!("install sequence"),
        mf::TEXT => msg!("text"),
        _ => msg!("extension member"),
    }
}

/// The authentication blocks of a wrapper, decoded as COSE_Sign1 on demand.
#[derive(Clone)]
pub struct AuthBlocks<'a> {
    r: Reader<'a>,
    remaining: usize,
}

impl<'a> Iterator for AuthBlocks<'a> {
    type Item = Result<CoseSign1<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(
            self.r
                .bytes_item(msg!("an authentication block (bstr)"))
                .and_then(|item| CoseSign1::decode(self.r.nested(item))),
        )
    }
}

impl<'a> Authenticated<'a> {
    /// What the manifest says about `component` on a device booting from `slot`.
    pub fn claims(&self, component: usize, slot: Option<u64>) -> Result<ComponentClaims<'a>> {
        self.envelope.claims(&self.manifest, component, slot)
    }
}

impl<'a> Envelope<'a> {
    /// A severable command sequence of `manifest`, inline or severed into this envelope.
    pub fn sequence(&self, manifest: &Manifest<'a>, key: i64) -> Option<CommandSequence<'a>> {
        match manifest.severable(key)? {
            Severable::Inline(item) => Some(CommandSequence::from_item(item)),
            Severable::Severed(_) => self.severed(key).map(CommandSequence::from_item),
        }
    }

    /// What `manifest` says about `component` on a device booting from `slot`: its
    /// sequences in the order a processor runs them (§8.4.6): shared, payload-fetch,
    /// install, validate, load, invoke; a later override wins.
    /// Only meaningful for a manifest that [`Envelope::authenticate`] returned.
    pub fn claims(
        &self,
        manifest: &Manifest<'a>,
        component: usize,
        slot: Option<u64>,
    ) -> Result<ComponentClaims<'a>> {
        let sequences = [
            manifest.common.shared_sequence,
            self.sequence(manifest, mf::PAYLOAD_FETCH),
            self.sequence(manifest, mf::INSTALL),
            manifest.validate,
            manifest.load,
            manifest.invoke,
        ];
        claims::evaluate(
            sequences.into_iter().flatten(),
            manifest.common.component_count(),
            component,
            slot,
        )
    }
}
