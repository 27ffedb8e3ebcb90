//! Signed device requests: how a device authenticates each HTTP request with its identity
//! key, and how the server verifies it ([`RequestVerifier`]).
//!
//! A device that signed a request may open a [session](crate::session): its check-ins and
//! reports then carry an HMAC under the session key (`Rota-Session`, `Rota-Mac`) instead of
//! `Rota-Signature`, with the same `Rota-Device`, `Rota-Timestamp` and `Rota-Nonce` and
//! the same checks. Everything else is always signed.
//!
//! # Format (version 1)
//!
//! Every device request carries four headers:
//!
//! | header           | value |
//! |------------------|-------|
//! | `Rota-Device`    | the device id ([`valid_device_id`]) |
//! | `Rota-Timestamp` | the device's clock, unix milliseconds, decimal without leading zeros |
//! | `Rota-Nonce`     | 16 random bytes, 32 lowercase hex characters ([`Nonce`]) |
//! | `Rota-Signature` | standard padded base64 of the 64-byte signature by the device key (Ed25519 `R || S`, or ECDSA P-256 with SHA-256 as `r || s`) |
//!
//! The signature is over the UTF-8 text ([`signed_message`]):
//!
//! ```text
//! "rota-request-v1\n" METHOD "\n" path_and_query "\n" timestamp "\n" nonce "\n" hex(sha256(body))
//! ```
//!
//! where `METHOD` is the request method as sent (upper case), `path_and_query` the request
//! target exactly as sent in origin form (`/api/v1/device/checkin?version=3&slot=confirmed`),
//! and the body hash is lowercase hex (of the empty string for a request without a body).
//! A proxy in front of the server must forward the path and query unchanged.
//!
//! # Why signatures and not mutual TLS
//!
//! The signature travels with the request, so it survives any TLS terminator, load balancer
//! or CDN between the device and the server, and the server needs no client-certificate
//! plumbing. The device key never has to be usable for a TLS handshake: a secure element
//! or TPM that can only "sign these bytes" is enough (any [`Sign`]); the message
//! is short (under 2 KiB for any path this API uses), since the body enters only by hash.
//!
//! # Threat model
//!
//! - Forgery: without the device key, no request verifies ([`PublicKey::verify`]: strict
//!   Ed25519, which also refuses malleable signatures and small-order keys, or P-256). The device key is bound
//!   to the device id by its [certificate](crate::identity). A session request verifies
//!   only with the session key, which only the device and the server derive: the session
//!   is opened by a signed request that carries the device's ephemeral X25519 key, so a
//!   man in the middle cannot make the server accept a key of theirs
//!   ([`crate::session`]).
//! - Impersonation with a stolen session (its key and token taken from a device): it
//!   authenticates check-ins and reports only ([`crate::session::session_allowed`]; never
//!   enrolment, rotation, orders, transfers, attestation or a new session), and it ends at
//!   its expiry (at most [`crate::session::MAX_SESSION_LIFETIME_S`]) or as soon as the
//!   device key is revoked or rotated: the token is bound to the key's id, compared with
//!   the device's current key on every request, and the revocation checks run as after a
//!   signature.
//! - Tampering: the method, path, query, timestamp, nonce and body hash are all signed
//!   (or MAC'd, under a context of its own), so a changed request fails verification.
//! - Replay: a request (signed or MAC'd alike) is accepted only while its timestamp is within `max_skew_ms`
//!   (default 5 minutes) of the server's clock, and only once per (device, nonce) while it
//!   is within that window. The nonce cache lives in the memory of one server process: with
//!   several replicas, a captured request could be replayed to another replica within the
//!   skew window. That is harmless by design, because every device request is either a
//!   read-only check-in or a report carrying an idempotency `event_id` that the server
//!   stores under a unique key, so a replay changes nothing.
//! - Memory: a nonce is recorded only after its signature (or MAC) verified, so forged requests can
//!   neither fill the cache nor spend a device's nonces. The cache has a hard capacity;
//!   when it is full of unexpired entries (a flood of validly signed requests, which only a
//!   device key holder can make), the entry closest to expiry is dropped. Availability
//!   wins over replay protection there, which the previous point shows is safe.
//! - Enumeration: a request naming a device id the server does not know gets exactly the
//!   answer of a request that a known device's key did not sign, after the same clock
//!   check and the same signature work ([`RequestVerifier::refuse_unknown`]), so the
//!   answers do not tell which ids are registered. The server logs the difference. A
//!   session request for a device the server no longer knows is answered as a wrong MAC.
//! - Confidentiality: none here, sessions or not (a session keeps its key from a network
//!   observer, not the requests). Use TLS: check-ins and reports reveal a device's
//!   firmware version and state.
//! - Clocks: a device needs a clock within the skew of the server's (from NTP, or from
//!   the HTTP `Date` header of an earlier response).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::{PublicKey, Sign, SignError, Signature};
use sha2::{Digest as _, Sha256};

