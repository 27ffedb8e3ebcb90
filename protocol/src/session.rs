//! Check-in sessions: after one signed request, a device authenticates its check-ins and
//! reports with an HMAC under a session key instead of a signature, so the server's cost of
//! a "nothing new" check-in is a MAC, not a public-key verification.
//!
//! # Opening a session (version 1)
//!
//! 1. The device makes an ephemeral X25519 key pair (RFC 7748 §5) and sends its public key
//!    in a request signed with its identity key, as every other request ([`crate::auth`]):
//!    `POST` [`SESSION_PATH`] with [`OpenSession`]. The identity key only signs, so a
//!    secure element or token that can do nothing else still opens sessions.
//! 2. The server makes its own ephemeral X25519 key pair, computes the shared secret
//!    (refusing the all-zero result of a small-order point, RFC 7748 §6.1) and answers
//!    [`SessionOpened`]: its public key, a sealed token and the lifetime.
//! 3. Both derive the 32-byte session key with HKDF-SHA256 (RFC 5869):
//!
//!    ```text
//!    PRK = HKDF-Extract(salt = "rota-session-key-v1", IKM = X25519 shared secret)
//!    key = HKDF-Expand(PRK, info = len(device_id) as one byte ‖ device_id ‖ device public ‖ server public, 32)
//!    ```
//!
//! # A session request
//!
//! Instead of `Rota-Signature`, the request carries `Rota-Session` (the token, as
//! received) and `Rota-Mac`: standard padded base64 of HMAC-SHA256(session key, message),
//! where the message is the one a signature covers ([`crate::auth::signed_message`]) with
//! its own first line, [`SESSION_MAC_CONTEXT`]. `Rota-Device`, `Rota-Timestamp` and
//! `Rota-Nonce` are unchanged and checked exactly as for a signed request (clock window,
//! one use per nonce). A request with both a signature and a session is taken as signed.
//!
//! Only `GET` [`CHECKIN_PATH`] and `POST` [`REPORT_PATH`] accept a session
//! ([`session_allowed`]); enrolment, key rotation, orders, transfers, attestation and the
//! opening of a session itself must be signed.
//!
//! # The token
//!
//! The server keeps no session state: the token is the session, sealed with AES-256-GCM-SIV
//! (RFC 8452: a repeated random nonce reveals at most that two tokens are equal) under a
//! 32-byte secret every replica shares ([`TokenSealer`]), so a session opened on one
//! replica works on all. Standard padded base64 of:
//!
//! | bytes | field |
//! |-------|-------|
//! | 1     | version, 1 (also the AEAD's associated data) |
//! | 12    | AEAD nonce, random |
//! | n+16  | AEAD ciphertext and tag of the plaintext below |
//!
//! | plaintext bytes | field |
//! |-----------------|-------|
//! | 8     | expiry, unix milliseconds, big-endian |
//! | 32    | key id (SHA-256 of the raw key) of the device key that signed the opening |
//! | 32    | session key |
//! | 1     | length of the device id |
//! | 1–64  | device id |
//!
//! A new token format takes a new version byte; a server refuses versions it does not know.
//!
//! # Threat model (beside [`crate::auth`]'s)
//!
//! - Eavesdropping: a network observer sees both X25519 public keys and never the session
//!   key; the token is encrypted.
//! - Man in the middle: the server's key agreement uses the device's *signed* ephemeral
//!   key, so whoever replaces the server's answer learns a key the server does not hold;
//!   the worst they can do is make the device's session requests fail, and the device falls
//!   back to signing (they could have dropped its requests anyway).
//! - Forgery: without the session key, no MAC verifies (HMAC-SHA256, checked in constant
//!   time); without the sealing secret, no token opens; a token names its device and is
//!   refused for any other.
//! - Replay: as for signatures (clock window and nonce cache, one cache for both).
//! - A stolen session (key and token read off a device): it authenticates check-ins and
//!   reports only, until the earlier of its expiry ([`MAX_SESSION_LIFETIME_S`] at most) and
//!   the device key's revocation or rotation: the token is bound to the key id, which the
//!   server compares with the device's current key on every request.
//! - The sealing secret: whoever reads it (from the database) can mint sessions for any
//!   device, and so send check-ins and reports in its name, but still not enrol, rotate,
//!   carry out orders or open a session. The database's own access control protects it.
//! - Confidentiality of requests and answers: unchanged, none here; use TLS.

