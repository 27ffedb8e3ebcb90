//! Remote attestation evidence: what a device proves about the firmware it runs, written
//! by the agent and checked by the server. The plan and its reasons:
//! `docs/design/attestation.md`.
//!
//! # Evidence (version 1)
//!
//! CBOR (RFC 8949), at most [`MAX_EVIDENCE_LEN`] bytes:
//!
//! ```text
//! evidence = [ eat: bstr, ? alias-certificate: bstr ]
//! ```
//!
//! `eat` is a `COSE_Sign1_Tagged` (RFC 9052 §4.2; alg EdDSA or ES256 in the protected
//! header, no other header) over an Entity Attestation Token claims set (RFC 9711, CWT
//! form). Every claim is required and no other is accepted:
//!
//! | claim | key | value |
//! |---|---|---|
//! | `eat_nonce` | 10 | the server's challenge, 16 to 64 bytes (RFC 9711 §4.1 allows 8 to 64) |
//! | `ueid` | 256 | `0x01` ‖ SHA-256 of the attesting identity's public key: type RAND, 33 bytes (RFC 9711 §4.2.1) |
//! | `dbgstat` | 263 | 1 (disabled) in DICE mode Normal, 0 (enabled) otherwise (RFC 9711 §4.2.9) |
//! | `eat_profile` | 265 | [`EAT_PROFILE`] (RFC 9711 §4.3.2) |
//! | `measurements` | 273 | `[[65000, bstr .cbor measured-inputs]]` (RFC 9711 §4.2.16; 65000 is in the CoAP content-format range for experimental use) |
//! | boot count | -70001 | the device's boots since manufacture (private use) |
//! | measured by | -70002 | `"bootloader"` or `"software"` (private use) |
//!
//! `measured-inputs` is a map of Open DICE's certificate labels
//! (`rota_boot::dice::label`): code hash, config and authority hash (64 bytes each) and
//! mode (1 byte), laid out as `rota_boot::dice::Measurement::inputs` lays them out: the
//! image digest, security version, sequence number, slot, bootloader measurement and
//! signer's key hash.
//!
//! Two kinds:
//! - **Hardware-rooted** (`"bootloader"`): rota-boot measured the image and derived the
//!   Alias key from that measurement (DICE). The EAT is signed by the Alias key; the Alias
//!   certificate (Open DICE's CBOR certificate) follows, signed by the DeviceID key that
//!   the device certificate binds ([`crate::CertBody::dice_device_id`]). The measurement
//!   the server believes is the certificate's; the EAT must repeat it byte for byte. An
//!   application cannot forge it: another measurement is another Alias key.
//! - **Software-measured** (`"software"`): devices without a UDS (Linux gateways). The
//!   EAT is signed by the device's identity key and the agent measured what it reports.

use coset::cbor::value::Value;
use coset::cwt::{ClaimName, ClaimsSet};
use coset::iana::{self, EnumI64};
use coset::{
    Algorithm, CborSerializable, CoseKey, CoseSign1, CoseSign1Builder, HeaderBuilder, KeyType,
    Label, TaggedCborSerializable,
};
use rota_boot::dice::{CONFIG_LEN, HASH_LEN, Measurement, Mode, label};
use rota_keys::{Algorithm as KeyAlgorithm, PublicKey, Sign};

/// The longest evidence accepted, in bytes (a hardware-rooted one is about 1 KiB).
pub const MAX_EVIDENCE_LEN: usize = 4096;
/// Shortest and longest challenge (RFC 9711 §4.1: 8 to 64 bytes; rota asks for 16 or more).
pub const MIN_NONCE_LEN: usize = 16;
pub const MAX_NONCE_LEN: usize = 64;
/// The EAT profile of this format (RFC 9711 §4.3.2, a tag URI).
pub const EAT_PROFILE: &str = "tag:rota.dev,2026:eat-1";

const EAT_NONCE: i64 = 10;
const UEID: i64 = 256;
const DBGSTAT: i64 = 263;
const EAT_PROFILE_CLAIM: i64 = 265;
const MEASUREMENTS: i64 = 273;
const BOOT_COUNT: i64 = -70001;
const MEASURED_BY: i64 = -70002;
/// The content type of rota's measured inputs in `measurements` (CoAP experimental range).
const MEASURED_INPUTS_TYPE: u64 = 65000;
/// UEID type RAND (RFC 9711 §4.2.1.1).
const UEID_RAND: u8 = 0x01;

