//! Keys inside a real PKCS#11 token (SoftHSM2): made there, signing there, never leaving,
//! and every way of addressing one wrongly refused with the URI part at fault.

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rota_keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use rota_keys::test_tokens::{SoftHsm, USER_PIN};
use rota_keys::{Algorithm, KeyAddress, KeySource as _, PublicKey, Sign as _};

const TOKEN: &str = "rota-test";

fn uri(object: &str) -> Pkcs11Uri {
    SoftHsm::in_process().uri(TOKEN, object).parse().unwrap()
}

/// The module as another library in this process would load it: loaded once and kept.
/// One key-pair generation at a time in this process: SoftHSM2's file-backed token store
/// once failed a generation racing another (`CKR_GENERAL_ERROR` from
/// `C_GenerateKeyPair`) while the tests ran in parallel threads.
static GENERATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn generating() -> std::sync::MutexGuard<'static, ()> {
    GENERATING.lock().unwrap_or_else(|e| e.into_inner())
}

static MODULE: std::sync::LazyLock<cryptoki::context::Pkcs11> = std::sync::LazyLock::new(|| {
    // rota initialises the module first (two concurrent C_Initialize calls race inside
    // SoftHSM2; a real application has one initialiser).
    let _ = error_of(&SoftHsm::in_process().uri(TOKEN, "no-such-key"));
    let module = cryptoki::context::Pkcs11::new(SoftHsm::in_process().module()).unwrap();
    let _ = module.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    module
});

/// A read-write session on the test token, logged in as its user (another test may hold
/// the login already).
fn user_session() -> cryptoki::session::Session {
    let module = &*MODULE;
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = module.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(USER_PIN)));
    session
}

fn error_of(text: &str) -> String {
    match text.parse::<KeyAddress>() {
        Err(e) => e.to_string(),
        Ok(address) => match address.as_sign() {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{text} opened"),
        },
    }
}

#[test]
fn ed25519_key_made_in_the_token_signs_what_its_public_key_verifies() {
    let _one_at_a_time = generating();
    let key = Pkcs11Key::generate(&uri("ed-sign"), Algorithm::Ed25519).unwrap();
    assert!(matches!(key.public_key(), PublicKey::Ed25519(_)));
    let signature = key.sign(b"firmware digest").unwrap();
    assert_eq!(signature.len(), 64);
    key.public_key()
        .verify(b"firmware digest", &signature)
        .unwrap();
    assert!(key.public_key().verify(b"other", &signature).is_err());
    // Ed25519 is deterministic (RFC 8032): the token signs as a key file would.
    assert_eq!(key.sign(b"firmware digest").unwrap(), signature);

    // Opened again by its address, as `--key` takes it, it is the same key.
    let text = SoftHsm::in_process().uri(TOKEN, "ed-sign");
    let again = text.parse::<KeyAddress>().unwrap().as_sign().unwrap();
    assert_eq!(again.public_key(), key.public_key());
}

#[test]
fn p256_key_made_in_the_token_signs_low_s_signatures_its_public_key_verifies() {
    let _one_at_a_time = generating();
    let key = Pkcs11Key::generate(&uri("p256-sign"), Algorithm::EcdsaP256Sha256).unwrap();
    assert!(matches!(key.public_key(), PublicKey::P256(_)));
    for i in 0..16u8 {
        let message = [i; 40];
        let signature = key.sign(&message).unwrap();
        key.public_key().verify(&message, &signature).unwrap();
        let parsed = p256::ecdsa::Signature::from_slice(&signature).unwrap();
        assert!(
            parsed.normalize_s() == parsed,
            "high S from the token was not normalised"
        );
    }
}

#[test]
fn private_key_cannot_be_read_out_of_the_token() {
    let _one_at_a_time = generating();
    let key = Pkcs11Key::generate(&uri("sealed"), Algorithm::EcdsaP256Sha256).unwrap();
    drop(key);
    let session = user_session();
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"sealed".to_vec()),
        ])
        .unwrap();
    assert_eq!(private.len(), 1);
    let attributes = session
        .get_attributes(
            private[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attributes.contains(&Attribute::Sensitive(true)));
    assert!(attributes.contains(&Attribute::Extractable(false)));
    assert!(attributes.contains(&Attribute::NeverExtractable(true)));
    assert!(
        !attributes.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the private value was readable: {attributes:?}"
    );
}

#[test]
fn making_a_key_under_a_label_the_token_holds_is_refused() {
    let _one_at_a_time = generating();
    Pkcs11Key::generate(&uri("taken"), Algorithm::Ed25519).unwrap();
    let e = Pkcs11Key::generate(&uri("taken"), Algorithm::Ed25519).unwrap_err();
    assert_eq!(
        e.to_string(),
        "token=rota-test already holds a key object=taken: choose another object= (or remove \
         that one)"
    );
}

#[test]
fn wrong_pin_names_the_token() {
    let hsm = SoftHsm::in_process();
    // Its own token: a wrong PIN must not meet a login another test holds.
    let text = format!(
        "pkcs11:token=rota-pin-test;object=k?module-path={}&pin-source=file:{}",
        hsm.module().display(),
        hsm.wrong_pin_file().display()
    );
    assert_eq!(error_of(&text), "the PIN for token=rota-pin-test is wrong");
}

