//! The HTTP API's wire types: the device API (check-in, report, enrollment), the
//! management API (tokens, devices, releases, rollouts), and the deterministic
//! stage membership of staged rollouts ([`rollout_bucket`], [`Stage`]).
//!
//! Bodies are JSON; every 4xx and 5xx answer is an [`ErrorBody`]. Inputs (what the server
//! accepts) refuse unknown fields; outputs may gain fields, which clients ignore. Times are
//! unix seconds; digests lowercase hex; ids opaque strings except where a type says.
//!
//! Device requests are signed ([`crate::auth`]); management requests carry
//! `Authorization: Bearer <token>` of a [`Role`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::identity::{DeviceCertificate, valid_uuid, validate_tags};
use crate::{RandomError, random_bytes};

/// `GET`: the device's check-in, with a [`CheckInQuery`]; answers a [`CheckInResponse`].
pub const CHECKIN_PATH: &str = "/api/v1/device/checkin";
/// `POST`: a device [`Report`]; answers a [`ReportAck`].
pub const REPORT_PATH: &str = "/api/v1/device/report";
/// `POST`: device self-enrollment with an [`Enroll`] body.
pub const ENROLL_PATH: &str = "/api/v1/device/enroll";
/// `POST` (empty body): a fresh attestation challenge; answers an [`AttestationChallenge`].
pub const ATTESTATION_NONCE_PATH: &str = "/api/v1/device/attestation/nonce";
/// `POST`: attestation evidence in an [`Attest`] body; answers an [`AttestationResult`].
pub const ATTESTATION_PATH: &str = "/api/v1/device/attestation";
/// `POST`: a device key rotation, a [`KeyRotation`] body; answers a [`KeyRotated`].
pub const ROTATE_PATH: &str = "/api/v1/device/rotate";

/// Longest [`Report::reason`], in characters.
pub const MAX_REASON_LEN: usize = 512;
/// Longest [`TokenCreate::name`], in characters.
pub const MAX_TOKEN_NAME_LEN: usize = 64;
/// Most stages in one rollout.
pub const MAX_STAGES: usize = 100;

/// A text value that is not one of an enumeration's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}; expected one of: {}", expected.join(", "))]
pub struct ParseEnumError {
    kind: &'static str,
    value: String,
    expected: &'static [&'static str],
}