/// Who measured the firmware the evidence reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasuredBy {
    /// rota-boot, before the jump (DICE): the evidence is rooted in the device's UDS.
    Bootloader,
    /// The running software (no UDS on this device).
    Software,
}

impl MeasuredBy {
    pub const fn as_str(self) -> &'static str {
        match self {
            MeasuredBy::Bootloader => "bootloader",
            MeasuredBy::Software => "software",
        }
    }
}

/// What verified evidence shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attested {
    /// The challenge it answers (the server checks it is fresh and unused).
    pub nonce: Vec<u8>,
    pub measured_by: MeasuredBy,
    pub measurement: Measurement,
    /// DICE mode other than Normal (a debug port open, maintenance).
    pub debug: bool,
    pub boot_count: u64,
}

/// Why evidence was refused. [`EvidenceError::is_clone`] separates a device that proves
/// to be another (flag it) from input that proves nothing (refuse it, count nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    #[error("the evidence is {len} bytes, more than the {MAX_EVIDENCE_LEN} allowed")]
    TooLarge { len: usize },
    #[error("the evidence is malformed: {0}")]
    Malformed(String),
    #[error("the evidence is signed with an algorithm rota does not accept: {0}")]
    UnknownAlgorithm(String),
    #[error("the evidence carries a DICE chain, but the device's certificate binds no DeviceID")]
    NoCertifiedDeviceId,
    #[error(
        "the Alias certificate was issued by DeviceID {issuer}, not the one the device's certificate binds: a copied identity on another device"
    )]
    NotTheCertifiedDeviceId { issuer: String },
    #[error("the Alias certificate's signature does not verify with the certified DeviceID")]
    BadCertificateSignature,
    #[error("the attestation token's signature does not verify with the {0} key")]
    BadSignature(&'static str),
    #[error("the attestation token's measurements differ from the ones the bootloader certified")]
    MeasurementsDiffer,
    #[error("the attestation token names another device (its ueid is not this device's)")]
    WrongUeid,
    #[error("the device's certificate binds a DeviceID, so software-measured evidence is refused")]
    SoftwareFromDiceDevice,
    #[error("the attestation token's nonce is {0} bytes; 16 to 64 are allowed")]
    NonceLength(usize),
    #[error("the evidence could not be signed: {0}")]
    Sign(String),
}

impl EvidenceError {
    /// The evidence is well formed and signed, and shows that this device is not the one
    /// its certificate names (a clone): the server flags the device.
    pub fn is_clone(&self) -> bool {
        matches!(self, EvidenceError::NotTheCertifiedDeviceId { .. })
    }
}

fn malformed(what: impl std::fmt::Display) -> EvidenceError {
    EvidenceError::Malformed(what.to_string())
}

/// The measured inputs of an Open DICE certificate or an EAT.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inputs {
    code_hash: [u8; HASH_LEN],
    config: [u8; CONFIG_LEN],
    authority_hash: [u8; HASH_LEN],
    mode: u8,
}

impl Inputs {
    fn of(measurement: &Measurement, mode: Mode) -> Self {
        let inputs = measurement.inputs(mode);
        Inputs {
            code_hash: inputs.code_hash,
            config: inputs.config,
            authority_hash: inputs.authority_hash,
            mode: mode as u8,
        }
    }

    /// The measurement, if the inputs are in rota's layout.
    fn measurement(&self) -> Result<Measurement, EvidenceError> {
        Measurement::from_inputs(&self.code_hash, &self.config, &self.authority_hash)
            .ok_or_else(|| malformed("the measured inputs are not in rota's layout"))
    }

    fn debug(&self) -> bool {
        self.mode != Mode::Normal as u8
    }

    fn to_entries(&self) -> Vec<(Value, Value)> {
        vec![
            (
                label::CODE_HASH.into(),
                Value::Bytes(self.code_hash.to_vec()),
            ),
            (
                label::CONFIG_DESCRIPTOR.into(),
                Value::Bytes(self.config.to_vec()),
            ),
            (
                label::AUTHORITY_HASH.into(),
                Value::Bytes(self.authority_hash.to_vec()),
            ),
            (label::MODE.into(), Value::Bytes(vec![self.mode])),
        ]
    }