#[test]
fn missing_module_token_and_object_each_name_their_uri_part() {
    let hsm = SoftHsm::in_process();
    let pin = hsm.pin_file();
    let e = error_of(&format!(
        "pkcs11:token={TOKEN};object=k?module-path=/nonexistent/libpkcs11.so&pin-source=file:{}",
        pin.display()
    ));
    assert_eq!(
        e,
        "cannot load the PKCS#11 module module-path=/nonexistent/libpkcs11.so: no such file"
    );
    let e = error_of(&hsm.uri("no-such-token", "k"));
    assert!(
        e.starts_with("no PKCS#11 token matches token=no-such-token in module-path="),
        "{e}"
    );
    assert!(e.contains("rota-test"), "lists the tokens there: {e}");
    let e = error_of(&hsm.uri(TOKEN, "no-such-key"));
    assert_eq!(
        e,
        "token=rota-test has no PKCS#11 private key object=no-such-key"
    );
}

#[test]
fn pin_in_the_uri_and_no_pin_at_all_are_refused() {
    let hsm = SoftHsm::in_process();
    let e = error_of(&format!(
        "pkcs11:token={TOKEN};object=k?module-path={}&pin-value=1234",
        hsm.module().display()
    ));
    assert!(e.contains("pin-value"), "{e}");
    // The token no other test logs in to: a login held by another test asks no PIN.
    let e = error_of(&format!(
        "pkcs11:token=rota-pin-test;object=k?module-path={}&pin-source=file:/nonexistent/pin",
        hsm.module().display()
    ));
    assert!(
        e.starts_with("cannot read the PIN from pin-source=file:/nonexistent/pin"),
        "{e}"
    );
}

/// Makes a key pair in the test token directly (as another tool would), for the
/// wrong-type and wrong-usage cases.
fn foreign_key(label: &str, key_type: &str, may_sign: bool) {
    let session = user_session();
    let label = Attribute::Label(label.as_bytes().to_vec());
    let (mechanism, public, private) = match key_type {
        "rsa" => (
            cryptoki::mechanism::Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::Token(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                label.clone(),
            ],
            vec![Attribute::Token(true), Attribute::Sign(may_sign), label],
        ),
        _ => (
            cryptoki::mechanism::Mechanism::EccKeyPairGen,
            vec![
                Attribute::Token(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(vec![
                    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                ]),
                label.clone(),
            ],
            vec![
                Attribute::Token(true),
                Attribute::Sign(may_sign),
                Attribute::Derive(true),
                label,
            ],
        ),
    };
    let _one_at_a_time = generating();
    session
        .generate_key_pair(&mechanism, &public, &private)
        .unwrap();
}

#[test]
fn key_of_the_wrong_type_is_refused() {
    foreign_key("rsa-key", "rsa", true);
    let e = error_of(&SoftHsm::in_process().uri(TOKEN, "rsa-key"));
    assert_eq!(
        e,
        "object=rsa-key in token=rota-test is a key of type RSA, not an Ed25519 or P-256 key"
    );
}

#[test]
fn key_not_allowed_to_sign_is_refused() {
    foreign_key("derive-only", "ec", false);
    let e = error_of(&SoftHsm::in_process().uri(TOKEN, "derive-only"));
    assert_eq!(
        e,
        "object=derive-only in token=rota-test may not sign (its CKA_SIGN is false)"
    );
}

#[test]
fn key_file_stub_opens_the_key_in_the_token() {
    let _one_at_a_time = generating();
    let key = Pkcs11Key::generate(&uri("stubbed"), Algorithm::Ed25519).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("targets-1.key");
    rota_keys::KeyFile::write_stub(&path, &uri("stubbed")).unwrap();
    let opened = rota_keys::KeyFile::new(&path).open().unwrap();
    assert!(opened.is_in_token());
    assert_eq!(opened.public_key(), key.public_key());
    // A stub is never overwritten.
    assert!(rota_keys::KeyFile::write_stub(&path, &uri("stubbed")).is_err());
}

#[test]
fn a_key_pair_moves_between_labels_and_is_destroyed_from_the_token() {
    use rota_keys::pkcs11::{ObjectKind, destroy, objects, relabel};
    let _one_at_a_time = generating();
    let next = Pkcs11Key::generate(&uri("moved-next"), Algorithm::Ed25519).unwrap();
    // The key's URI names the id it was made with.
    let id = next
        .uri()
        .id
        .clone()
        .expect("the generated key's URI names its id");
    let listed = objects(&uri("moved-next")).unwrap();
    let mut kinds: Vec<_> = listed.iter().map(|o| o.class).collect();
    kinds.sort_by_key(|k| *k as u8);
    assert_eq!(kinds, [ObjectKind::PrivateKey, ObjectKind::PublicKey]);
    assert!(listed.iter().all(|o| o.label == "moved-next" && o.id == id));

    assert_eq!(relabel(&uri("moved-next"), "moved").unwrap(), 2);
    assert_eq!(relabel(&uri("moved-next"), "moved").unwrap(), 0);
    let moved = Pkcs11Key::open(&uri("moved")).unwrap();
    assert_eq!(moved.public_key(), next.public_key());

    assert_eq!(destroy(&uri("moved")).unwrap(), 2);
    assert_eq!(destroy(&uri("moved")).unwrap(), 0);
    assert!(objects(&uri("moved")).unwrap().is_empty());
    let e = error_of(&SoftHsm::in_process().uri(TOKEN, "moved"));
    assert!(e.contains("has no PKCS#11 private key object=moved"), "{e}");
}