use std::fmt;

use aws_lc_rs::{aead, agreement, hkdf, hmac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize as _;

use crate::api::{CHECKIN_PATH, REPORT_PATH};
use crate::auth::{self, AuthError, DEVICE_HEADER, NONCE_HEADER, Nonce, RequestVerifier};
use crate::encoding;
use crate::identity::valid_device_id;

/// `POST`: opens a session (signed; body [`OpenSession`], answer [`SessionOpened`]).
pub const SESSION_PATH: &str = "/api/v1/device/session";
/// The header carrying the session token.
pub const SESSION_HEADER: &str = "Rota-Session";
/// The header carrying the request's HMAC-SHA256.
pub const MAC_HEADER: &str = "Rota-Mac";
/// The first line of the message a session MAC covers.
pub const SESSION_MAC_CONTEXT: &str = "rota-session-mac-v1";
/// HKDF's salt for the session key.
const KEY_DERIVATION_SALT: &[u8] = b"rota-session-key-v1";
/// A session's lifetime unless the server is told otherwise: one hour.
pub const DEFAULT_SESSION_LIFETIME_S: u32 = 3600;
/// The shortest lifetime a server may be set to.
pub const MIN_SESSION_LIFETIME_S: u32 = 60;
/// The longest lifetime a server may be set to (a stolen session ends within it): a day.
pub const MAX_SESSION_LIFETIME_S: u32 = 24 * 3600;
/// The longest `Rota-Session` value accepted, in characters (a token of a 64-character
/// device id is 224).
pub const MAX_TOKEN_LEN: usize = 256;
/// Bytes of a session key and of a MAC.
pub const KEY_LEN: usize = 32;
/// Bytes of an X25519 public key.
pub const X25519_PUBLIC_LEN: usize = 32;
const TOKEN_VERSION: u8 = 1;
const AEAD_NONCE_LEN: usize = aead::NONCE_LEN;
const AEAD_TAG_LEN: usize = 16;

/// Whether a request may be authenticated by a session instead of a signature: a check-in
/// (`GET` [`CHECKIN_PATH`], any query) or a report (`POST` [`REPORT_PATH`]), nothing else.
pub fn session_allowed(method: &str, path_and_query: &str) -> bool {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path);
    matches!(
        (method, path),
        ("GET", CHECKIN_PATH) | ("POST", REPORT_PATH)
    )
}

/// Why a session could not be opened or sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A public key is not 64 lowercase hex characters.
    #[error("the X25519 public key is not 64 lowercase hex characters")]
    InvalidPublicKey,
    /// The key agreement failed: the peer's key is a small-order point (an all-zero
    /// shared secret, RFC 7748 §6.1), or the crypto library failed.
    #[error("the X25519 key agreement failed (a small-order public key?)")]
    KeyAgreement,
    /// The device id is not valid ([`valid_device_id`]).
    #[error("the device id is not valid")]
    InvalidDeviceId,
    /// The system's random number generator or the crypto library failed.
    #[error("the crypto library failed: {0}")]
    Crypto(&'static str),
}

/// `POST` [`SESSION_PATH`]: the device's ephemeral X25519 public key, signed with the
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OpenSession {
    /// 32 bytes as 64 lowercase hex characters.
    pub x25519_public: String,
}

/// The answer to [`OpenSession`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionOpened {
    /// The server's ephemeral X25519 public key, 64 lowercase hex characters.
    pub x25519_public: String,
    /// What `Rota-Session` carries, as it is.
    pub token: String,
    /// Seconds until the server refuses the token (from when it answered).
    pub lifetime_s: u32,
    /// When it expires on the server's clock, unix milliseconds.
    pub expires_at_ms: u64,
}

fn public_hex(text: &str) -> Result<[u8; X25519_PUBLIC_LEN], SessionError> {
    encoding::lower_hex_decode(text).ok_or(SessionError::InvalidPublicKey)
}

impl OpenSession {
    /// The device's public key.
    pub fn public_key(&self) -> Result<[u8; X25519_PUBLIC_LEN], SessionError> {
        public_hex(&self.x25519_public)
    }
}

impl SessionOpened {
    /// The server's public key.
    pub fn public_key(&self) -> Result<[u8; X25519_PUBLIC_LEN], SessionError> {
        public_hex(&self.x25519_public)
    }
}