use crate::encoding;
use crate::identity::valid_device_id;
use crate::{RandomError, random_bytes};

/// The header naming the device.
pub const DEVICE_HEADER: &str = "Rota-Device";
/// The header with the device's clock, unix milliseconds.
pub const TIMESTAMP_HEADER: &str = "Rota-Timestamp";
/// The header with the request's random nonce.
pub const NONCE_HEADER: &str = "Rota-Nonce";
/// The header with the request signature.
pub const SIGNATURE_HEADER: &str = "Rota-Signature";
/// The first line of every signed message.
pub const REQUEST_SIGNING_CONTEXT: &str = "rota-request-v1";
/// How far a request's timestamp may be from the server's clock by default: 5 minutes.
pub const DEFAULT_MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// How many (device, nonce) pairs the replay cache holds by default (about 20 MiB at most).
pub const DEFAULT_REPLAY_CAPACITY: usize = 256 * 1024;

/// Why a device request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A `Rota-*` header is absent.
    #[error("the request has no {0} header")]
    MissingHeader(&'static str),
    /// `Rota-Device` is not a valid device id.
    #[error(
        "the Rota-Device header is not a valid device id (1 to 64 characters of A-Z a-z 0-9 . _ -)"
    )]
    InvalidDeviceId,
    /// `Rota-Timestamp` is not a canonical decimal `u64`.
    #[error(
        "the Rota-Timestamp header is not a unix time in milliseconds (decimal digits without leading zeros)"
    )]
    InvalidTimestamp,
    /// `Rota-Nonce` is not 32 lowercase hex characters.
    #[error("the Rota-Nonce header is not 32 lowercase hex characters")]
    InvalidNonce,
    /// `Rota-Signature` is not standard padded base64 of 64 bytes.
    #[error("the Rota-Signature header is not the standard base64 of a 64-byte signature")]
    InvalidSignatureEncoding,
    /// The timestamp is outside the accepted window around the server's clock.
    #[error(
        "the request timestamp is more than {} away from the server's clock",
        describe_ms(*max_skew_ms)
    )]
    ClockSkew { max_skew_ms: u64 },
    /// The (device, nonce) pair was already accepted within the window.
    #[error("the request nonce was already used, so the request is refused as a replay")]
    Replayed,
    /// The signature does not verify over this request with the key registered for the
    /// device id, or no key is registered for it: one answer for both, so that it does not
    /// tell which device ids exist.
    #[error("the request is not signed by the key registered for its device id")]
    BadSignature,
    /// `Rota-Mac` is not standard padded base64 of 32 bytes.
    #[error("the Rota-Mac header is not the standard base64 of a 32-byte HMAC-SHA256")]
    InvalidMacEncoding,
    /// A session was presented for a request that must be signed
    /// ([`session_allowed`](crate::session::session_allowed)).
    #[error(
        "a session authenticates only check-ins and reports: this request must be signed with the device key"
    )]
    SessionNotAllowed,
    /// The `Rota-Session` token was not sealed by this server's fleet, names another
    /// device, or is bound to a device key that is no longer the device's (rotated or
    /// replaced).
    #[error(
        "the Rota-Session token is not a session this server opened for this device and its current key: open a new session"
    )]
    InvalidSession,
    /// The session's lifetime is over.
    #[error("the session expired: open a new session")]
    SessionExpired,
    /// The MAC does not verify with the session's key over this request, or the device is
    /// unknown: one answer for both, as [`AuthError::BadSignature`].
    #[error("the request's Rota-Mac does not verify with its session's key")]
    BadMac,
}

fn describe_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{} seconds", ms / 1000)
    } else {
        format!("{ms} milliseconds")
    }
}

/// A request nonce: 16 random bytes, written as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce([u8; Nonce::LEN]);

impl Nonce {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// A fresh nonce from the operating system's random number generator.
    pub fn random() -> Result<Self, RandomError> {
        random_bytes().map(Self)
    }

