//! Ed25519 vectors through both of rota-manifest's verifiers on the Cortex-M4: the
//! default `Ed25519Verifier` (ed25519-dalek) and `CompactEd25519Verifier` (salty), whose
//! field arithmetic is Cortex-M4 assembly here (UMAAL) and portable Rust on the host, so
//! its host tests do not cover the code the bootloader runs. Run by
//! `manifest/tests/compact_ed25519_qemu.rs`.
//!
//! Input: the host file `vectors.bin` (all integers little-endian):
//!
//! ```text
//! count u32, then count records of:
//!   key [32] | sig_len u32 | sig [sig_len] | msg_len u32 | msg [msg_len] | expected u8
//! ```
//!
//! `expected` is 1 when the signature is valid, 0 when it is not. A vector *agrees* when
//! both verifiers return the same result (verdict and error) and that verdict is the
//! expected one. Prints each disagreement, then
//! `vectors: N checked, A agree (V valid, I invalid), D disagree`, and exits 0 only when
//! every vector agrees.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use rota_manifest::{CompactEd25519Verifier, Ed25519Verifier, Error};
use rota_qemu_board::{console, host};

/// Longest signature and message a record may hold (Wycheproof's longest message is
/// 1023 bytes).
const SIG_MAX: usize = 128;
const MSG_MAX: usize = 2048;

fn fail(why: &[u8]) -> ! {
    console::line(&[b"vectors: ", why]);
    console::exit(false)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(b"panic")
}

/// The next `buf.len()` bytes of the file.
fn read(file: usize, buf: &mut [u8]) {
    if host::read(file, buf).is_err() {
        fail(b"vectors.bin is truncated");
    }
}

fn read_u32(file: usize) -> usize {
    let mut n = [0u8; 4];
    read(file, &mut n);
    u32::from_le_bytes(n) as usize
}

/// A result in a word, for the disagreement lines.
fn describe(result: &Result<(), Error>) -> &'static [u8] {
    match result {
        Ok(()) => b"valid",
        Err(Error::BadSignature) => b"BadSignature",
        Err(Error::InvalidPublicKey) => b"InvalidPublicKey",
        Err(_) => b"another error",
    }
}

#[entry]
fn main() -> ! {
    let Ok(file) = host::open(b"vectors.bin\0") else {
        fail(b"missing vectors.bin")
    };
    let total = host::len(file).unwrap_or(0);
    let count = read_u32(file);
    let mut consumed = 4;
    let (mut agree, mut valid, mut invalid, mut disagree) = (0u64, 0u64, 0u64, 0u64);
    let mut key = [0u8; 32];
    let mut sig = [0u8; SIG_MAX];
    let mut msg = [0u8; MSG_MAX];
    for index in 0..count {
        read(file, &mut key);
        let sig_len = read_u32(file);
        if sig_len > SIG_MAX {
            fail(b"a signature is too long for the runner");
        }
        read(file, &mut sig[..sig_len]);
        let msg_len = read_u32(file);
        if msg_len > MSG_MAX {
            fail(b"a message is too long for the runner");
        }
        read(file, &mut msg[..msg_len]);
        let mut expected = [0u8];
        read(file, &mut expected);
        consumed += 32 + 4 + sig_len + 4 + msg_len + 1;

        let (sig, msg) = (&sig[..sig_len], &msg[..msg_len]);
        let default = Ed25519Verifier::verify_raw(&key, msg, sig);
        let compact = CompactEd25519Verifier::verify_raw(&key, msg, sig);
        if compact == default && default.is_ok() == (expected[0] == 1) {
            agree += 1;
            if default.is_ok() {
                valid += 1;
            } else {
                invalid += 1;
            }
        } else {
            disagree += 1;
            let mut n = [0; 20];
            console::line(&[
                b"vectors: #",
                console::decimal(index as u64, &mut n),
                b" disagrees: expected ",
                if expected[0] == 1 {
                    b"valid"
                } else {
                    b"invalid"
                },
                b", ed25519-dalek ",
                describe(&default),
                b", salty ",
                describe(&compact),
            ]);
        }
    }
    host::close(file);
    if consumed != total {
        fail(b"vectors.bin has bytes after its last record");
    }
    let (mut a, mut b, mut c, mut d, mut e) = ([0; 20], [0; 20], [0; 20], [0; 20], [0; 20]);
    console::line(&[
        b"vectors: ",
        console::decimal(count as u64, &mut a),
        b" checked, ",
        console::decimal(agree, &mut b),
        b" agree (",
        console::decimal(valid, &mut c),
        b" valid, ",
        console::decimal(invalid, &mut d),
        b" invalid), ",
        console::decimal(disagree, &mut e),
        b" disagree",
    ]);
    console::exit(disagree == 0)
}
