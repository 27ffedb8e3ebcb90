//! SUIT command sequences, conditions, directives and parameters
//! (draft-ietf-suit-manifest-37 §8.4.6–§8.4.10).
//!
//! A [`CommandSequence`] is kept as its bytes and decoded lazily by [`Commands`], so
//! nothing is copied; [`CommandSequence::validate`] walks it once, recursively, so that
//! a manifest that decoded successfully can be iterated without further errors.

use crate::cbor::{BytesItem, Key, KeySet, Reader};
use crate::digest::SuitDigest;
use crate::error::{Error, Result, msg};
use crate::labels::{command as cmd, parameter as param};

/// How deep `try-each` and `run-sequence` may nest.
/// Stack (Cortex-M4): 408 B a level in claims, 272 B in validation; within the 9304 B of hostile input.
pub const MAX_SEQUENCE_DEPTH: usize = 4;

/// `SUIT_Command_Sequence = [ + (code, argument) ]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSequence<'a> {
    item: BytesItem<'a>,
}

/// One command of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// A condition with its reporting policy (§8.4.8, §8.4.9).
    Condition(Condition, u64),
    /// A directive that acts on the current components, with its reporting policy.
    Directive(Directive, u64),
    /// `suit-directive-set-component-index` (§8.4.10.1).
    SetComponentIndex(IndexArg<'a>),
    /// `suit-directive-override-parameters` (§8.4.10.3).
    OverrideParameters(Parameters<'a>),
    /// `suit-directive-try-each` (§8.4.10.2): alternatives, the last possibly `nil`.
    TryEach(TryEach<'a>),
    /// `suit-directive-run-sequence` (§8.4.10.7).
    RunSequence(CommandSequence<'a>),
    /// A command rota does not interpret (extensions, custom commands), kept verbatim.
    Unknown { code: i64, argument: &'a [u8] },
}

/// The conditions rota knows (§8.4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    VendorIdentifier,
    ClassIdentifier,
    ImageMatch,
    ComponentSlot,
    CheckContent,
    Abort,
    DeviceIdentifier,
}

/// The directives that take a reporting policy (§8.4.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    Write,
    Fetch,
    Copy,
    Invoke,
    Swap,
}

/// The argument of `set-component-index`: one index, all (`true`), or a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexArg<'a> {
    One(u64),
    All,
    /// The encoded `[+ uint]`.
    List(&'a [u8]),
}

/// The alternatives of a `try-each`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TryEach<'a> {
    /// The encoded array of alternatives.
    encoded: &'a [u8],
    base: usize,
}

/// A parameter map (`{+ SUIT_Parameters}`), decoded lazily by [`Parameters::iter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameters<'a> {
    encoded: &'a [u8],
    base: usize,
}

/// One parameter (§8.4.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parameter<'a> {
    /// RFC 4122 UUID (16 bytes), or the bytes of a CBOR-PEN (tag 112).
    VendorIdentifier(&'a [u8]),
    ClassIdentifier(&'a [u8]),
    ImageDigest(SuitDigest<'a>),
    ImageSize(u64),
    ComponentSlot(u64),
    StrictOrder(bool),
    SoftFailure(bool),
    Content(&'a [u8]),
    Uri(&'a str),
    SourceComponent(u64),
    InvokeArgs(&'a [u8]),
    DeviceIdentifier(&'a [u8]),
    /// rota's anti-rollback level ([`param::ROTA_SECURITY_VERSION`]).
    SecurityVersion(u64),
    /// Any other parameter, kept verbatim.
    Other {
        label: i64,
        value: &'a [u8],
    },
}

impl Condition {
    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            cmd::CONDITION_VENDOR_IDENTIFIER => Self::VendorIdentifier,
            cmd::CONDITION_CLASS_IDENTIFIER => Self::ClassIdentifier,
            cmd::CONDITION_IMAGE_MATCH => Self::ImageMatch,
            cmd::CONDITION_COMPONENT_SLOT => Self::ComponentSlot,
            cmd::CONDITION_CHECK_CONTENT => Self::CheckContent,
            cmd::CONDITION_ABORT => Self::Abort,
            cmd::CONDITION_DEVICE_IDENTIFIER => Self::DeviceIdentifier,
            _ => return None,
        })
    }

    /// The command code.
    pub fn code(self) -> i64 {
        match self {
            Self::VendorIdentifier => cmd::CONDITION_VENDOR_IDENTIFIER,
            Self::ClassIdentifier => cmd::CONDITION_CLASS_IDENTIFIER,
            Self::ImageMatch => cmd::CONDITION_IMAGE_MATCH,
            Self::ComponentSlot => cmd::CONDITION_COMPONENT_SLOT,
            Self::CheckContent => cmd::CONDITION_CHECK_CONTENT,
            Self::Abort => cmd::CONDITION_ABORT,
            Self::DeviceIdentifier => cmd::CONDITION_DEVICE_IDENTIFIER,
        }
    }
}

impl Directive {
    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            cmd::DIRECTIVE_WRITE => Self::Write,
            cmd::DIRECTIVE_FETCH => Self::Fetch,
            cmd::DIRECTIVE_COPY => Self::Copy,
            cmd::DIRECTIVE_INVOKE => Self::Invoke,
            cmd::DIRECTIVE_SWAP => Self::Swap,
            _ => return None,
        })
    }

    /// The command code.
    pub fn code(self) -> i64 {
        match self {
            Self::Write => cmd::DIRECTIVE_WRITE,
            Self::Fetch => cmd::DIRECTIVE_FETCH,
            Self::Copy => cmd::DIRECTIVE_COPY,
            Self::Invoke => cmd::DIRECTIVE_INVOKE,
            Self::Swap => cmd::DIRECTIVE_SWAP,
        }
    }
}