/// An enumeration written as snake_case text: serde, `Display`, `FromStr` and `as_str`
/// (also the form the server stores) all use the names given.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        // Not a per-variant `rename = $text`: utoipa cannot read a macro-expanded literal
        // there. The tests check that serde's names and `as_str` agree.
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const NAMES: &'static [&'static str] = &[$($text),+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(text: &str) -> Result<Self, ParseEnumError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ParseEnumError {
                        kind: $kind,
                        value: text.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Device API
// ---------------------------------------------------------------------------------------

text_enum! {
    /// Which slot the device runs from.
    pub enum SlotState ("slot state") {
        /// A confirmed image.
        Confirmed = "confirmed",
        /// A new image on trial, not yet confirmed.
        Trial = "trial",
    }
}

text_enum! {
    /// The outcome of the device's last update attempt.
    pub enum LastResult ("last result") {
        /// No update attempted yet.
        None = "none",
        /// The last update was confirmed.
        Confirmed = "confirmed",
        /// The last update's trial failed and the bootloader went back.
        Reverted = "reverted",
        /// The last update failed before its trial (download, verification, install).
        Failed = "failed",
    }
}

/// The query of `GET /api/v1/device/checkin`:
/// `?version=<u64>&slot=<confirmed|trial>[&last=<none|confirmed|reverted|failed>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema, utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct CheckInQuery {
    /// The running firmware's version (its SUIT sequence number).
    pub version: u64,
    pub slot: SlotState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastResult>,
}

impl CheckInQuery {
    /// The query string, without `?`: `version=3&slot=confirmed&last=none`.
    pub fn to_query_string(&self) -> String {
        let mut query = format!("version={}&slot={}", self.version, self.slot);
        if let Some(last) = self.last {
            query.push_str("&last=");
            query.push_str(last.as_str());
        }
        query
    }

    /// The request target the device sends and signs: [`CHECKIN_PATH`]`?`query.
    pub fn path_and_query(&self) -> String {
        format!("{CHECKIN_PATH}?{}", self.to_query_string())
    }
}

/// The check-in answer's header (also on a 304) with the seconds until the next
/// check-in, jittered by the server so that a fleet spreads out.
pub const POLL_AFTER_HEADER: &str = "rota-poll-after";

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckInResponse {
    /// Seconds until the next check-in.
    pub poll_after_s: u32,
    /// The update to install, or `null` for "nothing new".
    #[serde(default)]
    pub assignment: Option<Assignment>,
    /// The server asks for attestation evidence ([`ATTESTATION_PATH`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attest: bool,
    /// The server asks the device to rotate its identity key ([`ROTATE_PATH`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate: bool,
    /// An order from the operator (decommission or ownership transfer), signed by its
    /// device CA: the device verifies it and carries it out (`crate::order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::order::SignedOrder>,
}

/// An update the server assigns to a device. The agent trusts none of it on its own: it
/// checks the target against signed TUF metadata and the envelope against its trust anchors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    pub rollout_id: String,
    pub release_id: String,
    /// The TUF target name of the image.
    pub target: String,
    /// The TUF target name of the image's SUIT envelope.
    pub envelope_target: String,
    /// The image's version (SUIT sequence number).
    pub version: u64,
    pub security_version: u64,
    /// The image length in bytes.
    pub length: u64,
    /// SHA-256 of the image, lowercase hex.
    pub sha256: String,
}

text_enum! {
    /// What a device reports.
    pub enum ReportKind ("report kind") {
        Downloading = "downloading",
        Downloaded = "downloaded",
        Installed = "installed",
        /// Booted the new image on trial.
        Trial = "trial",
        /// Confirmed the new image: the only report that counts as success.
        Confirmed = "confirmed",
        /// The trial failed and the bootloader went back to the previous image.
        Reverted = "reverted",
        Failed = "failed",
    }
}

/// The body of `POST /api/v1/device/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// A UUID chosen by the device, lowercase hyphenated: the idempotency key, so a retried
    /// or replayed report is stored once ([`ReportAck::duplicate`]).
    pub event_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    pub kind: ReportKind,
    /// The version the report is about.
    pub version: u64,
    /// Why, for `failed` and `reverted`: at most 512 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attestation evidence of the boot this report is about (with `confirmed`), answering
    /// a challenge the device fetched just before: a rollout whose class requires
    /// attestation counts a confirmation only with evidence of the new image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

impl Report {
    /// A report with a fresh [`new_event_id`].
    pub fn new(
        kind: ReportKind,
        version: u64,
        rollout_id: Option<String>,
        reason: Option<String>,
    ) -> Result<Self, RandomError> {
        Ok(Self {
            event_id: new_event_id()?,
            rollout_id,
            kind,
            version,
            reason,
            evidence: None,
        })
    }

    /// Checks the rules serde cannot: a canonical UUID event id, a reason of at most
    /// [`MAX_REASON_LEN`] characters.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_uuid(&self.event_id) {
            return Err(format!(
                "event_id {:?} is not a UUID in lowercase hyphenated form",
                self.event_id
            ));
        }
        if let Some(reason) = &self.reason {
            let len = reason.chars().count();
            if len > MAX_REASON_LEN {
                return Err(format!(
                    "reason is {len} characters long, more than the {MAX_REASON_LEN} allowed"
                ));
            }
        }
        Ok(())
    }
}

/// A random (version 4) UUID, lowercase hyphenated: a new [`Report::event_id`].
pub fn new_event_id() -> Result<String, RandomError> {
    let id = uuid::Builder::from_random_bytes(random_bytes()?).into_uuid();
    Ok(id.hyphenated().to_string())
}