    /// Reads the four inputs from `claims` (label → value), each exactly once.
    fn take(claims: &mut Claims) -> Result<Self, EvidenceError> {
        let mode = claims.fixed::<1>(label::MODE, "mode")?[0];
        Ok(Inputs {
            code_hash: claims.fixed(label::CODE_HASH, "code hash")?,
            config: claims.fixed(label::CONFIG_DESCRIPTOR, "config")?,
            authority_hash: claims.fixed(label::AUTHORITY_HASH, "authority hash")?,
            mode,
        })
    }
}

/// Integer-labelled claims, taken out one by one; [`Claims::finish`] refuses any left.
struct Claims(Vec<(i64, Value)>);

impl Claims {
    /// `entries`, refusing text labels and duplicates (RFC 8949 §5.6).
    fn new(entries: Vec<(Value, Value)>) -> Result<Self, EvidenceError> {
        let mut claims = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let key = key
                .as_integer()
                .and_then(|k| i64::try_from(k).ok())
                .ok_or_else(|| malformed("a claim label is not an integer"))?;
            if claims.iter().any(|(k, _)| *k == key) {
                return Err(malformed(format!("claim {key} appears twice")));
            }
            claims.push((key, value));
        }
        Ok(Claims(claims))
    }

    fn from_set(set: ClaimsSet) -> Result<Self, EvidenceError> {
        if set.issuer.is_some()
            || set.subject.is_some()
            || set.audience.is_some()
            || set.expiration_time.is_some()
            || set.not_before.is_some()
            || set.issued_at.is_some()
            || set.cwt_id.is_some()
        {
            return Err(malformed("the token carries a CWT claim rota does not use"));
        }
        let mut claims = Vec::with_capacity(set.rest.len());
        for (name, value) in set.rest {
            match name {
                ClaimName::Assigned(a) => claims.push((a.to_i64(), value)),
                ClaimName::PrivateUse(k) => claims.push((k, value)),
                ClaimName::Text(t) => return Err(malformed(format!("unknown claim {t:?}"))),
            }
        }
        Ok(Claims(claims))
    }

    fn take(&mut self, key: i64, what: &str) -> Result<Value, EvidenceError> {
        let at = self
            .0
            .iter()
            .position(|(k, _)| *k == key)
            .ok_or_else(|| malformed(format!("the {what} claim ({key}) is missing")))?;
        Ok(self.0.remove(at).1)
    }

    fn bytes(&mut self, key: i64, what: &str) -> Result<Vec<u8>, EvidenceError> {
        match self.take(key, what)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(malformed(format!("the {what} claim is not a byte string"))),
        }
    }

    fn fixed<const N: usize>(&mut self, key: i64, what: &str) -> Result<[u8; N], EvidenceError> {
        self.bytes(key, what)?
            .try_into()
            .map_err(|_| malformed(format!("the {what} claim is not {N} bytes")))
    }

    fn uint(&mut self, key: i64, what: &str) -> Result<u64, EvidenceError> {
        self.take(key, what)?
            .as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| malformed(format!("the {what} claim is not an unsigned integer")))
    }

    fn text(&mut self, key: i64, what: &str) -> Result<String, EvidenceError> {
        match self.take(key, what)? {
            Value::Text(t) => Ok(t),
            _ => Err(malformed(format!("the {what} claim is not text"))),
        }
    }

    fn finish(self) -> Result<(), EvidenceError> {
        match self.0.first() {
            Some((key, _)) => Err(malformed(format!("unknown claim {key}"))),
            None => Ok(()),
        }
    }
}

/// The COSE algorithm for a key (RFC 9053 §2.1, §2.2).
fn cose_algorithm(key: &PublicKey) -> iana::Algorithm {
    match key.algorithm() {
        KeyAlgorithm::Ed25519 => iana::Algorithm::EdDSA,
        KeyAlgorithm::EcdsaP256Sha256 => iana::Algorithm::ES256,
    }
}