    /// The nonce with these bytes (for tests and for callers with their own RNG).
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The nonce's bytes.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({self})")
    }
}

impl FromStr for Nonce {
    type Err = AuthError;

    /// Exactly 32 lowercase hex characters.
    fn from_str(text: &str) -> Result<Self, AuthError> {
        encoding::lower_hex_decode(text)
            .map(Self)
            .ok_or(AuthError::InvalidNonce)
    }
}

/// The text a device signs for one request; see the [module docs](self).
pub fn signed_message(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &Nonce,
    body: &[u8],
) -> String {
    request_message(
        REQUEST_SIGNING_CONTEXT,
        method,
        path_and_query,
        timestamp_ms,
        nonce,
        body,
    )
}

/// One request as text under `context`: the signed message, and with its own context the
/// message a [session MAC](crate::session) covers.
pub(crate) fn request_message(
    context: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &Nonce,
    body: &[u8],
) -> String {
    format!(
        "{context}\n{method}\n{path_and_query}\n{timestamp_ms}\n{nonce}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

/// The four `Rota-*` header values of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Rota-Device`.
    pub device_id: String,
    /// `Rota-Timestamp`: unix milliseconds on the device's clock.
    pub timestamp_ms: u64,
    /// `Rota-Nonce`.
    pub nonce: Nonce,
    /// `Rota-Signature`.
    pub signature: Signature,
}

impl SignedHeaders {
    /// The headers as (name, value) pairs, in the order of the module docs' table.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, String)> {
        [
            (DEVICE_HEADER, self.device_id.clone()),
            (TIMESTAMP_HEADER, self.timestamp_ms.to_string()),
            (NONCE_HEADER, self.nonce.to_string()),
            (SIGNATURE_HEADER, encoding::base64_encode(&self.signature)),
        ]
        .into_iter()
    }

    /// Checks the signature alone (no clock or replay check: [`RequestVerifier::verify`]
    /// does all three).
    pub fn verify_signature(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        device_key: &PublicKey,
    ) -> Result<(), AuthError> {
        let message = signed_message(method, path_and_query, self.timestamp_ms, &self.nonce, body);
        // Ed25519 strictly (RFC 8032 §5.1.7, no malleable S), or ECDSA P-256 / SHA-256.
        device_key
            .verify(message.as_bytes(), &self.signature)
            .map_err(|_| AuthError::BadSignature)
    }
}

/// Signs a request with the device's identity key, wherever it is held (in memory, a
/// secure element, a TPM: any [`Sign`]). `now_ms` is the device's clock (unix
/// milliseconds) and `nonce` a fresh [`Nonce::random`]; `device_id` must be
/// [valid](crate::valid_device_id) or the server refuses the request.
pub fn sign_request(
    key: &dyn Sign,
    device_id: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
    nonce: Nonce,
) -> Result<SignedHeaders, SignError> {
    let message = signed_message(method, path_and_query, now_ms, &nonce, body);
    let signature = key.sign(message.as_bytes())?;
    Ok(SignedHeaders {
        device_id: device_id.to_owned(),
        timestamp_ms: now_ms,
        nonce,
        // A signer that returns another length (a DER ECDSA signature) broke the Sign
        // contract; the server would refuse the request anyway.
        signature: signature.try_into().map_err(|s: Vec<u8>| {
            SignError::Failed(format!("a {}-byte signature, not 64", s.len()))
        })?,
    })
}

/// Reads and strictly checks the four `Rota-*` headers. `get` returns a header's value by
/// name (the server's header map is case-insensitive; a value that is not valid text
/// should be returned as absent).
pub fn parse_headers<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<SignedHeaders, AuthError> {
    let header = |name: &'static str| get(name).ok_or(AuthError::MissingHeader(name));
    let device_id = header(DEVICE_HEADER)?;
    if !valid_device_id(device_id) {
        return Err(AuthError::InvalidDeviceId);
    }
    let (timestamp_ms, nonce) = parse_time_and_nonce(&header)?;
    let signature = encoding::decode_signature(header(SIGNATURE_HEADER)?)
        .ok_or(AuthError::InvalidSignatureEncoding)?;
    Ok(SignedHeaders {
        device_id: device_id.to_owned(),
        timestamp_ms,
        nonce,
        signature,
    })
}