/// The answer to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportAck {
    /// The event id was already stored; this report changed nothing.
    pub duplicate: bool,
}

/// The body of `POST /api/v1/device/enroll`: a device registers itself with its
/// certificate, in a request signed by the key the certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    pub certificate: DeviceCertificate,
}

/// What the new key signs to prove its holder asks for the rotation: this context, the
/// device id, a zero byte, the current key and the new key (raw public keys).
pub const ROTATION_CONTEXT: &[u8] = b"rota-key-rotation-v1\0";

/// The message a [`KeyRotation::proof`] signs.
pub fn rotation_message(
    device_id: &str,
    current: &crate::PublicKey,
    new: &crate::PublicKey,
) -> Vec<u8> {
    let mut message = ROTATION_CONTEXT.to_vec();
    message.extend_from_slice(device_id.as_bytes());
    message.push(0);
    message.extend_from_slice(current.as_bytes());
    message.extend_from_slice(new.as_bytes());
    message
}

/// The body of `POST` [`ROTATE_PATH`], in a request signed by the device's current key
/// (or, retrying after a lost answer, by the new key the server already certified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The new identity key, lowercase hex (Ed25519, or uncompressed P-256).
    pub public_key: String,
    /// The new key's signature over [`rotation_message`]: proof of possession.
    #[serde(with = "crate::encoding::base64_signature")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub proof: crate::Signature,
    /// Evidence of the running boot, answering a fresh challenge and signed for the
    /// current key ([`Attest::evidence`]): in a class that attests, a device with DICE
    /// must send it, and its state must pass appraisal for the rotation to proceed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// The answer to a key rotation: the device's new certificate, from the operator's
/// device CA. The old key is revoked from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyRotated {
    pub certificate: DeviceCertificate,
}

/// Attestation evidence ([`crate::attestation`]), standard padded base64 on the wire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
pub struct Evidence(#[serde(with = "crate::encoding::base64_bytes")] pub Vec<u8>);

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Evidence({} bytes)", self.0.len())
    }
}

/// The answer to [`ATTESTATION_NONCE_PATH`]: a single-use challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttestationChallenge {
    /// The nonce to put in the evidence's `eat_nonce`, standard padded base64.
    #[serde(with = "crate::encoding::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub nonce: Vec<u8>,
    /// Seconds the server accepts it for.
    pub expires_in_s: u32,
}

/// The body of `POST` [`ATTESTATION_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Attest {
    pub evidence: Evidence,
}

text_enum! {
    /// What the server concluded from a device's latest attestation.
    pub enum AttestationState ("attestation state") {
        /// No evidence yet.
        None = "none",
        /// The evidence verified and shows signed firmware and an expected bootloader.
        Ok = "ok",
        /// The evidence shows firmware no signed release contains, an unexpected
        /// bootloader, or another device's hardware: excluded from rollouts.
        Failed = "failed",
    }
}

text_enum! {
    /// A device class's attestation policy.
    pub enum AttestationPolicy ("attestation policy") {
        /// Attestation is not asked for; confirmations count on the device's word.
        Off = "off",
        /// Evidence is asked for; software-measured evidence is accepted.
        Software = "software",
        /// Hardware-rooted (bootloader-measured) evidence is required: a confirmation
        /// counts only with evidence that the bootloader measured the new image.
        Required = "required",
    }
}

/// The answer to attestation evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttestationResult {
    pub attestation: AttestationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The release version whose image the bootloader (or the software) measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_version: Option<u64>,
}

/// A class's attestation policy: the body of `PUT /api/v1/classes/{class_id}/attestation`
/// and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassAttestation {
    pub policy: AttestationPolicy,
    /// The bootloader measurements (SHA-256 of the bootloader region, lowercase hex) a
    /// device of the class may report; empty: any (the measurement is still recorded).
    #[serde(default)]
    pub bootloaders: Vec<String>,
}