/// Checks a COSE_Sign1's headers (alg only, protected; no `crit`: RFC 9052 §3.1) and its
/// signature by `key`; returns the payload.
fn verified_payload(
    sign1: CoseSign1,
    key: &PublicKey,
    whose: &'static str,
    bad_signature: EvidenceError,
) -> Result<Vec<u8>, EvidenceError> {
    let protected = &sign1.protected.header;
    if !protected.crit.is_empty() {
        return Err(malformed("a critical header rota does not understand"));
    }
    if sign1.unprotected != coset::Header::default()
        || protected.key_id.len() + protected.rest.len() != 0
        || protected.content_type.is_some()
        || !protected.iv.is_empty()
        || !protected.partial_iv.is_empty()
        || !protected.counter_signatures.is_empty()
    {
        return Err(malformed("a COSE header other than alg"));
    }
    match &protected.alg {
        Some(Algorithm::Assigned(alg)) if *alg == cose_algorithm(key) => {}
        Some(alg) => {
            return Err(EvidenceError::UnknownAlgorithm(format!(
                "{alg:?} (the {whose} key signs with {:?})",
                cose_algorithm(key)
            )));
        }
        None => return Err(malformed("no alg in the protected header")),
    }
    sign1
        .verify_signature(b"", |signature, message| key.verify(message, signature))
        .map_err(|_| bad_signature)?;
    sign1
        .payload
        .ok_or_else(|| malformed("the payload is detached"))
}

fn ueid(key: &PublicKey) -> Vec<u8> {
    let mut id = vec![UEID_RAND];
    id.extend_from_slice(&key.key_id());
    id
}

/// The Alias certificate's subject key and measured inputs, after its signature by
/// `device_id` verified (Open DICE's CBOR certificate: `rota_boot::dice::certificate`).
fn alias_certificate(
    certificate: &[u8],
    device_id: &[u8; 32],
) -> Result<([u8; 32], Inputs), EvidenceError> {
    let sign1 = CoseSign1::from_slice(certificate)
        .map_err(|e| malformed(format!("the Alias certificate: {e}")))?;
    // The issuer claim names the signer: read before the signature, to tell a clone
    // (another DeviceID, correctly signed) from a forgery.
    let unverified = sign1
        .payload
        .as_deref()
        .and_then(|p| ClaimsSet::from_slice(p).ok())
        .and_then(|c| c.issuer)
        .unwrap_or_default();
    let certified = hex::encode(rota_boot::dice::key_id(device_id));
    if unverified != certified {
        return Err(EvidenceError::NotTheCertifiedDeviceId { issuer: unverified });
    }
    let payload = verified_payload(
        sign1,
        &PublicKey::Ed25519(*device_id),
        "DeviceID",
        EvidenceError::BadCertificateSignature,
    )?;
    let set = ClaimsSet::from_slice(&payload)
        .map_err(|e| malformed(format!("the Alias certificate's claims: {e}")))?;
    let subject_hex = set.subject.clone().unwrap_or_default();
    let mut claims = Claims::from_set(ClaimsSet {
        issuer: None,
        subject: None,
        ..set
    })?;
    let inputs = Inputs::take(&mut claims)?;
    let subject = subject_key(&claims.bytes(label::SUBJECT_PUBLIC_KEY, "subject key")?)?;
    if claims.bytes(label::KEY_USAGE, "key usage")? != [label::KEY_USAGE_CERT_SIGN] {
        return Err(malformed(
            "the Alias certificate's key usage is not keyCertSign",
        ));
    }
    claims.finish()?;
    if subject_hex != hex::encode(rota_boot::dice::key_id(&subject)) {
        return Err(malformed(
            "the Alias certificate's subject is not its key's id",
        ));
    }
    Ok((subject, inputs))
}

/// An Ed25519 COSE_Key (RFC 9052 §7; OKP, crv Ed25519: RFC 9053 §7.2).
fn subject_key(bytes: &[u8]) -> Result<[u8; 32], EvidenceError> {
    let key = CoseKey::from_slice(bytes).map_err(|e| malformed(format!("the subject key: {e}")))?;
    if key.kty != KeyType::Assigned(iana::KeyType::OKP) {
        return Err(malformed("the subject key is not an OKP key"));
    }
    let param = |l: iana::OkpKeyParameter| {
        key.params
            .iter()
            .find(|(k, _)| *k == Label::Int(l.to_i64()))
            .map(|(_, v)| v)
    };
    if param(iana::OkpKeyParameter::Crv)
        != Some(&Value::from(iana::EllipticCurve::Ed25519.to_i64()))
    {
        return Err(malformed("the subject key is not Ed25519"));
    }
    match param(iana::OkpKeyParameter::X) {
        Some(Value::Bytes(x)) => x
            .as_slice()
            .try_into()
            .map_err(|_| malformed("the subject key is not 32 bytes")),
        _ => Err(malformed("the subject key has no x")),
    }
}

