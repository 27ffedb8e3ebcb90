//! Keys that never leave a PKCS#11 token: an HSM, a secure element through its vendor's
//! module, a TPM through tpm2-pkcs11 (PKCS#11 v2.40 / v3.0, via the `cryptoki` crate).
//!
//! A key is addressed by a [`Pkcs11Uri`] (RFC 7512). [`Pkcs11Key::open`] loads the module
//! once per process, finds the one token and the one private key the URI matches, logs
//! in with the user PIN (`pin.rs`: pin-source, `ROTA_PKCS11_PIN`, a prompt), reads the
//! public key from the token and checks it is an Ed25519 (`CKK_EC_EDWARDS`, curve
//! edwards25519) or P-256 (`CKK_EC`, prime256v1) key allowed to sign (`CKA_SIGN`).
//! [`Pkcs11Key::generate`] makes a new key pair inside the token, sensitive and never
//! extractable; only its public key ever leaves. [`objects`], [`relabel`] and [`destroy`]
//! list, move and destroy a key pair's objects by label and id (a device key rotation
//! makes its new key under `…-next`, moves it in, and destroys the old one).
//!
//! Signatures are rota's fixed 64-byte forms: `CKM_EDDSA` (pure Ed25519) gives `R || S`;
//! `CKM_ECDSA` signs the SHA-256 digest rota computes and gives `r || s` (PKCS#11 v3.0
//! §2.3.1), which rota normalises to low S as its software keys do, so a token and a key
//! file produce signatures of the same shape. Every signature is verified against the
//! public key before it is returned: a faulty token can never put a bad signature into an
//! envelope, metadata or a certificate.

mod pin;
mod uri;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest as _, Sha256};

pub use pin::PIN_ENV;
pub use uri::{MODULE_ENV, Pkcs11Uri};

use crate::{Algorithm, PublicKey, Sign, SignError};

/// DER OID 1.3.101.112, id-Ed25519 (RFC 8410): the `CKA_EC_PARAMS` rota writes for
/// Ed25519 (PKCS#11 v3.0 §2.3.10 also allows the printable string "edwards25519").
const EC_PARAMS_ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString "edwards25519", as OpenSC and some tokens write it.
const EC_PARAMS_ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// DER OID 1.2.840.10045.3.1.7, prime256v1 / secp256r1.
const EC_PARAMS_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Why a PKCS#11 key could not be used; each message names the URI part at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    #[error("invalid PKCS#11 URI: {detail}")]
    Uri { detail: String },
    #[error(
        "the PKCS#11 URI holds the PIN (pin-value), which would put it on command lines and in \
         configuration: give pin-source=file:PATH, or set {PIN_ENV}"
    )]
    PinInUri,
    #[error(
        "the PKCS#11 URI names no module: add ?module-path=/path/to/module.so or set {MODULE_ENV}"
    )]
    NoModule,
    #[error("cannot load the PKCS#11 module module-path={path}: {reason}")]
    Module { path: PathBuf, reason: String },
    #[error("no PKCS#11 token matches {token} in module-path={module} (tokens there: {found})")]
    NoToken {
        token: String,
        module: PathBuf,
        found: String,
    },
    #[error("{token} matches {count} PKCS#11 tokens: add serial= or slot-id= to pick one")]
    AmbiguousToken { token: String, count: usize },
    #[error("{token} has no PKCS#11 private key {object}")]
    NoObject { token: String, object: String },
    #[error("{object} matches {count} private keys in {token}: add id= to pick one")]
    AmbiguousObject {
        token: String,
        object: String,
        count: usize,
    },
    #[error("{token} already holds a key {object}: choose another object= (or remove that one)")]
    ObjectExists { token: String, object: String },
    #[error("{token} has no public key for {object}, and rota needs it to know the key")]
    NoPublicKey { token: String, object: String },
    #[error("the PIN for {token} is wrong")]
    WrongPin { token: String },
    #[error("{token} is locked after too many wrong PINs: its security officer must unlock it")]
    PinLocked { token: String },
    #[error(
        "{token} has no user PIN set: initialise it (softhsm2-util --init-token, or C_InitPIN)"
    )]
    PinNotInitialised { token: String },
    #[error(
        "{token} needs a PIN: add pin-source=file:PATH to the URI, set {PIN_ENV}, or run on a \
         terminal to be asked"
    )]
    NoPin { token: String },
    #[error("cannot read the PIN from {source_name}: {reason}")]
    PinSource { source_name: String, reason: String },
    #[error("{object} in {token} is {found}, not an Ed25519 or P-256 key")]
    WrongKeyType {
        token: String,
        object: String,
        found: String,
    },
    #[error("{object} in {token} may not sign (its CKA_SIGN is false)")]
    CannotSign { token: String, object: String },
    #[error("{token} cannot {what} ({mechanism})")]
    Unsupported {
        token: String,
        what: &'static str,
        mechanism: &'static str,
    },
    #[error("{object} in {token} made a signature that does not verify with its public key")]
    BadSignature { token: String, object: String },
    #[error("the PKCS#11 module failed in {call} for {part}: {reason}")]
    Token {
        part: String,
        call: &'static str,
        reason: String,
    },
}