impl ClassAttestation {
    /// Most bootloader measurements per class.
    pub const MAX_BOOTLOADERS: usize = 32;

    pub fn validate(&self) -> Result<(), String> {
        if self.bootloaders.len() > Self::MAX_BOOTLOADERS {
            return Err(format!(
                "{} bootloader measurements, more than the {} allowed",
                self.bootloaders.len(),
                Self::MAX_BOOTLOADERS
            ));
        }
        for b in &self.bootloaders {
            if crate::encoding::lower_hex_decode::<32>(b).is_none() {
                return Err(format!(
                    "bootloader measurement {b:?} is not 64 lowercase hex characters"
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Management API
// ---------------------------------------------------------------------------------------

text_enum! {
    /// What a revocation names.
    pub enum RevocationKind ("revocation kind") {
        /// A device identity key (its public key, lowercase hex, as the certificate has it).
        DeviceKey = "device_key",
        /// One certificate (SHA-256 of its body, lowercase hex: `DeviceCertificate::fingerprint`).
        Certificate = "certificate",
        /// A CA (its key id, lowercase hex): every certificate it issued, or with
        /// `issued_after` those issued at or after that time.
        Ca = "ca",
    }
}

/// The body of `POST /api/v1/revocations` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevocationCreate {
    pub kind: RevocationKind,
    pub subject: String,
    /// With `ca`: only certificates issued at or after this time (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_after: Option<u64>,
    /// Why, for the audit log and the devices it refuses: 1 to 512 characters.
    pub reason: String,
}

impl RevocationCreate {
    /// Checks the subject's form for its kind, the time's use and the reason's length.
    pub fn validate(&self) -> Result<(), String> {
        let hex_of = |len: usize| {
            self.subject.len() == len
                && self
                    .subject
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = match self.kind {
            // Ed25519 (32 bytes) or uncompressed P-256 (65 bytes).
            RevocationKind::DeviceKey => hex_of(64) || hex_of(130),
            RevocationKind::Certificate | RevocationKind::Ca => hex_of(64),
        };
        if !ok {
            return Err(format!(
                "subject {:?} is not a {} in lowercase hex",
                self.subject,
                match self.kind {
                    RevocationKind::DeviceKey => "device public key",
                    RevocationKind::Certificate => "certificate fingerprint (SHA-256)",
                    RevocationKind::Ca => "CA key id (SHA-256)",
                }
            ));
        }
        if self.issued_after.is_some() && self.kind != RevocationKind::Ca {
            return Err("issued_after applies to a CA revocation only".into());
        }
        let len = self.reason.chars().count();
        if !(1..=MAX_REASON_LEN).contains(&len) {
            return Err(format!(
                "reason is {len} characters long; 1 to {MAX_REASON_LEN} are allowed"
            ));
        }
        Ok(())
    }
}

/// A revocation, and how many registered devices it refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevocationInfo {
    pub id: String,
    pub kind: RevocationKind,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_after: Option<u64>,
    pub reason: String,
    pub created_at: u64,
    /// Registered devices it refuses now.
    pub devices: u64,
}

text_enum! {
    /// Whether the server trusts a device CA's certificates at enrolment and registration.
    pub enum CaState ("CA state") {
        /// Trusted: devices it certified may enrol.
        Active = "active",
        /// Retired: its certificates are refused at enrolment and registration. Devices
        /// already registered keep working (none depends on it when it is retired).
        Retired = "retired",
    }
}

/// The body of `POST /api/v1/cas` (admin): introduce a device CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaCreate {
    /// The CA's public key: a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, as
    /// `rota keygen` writes CA.pub) or the raw key in lowercase hex; Ed25519 or P-256.
    pub public_key: String,
    /// What it is, for people (a factory, a year): 1 to 64 characters.
    pub name: String,
}

impl CaCreate {
    /// Checks the name as a token name is checked (it is printed in lists and the audit
    /// log); the key is parsed by the server.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let len = name.chars().count();
        if !(1..=MAX_TOKEN_NAME_LEN).contains(&len)
            || !name.chars().all(shows_as_itself)
            || name.trim() != name
        {
            return Err(format!(
                "the CA name must be 1 to {MAX_TOKEN_NAME_LEN} characters without control \
                 characters, line breaks, bidirectional controls or surrounding spaces"
            ));
        }
        Ok(())
    }
}

/// A device CA in the server's registry, and how many devices depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaInfo {
    /// SHA-256 of the raw public key, lowercase hex: the `issuer` of its certificates.
    pub key_id: String,
    /// The raw public key, lowercase hex.
    pub public_key: String,
    pub name: String,
    pub state: CaState,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
    /// It is this server's own device CA (`--device-ca-key`), which certifies rotated
    /// keys: it cannot be retired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub device_ca: bool,
    /// Devices not decommissioned whose current certificate it issued.
    pub devices: u64,
}

/// A class's scheduled key rotation: the body of
/// `PUT /api/v1/classes/{class_id}/rotation` and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClassRotation {
    /// A device whose current certificate is older than this many days is asked to
    /// rotate its key at its next check-in; `null`: no scheduled rotation.
    #[serde(default)]
    pub max_certificate_age_days: Option<u32>,
}

impl ClassRotation {
    /// The longest maximum age: a hundred years.
    pub const MAX_DAYS: u32 = 36_500;

