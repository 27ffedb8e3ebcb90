//! The strict CBOR reader every rota parser is built on.
//!
//! It wraps [`minicbor::Decoder`] and adds the rules a security parser needs and
//! minicbor leaves to its caller (RFC 8949 §5.4 "validity", §5.6 "map key duplicates"):
//! - every map is checked for duplicate keys ([`KeySet`]);
//! - indefinite-length items are refused (they are not deterministic encodings,
//!   RFC 8949 §4.2.1, and never appear in SUIT or COSE structures that are hashed);
//! - a structure must end exactly where its enclosing byte string ends ([`Reader::finish`]);
//! - nesting of opaque items is bounded ([`MAX_DEPTH`]), so the stack is bounded;
//! - every error carries the absolute byte offset in the outermost input, even for
//!   items inside `bstr .cbor` wrappers ([`Reader::nested`]).
//!
//! Nothing here allocates or panics on any input.

use minicbor::Decoder;
use minicbor::data::Type;

use crate::error::{Error, Result};

/// How deep opaque (uninterpreted) items may nest before they are refused.
/// Stack (Cortex-M4, scripts/size-probe.sh --stack): 504 B a level; at 8, hostile input peaks at 9304 B.
pub const MAX_DEPTH: usize = 8;
/// How many entries any one map may hold; bounds the duplicate-key check.
/// Stack: a [`KeySet`] of 264 B at each nesting level (in `skip_strict`'s 384-B frame, Cortex-M4).
pub const MAX_MAP_ENTRIES: usize = 32;

/// A CBOR reader over one slice whose position `0` is at `base` in the outermost input.
#[derive(Clone)]
pub struct Reader<'a> {
    dec: Decoder<'a>,
    base: usize,
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
        let mut d = Decoder::new(raw);
        let key = match d.datatype() {
            Ok(t) if is_integer(t) => d.i64().ok().map(Key::Int),
            Ok(Type::String) => d.str().ok().map(Key::Text),
            Ok(Type::Bytes) => d.bytes().ok().map(Key::Bytes),
            _ => None,
        };
        // Integers beyond i64 and containers compare by their encoding.
        key.unwrap_or(Key::Other(raw))
    }
}