impl From<Pkcs11Error> for SignError {
    fn from(e: Pkcs11Error) -> Self {
        match e {
            Pkcs11Error::Token { .. } | Pkcs11Error::BadSignature { .. } => {
                SignError::Failed(e.to_string())
            }
            _ => SignError::KeyUnavailable(e.to_string()),
        }
    }
}

/// A private key inside a PKCS#11 token; signs there and never leaves.
pub struct Pkcs11Key {
    uri: Pkcs11Uri,
    public_key: PublicKey,
    /// A PKCS#11 session is used by one thread at a time (v3.0 §5.1.6).
    session: Mutex<Session>,
    key: ObjectHandle,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.uri)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Opens the private key `uri` names, logged in and ready to sign.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, Pkcs11Error> {
        let session = Token::find(uri)?.log_in()?;
        let found = |class| find_objects(&session, uri, class);
        let key = match found(ObjectClass::PRIVATE_KEY)?.as_slice() {
            [key] => *key,
            [] => return Err(no_object(uri)),
            keys => {
                return Err(Pkcs11Error::AmbiguousObject {
                    token: uri.token_part(),
                    object: uri.object_part(),
                    count: keys.len(),
                });
            }
        };
        let public_key = public_key_of(&session, uri, key)?;
        let may_sign = get_attribute(&session, uri, key, AttributeType::Sign)?;
        if !matches!(may_sign, Some(Attribute::Sign(true))) {
            return Err(Pkcs11Error::CannotSign {
                token: uri.token_part(),
                object: uri.object_part(),
            });
        }
        Ok(Self {
            uri: uri.clone(),
            public_key,
            session: Mutex::new(session),
            key,
        })
    }

    /// Generates a key pair inside the token `uri` names, labelled by its `object=`
    /// (and `id=`, else 16 random bytes): the private key sensitive, never extractable
    /// and allowed to sign; the public key stored beside it. Refuses to add a second
    /// key under a label or id the token already holds.
    pub fn generate(uri: &Pkcs11Uri, algorithm: Algorithm) -> Result<Self, Pkcs11Error> {
        let Some(label) = uri.object.clone() else {
            return Err(Pkcs11Error::Uri {
                detail: "a key made in a token needs a label: add object=LABEL".into(),
            });
        };
        let session = Token::find(uri)?.log_in()?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if !find_objects(&session, uri, class)?.is_empty() {
                return Err(Pkcs11Error::ObjectExists {
                    token: uri.token_part(),
                    object: uri.object_part(),
                });
            }
        }
        let id = match &uri.id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0; 16];
                getrandom::fill(&mut id).map_err(|e| Pkcs11Error::Token {
                    part: uri.token_part(),
                    call: "getrandom",
                    reason: e.to_string(),
                })?;
                id
            }
        };
        let (mechanism, key_type, params, name) = match algorithm {
            Algorithm::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                KeyType::EC_EDWARDS,
                EC_PARAMS_ED25519_OID,
                "CKM_EC_EDWARDS_KEY_PAIR_GEN",
            ),
            Algorithm::EcdsaP256Sha256 => (
                Mechanism::EccKeyPairGen,
                KeyType::EC,
                EC_PARAMS_P256,
                "CKM_EC_KEY_PAIR_GEN",
            ),
        };
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::KeyType(key_type),
            Attribute::EcParams(params.to_vec()),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        // Other usages are left to the token: tpm2-pkcs11 refuses a template that
        // turns off the decrypt or derive it gives every TPM key.
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .map_err(|e| match e {
                CkError::Pkcs11(
                    RvError::MechanismInvalid
                    | RvError::CurveNotSupported
                    | RvError::DomainParamsInvalid
                    | RvError::AttributeValueInvalid,
                    _,
                ) => Pkcs11Error::Unsupported {
                    token: uri.token_part(),
                    what: "generate this key type",
                    mechanism: name,
                },
                e => token_error(uri, "C_GenerateKeyPair", e),
            })?;
        drop(session);
        // Open it as any later run would: the same checks, by label and id (which its
        // URI then names).
        Self::open(&uri.with_key(&label, Some(&id)))
    }

    /// The URI the key was opened by.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn sign_in_token(&self, message: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let uri = &self.uri;
        let mut signature = match self.public_key {
            PublicKey::Ed25519(_) => {
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                session
                    .sign(&mechanism, self.key, message)
                    .map_err(|e| token_error(uri, "C_Sign (CKM_EDDSA)", e))?
            }
            PublicKey::P256(_) => {
                let digest = Sha256::digest(message);
                session
                    .sign(&Mechanism::Ecdsa, self.key, &digest)
                    .map_err(|e| token_error(uri, "C_Sign (CKM_ECDSA)", e))?
            }
        };
        drop(session);
        if let PublicKey::P256(_) = self.public_key {
            signature = low_s(&signature).unwrap_or(signature);
        }
        self.public_key
            .verify(message, &signature)
            .map_err(|_| Pkcs11Error::BadSignature {
                token: uri.token_part(),
                object: uri.object_part(),
            })?;
        Ok(signature)
    }
}