/// A session key. Not printed by `Debug`; wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; KEY_LEN]);

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// The key with these bytes (for tests and for a token's contents).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// HMAC-SHA256 of `message`.
    pub fn mac(&self, message: &[u8]) -> [u8; KEY_LEN] {
        let tag = hmac::sign(&self.hmac_key(), message);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `mac` is HMAC-SHA256 of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], mac: &[u8; KEY_LEN]) -> bool {
        hmac::verify(&self.hmac_key(), message, mac).is_ok()
    }
}

/// RFC 5869 over the shared secret, binding the device id and both public keys.
fn derive_key(
    shared: &[u8],
    device_id: &str,
    device_public: &[u8; X25519_PUBLIC_LEN],
    server_public: &[u8; X25519_PUBLIC_LEN],
) -> Result<SessionKey, SessionError> {
    let id_len = [u8::try_from(device_id.len()).map_err(|_| SessionError::InvalidDeviceId)?];
    let info: [&[u8]; 4] = [&id_len, device_id.as_bytes(), device_public, server_public];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KEY_DERIVATION_SALT).extract(shared);
    let mut key = [0u8; KEY_LEN];
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut key))
        .map_err(|_| SessionError::Crypto("HKDF"))?;
    Ok(SessionKey(key))
}

fn agree(
    private: &agreement::PrivateKey,
    peer: &[u8; X25519_PUBLIC_LEN],
) -> Result<Vec<u8>, SessionError> {
    // AWS-LC refuses an all-zero shared secret (RFC 7748 §6.1).
    agreement::agree(
        private,
        agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
        SessionError::KeyAgreement,
        |shared| Ok(shared.to_vec()),
    )
}

fn public_of(private: &agreement::PrivateKey) -> Result<[u8; X25519_PUBLIC_LEN], SessionError> {
    let public = private
        .compute_public_key()
        .map_err(|_| SessionError::Crypto("X25519 public key"))?;
    public
        .as_ref()
        .try_into()
        .map_err(|_| SessionError::Crypto("X25519 public key length"))
}

/// The device's half of opening a session: an ephemeral X25519 key pair, used once.
pub struct DeviceEphemeral {
    private: agreement::PrivateKey,
    public: [u8; X25519_PUBLIC_LEN],
}

impl DeviceEphemeral {
    /// A fresh key pair from the system's random number generator.
    pub fn generate() -> Result<Self, SessionError> {
        let private = agreement::PrivateKey::generate(&agreement::X25519)
            .map_err(|_| SessionError::Crypto("X25519 key generation"))?;
        let public = public_of(&private)?;
        Ok(Self { private, public })
    }

    /// The key pair of this private scalar (RFC 7748 §5: clamped on use); for tests.
    pub fn from_private(bytes: &[u8; 32]) -> Result<Self, SessionError> {
        let private = agreement::PrivateKey::from_private_key(&agreement::X25519, bytes)
            .map_err(|_| SessionError::Crypto("X25519 private key"))?;
        let public = public_of(&private)?;
        Ok(Self { private, public })
    }

    /// The request body that opens the session.
    pub fn request(&self) -> OpenSession {
        OpenSession {
            x25519_public: hex::encode(self.public),
        }
    }

    /// The session key, from the server's answer.
    pub fn finish(
        self,
        device_id: &str,
        answer: &SessionOpened,
    ) -> Result<SessionKey, SessionError> {
        let server_public = answer.public_key()?;
        let shared = agree(&self.private, &server_public)?;
        derive_key(&shared, device_id, &self.public, &server_public)
    }
}

/// The server's half: its public key and the session key, for `device_id`'s signed
/// `device_public`.
pub fn accept(
    device_id: &str,
    device_public: &[u8; X25519_PUBLIC_LEN],
) -> Result<([u8; X25519_PUBLIC_LEN], SessionKey), SessionError> {
    if !valid_device_id(device_id) {
        return Err(SessionError::InvalidDeviceId);
    }
    let private = agreement::PrivateKey::generate(&agreement::X25519)
        .map_err(|_| SessionError::Crypto("X25519 key generation"))?;
    let server_public = public_of(&private)?;
    let shared = agree(&private, device_public)?;
    let key = derive_key(&shared, device_id, device_public, &server_public)?;
    Ok((server_public, key))
}

/// What a token holds: whose session, bound to which device key, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub device_id: String,
    /// The key id ([`crate::PublicKey::key_id`]) of the device key that opened it.
    pub device_key_id: [u8; 32],
    pub key: SessionKey,
    /// Unix milliseconds on the server's clock.
    pub expires_ms: u64,
}

