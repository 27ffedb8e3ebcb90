//! Signed device requests: authentic requests pass once; changed, stale, replayed and
//! malformed ones do not; the replay cache stays bounded.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use rota_protocol::auth::{
    DEFAULT_MAX_SKEW_MS, DEVICE_HEADER, NONCE_HEADER, ReplayCache, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, signed_message,
};
use rota_protocol::{
    AuthError, Nonce, PublicKey, RequestVerifier, Sign, SignError, SignedHeaders, parse_headers,
};
use support::{device_key, key};

const NOW: u64 = 1_700_000_000_000;
const DEVICE: &str = "sensor-0001";
const PATH: &str = "/api/v1/device/report";
const BODY: &[u8] =
    br#"{"event_id":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"confirmed","version":3}"#;

fn nonce(n: u8) -> Nonce {
    Nonce::from_bytes([n; 16])
}

fn signed(nonce_byte: u8) -> SignedHeaders {
    sign_request(
        &device_key(),
        DEVICE,
        "POST",
        PATH,
        BODY,
        NOW,
        nonce(nonce_byte),
    )
}

/// The headers as a server would receive them.
fn on_the_wire(headers: &SignedHeaders) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

fn parse(wire: &HashMap<String, String>) -> Result<SignedHeaders, AuthError> {
    parse_headers(|name| wire.get(&name.to_ascii_lowercase()).map(String::as_str))
}

fn verify(verifier: &RequestVerifier, headers: &SignedHeaders) -> Result<(), AuthError> {
    verifier.verify(headers, "POST", PATH, BODY, &device_key().public_key(), NOW)
}

#[test]
fn signed_request_round_trips_through_its_headers() {
    let headers = signed(1);
    let wire = on_the_wire(&headers);
    assert_eq!(wire["rota-device"], DEVICE);
    assert_eq!(wire["rota-timestamp"], NOW.to_string());
    assert_eq!(wire["rota-nonce"], "01".repeat(16));
    assert_eq!(wire["rota-signature"].len(), 88);
    let parsed = parse(&wire).unwrap();
    assert_eq!(parsed, headers);
    assert_eq!(verify(&RequestVerifier::default(), &parsed), Ok(()));
}

#[test]
fn header_names_are_the_documented_ones() {
    let names: Vec<&str> = signed(1).iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "Rota-Device",
            "Rota-Timestamp",
            "Rota-Nonce",
            "Rota-Signature"
        ]
    );
    assert_eq!(
        [
            DEVICE_HEADER,
            TIMESTAMP_HEADER,
            NONCE_HEADER,
            SIGNATURE_HEADER
        ],
        names[..]
    );
}