impl<'a> Command<'a> {
    /// The command code as on the wire.
    pub fn code(&self) -> i64 {
        match self {
            Self::Condition(c, _) => c.code(),
            Self::Directive(d, _) => d.code(),
            Self::SetComponentIndex(_) => cmd::DIRECTIVE_SET_COMPONENT_INDEX,
            Self::OverrideParameters(_) => cmd::DIRECTIVE_OVERRIDE_PARAMETERS,
            Self::TryEach(_) => cmd::DIRECTIVE_TRY_EACH,
            Self::RunSequence(_) => cmd::DIRECTIVE_RUN_SEQUENCE,
            Self::Unknown { code, .. } => *code,
        }
    }

    /// Reads one (code, argument) pair.
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let code = r.int(msg!("a command code"))?;
        if let Some(c) = Condition::from_code(code) {
            return Ok(Self::Condition(c, r.uint(msg!("a reporting policy"))?));
        }
        if let Some(d) = Directive::from_code(code) {
            return Ok(Self::Directive(d, r.uint(msg!("a reporting policy"))?));
        }
        Ok(match code {
            cmd::DIRECTIVE_SET_COMPONENT_INDEX => Self::SetComponentIndex(IndexArg::read(r)?),
            cmd::DIRECTIVE_OVERRIDE_PARAMETERS => {
                let base = r.offset();
                Self::OverrideParameters(Parameters {
                    encoded: r.item()?,
                    base,
                })
            }
            cmd::DIRECTIVE_TRY_EACH => {
                let base = r.offset();
                Self::TryEach(TryEach {
                    encoded: r.item()?,
                    base,
                })
            }
            cmd::DIRECTIVE_RUN_SEQUENCE => Self::RunSequence(CommandSequence::from_item(
                r.bytes_item(msg!("a command sequence (bstr)"))?,
            )),
            _ => Self::Unknown {
                code,
                argument: r.item()?,
            },
        })
    }
}

impl<'a> IndexArg<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self> {
        let at = r.offset();
        match r.datatype()? {
            minicbor::data::Type::Bool => {
                // IndexArg /= true: all components (§8.4.10.1). `false` is not defined.
                if r.item()? == [0xf5] {
                    Ok(Self::All)
                } else {
                    Err(Error::InvalidMember {
                        offset: at,
                        member: msg!("component index (false)"),
                    })
                }
            }
            minicbor::data::Type::Array => {
                let encoded = r.clone().item()?;
                let n = r.array(msg!("a component index list"))?;
                if n == 0 {
                    return Err(Error::InvalidMember {
                        offset: at,
                        member: msg!("component index list (empty)"),
                    });
                }
                for _ in 0..n {
                    r.uint(msg!("a component index"))?;
                }
                Ok(Self::List(encoded))
            }
            _ => Ok(Self::One(r.uint(msg!("a component index"))?)),
        }
    }

    /// The selected component indices as a bit mask over `count` components.
    pub fn mask(&self, count: usize, offset: usize) -> Result<u32> {
        let bit = |i: u64| {
            if i < count as u64 && i < 32 {
                Ok(1u32 << i)
            } else {
                Err(Error::ComponentIndexOutOfRange { offset, index: i })
            }
        };
        match *self {
            Self::One(i) => bit(i),
            Self::All => Ok(if count >= 32 {
                u32::MAX
            } else {
                (1u32 << count) - 1
            }),
            Self::List(encoded) => {
                let mut r = Reader::at(encoded, offset);
                let mut mask = 0;
                for _ in 0..r.array(msg!("a component index list"))? {
                    mask |= bit(r.uint(msg!("a component index"))?)?;
                }
                Ok(mask)
            }
        }
    }
}