/// Whether `t` is a CBOR integer (major type 0 or 1), of any width.
fn is_integer(t: Type) -> bool {
    matches!(
        t,
        Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int
    )
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
            limit: "map entries",
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
            dec: Decoder::new(bytes),
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
        self.base + self.dec.position()
    }

    fn malformed(&self, expected: &'static str) -> Error {
        Error::Malformed {
            offset: self.offset(),
            expected,
        }
    }

    /// The error for a minicbor failure at this reader's position: input that ends
    /// inside an item is named as truncated, anything else as malformed.
    fn fail(&self, e: minicbor::decode::Error, expected: &'static str) -> Error {
        if e.is_end_of_input() {
            self.truncated()
        } else {
            self.malformed(expected)
        }
    }

    /// The input (this reader's slice) ends inside an item.
    fn truncated(&self) -> Error {
        Error::Truncated {
            offset: self.base + self.dec.input().len(),
        }
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

    /// The type of the next item, without consuming it.
    pub fn datatype(&self) -> Result<Type> {
        self.dec.datatype().map_err(|e| self.fail(e, "a CBOR item"))
    }

    /// Fails unless every byte of this reader's slice has been consumed.
    pub fn finish(&self) -> Result<()> {
        if self.dec.position() == self.dec.input().len() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                offset: self.offset(),
            })
        }
    }

    /// An unsigned integer.
    pub fn uint(&mut self, what: &'static str) -> Result<u64> {
        let at = self.clone();
        match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
                self.dec.u64().map_err(|e| at.fail(e, what))
            }
            _ => Err(at.malformed(what)),
        }
    }

    /// An integer (major type 0 or 1) that fits an `i64`.
    pub fn int(&mut self, what: &'static str) -> Result<i64> {
        let at = self.clone();
        match self.datatype()? {
            t if is_integer(t) => self.dec.i64().map_err(|e| at.fail(e, what)),
            _ => Err(at.malformed(what)),
        }
    }

    /// A definite-length byte string's content.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8]> {
        self.bytes_item(what).map(|b| b.content)
    }

    /// A definite-length byte string, with its encoded form (header included).
    pub fn bytes_item(&mut self, what: &'static str) -> Result<BytesItem<'a>> {
        let at = self.clone();
        self.expect(Type::Bytes, Type::BytesIndef, what)?;
        let start = self.dec.position();
        let content = self.dec.bytes().map_err(|e| at.fail(e, what))?;
        let end = self.dec.position();
        Ok(BytesItem {
            encoded: &self.dec.input()[start..end],
            content,
            content_offset: self.base + end - content.len(),
        })
    }

    /// A definite-length, valid UTF-8 text string.
    pub fn text(&mut self, what: &'static str) -> Result<&'a str> {
        let at = self.clone();
        self.expect(Type::String, Type::StringIndef, what)?;
        self.dec.str().map_err(|e| at.fail(e, what))
    }

    /// The header of a definite-length array; returns its length.
    pub fn array(&mut self, what: &'static str) -> Result<u64> {
        let at = self.clone();
        self.expect(Type::Array, Type::ArrayIndef, what)?;
        match self.dec.array() {
            Ok(Some(len)) => Ok(len),
            _ => Err(at.malformed(what)),
        }
    }

    /// The header of a definite-length array that must have exactly `len` items.
    pub fn array_of(&mut self, len: u64, what: &'static str) -> Result<()> {
        let at = self.clone();
        if self.array(what)? == len {
            Ok(())
        } else {
            Err(at.malformed(what))
        }
    }

    /// The header of a definite-length map; returns its number of entries.
    pub fn map(&mut self, what: &'static str) -> Result<u64> {
        let at = self.clone();
        self.expect(Type::Map, Type::MapIndef, what)?;
        let len = match self.dec.map() {
            Ok(Some(len)) => len,
            _ => return Err(at.malformed(what)),
        };
        if len > MAX_MAP_ENTRIES as u64 {
            return Err(Error::LimitExceeded {
                offset: at.offset(),
                limit: "map entries",
            });
        }
        Ok(len)
    }

    /// A tag number, if the next item is tagged; consumes the tag only.
    pub fn tag(&mut self) -> Result<Option<u64>> {
        if self.datatype()? != Type::Tag {
            return Ok(None);
        }
        let at = self.clone();
        self.dec
            .tag()
            .map(|t| Some(t.as_u64()))
            .map_err(|e| at.fail(e, "a tag"))
    }

    /// `true` (and consumes it) when the next item is `null`.
    pub fn null(&mut self) -> Result<bool> {
        if self.datatype()? == Type::Null {
            self.dec.null().map_err(|_| self.malformed("null"))?;
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
    /// returns its encoded bytes. minicbor's skip is iterative, so re-reading costs no
    /// stack however deep the item nests, and never trips a limit the first walk passed.
    pub fn skip_checked(&mut self) -> Result<&'a [u8]> {
        let start = self.dec.position();
        self.skip_any()?;
        Ok(&self.dec.input()[start..self.dec.position()])
    }

    /// minicbor's (iterative) skip of one item. Out of line: it is large, and inlined
    /// at each of its two call sites it would cost the bootloader its size twice.
    #[inline(never)]
    fn skip_any(&mut self) -> Result<()> {
        let at = self.offset();
        self.dec.skip().map_err(|e| {
            if e.is_end_of_input() {
                self.truncated()
            } else {
                Error::Malformed {
                    offset: at,
                    expected: "a CBOR item",
                }
            }
        })
    }

    fn map_key_at(&mut self, keys: &mut KeySet, depth: usize) -> Result<(Key<'a>, usize)> {
        let offset = self.offset();
        let start = self.dec.position();
        self.skip_strict(depth)?;
        let end = self.dec.position();
        let input = self.dec.input();
        keys.insert(input, start, end, offset)?;
        Ok((Key::from_encoded(&input[start..end]), offset))
    }

    /// Skips one complete, well-formed item and returns its encoded bytes.
    ///
    /// The item is validated strictly, as everything rota accepts is: definite
    /// lengths only, unique map keys, UTF-8 text, nesting at most [`MAX_DEPTH`].
    pub fn item(&mut self) -> Result<&'a [u8]> {
        let start = self.dec.position();
        self.skip_strict(0)?;
        Ok(&self.dec.input()[start..self.dec.position()])
    }

    fn skip_strict(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::LimitExceeded {
                offset: self.offset(),
                limit: "nesting depth",
            });
        }
        let at = self.clone();
        match self.datatype()? {
            Type::Array | Type::ArrayIndef => {
                for _ in 0..self.array("an array")? {
                    self.skip_strict(depth + 1)?;
                }
            }
            Type::Map | Type::MapIndef => {
                let mut keys = KeySet::new();
                for _ in 0..self.map("a map")? {
                    self.map_key_at(&mut keys, depth + 1)?;
                    self.skip_strict(depth + 1)?;
                }
            }
            Type::Tag => {
                self.tag()?;
                self.skip_strict(depth + 1)?;
            }
            Type::Bytes => {
                self.bytes("a byte string")?;
            }
            Type::String => {
                self.text("a text string")?;
            }
            Type::BytesIndef | Type::StringIndef => {
                return Err(Error::IndefiniteLength {
                    offset: at.offset(),
                });
            }
            Type::Break | Type::Unknown(_) => return Err(at.malformed("a CBOR item")),
            // Integers, simple values and floats have no inner structure.
            _ => self.skip_any()?,
        }
        Ok(())
    }
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
    let mut remaining = r.map("a map").unwrap_or(0);
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