    pub fn validate(&self) -> Result<(), String> {
        match self.max_certificate_age_days {
            Some(days) if !(1..=Self::MAX_DAYS).contains(&days) => Err(format!(
                "max_certificate_age_days is {days}; 1 to {} are allowed (null: no schedule)",
                Self::MAX_DAYS
            )),
            _ => Ok(()),
        }
    }
}

text_enum! {
    /// What a management token may do.
    pub enum Role ("role") {
        /// Everything, including tokens.
        Admin = "admin",
        /// Publish releases (and read).
        Release = "release",
        /// Devices and rollouts (and read).
        Operator = "operator",
        /// Read only.
        Viewer = "viewer",
    }
}

impl Role {
    /// Whether a token of this role may do what `needed` may: admin may do everything,
    /// release and operator each their own and what viewer may, viewer only its own.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Admin, _) => true,
            (Role::Release | Role::Operator, Role::Viewer) => true,
            (have, needed) => have == needed,
        }
    }
}

/// The body of creating a management token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// What the token is for: 1 to 64 characters, no control characters.
    pub name: String,
    pub role: Role,
}

impl TokenCreate {
    /// Checks the name: it is printed back in token lists and the audit log, so it must
    /// be 1 to [`MAX_TOKEN_NAME_LEN`] characters, each [`shows_as_itself`], without
    /// surrounding spaces.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let len = name.chars().count();
        if !(1..=MAX_TOKEN_NAME_LEN).contains(&len)
            || !name.chars().all(shows_as_itself)
            || name.trim() != name
        {
            return Err(format!(
                "the token name must be 1 to {MAX_TOKEN_NAME_LEN} characters without control \
                 characters, line breaks, bidirectional controls or surrounding spaces"
            ));
        }
        Ok(())
    }
}

/// Whether `c` prints as itself in a terminal or a log line: not a control character
/// (Unicode Cc: NUL, tab, newline, escape, DEL, C1), not a line or paragraph separator,
/// and not a bidirectional formatting character, which reorders the text shown around it
/// (CVE-2021-42574, "Trojan Source").
pub fn shows_as_itself(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{061c}' | '\u{200e}' | '\u{200f}' // bidi marks
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
        )
}

/// A new token: the secret is shown this once and stored only hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenCreated {
    pub id: String,
    /// The bearer token; it cannot be shown again.
    pub token: String,
    pub role: Role,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: u64,
    pub revoked: bool,
}

/// The body of registering a device (by an operator, from its certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceRegister {
    pub certificate: DeviceCertificate,
}

