//! Arbitrary bytes as a SUIT envelope: decode under the default and the permissive
//! policy, exercise every accessor, authenticate with the RFC 8032 TEST 1 key, and
//! re-verify independently whatever is accepted (see common/mod.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::exercise(data);
});
