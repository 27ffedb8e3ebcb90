//! SUIT_Manifest and SUIT_Common (draft-ietf-suit-manifest-37 §8.4, §8.4.5).

use crate::cbor::{BytesItem, Key, KeySet, Reader, checked_entries};
use crate::command::CommandSequence;
use crate::digest::SuitDigest;
use crate::error::{Error, Result, msg};
use crate::labels::{common as cm, manifest as mf};

/// How many components a manifest may list (bounded for the no-heap evaluator).
pub const MAX_COMPONENTS: usize = 32;

/// A severable member (§8.4.11): its bytes, or only its digest when it was severed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severable<'a> {
    /// The member is inline in the manifest.
    Inline(BytesItem<'a>),
    /// The manifest holds the digest of the member, which travels in the envelope.
    Severed(SuitDigest<'a>),
}

/// A decoded manifest. Command sequences are validated here and decoded lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// The manifest's bytes (the content of the envelope's `suit-manifest` bstr).
    encoded: &'a [u8],
    base: usize,
    pub sequence_number: u64,
    pub common: Common<'a>,
    pub reference_uri: Option<&'a str>,
    pub validate: Option<CommandSequence<'a>>,
    pub load: Option<CommandSequence<'a>>,
    pub invoke: Option<CommandSequence<'a>>,
    pub payload_fetch: Option<Severable<'a>>,
    pub install: Option<Severable<'a>>,
    pub text: Option<Severable<'a>>,
}

/// SUIT_Common: the components and the shared sequence every other sequence builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Common<'a> {
    components: Option<(&'a [u8], usize)>,
    component_count: usize,
    /// Whether `suit-dependencies` is present (refused by [`Manifest::decode`]).
    has_dependencies: bool,
    pub shared_sequence: Option<CommandSequence<'a>>,
}

/// A component identifier (`SUIT_Component_Identifier = [* bstr]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentId<'a> {
    encoded: &'a [u8],
    base: usize,
}

impl<'a> Manifest<'a> {
    /// Decodes the manifest held by the envelope's `suit-manifest` bstr.
    // Not inlined: its `KeySet`s and temporaries would otherwise stay in the caller's
    // frame, under the signature check and the claims' nested walks.
    #[inline(never)]
    pub fn decode(item: BytesItem<'a>) -> Result<Self> {
        let base = item.content_offset;
        let mut r = Reader::at(item.content, base);
        let mut keys = KeySet::new();
        let mut version = None;
        let mut sequence_number = None;
        let mut common = None;
        let mut m = Manifest {
            encoded: item.content,
            base,
            sequence_number: 0,
            common: Common::EMPTY,
            reference_uri: None,
            validate: None,
            load: None,
            invoke: None,
            payload_fetch: None,
            install: None,
            text: None,
        };
        // Sequences are validated after `suit-common`, whose component count they need,
        // wherever the map happens to place it.
        for _ in 0..r.map(msg!("the manifest (map)"))? {
            let (key, _) = r.map_key(&mut keys)?;
            let Key::Int(label) = key else {
                // `$$SUIT_Manifest_Extensions` with non-integer keys: opaque.
                r.item()?;
                continue;
            };
            match label {
                mf::VERSION => version = Some(r.uint(msg!("manifest-version (uint)"))?),
                mf::SEQUENCE_NUMBER => {
                    sequence_number = Some(r.uint(msg!("manifest-sequence-number (uint)"))?)
                }
                mf::COMMON => common = Some(Common::decode(r.bytes_item(msg!("common (bstr)"))?)?),
                mf::REFERENCE_URI => m.reference_uri = Some(r.text(msg!("reference-uri (tstr)"))?),
                mf::VALIDATE => m.validate = Some(sequence(&mut r, msg!("validate"))?),
                mf::LOAD => m.load = Some(sequence(&mut r, msg!("load"))?),
                mf::INVOKE => m.invoke = Some(sequence(&mut r, msg!("invoke"))?),
                mf::PAYLOAD_FETCH => {
                    m.payload_fetch = Some(severable(&mut r, msg!("payload-fetch"))?)
                }
                mf::INSTALL => m.install = Some(severable(&mut r, msg!("install"))?),
                mf::TEXT => m.text = Some(severable(&mut r, msg!("text"))?),
                // Members of companion drafts (trust domains, update management, …):
                // well-formed, otherwise opaque to rota.
                _ => {
                    r.item()?;
                }
            }
        }
        r.finish()?;

        let missing = |member| Error::MissingMember {
            structure: msg!("manifest"),
            member,
        };
        // §8.4.1: the only defined version is 1.
        match version.ok_or(missing(msg!("manifest-version")))? {
            1 => {}
            version => return Err(Error::UnsupportedManifestVersion { version }),
        }
        m.sequence_number = sequence_number.ok_or(missing(msg!("manifest-sequence-number")))?;
        m.common = common.ok_or(missing(msg!("common")))?;
        if m.common.has_dependencies {
            return Err(Error::UnsupportedDependencies);
        }

        let components = m.common.component_count;
        if let Some(shared) = m.common.shared_sequence {
            shared.validate(components)?;
        }
        for seq in [m.validate, m.load, m.invoke].into_iter().flatten() {
            seq.validate(components)?;
        }
        for member in [m.payload_fetch, m.install].into_iter().flatten() {
            if let Severable::Inline(item) = member {
                CommandSequence::from_item(item).validate(components)?;
            }
        }
        if let Some(Severable::Inline(item)) = m.text {
            validate_text(item)?;
        }
        Ok(m)
    }

