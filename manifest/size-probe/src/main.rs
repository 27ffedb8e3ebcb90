//! Size probe: rota-manifest's no_std decode-and-verify path, linked for a Cortex-M4
//! the way the bootloader links it, so that `llvm-size` shows what it costs.
//!
//! The verification is the bootloader's, step for step:
//! `Envelope::decode` → `authenticate` against one Ed25519 anchor with
//! `Ed25519Verifier` → `claims(0, None)` → the image streamed through `ImageDigest`
//! and `check`ed against the manifest's digest and size → the security-version floor.
//!
//! Nothing may be constant-folded away under LTO: the envelope and the image live in
//! flash in a section of their own (`.fixture`, see memory.x; it is data a real
//! bootloader reads from a slot, so it is kept out of `.rodata`), every input reaches
//! the code through `black_box`, and the outcome is written to a volatile static.
//!
//! With `--features stack-paint` (not for size figures), the free RAM below the stack
//! pointer is painted before verifying and the high-water mark is reported over
//! semihosting: `cargo run --release --features stack-paint` under qemu-system-arm.
//! With `--features deep`, the envelope is the hostile worst case for the stack
//! (`ed25519-envelope-deep.suit`, opaque CBOR nested to the limit, validly signed).
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use panic_halt as _;
use rota_manifest::{Ed25519Verifier, Envelope, ImageDigest, Policy, PublicKey};

/// The envelope verified, written by `manifest/size-probe/fixture` (RFC 8032 TEST 1 key,
/// 4 KiB image).
#[cfg(not(feature = "deep"))]
macro_rules! envelope_file {
    () => {
        "../../testdata/ed25519-envelope.suit"
    };
}
#[cfg(feature = "deep")]
macro_rules! envelope_file {
    () => {
        "../../testdata/ed25519-envelope-deep.suit"
    };
}

const ENVELOPE_BYTES: &[u8] = include_bytes!(envelope_file!());
const IMAGE_BYTES: &[u8] = include_bytes!("../../testdata/ed25519-image.bin");

#[unsafe(link_section = ".fixture.envelope")]
#[used]
static ENVELOPE: [u8; ENVELOPE_BYTES.len()] = *include_bytes!(envelope_file!());

#[unsafe(link_section = ".fixture.image")]
#[used]
static IMAGE: [u8; IMAGE_BYTES.len()] = *include_bytes!("../../testdata/ed25519-image.bin");

/// The trust anchor, as the bootloader holds it: RFC 8032 §7.1 TEST 1 public key.
static ANCHOR: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// The device's anti-rollback floor.
static SECURITY_FLOOR: u64 = 1;

/// How much of the image one flash read yields.
const CHUNK: usize = 256;

/// The outcome, where a debugger (or the stack-paint report) can read it:
/// 0 = verified, otherwise the step that refused (see [`verify`]).
static mut RESULT: u32 = u32::MAX;

/// The bootloader's check of one slot. Returns 0 when the image may boot.
#[inline(never)]
fn verify(envelope: &[u8], image: &[u8], anchor: [u8; 32], floor: u64) -> u32 {
    let policy = Policy::default();
    let Ok(envelope) = Envelope::decode(envelope, &policy) else {
        return 1;
    };
    let Ok(authenticated) =
        envelope.authenticate(&[PublicKey::Ed25519(anchor)], &Ed25519Verifier, &policy)
    else {
        return 2;
    };
    let Ok(claims) = authenticated.claims(0, None) else {
        return 3;
    };
    let Some(expected) = claims.image_digest else {
        return 4;
    };
    let mut digest = ImageDigest::new();
    for chunk in image.chunks(CHUNK) {
        digest.update(black_box(chunk));
    }
    if digest.check(&expected, claims.image_size).is_err() {
        return 5;
    }
    if claims.security_version.unwrap_or(0) < floor {
        return 6;
    }
    0
}

fn run() -> u32 {
    verify(
        black_box(&ENVELOPE[..]),
        black_box(&IMAGE[..]),
        black_box(ANCHOR),
        black_box(SECURITY_FLOOR),
    )
}

#[cfg(not(feature = "stack-paint"))]
#[entry]
fn main() -> ! {
    let result = run();
    // SAFETY: single-threaded, no interrupts enabled; a raw pointer, no reference.
    unsafe { core::ptr::write_volatile(&raw mut RESULT, result) };
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(feature = "stack-paint")]
#[entry]
fn main() -> ! {
    use cortex_m_semihosting::{debug, hprintln};

    const PAINT: u32 = 0xC0FF_EE55;
    unsafe extern "C" {
        /// End of .bss/.uninit: the lowest address the stack may grow to (cortex-m-rt).
        static mut __sheap: u32;
        /// Initial stack pointer (cortex-m-rt).
        static _stack_start: u32;
    }
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp) };
    let bottom = (&raw mut __sheap) as usize;
    // Leave this frame (and the calls that follow) a margin.
    let top = sp - 64;
    let mut p = bottom;
    while p < top {
        // SAFETY: [__sheap, sp - 64) is free RAM below the live stack.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }

    let result = run();
    unsafe { core::ptr::write_volatile(&raw mut RESULT, result) };

    let mut low = bottom;
    // SAFETY: as above; only reads.
    while low < top && unsafe { core::ptr::read_volatile(low as *const u32) } == PAINT {
        low += 4;
    }
    let stack_start = (&raw const _stack_start) as usize;
    hprintln!(
        "result={} verify_stack_bytes={} (sp at call {:#x}, deepest {:#x}; whole stack incl. reset+main {} bytes)",
        result,
        sp - low,
        sp,
        low,
        stack_start - low
    );
    debug::exit(if result == 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        core::hint::spin_loop();
    }
}