impl<'a> CommandSequence<'a> {
    pub(crate) fn from_item(item: BytesItem<'a>) -> Self {
        Self { item }
    }

    /// The sequence as it appears on the wire (bstr header included).
    pub fn encoded(&self) -> &'a [u8] {
        self.item.encoded
    }

    /// The commands, in order.
    pub fn iter(&self) -> Commands<'a> {
        let mut r = Reader::at(self.item.content, self.item.content_offset);
        let remaining = match r.array(msg!("a command sequence (array)")) {
            Ok(n) => n,
            Err(e) => {
                return Commands {
                    r,
                    remaining: 0,
                    error: Some(e),
                };
            }
        };
        Commands {
            r,
            remaining: remaining / 2,
            error: (remaining % 2 != 0).then_some(Error::Malformed {
                offset: self.item.content_offset,
                expected: msg!("a command sequence of (code, argument) pairs"),
            }),
        }
    }

    /// Checks the whole sequence, recursively, against the draft's CDDL and against
    /// `components` (the number of components the manifest lists).
    pub fn validate(&self, components: usize) -> Result<()> {
        self.validate_at(components, 0)
    }

    fn validate_at(&self, components: usize, depth: usize) -> Result<()> {
        if depth > MAX_SEQUENCE_DEPTH {
            return Err(Error::LimitExceeded {
                offset: self.item.content_offset,
                limit: msg!("nested command sequences"),
            });
        }
        let mut commands = self.iter();
        if commands.remaining == 0 && commands.error.is_none() {
            return Err(Error::Malformed {
                offset: self.item.content_offset,
                expected: msg!("a non-empty command sequence"),
            });
        }
        while let Some(command) = commands.next() {
            match command? {
                Command::SetComponentIndex(arg) => {
                    arg.mask(components, commands.r.offset())?;
                }
                Command::OverrideParameters(params) => params.validate()?,
                Command::TryEach(alternatives) => {
                    for alternative in alternatives.iter()? {
                        if let Some(seq) = alternative? {
                            seq.validate_at(components, depth + 1)?;
                        }
                    }
                }
                Command::RunSequence(seq) => seq.validate_at(components, depth + 1)?,
                Command::Condition(..) | Command::Directive(..) | Command::Unknown { .. } => {}
            }
        }
        commands.r.finish()
    }
}

/// Iterator over a [`CommandSequence`].
pub struct Commands<'a> {
    r: Reader<'a>,
    remaining: usize,
    error: Option<Error>,
}

impl<'a> Iterator for Commands<'a> {
    type Item = Result<Command<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.remaining = 0;
            return Some(Err(e));
        }
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let command = Command::read(&mut self.r);
        if command.is_err() {
            self.remaining = 0;
        }
        Some(command)
    }
}

impl<'a> TryEach<'a> {
    /// The alternatives; `None` stands for the final `nil` (§8.4.10.2).
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Option<CommandSequence<'a>>>> + 'a> {
        let mut r = Reader::at(self.encoded, self.base);
        let n = r.array(msg!("try-each alternatives (array)"))?;
        if n == 0 {
            return Err(Error::InvalidMember {
                offset: self.base,
                member: msg!("try-each (no alternatives)"),
            });
        }
        let mut index = 0;
        Ok(core::iter::from_fn(move || {
            if index == n {
                return None;
            }
            index += 1;
            let alternative = match r.null() {
                // Only the last alternative may be nil.
                Ok(true) if index == n => Ok(None),
                Ok(true) => Err(Error::InvalidMember {
                    offset: r.offset(),
                    member: msg!("try-each (nil before the last alternative)"),
                }),
                Ok(false) => r
                    .bytes_item(msg!("a try-each alternative (bstr)"))
                    .map(|item| Some(CommandSequence::from_item(item))),
                Err(e) => Err(e),
            };
            if alternative.is_err() {
                index = n;
            }
            Some(alternative)
        }))
    }
}