#[test]
fn signed_message_is_the_documented_text() {
    let message = signed_message("GET", "/p?q=1", 42, &nonce(0xab), b"");
    assert_eq!(
        message,
        "rota-request-v1\nGET\n/p?q=1\n42\nabababababababababababababababab\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let headers = sign_request(&device_key(), DEVICE, "GET", "/p?q=1", b"", 42, nonce(0xab));
    assert!(
        device_key()
            .public_key()
            .verify(message.as_bytes(), &headers.signature)
            .is_ok()
    );
}

/// [`rota_protocol::sign_request`] with a key that cannot fail.
fn sign_request(
    key: &dyn Sign,
    device_id: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
    nonce: Nonce,
) -> SignedHeaders {
    rota_protocol::sign_request(key, device_id, method, path_and_query, body, now_ms, nonce)
        .unwrap()
}

#[test]
fn key_held_elsewhere_signs_the_same_request() {
    // A secure element only needs to "sign these bytes": any `Sign`.
    struct Element {
        inner: rota_protocol::SoftwareKey,
        locked: bool,
    }
    impl Sign for Element {
        fn public_key(&self) -> PublicKey {
            self.inner.public_key()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
            if self.locked {
                return Err(SignError::KeyUnavailable("the element is locked".into()));
            }
            self.inner.sign(message)
        }
    }
    let element = Element {
        inner: device_key(),
        locked: false,
    };
    let headers = sign_request(&element, DEVICE, "POST", PATH, BODY, NOW, nonce(1));
    assert_eq!(headers, signed(1));
    let locked = Element {
        inner: device_key(),
        locked: true,
    };
    let failed = rota_protocol::sign_request(&locked, DEVICE, "POST", PATH, BODY, NOW, nonce(1));
    assert!(matches!(failed, Err(SignError::KeyUnavailable(_))));
}

/// A P-256 device identity (a TPM or secure element without Ed25519) signs requests the
/// verifier accepts, and a changed body is refused as with Ed25519.
#[test]
fn p256_device_key_signs_requests_the_verifier_accepts() {
    let key = rota_protocol::SoftwareKey::generate(rota_keys::Algorithm::EcdsaP256Sha256).unwrap();
    let verifier = RequestVerifier::default();
    let headers = sign_request(&key, DEVICE, "POST", PATH, BODY, NOW, nonce(1));
    assert_eq!(
        verifier.verify(&headers, "POST", PATH, b"{}", &key.public_key(), NOW),
        Err(AuthError::BadSignature)
    );
    assert_eq!(
        verifier.verify(&headers, "POST", PATH, BODY, &key.public_key(), NOW),
        Ok(())
    );
}

#[test]
fn rejects_request_whose_method_path_query_or_body_changed() {
    let verifier = RequestVerifier::default();
    let headers = signed(1);
    let key = device_key().public_key();
    let cases: [(&str, &str, &[u8]); 5] = [
        ("PUT", PATH, BODY),
        ("post", PATH, BODY),
        ("POST", "/api/v1/device/enroll", BODY),
        ("POST", "/api/v1/device/report?x=1", BODY),
        ("POST", PATH, b"{}"),
    ];
    for (method, path, body) in cases {
        assert_eq!(
            verifier.verify(&headers, method, path, body, &key, NOW),
            Err(AuthError::BadSignature),
            "{method} {path}"
        );
    }
    // The failures recorded nothing: the authentic request still passes.
    assert_eq!(verify(&verifier, &headers), Ok(()));
}

#[test]
fn rejects_request_whose_timestamp_or_nonce_changed() {
    let verifier = RequestVerifier::default();
    let mut later = signed(1);
    later.timestamp_ms += 1;
    assert_eq!(verify(&verifier, &later), Err(AuthError::BadSignature));
    let mut other_nonce = signed(1);
    other_nonce.nonce = nonce(2);
    assert_eq!(
        verify(&verifier, &other_nonce),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn rejects_request_signed_by_another_device_key() {
    let verifier = RequestVerifier::default();
    let forged = sign_request(&key(0x66), DEVICE, "POST", PATH, BODY, NOW, nonce(1));
    assert_eq!(verify(&verifier, &forged), Err(AuthError::BadSignature));
}

#[test]
fn rejects_timestamp_outside_the_skew_window() {
    let verifier = RequestVerifier::default();
    let key = device_key().public_key();
    let at = |ts: u64, n: u8| sign_request(&device_key(), DEVICE, "POST", PATH, BODY, ts, nonce(n));
    let skew = DEFAULT_MAX_SKEW_MS;
    let error = AuthError::ClockSkew { max_skew_ms: skew };
    let refused = Err(error.clone());
    assert_eq!(
        verifier.verify(&at(NOW - skew - 1, 1), "POST", PATH, BODY, &key, NOW),
        refused
    );
    assert_eq!(
        verifier.verify(&at(NOW + skew + 1, 2), "POST", PATH, BODY, &key, NOW),
        refused
    );
    assert_eq!(
        verifier.verify(&at(NOW - skew, 3), "POST", PATH, BODY, &key, NOW),
        Ok(())
    );
    assert_eq!(
        verifier.verify(&at(NOW + skew, 4), "POST", PATH, BODY, &key, NOW),
        Ok(())
    );
    assert_eq!(
        error.to_string(),
        "the request timestamp is more than 300 seconds away from the server's clock"
    );
}

#[test]
fn custom_skew_window_applies() {
    let verifier = RequestVerifier::new(1_000, 1024);
    let late = sign_request(
        &device_key(),
        DEVICE,
        "POST",
        PATH,
        BODY,
        NOW - 1_001,
        nonce(1),
    );
    assert_eq!(
        verify(&verifier, &late),
        Err(AuthError::ClockSkew { max_skew_ms: 1_000 })
    );
}

#[test]
fn rejects_replayed_nonce() {
    let verifier = RequestVerifier::default();
    let headers = signed(1);
    assert_eq!(verify(&verifier, &headers), Ok(()));
    assert_eq!(verify(&verifier, &headers), Err(AuthError::Replayed));
    // The same nonce with another body is a new signature, but still a replay of the nonce.
    let again = sign_request(&device_key(), DEVICE, "POST", PATH, b"{}", NOW, nonce(1));
    assert_eq!(
        verifier.verify(&again, "POST", PATH, b"{}", &device_key().public_key(), NOW),
        Err(AuthError::Replayed)
    );
    assert_eq!(verify(&verifier, &signed(2)), Ok(()));
}

#[test]
fn nonces_are_per_device() {
    let verifier = RequestVerifier::default();
    let other_key = key(0x77);
    assert_eq!(verify(&verifier, &signed(1)), Ok(()));
    let other = sign_request(&other_key, "sensor-0002", "POST", PATH, BODY, NOW, nonce(1));
    assert_eq!(
        verifier.verify(&other, "POST", PATH, BODY, &other_key.public_key(), NOW),
        Ok(())
    );
}

#[test]
fn forged_request_does_not_spend_the_devices_nonce() {
    let verifier = RequestVerifier::default();
    let forged = sign_request(&key(0x66), DEVICE, "POST", PATH, BODY, NOW, nonce(1));
    assert_eq!(verify(&verifier, &forged), Err(AuthError::BadSignature));
    assert!(verifier.replay_cache().is_empty());
    assert_eq!(verify(&verifier, &signed(1)), Ok(()));
}

#[test]
fn rejects_each_missing_header() {
    let wire = on_the_wire(&signed(1));
    for name in [
        DEVICE_HEADER,
        TIMESTAMP_HEADER,
        NONCE_HEADER,
        SIGNATURE_HEADER,
    ] {
        let mut without = wire.clone();
        without.remove(&name.to_ascii_lowercase());
        assert_eq!(parse(&without), Err(AuthError::MissingHeader(name)));
    }
}

#[test]
fn rejects_malformed_headers() {
    let wire = on_the_wire(&signed(1));
    let signature = wire["rota-signature"].clone();
    let cases: Vec<(&str, String, AuthError)> = vec![
        ("rota-device", String::new(), AuthError::InvalidDeviceId),
        ("rota-device", "a b".into(), AuthError::InvalidDeviceId),
        ("rota-device", "x".repeat(65), AuthError::InvalidDeviceId),
        ("rota-timestamp", String::new(), AuthError::InvalidTimestamp),
        (
            "rota-timestamp",
            format!("0{NOW}"),
            AuthError::InvalidTimestamp,
        ),
        (
            "rota-timestamp",
            format!("+{NOW}"),
            AuthError::InvalidTimestamp,
        ),
        (
            "rota-timestamp",
            format!("{NOW}.0"),
            AuthError::InvalidTimestamp,
        ),
        (
            "rota-timestamp",
            "99999999999999999999".into(),
            AuthError::InvalidTimestamp,
        ),
        ("rota-nonce", "01".repeat(15), AuthError::InvalidNonce),
        ("rota-nonce", "01".repeat(17), AuthError::InvalidNonce),
        ("rota-nonce", "AB".repeat(16), AuthError::InvalidNonce),
        ("rota-nonce", "zz".repeat(16), AuthError::InvalidNonce),
        (
            "rota-nonce",
            format!(" {}", "01".repeat(16)),
            AuthError::InvalidNonce,
        ),
        (
            "rota-signature",
            "not base64!".into(),
            AuthError::InvalidSignatureEncoding,
        ),
        (
            "rota-signature",
            signature.trim_end_matches('=').into(),
            AuthError::InvalidSignatureEncoding,
        ),
        (
            "rota-signature",
            signature[4..].into(),
            AuthError::InvalidSignatureEncoding,
        ),
        (
            "rota-signature",
            format!("{signature}AAAA"),
            AuthError::InvalidSignatureEncoding,
        ),
        (
            "rota-signature",
            signature.replace(['+', '/'], "-"),
            AuthError::InvalidSignatureEncoding,
        ),
        (
            "rota-signature",
            String::new(),
            AuthError::InvalidSignatureEncoding,
        ),
    ];
    for (name, value, expected) in cases {
        let mut bad = wire.clone();
        bad.insert(name.into(), value.clone());
        if bad == wire {
            continue; // the signature had no + or / to replace
        }
        assert_eq!(parse(&bad), Err(expected), "{name}: {value:?}");
    }
}

#[test]
fn every_error_is_one_plain_sentence() {
    let errors = [
        AuthError::MissingHeader(NONCE_HEADER),
        AuthError::InvalidDeviceId,
        AuthError::InvalidTimestamp,
        AuthError::InvalidNonce,
        AuthError::InvalidSignatureEncoding,
        AuthError::ClockSkew {
            max_skew_ms: 300_000,
        },
        AuthError::Replayed,
        AuthError::BadSignature,
    ];
    for e in errors {
        let text = e.to_string();
        assert!(text.starts_with("the "), "{text}");
        assert!(!text.ends_with('.') && !text.contains('\n'), "{text}");
    }
}

#[test]
fn random_nonces_differ_and_print_as_32_hex_characters() {
    let a = Nonce::random().unwrap();
    let b = Nonce::random().unwrap();
    assert_ne!(a, b);
    let text = a.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(text.parse::<Nonce>(), Ok(a));
}

#[test]
fn replay_cache_stays_bounded_under_a_flood_of_distinct_nonces() {
    let cache = ReplayCache::new(4096);
    let expires = NOW + DEFAULT_MAX_SKEW_MS;
    for i in 0u128..100_000 {
        let n = Nonce::from_bytes(i.to_be_bytes());
        assert!(cache.insert(DEVICE, &n, NOW, expires));
        assert!(cache.len() <= cache.capacity());
    }
    assert_eq!(cache.capacity(), 4096);
    assert_eq!(cache.len(), 4096);
    assert_eq!(cache.forced_evictions(), 100_000 - 4096);
}

#[test]
fn replay_cache_drops_expired_entries_before_evicting_live_ones() {
    let cache = ReplayCache::new(4096);
    // Requests spread over time, each remembered for one skew window: the cache holds
    // about one window's worth and never has to drop a live entry.
    let window = 1_000;
    for i in 0u64..100_000 {
        let now = NOW + i * 10; // 100 per window
        let n = Nonce::from_bytes(u128::from(i).to_be_bytes());
        assert!(cache.insert(DEVICE, &n, now, now + window));
    }
    assert_eq!(cache.forced_evictions(), 0);
    assert!(cache.len() < 500, "{}", cache.len());
}

#[test]
fn verifier_replay_cache_is_bounded_through_verify() {
    let verifier = RequestVerifier::new(DEFAULT_MAX_SKEW_MS, 64);
    let key = device_key().public_key();
    for i in 0u128..500 {
        let headers = sign_request(
            &device_key(),
            DEVICE,
            "GET",
            "/",
            b"",
            NOW,
            Nonce::from_bytes(i.to_be_bytes()),
        );
        assert_eq!(
            verifier.verify(&headers, "GET", "/", b"", &key, NOW),
            Ok(())
        );
    }
    assert_eq!(verifier.replay_cache().len(), 64);
}

#[test]
fn replay_cache_admits_a_nonce_once_across_threads() {
    let cache = Arc::new(ReplayCache::new(1024));
    for round in 0u8..20 {
        let n = nonce(round);
        let accepted: usize = (0..8)
            .map(|_| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || cache.insert(DEVICE, &n, NOW, NOW + 1))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(accepted, 1, "round {round}");
    }
}
