//! Ed25519 inputs that separate a strict verifier from a lax one, for the tests of
//! `CompactEd25519Verifier` (`compact_ed25519*.rs`). Each forgery below passes the
//! cofactorless equation `[S]B = R + [k]A` (so salty's own, lax, `verify` accepts it);
//! only the strict checks refuse it. Built with salty's curve arithmetic; the tests judge
//! them with ed25519-dalek, which is independent of it.
#![allow(dead_code)]

use salty::{CompressedY, EdwardsPoint, Scalar, Sha512};

/// The group order L, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// `a + b` as 256-bit little-endian integers (the carry out is dropped).
pub fn add_le(a: &[u8], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// The identity point's canonical encoding (y = 1).
pub const IDENTITY: [u8; 32] =
    hex_lit("0100000000000000000000000000000000000000000000000000000000000000");

/// The y coordinates of the eight points of small order (canonical, sign bit clear): the
/// identity, the point of order 2 (y = p - 1), the two of order 4 (y = 0) and the four of
/// order 8 (two y values, each with either sign).
pub const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    IDENTITY,
    hex_lit("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex_lit("0000000000000000000000000000000000000000000000000000000000000000"),
    hex_lit("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex_lit("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
];

/// A point of order 8 (the first order-8 y above, x positive).
pub const ORDER_8: [u8; 32] = SMALL_ORDER_Y[3];

pub const fn hex_lit<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        let hi = (b[2 * i] as char).to_digit(16).unwrap() as u8;
        let lo = (b[2 * i + 1] as char).to_digit(16).unwrap() as u8;
        out[i] = (hi << 4) | lo;
        i += 1;
    }
    out
}

/// Every 32-byte string that decodes (y taken mod p, as salty and ed25519-dalek do) to a
/// point of small order: 14 of them. Each small-order y with either sign bit (10; for
/// x = 0 the set sign bit is a non-canonical "negative zero"), and y + p with either
/// sign for the y below 19 that have one (y = 0 and y = 1: 4 more).
pub fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut all = Vec::new();
    for y in SMALL_ORDER_Y {
        let mut forms = vec![y];
        // y + p, little-endian (p = 2^255 - 19): only y < 19 has one below 2^255.
        if y[1..].iter().all(|&b| b == 0) && y[0] < 19 {
            let mut plus_p = [0xffu8; 32];
            plus_p[0] = 0xed + y[0];
            plus_p[31] = 0x7f;
            forms.push(plus_p);
        }
        for form in forms {
            for sign in [0u8, 0x80] {
                let mut e = form;
                e[31] |= sign;
                all.push(e);
            }
        }
    }
    all
}

fn point(encoding: &[u8; 32]) -> EdwardsPoint {
    CompressedY(*encoding)
        .decompressed()
        .expect("a curve point")
}

fn basepoint_times(s: &Scalar) -> EdwardsPoint {
    s * &EdwardsPoint::basepoint()
}

/// k = SHA-512(R || A || M) mod L.
fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    Scalar::from_u512_le(&Sha512::new().updated(r).updated(a).updated(msg).finalize())
}

fn signature(r: &[u8; 32], s: &Scalar) -> Vec<u8> {
    [&r[..], s.as_bytes()].concat()
}

/// A forgery under the small-order key `key`: R = [s]B, S = s, which satisfies the
/// equation whenever [k]A is the identity (always for A = identity; for k ≡ 0 modulo
/// the order of A otherwise). R is of large order, so only the key check refuses it.
pub fn small_order_key_forgery(key: [u8; 32], s: u64) -> ([u8; 32], Vec<u8>) {
    let s = Scalar::from(s);
    (key, signature(&basepoint_times(&s).compressed().0, &s))
}

/// A signature with R = identity by the key A = [secret]B: S = k·secret satisfies the
/// equation ([S]B = [k]A = identity + [k]A), so only the small-order-R check refuses it.
/// It needs the secret: a signer can make its signatures verify under several keys.
pub fn identity_r_signature(secret: u64, msg: &[u8]) -> ([u8; 32], Vec<u8>) {
    let a = Scalar::from(secret);
    let key = basepoint_times(&a).compressed().0;
    let k = challenge(&IDENTITY, &key, msg);
    (key, signature(&IDENTITY, &(&k * &a)))
}

/// A genuine signature by a *mixed-order* key A = [secret]B + T (T of order 8) with a
/// mixed-order R: valid under the cofactorless equation, and accepted by `verify_strict`,
/// which refuses only points of small order (not points outside the prime-order
/// subgroup). R = [r]B - [j]T for the j that equals k mod 8, found by trying nonces.
pub fn mixed_order_signature(secret: u64, nonce: u64, msg: &[u8]) -> ([u8; 32], Vec<u8>) {
    let a = Scalar::from(secret);
    let t = point(&ORDER_8);
    let key = (&basepoint_times(&a) + &t).compressed().0;
    for attempt in 0.. {
        let r = Scalar::from(nonce.wrapping_add(attempt));
        let j = attempt % 8;
        let minus_jt = -&(&Scalar::from(j) * &t);
        let big_r = (&basepoint_times(&r) + &minus_jt).compressed().0;
        let k = challenge(&big_r, &key, msg);
        // [k]T = [k mod 8]T: T has order 8.
        if u64::from(k.as_bytes()[0] & 7) == j {
            // [S]B = [r + k·a]B = R + [j]T + [k·a]B = R + [k]([a]B + T) = R + [k]A.
            let s = &r + &(&k * &a);
            return (key, signature(&big_r, &s));
        }
    }
    unreachable!()
}

/// The number of tests `wycheproof/ed25519_test.json` declares (and the vectors README
/// promises).
pub const WYCHEPROOF_TESTS: usize = 151;

/// One Wycheproof Ed25519 test case, decoded.
pub struct WycheproofCase {
    pub tc_id: u64,
    pub comment: String,
    pub key: [u8; 32],
    pub msg: Vec<u8>,
    pub sig: Vec<u8>,
    /// Wycheproof's verdict: `valid` (true) or `invalid` (false).
    pub valid: bool,
}

/// Every case of `../shared/vectors/wycheproof/ed25519_test.json`.
pub fn wycheproof_cases() -> Vec<WycheproofCase> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TestFile {
        number_of_tests: usize,
        test_groups: Vec<TestGroup>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TestGroup {
        public_key: Key,
        tests: Vec<TestCase>,
    }
    #[derive(serde::Deserialize)]
    struct Key {
        pk: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TestCase {
        tc_id: u64,
        comment: String,
        msg: String,
        sig: String,
        result: String,
    }

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/wycheproof/ed25519_test.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: TestFile = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(file.number_of_tests, WYCHEPROOF_TESTS);
    let mut cases = Vec::new();
    for group in file.test_groups {
        let key: [u8; 32] = hex::decode(&group.public_key.pk)
            .unwrap()
            .try_into()
            .unwrap();
        for case in group.tests {
            cases.push(WycheproofCase {
                tc_id: case.tc_id,
                comment: case.comment,
                key,
                msg: hex::decode(&case.msg).unwrap(),
                sig: hex::decode(&case.sig).unwrap(),
                valid: match case.result.as_str() {
                    "valid" => true,
                    "invalid" => false,
                    other => panic!("tcId {}: unexpected result {other:?}", case.tc_id),
                },
            });
        }
    }
    assert_eq!(cases.len(), WYCHEPROOF_TESTS);
    cases
}
