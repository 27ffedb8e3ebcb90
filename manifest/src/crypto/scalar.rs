//! Ed25519's scalars mod L = 2^252 + 27742317777372353535851937790883648493, in a few
//! hundred bytes of code: TweetNaCl's `modL` (Bernstein et al., `tweetnacl.c`), shared by
//! [`super::CompactEd25519Verifier`] (its `k = SHA-512(R ‖ A ‖ M) mod L`) and rota-boot's
//! DICE signing (`r`, `k` and `S = (k·a + r) mod L`).
//!
//! Why not salty's `Scalar::from_u512_le`: with its Montgomery multiplication on 29-bit
//! limbs it is ~2.7 KB of the Cortex-M4 bootloader's flash, this ~0.5 KB (the QEMU
//! bootloader: 23,912 -> 21,696 bytes). The result is the same canonical
//! integer in `[0, L)` (tests: `manifest/tests/ed25519_scalar.rs`, against salty and
//! curve25519-dalek), so verdicts are unchanged: the verifier's `k` multiplies `A`, which
//! may carry a small-order component, and only the canonical `k` gives strict Ed25519's
//! (and ed25519-dalek's) answer.
//!
//! The integer is held as 64 signed 64-bit limbs of 8 bits each (limb `i` weighs 2^(8i)),
//! which leaves room for the column sums of a 256 × 256-bit product (each < 2^21). The
//! arithmetic is branch-free and indexes nothing by the value, and the limbs are wiped
//! before returning: in signing they hold secrets.

use zeroize::Zeroize;

/// L in 8-bit limbs, least significant first.
const L: [i64; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A 512-bit little-endian integer mod L, as 32 little-endian bytes (RFC 8032's
/// "interpret the 64-octet digest as a little-endian integer, reduce mod L").
pub fn reduce_wide(wide: &[u8; 64]) -> [u8; 32] {
    let mut limbs = [0i64; 64];
    for (limb, &byte) in limbs.iter_mut().zip(wide) {
        *limb = i64::from(byte);
    }
    mod_l(&mut limbs)
}

/// `(a·b + c) mod L` of 256-bit little-endian integers (an Ed25519 signature's
/// `S = (k·a + r) mod L`, RFC 8032 §5.1.6 step 6): the product in column sums, reduced
/// once.
pub fn mul_add(a: &[u8; 32], b: &[u8; 32], c: &[u8; 32]) -> [u8; 32] {
    let mut limbs = [0i64; 64];
    for (limb, &byte) in limbs.iter_mut().zip(c) {
        *limb = i64::from(byte);
    }
    for (i, &a) in a.iter().enumerate() {
        for (limb, &b) in limbs[i..].iter_mut().zip(b) {
            *limb += i64::from(a) * i64::from(b);
        }
    }
    mod_l(&mut limbs)
}

/// TweetNaCl's `modL`: `limbs` (each in `[0, 2^21)`) mod L as bytes; wipes `limbs`.
fn mod_l(x: &mut [i64; 64]) -> [u8; 32] {
    // Fold limbs 63..32 down: 2^(8i) = 2^(8(i-32)) · 16 · 2^252, and 2^252 ≡ -(L - 2^252)
    // mod L, whose bytes are L's first 16 (and zeros), so limb i is subtracted as
    // 16·x[i]·L from the 20 limbs at i - 32, carried (rounding to nearest) as it goes.
    for i in (32..64).rev() {
        let top = core::mem::take(&mut x[i]);
        let mut carry = 0;
        for (j, l) in L[..20].iter().enumerate() {
            let limb = &mut x[i - 32 + j];
            *limb += carry - 16 * top * l;
            carry = (*limb + 128) >> 8;
            *limb -= carry << 8;
        }
        x[i - 12] += carry;
    }
    // Now below 2^256 in magnitude: take out the multiple of L that bits 252 and up
    // name, then one more L if the carry says so.
    let top = x[31] >> 4;
    let mut carry = 0;
    for (limb, l) in x.iter_mut().zip(&L) {
        *limb += carry - top * l;
        carry = *limb >> 8;
        *limb &= 0xff;
    }
    for (limb, l) in x.iter_mut().zip(&L) {
        *limb -= carry * l;
    }
    let mut out = [0u8; 32];
    for i in 0..32 {
        x[i + 1] += x[i] >> 8;
        out[i] = x[i] as u8;
    }
    x.zeroize();
    out
}