impl<'a> Parameters<'a> {
    /// Checks every parameter. Not inlined: the parameter iterator (a `KeySet`) would
    /// otherwise sit in every frame of the recursive `CommandSequence::validate_at`.
    #[inline(never)]
    fn validate(&self) -> Result<()> {
        for p in self.iter()? {
            p?;
        }
        Ok(())
    }

    /// The parameters, each checked against its CDDL type; duplicate labels are refused.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Parameter<'a>>> + 'a> {
        let mut r = Reader::at(self.encoded, self.base);
        let n = r.map(msg!("a parameter map"))?;
        if n == 0 {
            return Err(Error::InvalidMember {
                offset: self.base,
                member: msg!("override-parameters (empty map)"),
            });
        }
        let mut keys = KeySet::new();
        let mut remaining = n;
        Ok(core::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            remaining -= 1;
            let p = Parameter::read(&mut r, &mut keys);
            if p.is_err() {
                remaining = 0;
            }
            Some(p)
        }))
    }
}

impl<'a> Parameter<'a> {
    fn read(r: &mut Reader<'a>, keys: &mut KeySet) -> Result<Self> {
        let (key, offset) = r.map_key(keys)?;
        let Key::Int(label) = key else {
            return Err(Error::InvalidMember {
                offset,
                member: msg!("parameter label (must be an integer)"),
            });
        };
        Ok(match label {
            param::VENDOR_IDENTIFIER => Self::VendorIdentifier(read_vendor_id(r)?),
            param::CLASS_IDENTIFIER => Self::ClassIdentifier(read_uuid(r, msg!("class-id"))?),
            param::DEVICE_IDENTIFIER => Self::DeviceIdentifier(read_uuid(r, msg!("device-id"))?),
            param::IMAGE_DIGEST => {
                let item = r.bytes_item(msg!("image-digest (bstr .cbor SUIT_Digest)"))?;
                Self::ImageDigest(SuitDigest::read_whole(r.nested(item))?)
            }
            param::IMAGE_SIZE => Self::ImageSize(r.uint(msg!("image-size (uint)"))?),
            param::COMPONENT_SLOT => Self::ComponentSlot(r.uint(msg!("component-slot (uint)"))?),
            param::SOURCE_COMPONENT => {
                Self::SourceComponent(r.uint(msg!("source-component (uint)"))?)
            }
            param::STRICT_ORDER => Self::StrictOrder(read_bool(r, msg!("strict-order (bool)"))?),
            param::SOFT_FAILURE => Self::SoftFailure(read_bool(r, msg!("soft-failure (bool)"))?),
            param::CONTENT => Self::Content(r.bytes(msg!("content (bstr)"))?),
            param::URI => Self::Uri(r.text(msg!("uri (tstr)"))?),
            param::INVOKE_ARGS => Self::InvokeArgs(r.bytes(msg!("invoke-args (bstr)"))?),
            param::ROTA_SECURITY_VERSION => {
                Self::SecurityVersion(r.uint(msg!("the rota security version (uint)"))?)
            }
            _ => Self::Other {
                label,
                value: r.item()?,
            },
        })
    }
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool> {
    let at = r.offset();
    match r.item()? {
        [0xf4] => Ok(false),
        [0xf5] => Ok(true),
        _ => Err(Error::Malformed {
            offset: at,
            expected: what,
        }),
    }
}

/// `RFC4122_UUID = bstr .size 16`.
fn read_uuid<'a>(r: &mut Reader<'a>, member: &'static str) -> Result<&'a [u8]> {
    let at = r.offset();
    let id = r.bytes(member)?;
    if id.len() != 16 {
        return Err(Error::InvalidMember { offset: at, member });
    }
    Ok(id)
}

/// `vendor-id = RFC4122_UUID / cbor-pen` where `cbor-pen = #6.112(bstr)`.
fn read_vendor_id<'a>(r: &mut Reader<'a>) -> Result<&'a [u8]> {
    let at = r.offset();
    match r.tag()? {
        None => read_uuid(r, msg!("vendor-id")),
        Some(112) => r.bytes(msg!("a CBOR-PEN (bstr)")),
        Some(_) => Err(Error::InvalidMember {
            offset: at,
            member: msg!("vendor-id"),
        }),
    }
}
