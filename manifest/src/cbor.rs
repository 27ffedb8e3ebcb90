//! The strict CBOR reader every rota parser is built on.
//!
//! It decodes the heads of data items itself (RFC 8949 §3) rather than through
//! minicbor's `Decoder`: on the bootloader's path that is ~3.6 KB less flash (of a 24 KiB
//! budget), and the rules below are rota's own either way; minicbor still encodes (the
//! builder) and names the item types. It adds the rules a security parser needs and
//! general CBOR decoders leave to their caller (RFC 8949 §5.4 "validity", §5.6 "map key
//! duplicates"):
//! - every map is checked for duplicate keys ([`KeySet`]);
//! - indefinite-length items are refused (they are not deterministic encodings,
//!   RFC 8949 §4.2.1, and never appear in SUIT or COSE structures that are hashed);
//! - a structure must end exactly where its enclosing byte string ends ([`Reader::finish`]);
//! - nesting of opaque items is bounded ([`MAX_DEPTH`]), so the stack is bounded;
//! - every error carries the absolute byte offset in the outermost input, even for
//!   items inside `bstr .cbor` wrappers ([`Reader::nested`]).
//!
//! Nothing here allocates or panics on any input.

use minicbor::data::Type;

use crate::error::{Error, Result, msg};

/// How deep opaque (uninterpreted) items may nest before they are refused.
/// Stack (Cortex-M4, scripts/size-probe.sh --stack): 504 B a level; at 8, hostile input peaks at 9304 B.
pub const MAX_DEPTH: usize = 8;
/// How many entries any one map may hold; bounds the duplicate-key check.
/// Stack: a `KeySet` of 264 B at each nesting level (in `skip_strict`'s 384-B frame, Cortex-M4).
pub const MAX_MAP_ENTRIES: usize = 32;

/// A CBOR reader over one slice whose position `0` is at `base` in the outermost input.
#[derive(Clone)]
pub struct Reader<'a> {
    input: &'a [u8],
    /// The next byte to read; never past the end of `input`.
    pos: usize,
    base: usize,
}

/// Why the bytes at the reader's position are not the item asked for.
#[derive(Clone, Copy)]
enum Fault {
    /// The input ends inside the item.
    End,
    /// Anything else: a reserved or indefinite head, an integer out of range, bad UTF-8.
    Invalid,
}

/// A map key, compared by value so that two encodings of one key still collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// Any other key (arrays, tags, …), compared by its encoded bytes.
    Other(&'a [u8]),
}

impl<'a> Key<'a> {
    /// The key encoded in `raw` (one complete, already validated item).
    fn from_encoded(raw: &'a [u8]) -> Self {
        let mut r = Reader::new(raw);
        let key = match r.datatype() {
            Ok(t) if is_integer(t) => r.int("").ok().map(Key::Int),
            Ok(Type::String) => r.text("").ok().map(Key::Text),
            Ok(Type::Bytes) => r.bytes("").ok().map(Key::Bytes),
            _ => None,
        };
        // Integers beyond i64 and containers compare by their encoding.
        key.unwrap_or(Key::Other(raw))
    }
}

/// Whether `t` is a CBOR integer (major type 0 or 1). [`Reader::datatype`] names every
/// unsigned integer `U64` and every negative one `I64`, whatever its width.
fn is_integer(t: Type) -> bool {
    matches!(t, Type::U64 | Type::I64)
}

/// The keys already seen in one map (RFC 8949 §5.6: a map with duplicate keys is invalid).
///
/// Keys are kept as 8-byte spans of the map's input and decoded again to compare, not
/// stored decoded: [`Reader::item`] walks unauthenticated input with one `KeySet` per
/// nesting level on the stack, so its size bounds the bootloader's worst-case stack.
pub struct KeySet {
    spans: [(u32, u32); MAX_MAP_ENTRIES],
    len: usize,
}

impl KeySet {
    pub const fn new() -> Self {
        Self {
            spans: [(0, 0); MAX_MAP_ENTRIES],
            len: 0,
        }
    }