/// Seals sessions into tokens and opens them, under the secret every replica shares.
pub struct TokenSealer {
    key: aead::LessSafeKey,
}

impl fmt::Debug for TokenSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSealer(..)")
    }
}

impl TokenSealer {
    /// Bytes of the secret.
    pub const SECRET_LEN: usize = 32;

    /// A sealer under `secret`.
    pub fn new(secret: &[u8; Self::SECRET_LEN]) -> Result<Self, SessionError> {
        let key = aead::UnboundKey::new(&aead::AES_256_GCM_SIV, secret)
            .map_err(|_| SessionError::Crypto("AES-256-GCM-SIV key"))?;
        Ok(Self {
            key: aead::LessSafeKey::new(key),
        })
    }

    /// A fresh secret from the system's random number generator.
    pub fn generate_secret() -> Result<[u8; Self::SECRET_LEN], crate::RandomError> {
        crate::random_bytes()
    }

    /// The token of `session` (see the [module docs](self) for its format).
    pub fn seal(&self, session: &Session) -> Result<String, SessionError> {
        if !valid_device_id(&session.device_id) {
            return Err(SessionError::InvalidDeviceId);
        }
        let mut plain = Vec::with_capacity(8 + 32 + KEY_LEN + 1 + session.device_id.len());
        plain.extend_from_slice(&session.expires_ms.to_be_bytes());
        plain.extend_from_slice(&session.device_key_id);
        plain.extend_from_slice(&session.key.0);
        plain.push(session.device_id.len() as u8);
        plain.extend_from_slice(session.device_id.as_bytes());
        let nonce: [u8; AEAD_NONCE_LEN] =
            crate::random_bytes().map_err(|_| SessionError::Crypto("random nonce"))?;
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from([TOKEN_VERSION]),
                &mut plain,
            )
            .map_err(|_| SessionError::Crypto("AES-256-GCM-SIV seal"))?;
        let mut token = Vec::with_capacity(1 + AEAD_NONCE_LEN + plain.len());
        token.push(TOKEN_VERSION);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&plain);
        Ok(encoding::base64_encode(&token))
    }

    /// The session a token holds, if this fleet's secret sealed it and it has not expired
    /// at `now_ms` (the server's clock).
    pub fn open(&self, token: &str, now_ms: u64) -> Result<Session, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidSession);
        }
        let bytes = encoding::base64_decode(token).ok_or(AuthError::InvalidSession)?;
        let (&version, rest) = bytes.split_first().ok_or(AuthError::InvalidSession)?;
        if version != TOKEN_VERSION || rest.len() < AEAD_NONCE_LEN + AEAD_TAG_LEN {
            return Err(AuthError::InvalidSession);
        }
        let (nonce, sealed) = rest.split_at(AEAD_NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| AuthError::InvalidSession)?;
        let mut sealed = sealed.to_vec();
        let session = self.read_sealed(nonce, version, &mut sealed, now_ms);
        sealed.zeroize();
        session
    }

    fn read_sealed(
        &self,
        nonce: aead::Nonce,
        version: u8,
        sealed: &mut [u8],
        now_ms: u64,
    ) -> Result<Session, AuthError> {
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from([version]), sealed)
            .map_err(|_| AuthError::InvalidSession)?;
        // Sealed by this fleet, so well formed; still read without trusting lengths.
        let (expires, rest) = plain.split_at_checked(8).ok_or(AuthError::InvalidSession)?;
        let (key_id, rest) = rest.split_at_checked(32).ok_or(AuthError::InvalidSession)?;
        let (key, rest) = rest
            .split_at_checked(KEY_LEN)
            .ok_or(AuthError::InvalidSession)?;
        let (&id_len, id) = rest.split_first().ok_or(AuthError::InvalidSession)?;
        let device_id = std::str::from_utf8(id).map_err(|_| AuthError::InvalidSession)?;
        if id.len() != usize::from(id_len) || !valid_device_id(device_id) {
            return Err(AuthError::InvalidSession);
        }
        let expires_ms =
            u64::from_be_bytes(expires.try_into().map_err(|_| AuthError::InvalidSession)?);
        if now_ms >= expires_ms {
            return Err(AuthError::SessionExpired);
        }
        Ok(Session {
            device_id: device_id.to_owned(),
            device_key_id: key_id.try_into().map_err(|_| AuthError::InvalidSession)?,
            key: SessionKey(key.try_into().map_err(|_| AuthError::InvalidSession)?),
            expires_ms,
        })
    }
}