/// Verifies `evidence` from the device whose certificate binds `device_key` (its identity
/// key) and `dice_device_id` (its DeviceID, where it has DICE). Checks the structure, the
/// chain, the signatures and that the token names this device; the nonce's freshness and
/// the measurement against reference values are the caller's (they need its database).
pub fn verify(
    evidence: &[u8],
    device_key: &PublicKey,
    dice_device_id: Option<&[u8; 32]>,
) -> Result<Attested, EvidenceError> {
    if evidence.len() > MAX_EVIDENCE_LEN {
        return Err(EvidenceError::TooLarge {
            len: evidence.len(),
        });
    }
    let items = match Value::from_slice(evidence) {
        Ok(Value::Array(items)) if (1..=2).contains(&items.len()) => items,
        _ => return Err(malformed("not an array of one or two byte strings")),
    };
    let mut items = items.into_iter().map(|item| match item {
        Value::Bytes(b) => Ok(b),
        _ => Err(malformed("an element is not a byte string")),
    });
    let eat = items.next().ok_or_else(|| malformed("no token"))??;
    let chain = items.next().transpose()?;
    let sign1 = CoseSign1::from_tagged_slice(&eat)
        .map_err(|e| malformed(format!("the token is not a tagged COSE_Sign1: {e}")))?;

    let (payload, certified, measured_by, attester) = match (chain, dice_device_id) {
        (Some(certificate), Some(device_id)) => {
            let (alias, inputs) = alias_certificate(&certificate, device_id)?;
            let payload = verified_payload(
                sign1,
                &PublicKey::Ed25519(alias),
                "Alias",
                EvidenceError::BadSignature("Alias"),
            )?;
            let attester = PublicKey::Ed25519(*device_id);
            (payload, Some(inputs), MeasuredBy::Bootloader, attester)
        }
        (Some(_), None) => return Err(EvidenceError::NoCertifiedDeviceId),
        (None, Some(_)) => return Err(EvidenceError::SoftwareFromDiceDevice),
        (None, None) => {
            let payload = verified_payload(
                sign1,
                device_key,
                "identity",
                EvidenceError::BadSignature("identity"),
            )?;
            (payload, None, MeasuredBy::Software, *device_key)
        }
    };

    let set = ClaimsSet::from_slice(&payload)
        .map_err(|e| malformed(format!("the token's claims: {e}")))?;
    let mut claims = Claims::from_set(set)?;
    let nonce = claims.bytes(EAT_NONCE, "eat_nonce")?;
    if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len()) {
        return Err(EvidenceError::NonceLength(nonce.len()));
    }
    if claims.bytes(UEID, "ueid")? != ueid(&attester) {
        return Err(EvidenceError::WrongUeid);
    }
    if claims.text(EAT_PROFILE_CLAIM, "eat_profile")? != EAT_PROFILE {
        return Err(malformed("the token's eat_profile is not rota's"));
    }
    let dbgstat = claims.uint(DBGSTAT, "dbgstat")?;
    let boot_count = claims.uint(BOOT_COUNT, "boot count")?;
    if claims.text(MEASURED_BY, "measured-by")? != measured_by.as_str() {
        return Err(malformed(format!(
            "the token's measured-by is not {:?}, which its signer implies",
            measured_by.as_str()
        )));
    }
    let inputs = measured_inputs(claims.take(MEASUREMENTS, "measurements")?)?;
    claims.finish()?;
    if certified.as_ref().is_some_and(|c| *c != inputs) {
        return Err(EvidenceError::MeasurementsDiffer);
    }
    if dbgstat != u64::from(inputs.debug()) ^ 1 {
        return Err(malformed("the token's dbgstat contradicts its mode"));
    }
    Ok(Attested {
        nonce,
        measured_by,
        measurement: inputs.measurement()?,
        debug: inputs.debug(),
        boot_count,
    })
}