impl Sign for Pkcs11Key {
    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(self.sign_in_token(message)?)
    }
}

/// An object in a token that a URI's label and id match, as [`objects`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenObject {
    /// `CKA_CLASS`: a private key, a public key, or another object (a certificate, data).
    pub class: ObjectKind,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
}

/// The class of a [`TokenObject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    PrivateKey,
    PublicKey,
    Other,
}

/// Every object (of any class) in the token `uri` names whose label and id match the
/// URI's `object=` and `id=`: the halves of a key pair, and anything stored beside them.
pub fn objects(uri: &Pkcs11Uri) -> Result<Vec<TokenObject>, Pkcs11Error> {
    let session = Token::find(uri)?.log_in()?;
    let mut found = Vec::new();
    for object in find_any(&session, uri)? {
        let attributes = session
            .get_attributes(
                object,
                &[
                    AttributeType::Class,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(|e| token_error(uri, "C_GetAttributeValue", e))?;
        let mut listed = TokenObject {
            class: ObjectKind::Other,
            label: String::new(),
            id: Vec::new(),
        };
        for attribute in attributes {
            match attribute {
                Attribute::Class(ObjectClass::PRIVATE_KEY) => listed.class = ObjectKind::PrivateKey,
                Attribute::Class(ObjectClass::PUBLIC_KEY) => listed.class = ObjectKind::PublicKey,
                Attribute::Label(label) => {
                    listed.label = String::from_utf8_lossy(&label).into_owned()
                }
                Attribute::Id(id) => listed.id = id,
                _ => {}
            }
        }
        found.push(listed);
    }
    Ok(found)
}

/// Gives every object `uri` matches (see [`objects`]) the label `label`; returns how
/// many. A key rotation moves a key pair between labels with it; repeated, it finds
/// nothing left to move.
pub fn relabel(uri: &Pkcs11Uri, label: &str) -> Result<usize, Pkcs11Error> {
    let session = Token::find(uri)?.log_in()?;
    let found = find_any(&session, uri)?;
    for object in &found {
        session
            .update_attributes(*object, &[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| token_error(uri, "C_SetAttributeValue (CKA_LABEL)", e))?;
    }
    Ok(found.len())
}

/// Destroys every object `uri` matches (see [`objects`]) with `C_DestroyObject`: the
/// private key is gone from the token, not only from rota's view. Returns how many;
/// repeated, it finds none.
pub fn destroy(uri: &Pkcs11Uri) -> Result<usize, Pkcs11Error> {
    let session = Token::find(uri)?.log_in()?;
    let found = find_any(&session, uri)?;
    for object in &found {
        session
            .destroy_object(*object)
            .map_err(|e| token_error(uri, "C_DestroyObject", e))?;
    }
    Ok(found.len())
}

/// An ECDSA `r || s` with `s` replaced by `n - s` when `s > n/2` (both verify; rota's
/// software keys emit low S, so signatures have one shape whoever signs). `None` when
/// the bytes are not a P-256 signature (the verification after it then reports it).
fn low_s(signature: &[u8]) -> Option<Vec<u8>> {
    let signature = p256::ecdsa::Signature::from_slice(signature).ok()?;
    let normalized = signature.normalize_s();
    Some(normalized.to_bytes().to_vec())
}

/// One process loads each module once and initialises it once (PKCS#11 v3.0 §5.4:
/// C_Initialize twice fails), however many keys it opens there.
static MODULES: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let fail = |reason: String| Pkcs11Error::Module {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let module = Pkcs11::new(path).map_err(|e| fail(e.to_string()))?;
    match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("C_Initialize failed: {e}"))),
    }
    modules.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// The one token a URI matches.
struct Token<'u> {
    uri: &'u Pkcs11Uri,
    module: Pkcs11,
    slot: Slot,
}