/// `Rota-Timestamp` and `Rota-Nonce`, shared by signed and [session](crate::session)
/// requests.
pub(crate) fn parse_time_and_nonce<'a>(
    header: &impl Fn(&'static str) -> Result<&'a str, AuthError>,
) -> Result<(u64, Nonce), AuthError> {
    let timestamp_ms = parse_timestamp(header(TIMESTAMP_HEADER)?)?;
    let nonce = header(NONCE_HEADER)?.parse()?;
    Ok((timestamp_ms, nonce))
}

/// Decimal digits without sign or leading zeros, so a timestamp has one spelling and the
/// server re-creates exactly the text the device signed.
fn parse_timestamp(text: &str) -> Result<u64, AuthError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(AuthError::InvalidTimestamp);
    }
    text.parse().map_err(|_| AuthError::InvalidTimestamp)
}

/// Verifies signed device requests: clock window, signature, then replay (in that
/// order, so only authentic requests reach the replay cache). One per server process,
/// shared by all request handlers.
#[derive(Debug)]
pub struct RequestVerifier {
    max_skew_ms: u64,
    replay: ReplayCache,
}

impl Default for RequestVerifier {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SKEW_MS, DEFAULT_REPLAY_CAPACITY)
    }
}

impl RequestVerifier {
    /// A verifier accepting timestamps within `max_skew_ms` of the server's clock and
    /// remembering about `replay_capacity` nonces (see [`ReplayCache::new`]).
    pub fn new(max_skew_ms: u64, replay_capacity: usize) -> Self {
        Self {
            max_skew_ms,
            replay: ReplayCache::new(replay_capacity),
        }
    }

    /// The accepted distance between a request's timestamp and the server's clock.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// The nonce cache (for metrics).
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    /// Accepts the request if its timestamp is within the window of `now_ms` (the
    /// server's clock, unix milliseconds), its signature verifies with `device_key` over
    /// this method, path and query and body, and its nonce was not accepted before.
    pub fn verify(
        &self,
        headers: &SignedHeaders,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        device_key: &PublicKey,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        self.check_clock(headers.timestamp_ms, now_ms)?;
        headers.verify_signature(method, path_and_query, body, device_key)?;
        self.remember(
            &headers.device_id,
            &headers.nonce,
            headers.timestamp_ms,
            now_ms,
        )
    }

    /// Records an authentic request's (device, nonce) until the server's clock passes its
    /// timestamp + skew (after which the clock check refuses it anyway), or refuses it as a
    /// replay. Signed and session requests share the one cache.
    pub(crate) fn remember(
        &self,
        device_id: &str,
        nonce: &Nonce,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let expires_ms = timestamp_ms.saturating_add(self.max_skew_ms);
        if self.replay.insert(device_id, nonce, now_ms, expires_ms) {
            Ok(())
        } else {
            Err(AuthError::Replayed)
        }
    }

    /// The refusal of a request that names a device id the server does not know: what
    /// [`verify`](Self::verify) answers a known device whose key did not sign the request
    /// (a clock skew first, then [`AuthError::BadSignature`]), after the same signature
    /// work on a key nobody uses, so neither the answer nor its timing tells an unknown id
    /// from a known one. The replay cache is not touched.
    pub fn refuse_unknown(
        &self,
        headers: &SignedHeaders,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
    ) -> AuthError {
        if let Err(skew) = self.check_clock(headers.timestamp_ms, now_ms) {
            return skew;
        }
        let _ = headers.verify_signature(method, path_and_query, body, &STAND_IN_KEY);
        AuthError::BadSignature
    }