text_enum! {
    /// A device's lifecycle state.
    pub enum DeviceState ("device state") {
        /// Registered, never checked in.
        Provisioned = "provisioned",
        /// Checking in and eligible for rollouts.
        Active = "active",
        /// Refused by the device API until made active again.
        Suspended = "suspended",
        /// Retired for good: terminal.
        Decommissioned = "decommissioned",
    }
}

impl DeviceState {
    /// Whether a device may go from `from` to `to`: provisioned → active,
    /// active ⇄ suspended, and any state but decommissioned → decommissioned.
    pub fn can_transition(from: DeviceState, to: DeviceState) -> bool {
        use DeviceState::*;
        match (from, to) {
            (Decommissioned, _) => false,
            (_, Decommissioned) => true,
            (Provisioned, Active) | (Active, Suspended) | (Suspended, Active) => true,
            _ => false,
        }
    }
}

/// The body of changing a device's state (checked with [`DeviceState::can_transition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceStateChange {
    pub state: DeviceState,
}

/// `GET /api/v1/fleet`: the fleet in numbers, counted by the database in one pass however
/// many devices there are (what a dashboard or a load test polls, instead of paging
/// through every device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetSummary {
    /// Devices in each lifecycle state; states with none are left out.
    pub states: Vec<StateCount>,
    /// Active devices by the version of their last check-in, newest first; active devices
    /// yet to check in are in no entry.
    pub versions: Vec<VersionCount>,
}

impl FleetSummary {
    /// Devices in `state`.
    pub fn in_state(&self, state: DeviceState) -> u64 {
        self.states
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.devices)
            .sum()
    }

    /// Active devices whose last check-in was on `version`.
    pub fn running(&self, version: u64) -> u64 {
        self.versions
            .iter()
            .filter(|c| c.version == version)
            .map(|c| c.devices)
            .sum()
    }
}

/// Devices in one lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateCount {
    pub state: DeviceState,
    pub devices: u64,
}

/// Active devices running one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionCount {
    pub version: u64,
    pub devices: u64,
}

/// A device as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// The device id of its certificate.
    pub id: String,
    pub class_id: String,
    pub tags: Vec<String>,
    pub state: DeviceState,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
    /// The version of the last check-in.
    pub running_version: Option<u64>,
    pub slot: Option<SlotState>,
    pub last_result: Option<LastResult>,
    /// The latest attestation's verdict, and why when it failed.
    pub attestation: AttestationState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_reason: Option<String>,
    /// The release version the latest good evidence showed, who measured it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_at: Option<u64>,
}

/// A published release: an image and its SUIT envelope, both TUF targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseInfo {
    pub id: String,
    /// The TUF target name of the image.
    pub target: String,
    /// The TUF target name of the SUIT envelope.
    pub envelope_target: String,
    /// The device class UUID, lowercase hyphenated.
    pub class_id: String,
    pub version: u64,
    pub security_version: u64,
    pub length: u64,
    /// SHA-256 of the image, lowercase hex.
    pub sha256: String,
    pub created_at: u64,
}

/// The answer to `PUT /api/v1/repo/targets`: the targets metadata the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResult {
    pub targets_version: u64,
    /// Every target the new targets metadata lists.
    pub targets: Vec<String>,
}

/// One record of the management audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// The token that acted; `null` when no valid token was presented.
    pub token_id: Option<String>,
    pub role: Option<String>,
    /// The HTTP method.
    pub action: String,
    /// The request path.
    pub subject: Option<String>,
    /// `ok`, or `refused <status>`.
    pub outcome: String,
    pub detail: String,
    /// The client's address (for counted refusals: the IPv4 address or IPv6 /64 they
    /// came from); `null` in records from before the server kept it.
    #[serde(default)]
    pub source: Option<String>,
    /// How many requests the record stands for: 1, or the refusals over the refusal rate
    /// from one source in one minute.
    #[serde(default = "one")]
    pub occurrences: u64,
}

