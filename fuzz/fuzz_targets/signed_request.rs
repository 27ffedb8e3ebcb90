//! Signed device requests (rota-protocol `auth`): the `Rota-*` headers as the server
//! parses them (`parse_headers`) and verifies them (`RequestVerifier::verify`).
//!
//! The input is split at `\n` into device, timestamp, nonce, signature, method, path and
//! body (the body keeps any further `\n`). First byte even: the four header values as
//! sent (a value that is not UTF-8 is absent, as the server's `to_str` makes it), verified
//! against a fixed device key. First byte odd: the harness signs method, path and body for
//! the device id with that key (timestamp from the second field, nonce from the input's
//! hash), and then:
//!
//! - the headers it sends parse back to exactly what was signed, whenever the device id
//!   is valid;
//! - the request verifies once when its timestamp is within the skew window, and its
//!   replay is refused (`Replayed`); outside the window it is `ClockSkew`;
//! - the same headers over another path, method or body are `BadSignature`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rota_protocol::auth::DEFAULT_MAX_SKEW_MS;
use rota_protocol::{
    AuthError, Nonce, RequestVerifier, Sign as _, SoftwareKey, parse_headers, sign_request,
};
use sha2::{Digest, Sha256};

/// 2030-01-01T00:00:00Z in milliseconds: the server's clock.
const NOW_MS: u64 = 1_893_456_000_000;

static DEVICE: LazyLock<SoftwareKey> =
    LazyLock::new(|| SoftwareKey::from_ed25519_seed([5; 32]));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(7, |&b| b == b'\n');
    let mut next = || fields.next().unwrap_or_default();
    let (device, timestamp, nonce, signature) = (next(), next(), next(), next());
    let (method, path, body) = (next(), next(), next());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (method, path) = (text(method), text(path));
    let verifier = RequestVerifier::new(DEFAULT_MAX_SKEW_MS, 16);
    let key = DEVICE.public_key();

    if mode & 1 == 0 {
        let values = [device, timestamp, nonce, signature].map(|v| std::str::from_utf8(v).ok());
        let names = [
            "Rota-Device",
            "Rota-Timestamp",
            "Rota-Nonce",
            "Rota-Signature",
        ];
        let get = |name: &str| {
            let i = names.iter().position(|n| n.eq_ignore_ascii_case(name))?;
            values[i]
        };
        if let Ok(headers) = parse_headers(get) {
            let _ = verifier.verify(&headers, &method, &path, body, &key, NOW_MS);
        }
        return;
    }

    let device = text(device);
    let timestamp_ms = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(NOW_MS);
    let digest = Sha256::digest(data);
    let nonce = Nonce::from_bytes(digest[..16].try_into().unwrap());
    let signed = sign_request(&*DEVICE, &device, &method, &path, body, timestamp_ms, nonce)
        .expect("Ed25519 signing cannot fail");
    let sent: Vec<(&str, String)> = signed.iter().collect();
    let get = |name: &str| {
        sent.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let parsed = match parse_headers(get) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(
                !rota_protocol::valid_device_id(&device),
                "headers of a valid device id are refused: {e}"
            );
            return;
        }
    };
    assert_eq!(parsed, signed, "the headers parse to another request");
    let in_window = NOW_MS.abs_diff(timestamp_ms) <= DEFAULT_MAX_SKEW_MS;
    let other_path = format!("{path}/");
    let tampered = [
        verifier.verify(&parsed, &method, &other_path, body, &key, NOW_MS),
        verifier.verify(&parsed, &format!("{method}X"), &path, body, &key, NOW_MS),
        verifier.verify(
            &parsed,
            &method,
            &path,
            &[body, b"x"].concat(),
            &key,
            NOW_MS,
        ),
    ];
    let first = verifier.verify(&parsed, &method, &path, body, &key, NOW_MS);
    let replay = verifier.verify(&parsed, &method, &path, body, &key, NOW_MS);
    if in_window {
        for result in tampered {
            assert_eq!(
                result,
                Err(AuthError::BadSignature),
                "a tampered request verified"
            );
        }
        assert_eq!(first, Ok(()), "a fresh signed request is refused");
        assert_eq!(replay, Err(AuthError::Replayed), "a replay is accepted");
    } else {
        assert!(
            matches!(first, Err(AuthError::ClockSkew { .. })),
            "{first:?}"
        );
        assert!(
            matches!(replay, Err(AuthError::ClockSkew { .. })),
            "{replay:?}"
        );
    }
});