/// The `Rota-*` header values of a session request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeaders {
    /// `Rota-Device`.
    pub device_id: String,
    /// `Rota-Timestamp`: unix milliseconds on the device's clock.
    pub timestamp_ms: u64,
    /// `Rota-Nonce`.
    pub nonce: Nonce,
    /// `Rota-Session`: the token as the server sent it.
    pub token: String,
    /// `Rota-Mac`.
    pub mac: [u8; KEY_LEN],
}

impl SessionHeaders {
    /// The headers as (name, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, String)> {
        [
            (DEVICE_HEADER, self.device_id.clone()),
            (auth::TIMESTAMP_HEADER, self.timestamp_ms.to_string()),
            (NONCE_HEADER, self.nonce.to_string()),
            (SESSION_HEADER, self.token.clone()),
            (MAC_HEADER, encoding::base64_encode(&self.mac)),
        ]
        .into_iter()
    }
}

/// The message a session MAC covers: the signed message's fields under
/// [`SESSION_MAC_CONTEXT`].
pub fn mac_message(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    nonce: &Nonce,
    body: &[u8],
) -> String {
    auth::request_message(
        SESSION_MAC_CONTEXT,
        method,
        path_and_query,
        timestamp_ms,
        nonce,
        body,
    )
}

/// Authenticates a request with a session: `key` and `token` from [`SessionOpened`],
/// `now_ms` the device's clock and `nonce` a fresh [`Nonce::random`].
#[allow(clippy::too_many_arguments)]
pub fn mac_request(
    key: &SessionKey,
    token: &str,
    device_id: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
    nonce: Nonce,
) -> SessionHeaders {
    let message = mac_message(method, path_and_query, now_ms, &nonce, body);
    SessionHeaders {
        device_id: device_id.to_owned(),
        timestamp_ms: now_ms,
        nonce,
        token: token.to_owned(),
        mac: key.mac(message.as_bytes()),
    }
}

/// Reads and strictly checks a session request's headers; `None` if it carries no
/// `Rota-Session` (then it must be signed: [`crate::auth::parse_headers`]).
pub fn parse_session_headers<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Option<Result<SessionHeaders, AuthError>> {
    let token = get(SESSION_HEADER)?;
    Some(session_fields(token, |name| {
        get(name).ok_or(AuthError::MissingHeader(name))
    }))
}

fn session_fields<'a>(
    token: &str,
    header: impl Fn(&'static str) -> Result<&'a str, AuthError>,
) -> Result<SessionHeaders, AuthError> {
    let device_id = header(DEVICE_HEADER)?;
    if !valid_device_id(device_id) {
        return Err(AuthError::InvalidDeviceId);
    }
    let (timestamp_ms, nonce) = auth::parse_time_and_nonce(&header)?;
    let mac = encoding::base64_decode(header(MAC_HEADER)?)
        .and_then(|mac| <[u8; KEY_LEN]>::try_from(mac).ok())
        .ok_or(AuthError::InvalidMacEncoding)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::InvalidSession);
    }
    Ok(SessionHeaders {
        device_id: device_id.to_owned(),
        timestamp_ms,
        nonce,
        token: token.to_owned(),
        mac,
    })
}