fn one() -> u64 {
    1
}

/// Which devices a rollout is for: all conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The device class UUID (lowercase hyphenated); required.
    pub class_id: String,
    /// Tags a device must all have; empty matches any.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Versions a device may run now; empty matches any.
    #[serde(default)]
    pub versions: Vec<u64>,
}

impl Selector {
    /// Whether a device of this class, with these tags, running this version, is selected.
    pub fn matches(&self, class_id: &str, tags: &[String], version: Option<u64>) -> bool {
        self.class_id == class_id
            && self.tags.iter().all(|t| tags.contains(t))
            && (self.versions.is_empty() || version.is_some_and(|v| self.versions.contains(&v)))
    }
}

/// One rollout stage, cumulative: `{"percent": 10}` or `{"count": 5}`.
///
/// Membership is deterministic, so every server replica agrees: a device is in the first
/// stage that takes it. A percent stage takes the devices with
/// `rollout_bucket(rollout, device) * 100 < percent`, which each device's bucket decides
/// alone, however large the fleet grows; a count stage takes the first `count` selected
/// devices in bucket order. Stages only ever add devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Stage {
    /// Greater than 0, at most 100.
    Percent(f64),
    /// At least 1.
    Count(u64),
}

/// The body of creating a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutCreate {
    pub release_id: String,
    pub selector: Selector,
    /// Cumulative stages: count stages first, then percent stages, each larger than the one
    /// before it of its kind.
    pub stages: Vec<Stage>,
    /// The fraction of a stage's devices that must confirm before the next stage starts:
    /// greater than 0, at most 1.
    pub success_gate: f64,
    /// The failed fraction of completed devices (confirmed + failed) that halts the
    /// rollout: at least 0, less than 1.
    pub failure_threshold: f64,
    /// Completed devices needed before the failure threshold applies.
    pub min_sample: u32,
    /// Seconds a device may take from assignment to confirmation before it counts as timed out.
    pub device_timeout_s: u64,
    /// Seconds to wait after a stage passes its gate before the next starts.
    pub soak_s: u64,
    /// How many times a device that failed is assigned the release again.
    pub max_retries: u32,
}

impl RolloutCreate {
    /// Checks every rule in one pass, returning the first broken one as one sentence.
    pub fn validate(&self) -> Result<(), String> {
        if self.release_id.is_empty() {
            return Err("release_id must not be empty".into());
        }
        if !valid_uuid(&self.selector.class_id) {
            return Err(format!(
                "selector.class_id {:?} is not a UUID in lowercase hyphenated form",
                self.selector.class_id
            ));
        }
        validate_tags(&self.selector.tags).map_err(|e| format!("in selector.tags, {e}"))?;
        self.validate_stages()?;
        if !(self.success_gate > 0.0 && self.success_gate <= 1.0) {
            return Err(format!(
                "success_gate is {}, but it must be greater than 0 and at most 1",
                self.success_gate
            ));
        }
        if !(self.failure_threshold >= 0.0 && self.failure_threshold < 1.0) {
            return Err(format!(
                "failure_threshold is {}, but it must be at least 0 and less than 1",
                self.failure_threshold
            ));
        }
        if self.device_timeout_s == 0 {
            return Err("device_timeout_s must be greater than 0".into());
        }
        Ok(())
    }