impl<'u> Token<'u> {
    fn find(uri: &'u Pkcs11Uri) -> Result<Self, Pkcs11Error> {
        let path = uri.module()?;
        let module = module(&path)?;
        let slots = module
            .get_slots_with_token()
            .map_err(|e| token_error(uri, "C_GetSlotList", e))?;
        let mut labels = Vec::new();
        let mut matching = Vec::new();
        for slot in slots {
            let info = match module.get_token_info(slot) {
                Ok(info) => info,
                Err(e) => {
                    labels.push(format!("slot-id={} unreadable: {e}", slot.id()));
                    continue;
                }
            };
            if !info.token_initialized() {
                continue;
            }
            labels.push(info.label().trim_end().to_owned());
            let field = |want: &Option<String>, have: &str| {
                want.as_ref().is_none_or(|w| w == have.trim_end())
            };
            if field(&uri.token, info.label())
                && field(&uri.manufacturer, info.manufacturer_id())
                && field(&uri.model, info.model())
                && field(&uri.serial, info.serial_number())
                && uri.slot_id.is_none_or(|id| id == slot.id())
            {
                matching.push(slot);
            }
        }
        match matching.as_slice() {
            [slot] => Ok(Self {
                uri,
                module,
                slot: *slot,
            }),
            [] => Err(Pkcs11Error::NoToken {
                token: uri.token_part(),
                module: path,
                found: if labels.is_empty() {
                    "none".into()
                } else {
                    labels.join(", ")
                },
            }),
            slots => Err(Pkcs11Error::AmbiguousToken {
                token: uri.token_part(),
                count: slots.len(),
            }),
        }
    }

    /// A read-write session logged in as the user (read-write: key generation needs it,
    /// and some tokens refuse a user login on read-only sessions).
    fn log_in(self) -> Result<Session, Pkcs11Error> {
        let uri = self.uri;
        let token = || uri.token_part();
        let info = self
            .module
            .get_token_info(self.slot)
            .map_err(|e| token_error(uri, "C_GetTokenInfo", e))?;
        if info.user_pin_locked() {
            return Err(Pkcs11Error::PinLocked { token: token() });
        }
        let session = self
            .module
            .open_rw_session(self.slot)
            .map_err(|e| token_error(uri, "C_OpenSession", e))?;
        if !info.login_required() {
            return Ok(session);
        }
        // Login is per token and application (v3.0 §5.6): a second key of this token in
        // this process finds its sessions already logged in, and asks for no PIN.
        let state = session
            .get_session_info()
            .map_err(|e| token_error(uri, "C_GetSessionInfo", e))?
            .session_state();
        if matches!(state, SessionState::RoUser | SessionState::RwUser) {
            return Ok(session);
        }
        if !info.user_pin_initialized() {
            return Err(Pkcs11Error::PinNotInitialised { token: token() });
        }
        let result = if info.protected_authentication_path() {
            // A PIN pad or biometric reader: the token asks for it itself.
            session.login(UserType::User, None)
        } else {
            let pin = pin::user_pin(uri)?;
            session.login(UserType::User, Some(&AuthPin::from(pin.as_str())))
        };
        match result {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
                Err(Pkcs11Error::WrongPin { token: token() })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                Err(Pkcs11Error::PinLocked { token: token() })
            }
            Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
                Err(Pkcs11Error::PinNotInitialised { token: token() })
            }
            Err(e) => Err(token_error(uri, "C_Login", e)),
        }
    }
}

/// The objects of `class` with the URI's label and id.
fn find_objects(
    session: &Session,
    uri: &Pkcs11Uri,
    class: ObjectClass,
) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    session
        .find_objects(&template)
        .map_err(|e| token_error(uri, "C_FindObjects", e))
}

/// The objects of any class with the URI's label and id.
/// A URI naming neither label nor id matches nothing here (never every object).
fn find_any(session: &Session, uri: &Pkcs11Uri) -> Result<Vec<ObjectHandle>, Pkcs11Error> {
    if uri.object.is_none() && uri.id.is_none() {
        return Err(Pkcs11Error::Uri {
            detail: "it names no key: add object=LABEL (or id=…) to the path".into(),
        });
    }
    let mut template = Vec::new();
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    session
        .find_objects(&template)
        .map_err(|e| token_error(uri, "C_FindObjects", e))
}