impl RequestVerifier {
    /// Accepts a session request: the path takes sessions ([`session_allowed`]), the
    /// timestamp is within the window, `sealer` opens the token and it has not expired,
    /// it names the request's device, the MAC verifies over this method, path and query
    /// and body, and the nonce was not used before (in that order: only authentic
    /// requests reach the replay cache). Returns the session, whose
    /// [`device_key_id`](Session::device_key_id) the caller compares with the device's
    /// current key.
    pub fn verify_session(
        &self,
        headers: &SessionHeaders,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        sealer: &TokenSealer,
        now_ms: u64,
    ) -> Result<Session, AuthError> {
        if !session_allowed(method, path_and_query) {
            return Err(AuthError::SessionNotAllowed);
        }
        self.check_clock(headers.timestamp_ms, now_ms)?;
        let session = sealer.open(&headers.token, now_ms)?;
        if session.device_id != headers.device_id {
            return Err(AuthError::InvalidSession);
        }
        let message = mac_message(
            method,
            path_and_query,
            headers.timestamp_ms,
            &headers.nonce,
            body,
        );
        if !session.key.verify(message.as_bytes(), &headers.mac) {
            return Err(AuthError::BadMac);
        }
        self.remember(
            &headers.device_id,
            &headers.nonce,
            headers.timestamp_ms,
            now_ms,
        )?;
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ENROLL_PATH;

    const NOW: u64 = 1_700_000_000_000;
    const CHECKIN: &str = "/api/v1/device/checkin?version=3&slot=confirmed";

    fn sealer() -> TokenSealer {
        TokenSealer::new(&[7; 32]).unwrap()
    }

    /// A session of `device` opened the way device and server do it, and its token.
    fn open(device: &str, sealer: &TokenSealer) -> (SessionKey, String) {
        let ephemeral = DeviceEphemeral::generate().unwrap();
        let request = ephemeral.request();
        let (server_public, server_key) = accept(device, &request.public_key().unwrap()).unwrap();
        let token = sealer
            .seal(&Session {
                device_id: device.into(),
                device_key_id: [1; 32],
                key: server_key.clone(),
                expires_ms: NOW + 3_600_000,
            })
            .unwrap();
        let answer = SessionOpened {
            x25519_public: hex::encode(server_public),
            token: token.clone(),
            lifetime_s: 3600,
            expires_at_ms: NOW + 3_600_000,
        };
        let device_key = ephemeral.finish(device, &answer).unwrap();
        assert_eq!(device_key, server_key, "both sides derive one key");
        (device_key, token)
    }

    fn checkin(key: &SessionKey, token: &str, device: &str, nonce: u8) -> SessionHeaders {
        mac_request(
            key,
            token,
            device,
            "GET",
            CHECKIN,
            b"",
            NOW,
            Nonce::from_bytes([nonce; 16]),
        )
    }

    #[test]
    fn a_session_mac_verifies_once() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (key, token) = open("dev-1", &sealer);
        let headers = checkin(&key, &token, "dev-1", 1);
        let session = verifier
            .verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW)
            .unwrap();
        assert_eq!(session.device_id, "dev-1");
        assert_eq!(session.device_key_id, [1; 32]);
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn headers_round_trip() {
        let sealer = sealer();
        let (key, token) = open("dev-1", &sealer);
        let headers = checkin(&key, &token, "dev-1", 1);
        let pairs: Vec<_> = headers.iter().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(parse_session_headers(get), Some(Ok(headers)));
        assert_eq!(
            parse_session_headers(|_| None),
            None,
            "no token: a signed request"
        );
    }