    fn validate_stages(&self) -> Result<(), String> {
        if self.stages.is_empty() {
            return Err("a rollout needs at least one stage".into());
        }
        if self.stages.len() > MAX_STAGES {
            return Err(format!(
                "a rollout has at most {MAX_STAGES} stages, not {}",
                self.stages.len()
            ));
        }
        let mut previous: Option<Stage> = None;
        for (i, &stage) in self.stages.iter().enumerate() {
            let n = i + 1;
            match (previous, stage) {
                (_, Stage::Percent(p)) if !(p > 0.0 && p <= 100.0) => {
                    return Err(format!(
                        "stage {n} is {p} percent, but a percent stage must be greater than 0 and at most 100"
                    ));
                }
                (_, Stage::Count(0)) => {
                    return Err(format!(
                        "stage {n} has count 0, but a count must be at least 1"
                    ));
                }
                (Some(Stage::Percent(_)), Stage::Count(c)) => {
                    return Err(format!(
                        "stage {n} (count {c}) follows a percent stage, but count stages must come before percent stages"
                    ));
                }
                (Some(Stage::Percent(before)), Stage::Percent(p)) if p <= before => {
                    return Err(format!(
                        "stage {n} ({p} percent) is not larger than the stage before it ({before} percent), but stages are cumulative"
                    ));
                }
                (Some(Stage::Count(before)), Stage::Count(c)) if c <= before => {
                    return Err(format!(
                        "stage {n} (count {c}) is not larger than the stage before it (count {before}), but stages are cumulative"
                    ));
                }
                _ => {}
            }
            previous = Some(stage);
        }
        Ok(())
    }
}

text_enum! {
    /// A rollout's state.
    pub enum RolloutState ("rollout state") {
        /// Assigning and advancing through its stages.
        Active = "active",
        /// Stopped by an operator; assigns nothing until resumed.
        Paused = "paused",
        /// Stopped automatically by the failure threshold; see `halted_reason`.
        Halted = "halted",
        /// Ended by an operator: terminal.
        Aborted = "aborted",
        /// Passed its last stage's gate and soak. It still offers the release to members
        /// that have not settled (see `StageCounts::pending`), until each has; abort stops
        /// that.
        Completed = "completed",
    }
}

/// Device counts of a stage, or of a whole rollout.
///
/// Every member ends in exactly one of `confirmed`, `failed` or `timed_out` (it settled),
/// or is still `pending`: `members = pending + confirmed + failed + timed_out`. A device
/// decommissioned while its assignment was open left the fleet: it is counted in
/// `assigned` and `decommissioned`, and is no longer a member. Fields added after the
/// first version default to 0 when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageCounts {
    /// Selected devices in the stage.
    pub members: u64,
    /// Devices that were given the assignment.
    pub assigned: u64,
    /// Assigned devices that have not finished.
    pub in_progress: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Members that have not settled: not assigned yet (they still run an older version)
    /// or in progress. A completed rollout keeps offering its release until this is 0.
    #[serde(default)]
    pub pending: u64,
    /// Assigned devices decommissioned before they finished: neither a success nor a
    /// failure.
    #[serde(default)]
    pub decommissioned: u64,
}

/// A rollout's counts per stage (in stage order) and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutCounts {
    pub stages: Vec<StageCounts>,
    pub total: StageCounts,
}

/// A rollout as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutStatus {
    pub id: String,
    pub release_id: String,
    pub state: RolloutState,
    /// Index into `stages` of the stage in progress.
    pub current_stage: u32,
    pub stages: Vec<Stage>,
    pub selector: Selector,
    pub counts: RolloutCounts,
    pub halted_reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, as one sentence.
    pub error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
        }
    }
}

/// A device's position in a rollout, in `[0, 1)`: the first 8 bytes, big-endian, of
/// SHA-256(`"rota-rollout-bucket\0"` `rollout_id` `"\0"` `device_id`), divided by 2^64.
///
/// Deterministic, so every server replica (and every test) puts a device in the same
/// stage; keyed by the rollout, so the same devices are not always first.
pub fn rollout_bucket(rollout_id: &str, device_id: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(b"rota-rollout-bucket\0")
        .chain_update(rollout_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(device_id.as_bytes())
        .finalize();
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    // Exact division by 2^64; the conversion rounds to 53 bits, and the `min` keeps the
    // bucket of prefixes just below 2^64 (which round up to 1.0) inside [0, 1).
    (u64::from_be_bytes(prefix) as f64 / 18_446_744_073_709_551_616.0).min(1.0 - f64::EPSILON / 2.0)
}
