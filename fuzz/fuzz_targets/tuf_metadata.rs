//! rota-tuf's strict JSON and metadata parsers on arbitrary bytes.
//!
//! - `parse_strict` never panics, and whatever it accepts serde_json accepts as the same
//!   value (it differs only by refusing duplicate keys);
//! - canonical JSON is a fixed point: the canonical form of a value, when it is JSON at
//!   all (raw control characters are not), parses back to the same canonical form;
//! - the envelope and typed view of each top-level role never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rota_tuf::json;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = json::parse_strict(data) {
        let loose: serde_json::Value =
            serde_json::from_slice(data).expect("serde_json accepts what parse_strict accepts");
        assert_eq!(
            value.to_serde(),
            loose,
            "parse_strict and serde_json read different values"
        );
        if let Ok(canonical) = json::canonical(&value) {
            if let Ok(again) = json::canonical_bytes(&canonical) {
                assert_eq!(again, canonical, "canonical JSON is not a fixed point");
            }
        }
    }
    let _ = rota_tuf::fuzzing::parse_roles(data);
});