    /// The integer-keyed members, in wire order (for inspection).
    pub fn member_keys(&self) -> impl Iterator<Item = Key<'a>> + 'a {
        checked_entries(self.encoded, self.base).map(|e| e.key)
    }

    /// The member the envelope may carry severed under `key` (§8.4.11):
    /// the three the draft defines, or an extension whose value is a SUIT_Digest.
    pub fn severable(&self, key: i64) -> Option<Severable<'a>> {
        match key {
            mf::PAYLOAD_FETCH => self.payload_fetch,
            mf::INSTALL => self.install,
            mf::TEXT => self.text,
            mf::VERSION..=mf::INVOKE => None,
            _ => self.extension(key).and_then(|value| {
                SuitDigest::read_whole(Reader::at(value.0, value.1))
                    .ok()
                    .map(Severable::Severed)
            }),
        }
    }

    /// The encoded value of an extension member, with its absolute offset.
    fn extension(&self, key: i64) -> Option<(&'a [u8], usize)> {
        checked_entries(self.encoded, self.base)
            .find(|e| e.key == Key::Int(key))
            .map(|e| (e.value, e.value_offset))
    }
}

fn sequence<'a>(r: &mut Reader<'a>, member: &'static str) -> Result<CommandSequence<'a>> {
    let at = r.offset();
    r.bytes_item(member)
        .map(CommandSequence::from_item)
        .map_err(|_| Error::InvalidMember { offset: at, member })
}

/// `SUIT_Digest / bstr .cbor …`: a digest when severed, the bytes when inline.
fn severable<'a>(r: &mut Reader<'a>, member: &'static str) -> Result<Severable<'a>> {
    let at = r.offset();
    match r.datatype()? {
        minicbor::data::Type::Array => Ok(Severable::Severed(SuitDigest::read(r)?)),
        minicbor::data::Type::Bytes => Ok(Severable::Inline(r.bytes_item(member)?)),
        _ => Err(Error::InvalidMember { offset: at, member }),
    }
}

/// SUIT_Text_Map (§8.4.4): a map of language tags to text maps. rota only displays
/// text, so it checks well-formedness and the top-level shape.
pub(crate) fn validate_text(item: BytesItem<'_>) -> Result<()> {
    let mut r = Reader::at(item.content, item.content_offset);
    let mut keys = KeySet::new();
    for _ in 0..r.map(msg!("a text map"))? {
        r.map_key(&mut keys)?;
        r.item()?;
    }
    r.finish()
}

impl<'a> Common<'a> {
    const EMPTY: Self = Self {
        components: None,
        component_count: 0,
        has_dependencies: false,
        shared_sequence: None,
    };

    fn decode(item: BytesItem<'a>) -> Result<Self> {
        let mut r = Reader::at(item.content, item.content_offset);
        let mut keys = KeySet::new();
        let mut common = Self::EMPTY;
        for _ in 0..r.map(msg!("common (map)"))? {
            let (key, _) = r.map_key(&mut keys)?;
            match key {
                Key::Int(cm::COMPONENTS) => {
                    let at = r.offset();
                    let encoded = r.clone().item()?;
                    let count = r.array(msg!("components (array)"))?;
                    if count == 0 || count > MAX_COMPONENTS {
                        return Err(Error::InvalidMember {
                            offset: at,
                            member: msg!("components (1 to 32 component identifiers)"),
                        });
                    }
                    for _ in 0..count {
                        for _ in 0..r.array(msg!("a component identifier (array of bstr)"))? {
                            r.bytes(msg!("a component identifier segment (bstr)"))?;
                        }
                    }
                    common.components = Some((encoded, at));
                    common.component_count = count;
                }
                Key::Int(cm::SHARED_SEQUENCE) => {
                    common.shared_sequence = Some(sequence(&mut r, msg!("shared-sequence"))?);
                }
                Key::Int(cm::DEPENDENCIES) => {
                    r.item()?;
                    common.has_dependencies = true;
                }
                // Extensions: opaque to rota.
                _ => {
                    r.item()?;
                }
            }
        }
        r.finish()?;
        Ok(common)
    }

    /// How many components the manifest lists.
    pub fn component_count(&self) -> usize {
        self.component_count
    }

    /// The component identifiers, in order (their index is what commands select).
    pub fn components(&self) -> impl Iterator<Item = ComponentId<'a>> + 'a {
        let (encoded, base) = self.components.unwrap_or((&[], 0));
        let mut r = Reader::at(encoded, base);
        let mut remaining = if encoded.is_empty() {
            0
        } else {
            r.array(msg!("components")).unwrap_or(0)
        };
        core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            remaining -= 1;
            let base = r.offset();
            r.skip_checked()
                .ok()
                .map(|encoded| ComponentId { encoded, base })
        })
    }
}

impl<'a> ComponentId<'a> {
    /// The identifier's byte-string segments.
    pub fn segments(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut r = Reader::at(self.encoded, self.base);
        let mut remaining = r.array(msg!("a component identifier")).unwrap_or(0);
        core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            remaining -= 1;
            r.bytes(msg!("a segment")).ok()
        })
    }
}