    #[test]
    fn a_tampered_request_fails_its_mac() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (key, token) = open("dev-1", &sealer);
        let headers = checkin(&key, &token, "dev-1", 1);
        let other_query = "/api/v1/device/checkin?version=4&slot=confirmed";
        assert_eq!(
            verifier.verify_session(&headers, "GET", other_query, b"", &sealer, NOW),
            Err(AuthError::BadMac)
        );
        let mut later = headers.clone();
        later.timestamp_ms += 1;
        assert_eq!(
            verifier.verify_session(&later, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::BadMac)
        );
        let mut flipped = headers.clone();
        flipped.mac[0] ^= 1;
        assert_eq!(
            verifier.verify_session(&flipped, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::BadMac)
        );
        let report = mac_request(
            &key,
            &token,
            "dev-1",
            "POST",
            REPORT_PATH,
            b"{}",
            NOW,
            Nonce::from_bytes([2; 16]),
        );
        assert_eq!(
            verifier.verify_session(&report, "POST", REPORT_PATH, b"{ }", &sealer, NOW),
            Err(AuthError::BadMac),
            "the body is covered"
        );
        // Forged requests spend no nonce: the genuine one still passes.
        assert!(
            verifier
                .verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW)
                .is_ok()
        );
    }

    #[test]
    fn a_mac_under_another_key_fails() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (_, token) = open("dev-1", &sealer);
        let (other_key, _) = open("dev-1", &sealer);
        let headers = checkin(&other_key, &token, "dev-1", 1);
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::BadMac)
        );
        // A signature's message under the session key is not a session MAC either.
        let (key, token) = open("dev-1", &sealer);
        let mut headers = checkin(&key, &token, "dev-1", 3);
        let signed = auth::signed_message("GET", CHECKIN, NOW, &headers.nonce, b"");
        headers.mac = key.mac(signed.as_bytes());
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::BadMac)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (key, token) = open("dev-1", &sealer);
        let at_expiry = NOW + 3_600_000;
        let headers = mac_request(
            &key,
            &token,
            "dev-1",
            "GET",
            CHECKIN,
            b"",
            at_expiry,
            Nonce::from_bytes([1; 16]),
        );
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &sealer, at_expiry),
            Err(AuthError::SessionExpired)
        );
        assert!(sealer.open(&token, at_expiry - 1).is_ok());
    }

    #[test]
    fn a_token_of_another_device_is_refused() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (key, token) = open("dev-1", &sealer);
        // dev-1's session holder claims to be dev-2, with a correct MAC.
        let headers = checkin(&key, &token, "dev-2", 1);
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &sealer, NOW),
            Err(AuthError::InvalidSession)
        );
    }

    #[test]
    fn a_token_of_another_fleet_or_tampered_is_refused() {
        let (key, token) = open("dev-1", &sealer());
        let verifier = RequestVerifier::default();
        let stranger = TokenSealer::new(&[8; 32]).unwrap();
        let headers = checkin(&key, &token, "dev-1", 1);
        assert_eq!(
            verifier.verify_session(&headers, "GET", CHECKIN, b"", &stranger, NOW),
            Err(AuthError::InvalidSession)
        );
        let mut bytes = encoding::base64_decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = encoding::base64_encode(&bytes);
        assert_eq!(
            sealer().open(&tampered, NOW),
            Err(AuthError::InvalidSession)
        );
        assert_eq!(sealer().open("", NOW), Err(AuthError::InvalidSession));
        assert_eq!(
            sealer().open(&"A".repeat(400), NOW),
            Err(AuthError::InvalidSession)
        );
    }

    #[test]
    fn a_session_is_refused_for_anything_but_checkins_and_reports() {
        let sealer = sealer();
        let verifier = RequestVerifier::default();
        let (key, token) = open("dev-1", &sealer);
        assert!(session_allowed("GET", CHECKIN));
        assert!(session_allowed("GET", CHECKIN_PATH));
        assert!(session_allowed("POST", REPORT_PATH));
        for (method, path) in [
            ("POST", ENROLL_PATH),
            ("POST", SESSION_PATH),
            ("POST", crate::api::ROTATE_PATH),
            ("POST", crate::api::ATTESTATION_PATH),
            ("POST", crate::order::TRANSFER_PATH),
            ("POST", crate::order::ORDER_DONE_PATH),
            ("GET", "/api/v1/device/self"),
            ("POST", CHECKIN_PATH),
            ("GET", REPORT_PATH),
            ("GET", "/api/v1/device/checkin/x"),
        ] {
            assert!(!session_allowed(method, path), "{method} {path}");
            let headers = mac_request(
                &key,
                &token,
                "dev-1",
                method,
                path,
                b"",
                NOW,
                Nonce::from_bytes([9; 16]),
            );
            assert_eq!(
                verifier.verify_session(&headers, method, path, b"", &sealer, NOW),
                Err(AuthError::SessionNotAllowed),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn x25519_matches_rfc_7748() {
        // RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let alice = DeviceEphemeral::from_private(&alice).unwrap();
        assert_eq!(
            hex::encode(alice.public),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = agree(&alice.private, &bob_public).unwrap();
        assert_eq!(
            hex::encode(shared),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn a_small_order_key_is_refused() {
        let device = DeviceEphemeral::generate().unwrap();
        let answer = SessionOpened {
            x25519_public: hex::encode([0u8; 32]),
            token: String::new(),
            lifetime_s: 60,
            expires_at_ms: 0,
        };
        assert_eq!(
            device.finish("dev-1", &answer),
            Err(SessionError::KeyAgreement)
        );
        assert_eq!(
            accept("dev-1", &[0; 32]).err(),
            Some(SessionError::KeyAgreement)
        );
    }

    #[test]
    fn the_key_binds_the_device_id() {
        let device = DeviceEphemeral::generate().unwrap();
        let public = device.request().public_key().unwrap();
        let (server_public, server_key) = accept("dev-1", &public).unwrap();
        let answer = SessionOpened {
            x25519_public: hex::encode(server_public),
            token: String::new(),
            lifetime_s: 60,
            expires_at_ms: 0,
        };
        assert_ne!(device.finish("dev-2", &answer).unwrap(), server_key);
    }
}