    pub(crate) fn check_clock(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), AuthError> {
        if now_ms.abs_diff(timestamp_ms) > self.max_skew_ms {
            return Err(AuthError::ClockSkew {
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }
}

/// The key [`RequestVerifier::refuse_unknown`] checks against: an ordinary Ed25519 key
/// (so the check costs what a real one does), whatever the result.
static STAND_IN_KEY: std::sync::LazyLock<PublicKey> =
    std::sync::LazyLock::new(|| crate::SoftwareKey::from_ed25519_seed([0x5a; 32]).public_key());

const REPLAY_SHARDS: usize = 16;

/// A bounded, thread-safe set of recently accepted (device, nonce) pairs, each kept until
/// its request could no longer pass the clock check.
///
/// Entries are 16-byte SHA-256 prefixes of (device, nonce), in 16 independently locked
/// shards. Expired entries are dropped on every insert into their shard; a full shard drops
/// its entry closest to expiry (see the threat model in the [module docs](self)).
#[derive(Debug)]
pub struct ReplayCache {
    shards: Box<[Mutex<ReplayShard>]>,
    shard_capacity: usize,
    forced_evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct ReplayShard {
    expiry: HashMap<[u8; 16], u64>,
    by_expiry: BinaryHeap<Reverse<(u64, [u8; 16])>>,
}

impl ReplayShard {
    fn pop_soonest(&mut self) {
        if let Some(Reverse((_, key))) = self.by_expiry.pop() {
            self.expiry.remove(&key);
        }
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` entries, rounded up to a multiple of 16 (and at
    /// least 16).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..REPLAY_SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: capacity.div_ceil(REPLAY_SHARDS).max(1),
            forced_evictions: AtomicU64::new(0),
        }
    }

    /// The most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * REPLAY_SHARDS
    }

    /// The entries held now (expired ones included until their shard's next insert).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).expiry.len()).sum()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many unexpired entries were dropped because the cache was full: non-zero means
    /// the capacity is too small for the request rate (or a device key is being abused).
    pub fn forced_evictions(&self) -> u64 {
        self.forced_evictions.load(Ordering::Relaxed)
    }

    /// Records (device, nonce) until `expires_ms`; `false` if it is already recorded and
    /// not expired at `now_ms` (a replay).
    pub fn insert(&self, device_id: &str, nonce: &Nonce, now_ms: u64, expires_ms: u64) -> bool {
        let key = replay_key(device_id, nonce);
        let mut shard = lock(&self.shards[usize::from(key[0]) % REPLAY_SHARDS]);
        while shard
            .by_expiry
            .peek()
            .is_some_and(|Reverse((expiry, _))| *expiry < now_ms)
        {
            shard.pop_soonest();
        }
        if shard.expiry.contains_key(&key) {
            return false;
        }
        if shard.expiry.len() >= self.shard_capacity {
            shard.pop_soonest();
            self.forced_evictions.fetch_add(1, Ordering::Relaxed);
        }
        shard.expiry.insert(key, expires_ms);
        shard.by_expiry.push(Reverse((expires_ms, key)));
        true
    }
}

/// A panic elsewhere while holding the lock leaves the shard consistent (each update is
/// a map and a heap change that cannot panic half-way), so poisoning is ignored.
fn lock(shard: &Mutex<ReplayShard>) -> std::sync::MutexGuard<'_, ReplayShard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn replay_key(device_id: &str, nonce: &Nonce) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"rota-replay\0")
        .chain_update(device_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_one_spelling() {
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_timestamp("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(
                parse_timestamp(bad),
                Err(AuthError::InvalidTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn skew_message_is_in_seconds() {
        let e = AuthError::ClockSkew {
            max_skew_ms: DEFAULT_MAX_SKEW_MS,
        };
        assert_eq!(
            e.to_string(),
            "the request timestamp is more than 300 seconds away from the server's clock"
        );
        let e = AuthError::ClockSkew { max_skew_ms: 1500 };
        assert!(e.to_string().contains("1500 milliseconds"));
    }

    #[test]
    fn expired_entries_are_dropped_on_insert() {
        let cache = ReplayCache::new(16);
        let nonce = Nonce::from_bytes([7; 16]);
        assert!(cache.insert("d", &nonce, 0, 10));
        assert!(
            !cache.insert("d", &nonce, 10, 20),
            "still live at its expiry"
        );
        assert!(
            cache.insert("d", &nonce, 11, 21),
            "expired, so accepted again"
        );
        assert_eq!(cache.forced_evictions(), 0);
    }

    #[test]
    fn full_shard_drops_the_entry_closest_to_expiry() {
        // Capacity 16: one entry per shard. Two nonces landing in one shard evict.
        let cache = ReplayCache::new(16);
        let mut in_shard = Vec::new();
        let target = replay_key("d", &Nonce::from_bytes([0; 16]))[0] as usize % REPLAY_SHARDS;
        for i in 0u8..=255 {
            let n = Nonce::from_bytes([i; 16]);
            if replay_key("d", &n)[0] as usize % REPLAY_SHARDS == target {
                in_shard.push(n);
            }
        }
        let (a, b) = (in_shard[0], in_shard[1]);
        assert!(cache.insert("d", &a, 0, 100));
        assert!(cache.insert("d", &b, 0, 200));
        assert_eq!(cache.forced_evictions(), 1);
        assert!(!cache.insert("d", &b, 0, 200), "the newer entry stayed");
    }
}
