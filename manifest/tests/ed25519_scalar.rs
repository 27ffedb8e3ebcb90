//! `crypto::scalar`, the reduction mod L under the compact Ed25519 verifier and rota-boot's
//! DICE signing, gives exactly curve25519-dalek's (and salty's) canonical result: on
//! random integers, on multiples of L and their neighbours, and on the extremes. A
//! reduction off by one L would change the verifier's verdicts on keys with a
//! small-order component, and make signatures with S ≥ L.

use curve25519_dalek::Scalar;
use proptest::prelude::*;
use rota_manifest::crypto::scalar::{mul_add, reduce_wide};

/// L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn dalek_wide(wide: &[u8; 64]) -> [u8; 32] {
    Scalar::from_bytes_mod_order_wide(wide).to_bytes()
}

/// `k·L + offset` as a 512-bit little-endian integer, wrapping (the tests keep it in range).
fn multiple_of_l(k: &[u8; 32], offset: i64) -> [u8; 64] {
    let mut columns = [0i128; 65];
    for (i, &a) in k.iter().enumerate() {
        for (j, &b) in L.iter().enumerate() {
            columns[i + j] += i128::from(a) * i128::from(b);
        }
    }
    columns[0] += i128::from(offset);
    let mut out = [0u8; 64];
    let mut carry = 0i128;
    for (byte, column) in out.iter_mut().zip(columns) {
        carry += column;
        *byte = carry.rem_euclid(256) as u8;
        carry = carry.div_euclid(256);
    }
    out
}

/// `w + delta`, a 512-bit little-endian integer, wrapping.
fn plus(w: &[u8; 64], delta: i64) -> [u8; 64] {
    let mut out = *w;
    let mut carry = i128::from(delta);
    for byte in out.iter_mut() {
        carry += i128::from(*byte);
        *byte = carry.rem_euclid(256) as u8;
        carry = carry.div_euclid(256);
    }
    out
}

fn assert_reduces_like_dalek(wide: &[u8; 64]) {
    let ours = reduce_wide(wide);
    assert_eq!(ours, dalek_wide(wide), "input {wide:02x?}");
    // Canonical: below L.
    assert!(ours.iter().rev().lt(L.iter().rev()));
    #[cfg(feature = "compact-ed25519")]
    assert_eq!(ours, salty::Scalar::from_u512_le(wide).0);
}

#[test]
fn reduces_the_extremes_and_the_multiples_of_l_exactly() {
    let mut cases: Vec<[u8; 64]> = vec![[0; 64], [0xff; 64]];
    let mut one = [0u8; 64];
    one[0] = 1;
    cases.push(one);
    // Every power of two, and every power of two minus one.
    for bit in 0..512 {
        let mut power = [0u8; 64];
        power[bit / 8] = 1 << (bit % 8);
        cases.push(power);
        let mut below = [0u8; 64];
        for b in 0..bit {
            below[b / 8] |= 1 << (b % 8);
        }
        cases.push(below);
    }
    // One byte 0xff at every position.
    for at in 0..64 {
        let mut w = [0u8; 64];
        w[at] = 0xff;
        cases.push(w);
    }
    // L - 1, L, L + 1, 2L - 1, 2L, 2L + 1, …, and the largest multiples below 2^512.
    let mut ks: Vec<[u8; 32]> = Vec::new();
    for small in [1u8, 2, 3, 8, 15, 16, 17, 255] {
        let mut k = [0u8; 32];
        k[0] = small;
        ks.push(k);
    }
    // The largest k here: (2^256 - 1)·L < 2^509.
    ks.push([0xff; 32]);
    let mut k = [0xff; 32];
    k[31] = 0x7f;
    ks.push(k);
    for k in &ks {
        for offset in [-1i64, 0, 1, -255, 255, -65536, 65536] {
            cases.push(multiple_of_l(k, offset));
        }
    }
    // The largest multiple of L below 2^512, (2^512 - 1) - ((2^512 - 1) mod L), and its
    // neighbours.
    let rest = dalek_wide(&[0xff; 64]);
    let mut largest = [0xffu8; 64];
    let mut borrow = 0i16;
    for (i, byte) in largest.iter_mut().enumerate() {
        let v = i16::from(*byte) - i16::from(rest.get(i).copied().unwrap_or(0)) - borrow;
        *byte = v.rem_euclid(256) as u8;
        borrow = i16::from(v < 0);
    }
    assert_eq!(dalek_wide(&largest), [0; 32]);
    for delta in [-1, 0, 1] {
        cases.push(plus(&largest, delta));
    }
    for wide in &cases {
        assert_reduces_like_dalek(wide);
    }
}

#[test]
fn mul_add_of_the_extremes_is_dalek_s() {
    let mut l_minus_1 = L;
    l_minus_1[0] -= 1;
    let mut clamped_max = [0xffu8; 32];
    clamped_max[0] &= 248;
    clamped_max[31] &= 127;
    let mut one = [0u8; 32];
    one[0] = 1;
    let values = [[0u8; 32], one, [0xff; 32], L, l_minus_1, clamped_max];
    for a in &values {
        for b in &values {
            for c in &values {
                assert_mul_adds_like_dalek(a, b, c);
            }
        }
    }
}

fn assert_mul_adds_like_dalek(a: &[u8; 32], b: &[u8; 32], c: &[u8; 32]) {
    let s = |x: &[u8; 32]| Scalar::from_bytes_mod_order(*x);
    let expected = (s(a) * s(b) + s(c)).to_bytes();
    assert_eq!(mul_add(a, b, c), expected, "{a:02x?} · {b:02x?} + {c:02x?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn reduces_any_512_bit_integer_like_dalek(
        low in any::<[u8; 32]>(),
        high in any::<[u8; 32]>(),
    ) {
        let mut wide = [0u8; 64];
        wide[..32].copy_from_slice(&low);
        wide[32..].copy_from_slice(&high);
        assert_reduces_like_dalek(&wide);
    }

    #[test]
    fn reduces_the_neighbours_of_any_multiple_of_l_like_dalek(
        k in any::<[u8; 32]>(),
        offset in -70_000i64..70_000,
    ) {
        // k·L + offset < 2^256 · 2^253 + 2^17 < 2^512; below 0 only for k = 0.
        prop_assume!(k != [0; 32] || offset >= 0);
        assert_reduces_like_dalek(&multiple_of_l(&k, offset));
    }

    #[test]
    fn mul_add_is_dalek_s(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
        assert_mul_adds_like_dalek(&a, &b, &c);
    }
}