    /// Records the key encoded at `input[start..end]` (read at `offset`), refusing one
    /// equal in value to a key already seen.
    fn insert(&mut self, input: &[u8], start: usize, end: usize, offset: usize) -> Result<()> {
        let limit = Error::LimitExceeded {
            offset,
            limit: msg!("map entries"),
        };
        let key = Key::from_encoded(&input[start..end]);
        for &(s, e) in &self.spans[..self.len] {
            if Key::from_encoded(&input[s as usize..e as usize]) == key {
                return Err(Error::DuplicateKey { offset });
            }
        }
        let span = (
            u32::try_from(start).map_err(|_| limit)?,
            u32::try_from(end).map_err(|_| limit)?,
        );
        *self.spans.get_mut(self.len).ok_or(limit)? = span;
        self.len += 1;
        Ok(())
    }
}

impl Default for KeySet {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Reader<'a> {
    /// A reader over the outermost input.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::at(bytes, 0)
    }

    /// A reader over `bytes`, which start at absolute offset `base`.
    pub fn at(bytes: &'a [u8], base: usize) -> Self {
        Self {
            input: bytes,
            pos: 0,
            base,
        }
    }

    /// A reader over the content of a byte string this reader returned with
    /// [`Reader::bytes_item`], keeping absolute offsets.
    pub fn nested(&self, item: BytesItem<'a>) -> Reader<'a> {
        Reader::at(item.content, item.content_offset)
    }

    /// Absolute offset of the next item.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn malformed(&self, expected: &'static str) -> Error {
        Error::Malformed {
            offset: self.offset(),
            expected,
        }
    }

    /// The error for a fault at this reader's position: input that ends inside an item
    /// is named as truncated, anything else as malformed.
    fn fail(&self, fault: Fault, expected: &'static str) -> Error {
        match fault {
            Fault::End => self.truncated(),
            Fault::Invalid => self.malformed(expected),
        }
    }

    /// The input (this reader's slice) ends inside an item.
    fn truncated(&self) -> Error {
        Error::Truncated {
            offset: self.base + self.input.len(),
        }
    }

    /// The `n` bytes at the position, consumed.
    fn take(&mut self, n: usize) -> core::result::Result<&'a [u8], Fault> {
        let bytes = self.input.get(self.pos..).and_then(|rest| rest.get(..n));
        let bytes = bytes.ok_or(Fault::End)?;
        self.pos += n;
        Ok(bytes)
    }

    /// The byte `ahead` bytes past the position, not consumed.
    fn peek(&self, ahead: usize) -> core::result::Result<u8, Fault> {
        let at = self.pos + ahead;
        self.input.get(at).copied().ok_or(Fault::End)
    }

    /// Consumes the head of an item (RFC 8949 §3): its initial byte and its argument.
    /// Indefinite lengths and reserved additional information (28–31) are invalid here.
    fn head(&mut self) -> core::result::Result<(u8, u64), Fault> {
        let initial = self.take(1)?[0];
        let arg = match initial & 0x1f {
            info @ 0..=23 => u64::from(info),
            info @ 24..=27 => {
                let bytes = self.take(1 << (info - 24))?;
                bytes.iter().fold(0, |n, &b| n << 8 | u64::from(b))
            }
            _ => return Err(Fault::Invalid),
        };
        Ok((initial, arg))
    }

    /// Consumes a byte or text string's head and content.
    fn string(&mut self) -> core::result::Result<&'a [u8], Fault> {
        let (_, len) = self.head()?;
        // A length beyond the address space is beyond the input too.
        self.take(usize::try_from(len).map_err(|_| Fault::End)?)
    }

    /// Checks that the next item has type `want`. Its indefinite-length form `indefinite`
    /// is refused as such (RFC 8949 §4.2.1), any other type as malformed.
    fn expect(&self, want: Type, indefinite: Type, what: &'static str) -> Result<()> {
        match self.datatype()? {
            t if t == want => Ok(()),
            t if t == indefinite => Err(Error::IndefiniteLength {
                offset: self.offset(),
            }),
            _ => Err(self.malformed(what)),
        }
    }

    /// The type of the next item, without consuming it. Integers are `U64` (unsigned)
    /// or `I64` (negative) whatever their width, and any other simple value or float is
    /// `Simple`: no caller tells them apart.
    pub fn datatype(&self) -> Result<Type> {
        let initial = self
            .peek(0)
            .map_err(|f| self.fail(f, msg!("a CBOR item")))?;
        let info = initial & 0x1f;
        let definite = info <= 27;
        Ok(match (initial >> 5, info) {
            (0, _) if definite => Type::U64,
            (1, _) if definite => {
                // Typing a negative integer needs its first argument byte, as it did when
                // this reader wrapped minicbor: truncation is reported here, unchanged.
                if info >= 24 {
                    self.peek(1)
                        .map_err(|f| self.fail(f, msg!("a CBOR item")))?;
                }
                Type::I64
            }
            (2, _) if definite => Type::Bytes,
            (2, 31) => Type::BytesIndef,
            (3, _) if definite => Type::String,
            (3, 31) => Type::StringIndef,
            (4, _) if definite => Type::Array,
            (4, 31) => Type::ArrayIndef,
            (5, _) if definite => Type::Map,
            (5, 31) => Type::MapIndef,
            (6, _) if definite => Type::Tag,
            (7, 20 | 21) => Type::Bool,
            (7, 22) => Type::Null,
            (7, _) if definite => Type::Simple,
            (7, 31) => Type::Break,
            _ => Type::Unknown(initial),
        })
    }

    /// Fails unless every byte of this reader's slice has been consumed.
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                offset: self.offset(),
            })
        }
    }

    /// Consumes `expected` when the input continues with exactly those bytes; for
    /// layouts fixed byte for byte ([`crate::profile`]). Leaves the position unchanged
    /// otherwise.
    pub(crate) fn literal_if(&mut self, expected: &[u8]) -> bool {
        let end = self.pos + expected.len();
        let matches = self.input.get(self.pos..end) == Some(expected);
        if matches {
            self.pos = end;
        }
        matches
    }

    /// Consumes `expected`, or fails with [`Error::NotBootProfile`] at this position.
    pub(crate) fn literal(&mut self, expected: &[u8]) -> Result<()> {
        if self.literal_if(expected) {
            Ok(())
        } else {
            Err(Error::NotBootProfile {
                offset: self.offset(),
            })
        }
    }

    /// The next `N` bytes, raw: the content of a byte string whose head a
    /// [`Reader::literal`] just consumed.
    pub(crate) fn raw<const N: usize>(&mut self) -> Result<&'a [u8; N]> {
        let at = self.clone();
        self.take(N)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| at.truncated())
    }

    /// An unsigned integer.
    pub fn uint(&mut self, what: &'static str) -> Result<u64> {
        let at = self.clone();
        match self.datatype()? {
            Type::U64 => self.head().map(|(_, n)| n).map_err(|f| at.fail(f, what)),
            _ => Err(at.malformed(what)),
        }
    }

    /// An integer (major type 0 or 1) that fits an `i64`.
    pub fn int(&mut self, what: &'static str) -> Result<i64> {
        let at = self.clone();
        if !is_integer(self.datatype()?) {
            return Err(at.malformed(what));
        }
        let (initial, n) = self.head().map_err(|f| at.fail(f, what))?;
        let n = i64::try_from(n).map_err(|_| at.malformed(what))?;
        // Major type 1 encodes -1 - n.
        Ok(if initial >> 5 == 0 { n } else { -1 - n })
    }

    /// A definite-length byte string's content.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8]> {
        self.bytes_item(what).map(|b| b.content)
    }

    /// A definite-length byte string, with its encoded form (header included).
    pub fn bytes_item(&mut self, what: &'static str) -> Result<BytesItem<'a>> {
        let at = self.clone();
        self.expect(Type::Bytes, Type::BytesIndef, what)?;
        let start = self.pos;
        let content = self.string().map_err(|f| at.fail(f, what))?;
        let end = self.pos;
        Ok(BytesItem {
            encoded: &self.input[start..end],
            content,
            content_offset: self.base + end - content.len(),
        })
    }

    /// A definite-length, valid UTF-8 text string.
    pub fn text(&mut self, what: &'static str) -> Result<&'a str> {
        let at = self.clone();
        self.expect(Type::String, Type::StringIndef, what)?;
        let content = self.string().map_err(|f| at.fail(f, what))?;
        core::str::from_utf8(content).map_err(|_| at.malformed(what))
    }

    /// The header of a definite-length array; returns its length.
    pub fn array(&mut self, what: &'static str) -> Result<usize> {
        let at = self.clone();
        self.expect(Type::Array, Type::ArrayIndef, what)?;
        // Even a truncated length is named malformed here, as it always was.
        let (_, len) = self.head().map_err(|_| at.malformed(what))?;
        // Beyond the address space (16-bit and 32-bit targets), no input holds that many
        // items, so any length that large walks to the same truncation; it keeps its
        // parity, which command sequences check. Native-width counts cost less flash.
        Ok(usize::try_from(len).unwrap_or((usize::MAX - 1) | (len & 1) as usize))
    }

    /// The header of a definite-length array that must have exactly `len` items.
    pub fn array_of(&mut self, len: usize, what: &'static str) -> Result<()> {
        let at = self.clone();
        if self.array(what)? == len {
            Ok(())
        } else {
            Err(at.malformed(what))
        }
    }

    /// The header of a definite-length map; returns its number of entries.
    pub fn map(&mut self, what: &'static str) -> Result<usize> {
        let at = self.clone();
        self.expect(Type::Map, Type::MapIndef, what)?;
        let (_, len) = self.head().map_err(|_| at.malformed(what))?;
        if len > MAX_MAP_ENTRIES as u64 {
            return Err(Error::LimitExceeded {
                offset: at.offset(),
                limit: msg!("map entries"),
            });
        }
        Ok(len as usize)
    }

    /// A tag number, if the next item is tagged; consumes the tag only.
    pub fn tag(&mut self) -> Result<Option<u64>> {
        if self.datatype()? != Type::Tag {
            return Ok(None);
        }
        let at = self.clone();
        self.head()
            .map(|(_, tag)| Some(tag))
            .map_err(|f| at.fail(f, msg!("a tag")))
    }

    /// `true` (and consumes it) when the next item is `null`.
    pub fn null(&mut self) -> Result<bool> {
        if self.datatype()? == Type::Null {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reads the next key of a map, refusing a duplicate of one already in `keys`
    /// (RFC 8949 §5.6); returns it with its absolute offset.
    pub fn map_key(&mut self, keys: &mut KeySet) -> Result<(Key<'a>, usize)> {
        self.map_key_at(keys, 0)
    }

    /// Reads a map key without tracking duplicates: for re-reading a map that
    /// [`Reader::map_key`] already checked.
    pub fn key(&mut self) -> Result<(Key<'a>, usize)> {
        let offset = self.offset();
        Ok((Key::from_encoded(self.skip_checked()?), offset))
    }

    /// Skips one item that a strict walk ([`Reader::item`]) already accepted, and
    /// returns its encoded bytes. The skip is iterative, so re-reading costs no stack
    /// however deep the item nests, and never trips a limit the first walk passed.
    pub fn skip_checked(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        self.skip_any()?;
        Ok(&self.input[start..self.pos])
    }

    /// Skips one item of definite lengths without looking inside its strings: for items
    /// already validated, and for scalars. Out of line: it has two call sites.
    #[inline(never)]
    fn skip_any(&mut self) -> Result<()> {
        let at = self.offset();
        // Items still to skip: each array element, map key and value, and tagged item
        // adds one; the input bounds the loop, since every head consumes a byte.
        let mut items = 1u64;
        while items > 0 {
            items -= 1;
            let skipped = self.head().and_then(|(initial, arg)| {
                match initial >> 5 {
                    2 | 3 => {
                        self.take(usize::try_from(arg).map_err(|_| Fault::End)?)?;
                    }
                    4 => items = items.saturating_add(arg),
                    5 => items = items.saturating_add(arg.saturating_mul(2)),
                    6 => items += 1,
                    _ => {}
                }
                Ok(())
            });
            if let Err(fault) = skipped {
                return Err(match fault {
                    Fault::End => self.truncated(),
                    Fault::Invalid => Error::Malformed {
                        offset: at,
                        expected: msg!("a CBOR item"),
                    },
                });
            }
        }
        Ok(())
    }

    fn map_key_at(&mut self, keys: &mut KeySet, depth: usize) -> Result<(Key<'a>, usize)> {
        let offset = self.offset();
        let start = self.pos;
        self.skip_strict(depth)?;
        let end = self.pos;
        let input = self.input;
        keys.insert(input, start, end, offset)?;
        Ok((Key::from_encoded(&input[start..end]), offset))
    }

    /// Skips one complete, well-formed item and returns its encoded bytes.
    ///
    /// The item is validated strictly, as everything rota accepts is: definite
    /// lengths only, unique map keys, UTF-8 text, nesting at most [`MAX_DEPTH`].
    pub fn item(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        self.skip_strict(0)?;
        Ok(&self.input[start..self.pos])
    }

    fn skip_strict(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::LimitExceeded {
                offset: self.offset(),
                limit: msg!("nesting depth"),
            });
        }
        let at = self.clone();
        match self.datatype()? {
            Type::Array | Type::ArrayIndef => {
                for _ in 0..self.array(msg!("an array"))? {
                    self.skip_strict(depth + 1)?;
                }
            }
            Type::Map | Type::MapIndef => {
                let mut keys = KeySet::new();
                for _ in 0..self.map(msg!("a map"))? {
                    self.map_key_at(&mut keys, depth + 1)?;
                    self.skip_strict(depth + 1)?;
                }
            }
            Type::Tag => {
                self.tag()?;
                self.skip_strict(depth + 1)?;
            }
            Type::Bytes => {
                self.bytes(msg!("a byte string"))?;
            }
            Type::String => {
                self.text(msg!("a text string"))?;
            }
            Type::BytesIndef | Type::StringIndef => {
                return Err(Error::IndefiniteLength {
                    offset: at.offset(),
                });
            }
            Type::Break | Type::Unknown(_) => return Err(at.malformed(msg!("a CBOR item"))),
            // Integers, simple values and floats have no inner structure.
            _ => self.skip_any()?,
        }
        Ok(())
    }
}

/// CBOR major types (RFC 8949 §3.1), for [`put_item`].
pub(crate) mod major {
    pub const BYTES: u8 = 2;
    pub const TEXT: u8 = 3;
    pub const ARRAY: u8 = 4;
}

/// Writes an item's head, with the shortest form of `arg` (RFC 8949 §4.2.1), and then
/// `content` into `buf` at `at`; returns where they end, or `None` if they do not fit.
pub(crate) fn put_item(
    buf: &mut [u8],
    at: usize,
    major: u8,
    arg: u64,
    content: &[u8],
) -> Option<usize> {
    let (info, arg_len) = match arg {
        0..=23 => (arg as u8, 0),
        24..=0xff => (24, 1),
        0x100..=0xffff => (25, 2),
        0x1_0000..=0xffff_ffff => (26, 4),
        _ => (27, 8),
    };
    let arg_bytes = arg.to_be_bytes();
    let mut at = at;
    for part in [&[major << 5 | info][..], &arg_bytes[8 - arg_len..], content] {
        let end = at.checked_add(part.len())?;
        buf.get_mut(at..end)?.copy_from_slice(part);
        at = end;
    }
    Some(at)
}

/// One entry of a map that a strict walk already accepted.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub key: Key<'a>,
    /// The value's encoded bytes.
    pub value: &'a [u8],
    /// Absolute offset of the value.
    pub value_offset: usize,
}

/// The entries of the map encoded at the start of `encoded` (absolute offset `base`),
/// which an earlier strict walk accepted: the one way rota re-reads a checked map.
pub fn checked_entries<'a>(encoded: &'a [u8], base: usize) -> impl Iterator<Item = Entry<'a>> + 'a {
    let mut r = Reader::at(encoded, base);
    let mut remaining = r.map(msg!("a map")).unwrap_or(0);
    core::iter::from_fn(move || {
        if remaining == 0 {
            return None;
        }
        remaining -= 1;
        let (key, _) = r.key().ok()?;
        let value_offset = r.offset();
        let value = r.skip_checked().ok()?;
        Some(Entry {
            key,
            value,
            value_offset,
        })
    })
}

/// A byte string as it appeared on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BytesItem<'a> {
    /// The whole item, CBOR header included: what SUIT digests cover
    /// (draft-ietf-suit-manifest-37 §8.3 and §8.4.2).
    pub encoded: &'a [u8],
    /// The content after the header.
    pub content: &'a [u8],
    /// Absolute offset of `content` in the outermost input.
    pub content_offset: usize,
}
