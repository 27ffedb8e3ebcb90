//! The request bodies and queries rota-server decodes (rota-protocol `api`), decoded as
//! the server decodes them: JSON bodies with `serde_json::from_slice` (axum's `Json`
//! extractor), the check-in query with `serde_urlencoded` (axum's `Query`).
//!
//! The first byte picks the type. Decoding never panics; nor do the checks the server runs
//! next (`validate`, `Selector::matches`, `DeviceState::can_transition`). Whatever decodes
//! encodes and decodes again to the same value (inputs are strict, so a value has one
//! meaning), and its `validate` verdict survives the round trip.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use rota_protocol::api::{
    CheckInQuery, DeviceRegister, DeviceState, DeviceStateChange, Enroll, Report, RolloutCreate,
    Selector, TokenCreate,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` as `T`; what decodes must round-trip through JSON unchanged.
fn json<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let encoded = serde_json::to_vec(&value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&encoded).expect("an encoded value decodes");
    assert_eq!(
        again,
        value,
        "changed in a JSON round trip: {}",
        String::from_utf8_lossy(&encoded)
    );
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Some(report) = json::<Report>(rest) {
                let _ = report.validate();
            }
        }
        1 => {
            let _ = json::<Enroll>(rest);
        }
        2 => {
            if let Some(token) = json::<TokenCreate>(rest) {
                let _ = token.validate();
            }
        }
        3 => {
            if let Some(register) = json::<DeviceRegister>(rest) {
                let _ = register.certificate.claims_unverified();
            }
        }
        4 => {
            if let Some(change) = json::<DeviceStateChange>(rest) {
                for from in [
                    DeviceState::Provisioned,
                    DeviceState::Active,
                    DeviceState::Suspended,
                    DeviceState::Decommissioned,
                ] {
                    let _ = DeviceState::can_transition(from, change.state);
                }
            }
        }
        5 => {
            // Floats may move by an ulp through serde_json's default parser, so the
            // rollout is compared by its verdict rather than exactly.
            let Ok(rollout) = serde_json::from_slice::<RolloutCreate>(rest) else {
                return;
            };
            let verdict = rollout.validate();
            let encoded = serde_json::to_vec(&rollout).expect("a decoded rollout encodes");
            let again: RolloutCreate =
                serde_json::from_slice(&encoded).expect("an encoded rollout decodes");
            assert_eq!(again.validate().is_ok(), verdict.is_ok(), "{verdict:?}");
        }
        6 => {
            if let Some(selector) = json::<Selector>(rest) {
                let tags = selector.tags.clone();
                let version = selector.versions.first().copied();
                assert!(
                    selector.matches(&selector.class_id, &tags, version),
                    "a selector does not select the device it describes"
                );
            }
        }
        _ => {
            let Ok(query) = serde_urlencoded::from_bytes::<CheckInQuery>(rest) else {
                return;
            };
            let text = query.to_query_string();
            let again: CheckInQuery =
                serde_urlencoded::from_str(&text).expect("the device's query decodes");
            assert_eq!(again, query, "the check-in query changed: {text}");
            assert_eq!(
                query.path_and_query(),
                format!("{}?{text}", rota_protocol::api::CHECKIN_PATH)
            );
        }
    }
});