fn get_attribute(
    session: &Session,
    uri: &Pkcs11Uri,
    object: ObjectHandle,
    attribute: AttributeType,
) -> Result<Option<Attribute>, Pkcs11Error> {
    Ok(session
        .get_attributes(object, &[attribute])
        .map_err(|e| token_error(uri, "C_GetAttributeValue", e))?
        .into_iter()
        .next())
}

/// The public key of private key `key`: from the token's public key object with the same
/// label and id (most tokens store no `CKA_EC_POINT` on the private key), else from the
/// private key itself.
fn public_key_of(
    session: &Session,
    uri: &Pkcs11Uri,
    key: ObjectHandle,
) -> Result<PublicKey, Pkcs11Error> {
    let wrong_type = |found: String| Pkcs11Error::WrongKeyType {
        token: uri.token_part(),
        object: uri.object_part(),
        found,
    };
    let key_type = match get_attribute(session, uri, key, AttributeType::KeyType)? {
        Some(Attribute::KeyType(t)) => t,
        _ => return Err(wrong_type("a key of no stated type".into())),
    };
    if key_type != KeyType::EC_EDWARDS && key_type != KeyType::EC {
        let name = key_type.to_string();
        let name = name.trim_start_matches("CKK_");
        return Err(wrong_type(format!("a key of type {name}")));
    }
    // The private key's own label and id find its public half even when the URI gave
    // only one of them.
    let mut exact = uri.clone();
    if let Some(Attribute::Id(id)) = get_attribute(session, uri, key, AttributeType::Id)? {
        exact.id = Some(id);
    }
    let holders: Vec<ObjectHandle> = find_objects(session, &exact, ObjectClass::PUBLIC_KEY)?
        .into_iter()
        .chain([key])
        .collect();
    for holder in holders {
        let attributes = session
            .get_attributes(holder, &[AttributeType::EcParams, AttributeType::EcPoint])
            .unwrap_or_default();
        let (mut params, mut point) = (None, None);
        for attribute in attributes {
            match attribute {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let (Some(params), Some(point)) = (params, point) else {
            continue;
        };
        let public_key = if key_type == KeyType::EC_EDWARDS {
            if params != EC_PARAMS_ED25519_OID && params != EC_PARAMS_ED25519_NAME {
                return Err(wrong_type("an Edwards-curve key other than Ed25519".into()));
            }
            PublicKey::Ed25519(
                unwrap_octet_string(&point, 32)
                    .try_into()
                    .map_err(|_| wrong_type("an Ed25519 key of the wrong length".into()))?,
            )
        } else {
            if params != EC_PARAMS_P256 {
                return Err(wrong_type(
                    "an elliptic-curve key on a curve other than P-256".into(),
                ));
            }
            PublicKey::P256(
                unwrap_octet_string(&point, 65)
                    .try_into()
                    .map_err(|_| wrong_type("a P-256 key not in uncompressed form".into()))?,
            )
        };
        public_key
            .validate()
            .map_err(|_| wrong_type("a key whose public point is invalid".into()))?;
        return Ok(public_key);
    }
    Err(Pkcs11Error::NoPublicKey {
        token: uri.token_part(),
        object: uri.object_part(),
    })
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some
/// tokens store the raw point. Returns the point.
fn unwrap_octet_string(value: &[u8], len: usize) -> &[u8] {
    match value {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => rest,
        _ => value,
    }
}

fn no_object(uri: &Pkcs11Uri) -> Pkcs11Error {
    Pkcs11Error::NoObject {
        token: uri.token_part(),
        object: uri.object_part(),
    }
}

fn token_error(uri: &Pkcs11Uri, call: &'static str, e: CkError) -> Pkcs11Error {
    let part = match e {
        CkError::Pkcs11(RvError::KeyTypeInconsistent | RvError::KeyFunctionNotPermitted, _) => {
            return Pkcs11Error::CannotSign {
                token: uri.token_part(),
                object: uri.object_part(),
            };
        }
        CkError::Pkcs11(RvError::MechanismInvalid, _) => {
            return Pkcs11Error::Unsupported {
                token: uri.token_part(),
                what: "sign with this key",
                mechanism: call,
            };
        }
        CkError::Pkcs11(RvError::UserNotLoggedIn, _) => format!(
            "{} (its login was lost: the token was removed or reset)",
            uri.token_part()
        ),
        _ => format!("{} {}", uri.token_part(), uri.object_part()),
    };
    Pkcs11Error::Token {
        part,
        call,
        reason: e.to_string(),
    }
}