/// `[[65000, bstr .cbor measured-inputs]]`.
fn measured_inputs(value: Value) -> Result<Inputs, EvidenceError> {
    let bad = || malformed("the measurements claim is not [[65000, measured inputs]]");
    let Value::Array(mut list) = value else {
        return Err(bad());
    };
    let Some(Value::Array(entry)) = list.pop().filter(|_| list.is_empty()) else {
        return Err(bad());
    };
    let [content_type, Value::Bytes(bytes)] = <[Value; 2]>::try_from(entry).map_err(|_| bad())?
    else {
        return Err(bad());
    };
    if content_type.as_integer() != Some(MEASURED_INPUTS_TYPE.into()) {
        return Err(bad());
    }
    match Value::from_slice(&bytes) {
        Ok(Value::Map(entries)) => {
            let mut claims = Claims::new(entries)?;
            let inputs = Inputs::take(&mut claims)?;
            claims.finish()?;
            Ok(inputs)
        }
        _ => Err(bad()),
    }
}

/// What a device attests, before it is signed.
pub struct Statement<'a> {
    pub nonce: &'a [u8],
    pub boot_count: u64,
}

fn token(
    signer: &dyn Sign,
    attester: &PublicKey,
    inputs: &Inputs,
    measured_by: MeasuredBy,
    statement: &Statement,
) -> Result<Vec<u8>, EvidenceError> {
    let measured = Value::Map(inputs.to_entries())
        .to_vec()
        .map_err(|e| EvidenceError::Sign(e.to_string()))?;
    let private = |k: i64| ClaimName::PrivateUse(k);
    let assigned = |k: i64| {
        iana::CwtClaimName::from_i64(k)
            .map(ClaimName::Assigned)
            .unwrap_or(ClaimName::PrivateUse(k))
    };
    let claims = ClaimsSet {
        rest: vec![
            (assigned(EAT_NONCE), Value::Bytes(statement.nonce.to_vec())),
            (assigned(UEID), Value::Bytes(ueid(attester))),
            (
                assigned(DBGSTAT),
                Value::from(u64::from(inputs.debug()) ^ 1),
            ),
            (assigned(EAT_PROFILE_CLAIM), Value::Text(EAT_PROFILE.into())),
            (
                assigned(MEASUREMENTS),
                Value::Array(vec![Value::Array(vec![
                    Value::from(MEASURED_INPUTS_TYPE),
                    Value::Bytes(measured),
                ])]),
            ),
            (private(BOOT_COUNT), Value::from(statement.boot_count)),
            (
                private(MEASURED_BY),
                Value::Text(measured_by.as_str().into()),
            ),
        ],
        ..Default::default()
    }
    .to_vec()
    .map_err(|e| EvidenceError::Sign(e.to_string()))?;
    let protected = HeaderBuilder::new()
        .algorithm(cose_algorithm(&signer.public_key()))
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .payload(claims)
        .try_create_signature(b"", |message| signer.sign(message))
        .map_err(|e| EvidenceError::Sign(e.to_string()))?
        .build()
        .to_tagged_vec()
        .map_err(|e| EvidenceError::Sign(e.to_string()))
}

fn evidence(items: Vec<Vec<u8>>) -> Result<Vec<u8>, EvidenceError> {
    Value::Array(items.into_iter().map(Value::Bytes).collect())
        .to_vec()
        .map_err(|e| EvidenceError::Sign(e.to_string()))
}

/// Hardware-rooted evidence: a token signed by the Alias key rota-boot handed off
/// (`alias`, from its seed), repeating the measurement of the Alias certificate it
/// carries (issued by the DeviceID `device_id`).
pub fn hardware_evidence(
    alias: &dyn Sign,
    alias_certificate: &[u8],
    device_id: &[u8; 32],
    statement: &Statement,
) -> Result<Vec<u8>, EvidenceError> {
    let (subject, inputs) = self::alias_certificate(alias_certificate, device_id)?;
    if alias.public_key() != PublicKey::Ed25519(subject) {
        return Err(EvidenceError::Sign(
            "the Alias key is not the Alias certificate's subject".into(),
        ));
    }
    let eat = token(
        alias,
        &PublicKey::Ed25519(*device_id),
        &inputs,
        MeasuredBy::Bootloader,
        statement,
    )?;
    evidence(vec![eat, alias_certificate.to_vec()])
}

/// Software-measured evidence, signed by the device's identity key: `measurement` is what
/// the agent read of the running image.
pub fn software_evidence(
    identity: &dyn Sign,
    measurement: &Measurement,
    statement: &Statement,
) -> Result<Vec<u8>, EvidenceError> {
    let inputs = Inputs::of(measurement, Mode::Normal);
    let eat = token(
        identity,
        &identity.public_key(),
        &inputs,
        MeasuredBy::Software,
        statement,
    )?;
    evidence(vec![eat])
}
