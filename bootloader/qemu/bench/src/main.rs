//! How many instructions rota-boot spends verifying a 256 KiB image, against bare
//! SHA-256 of the same bytes: the cost of everything beyond the hash (envelope parsing,
//! the Ed25519 signature, the checks, reading through the flash driver). Then what DICE
//! adds to a boot (`rota-qemu-boot` after its decision): the bootloader's measurement of
//! its own 64 KiB region, the derivation of the DeviceID and Alias keys and the Alias
//! certificate, and the hand-off written to shared RAM.
//!
//! Run by `scripts/qemu-verify-cost.sh` under `qemu-system-arm -icount shift=0`, where
//! QEMU's virtual clock advances exactly one nanosecond per guest instruction and
//! SysTick counts that clock: the counts are deterministic, to 40 instructions.
//!
//! Inputs (host files): `bench.key` (the signer's raw 32-byte Ed25519 public key),
//! `bench.suit` (its envelope for `bench.img`, vendor and class as below), `bench.img`
//! (the image, at most 256 KiB). The slot lives in RAM behind a `NorFlash` with the
//! board's geometry, so the bytes read are the same for both measurements.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
use rota_boot::dice::{self, Measurement, Mode, Secret};
use rota_boot::header::SlotHeader;
use rota_boot::otp_map::{self, OtpRot};
use rota_boot::{CompactBootAuth, Layout, Region, Slot, verify_slot};
use rota_manifest::PublicKey;
use rota_qemu_board::{bootloader_measurement, console, host, shared};
use sha2::{Digest, Sha256};

/// The vendor and class `scripts/qemu-verify-cost.sh` signs for.
const VENDOR: [u8; 16] = *b"rota-bench-vndr!";
const CLASS: [u8; 16] = *b"rota-bench-class";
const IMAGE_MAX: usize = 256 * 1024;
const SECTOR: u32 = 4096;
/// A journal, slot A with room for a 256 KiB image after the header, and slot B.
const LAYOUT: Layout = Layout {
    journal: Region::new(0, 2 * SECTOR),
    slots: [
        Region::new(2 * SECTOR, 66 * SECTOR),
        Region::new(68 * SECTOR, 66 * SECTOR),
    ],
    header_size: 1024,
    erased: 0xFF,
    max_trial_boots: 3,
};
const CAPACITY: usize = 134 * SECTOR as usize;
/// The RAM behind the flash: ZBT SSRAM1 above the bench's own code.
const BASE: usize = 0x10_0000;

fn ram() -> &'static mut [u8] {
    // SAFETY: [BASE, BASE + CAPACITY) is SSRAM1 on mps2-an386, unused by anything else.
    unsafe { core::slice::from_raw_parts_mut(BASE as *mut u8, CAPACITY) }
}

/// NOR flash in RAM, with the board's geometry (reads copy, as from real flash).
struct RamFlash;

impl ErrorType for RamFlash {
    type Error = NorFlashErrorKind;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = offset as usize;
        bytes.copy_from_slice(
            ram()
                .get(at..at + bytes.len())
                .ok_or(NorFlashErrorKind::OutOfBounds)?,
        );
        Ok(())
    }
    fn capacity(&self) -> usize {
        CAPACITY
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR as usize;
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = offset as usize;
        ram()
            .get_mut(at..at + bytes.len())
            .ok_or(NorFlashErrorKind::OutOfBounds)?
            .copy_from_slice(bytes);
        Ok(())
    }
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        ram()
            .get_mut(from as usize..to as usize)
            .ok_or(NorFlashErrorKind::OutOfBounds)?
            .fill(0xFF);
        Ok(())
    }
}

/// SysTick ticks per guest instruction, inverted: under `-icount shift=0` an
/// instruction takes 1 ns of virtual time and SysTick counts the 25 MHz system clock
/// (40 ns), so one tick is 40 instructions.
const INSTRUCTIONS_PER_TICK: u64 = 40;

/// Starts SysTick free-running from the processor clock, without its interrupt.
fn start_clock() {
    // SAFETY: the bench owns SysTick; nothing else runs.
    unsafe {
        let syst = &*cortex_m::peripheral::SYST::PTR;
        syst.rvr.write(0x00FF_FFFF);
        syst.cvr.write(0);
        syst.csr.write(0b101); // ENABLE | CLKSOURCE (processor clock), TICKINT off
    }
}

/// SysTick's current value (it counts down).
fn now() -> u32 {
    // SAFETY: a read of SysTick's current-value register.
    unsafe { (*cortex_m::peripheral::SYST::PTR).cvr.read() & 0x00FF_FFFF }
}

/// Instructions between two readings of [`now`] (less than 2^24 ticks apart).
fn instructions(from: u32, to: u32) -> u64 {
    u64::from(from.wrapping_sub(to) & 0x00FF_FFFF) * INSTRUCTIONS_PER_TICK
}

const PAINT: u32 = 0xC0FF_EE55;

unsafe extern "C" {
    /// The end of .bss/.uninit: the lowest address the stack may grow to (cortex-m-rt).
    static mut __sheap: u32;
    /// The initial stack pointer (cortex-m-rt).
    static _stack_start: u32;
}

/// Paints the free RAM below the current stack pointer.
fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut at = (&raw mut __sheap) as usize;
    while at < sp - 64 {
        // SAFETY: [__sheap, sp - 64) is free RAM below the live stack.
        unsafe { core::ptr::write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// Bytes of stack ever used: from the top down to the lowest overwritten paint.
fn stack_used() -> usize {
    let mut at = (&raw mut __sheap) as usize;
    // SAFETY: reads of RAM between the heap start and the stack top.
    while unsafe { core::ptr::read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    (&raw const _stack_start) as usize - at
}

fn fail(why: &[u8]) -> ! {
    console::line(&[b"bench: ", why]);
    console::exit(false)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(b"panic")
}

/// Reads host file `name` (NUL-terminated) into `buf`; returns its length.
fn load(name: &[u8], buf: &mut [u8]) -> usize {
    let Ok(file) = host::open(name) else {
        fail(b"missing input file")
    };
    let len = host::len(file).unwrap_or(usize::MAX);
    if len > buf.len() || host::read(file, &mut buf[..len]).is_err() {
        fail(b"input file too large or unreadable");
    }
    host::close(file);
    len
}

#[entry]
fn main() -> ! {
    let mut key = [0u8; 32];
    if load(b"bench.key\0", &mut key) != 32 {
        fail(b"bench.key must hold 32 bytes");
    }
    let mut envelope = [0u8; 960];
    let envelope_len = load(b"bench.suit\0", &mut envelope);
    let image_at = (LAYOUT.image_address(Slot::A)) as usize;

    let mut flash = RamFlash;
    flash.erase(0, CAPACITY as u32).unwrap();
    let image_len = load(b"bench.img\0", &mut ram()[image_at..image_at + IMAGE_MAX]);
    SlotHeader {
        key,
        envelope: &envelope[..envelope_len],
    }
    .write(&mut flash, &LAYOUT, Slot::A)
    .unwrap();
    let Some(mut otp) = otp_map::provision(
        &[Some(PublicKey::Ed25519(key).key_id())],
        &VENDOR,
        &CLASS,
        None,
    ) else {
        fail(b"provisioning failed")
    };
    let mut rot = OtpRot::open(&mut otp).unwrap();
    let mut scratch = [0u8; 960];

    paint_stack();
    start_clock();
    // Bare SHA-256 of the same bytes, read in one piece from memory.
    let start = now();
    let digest = Sha256::digest(core::hint::black_box(
        &ram()[image_at..image_at + image_len],
    ));
    let hashed = now();
    core::hint::black_box(digest);
    // The bootloader's whole check of the slot.
    let verified =
        verify_slot::<CompactBootAuth, _, _>(&mut flash, &mut rot, &LAYOUT, Slot::A, &mut scratch);
    let done = now();
    let Ok(image) = verified else {
        fail(b"the image does not verify")
    };
    // DICE, as the bootloader does it after deciding (`Bootloader::attest_into`; its OTP read
    // of the UDS is a 32-byte host-file read, not counted).
    let uds = Secret::new(core::hint::black_box([0x5a; 32]));
    let measured = now();
    let measurement = Measurement {
        image_digest: image.digest,
        security_version: image.security_version,
        sequence: image.sequence_number,
        slot: image.slot,
        signer: PublicKey::Ed25519(key).key_id(),
        bootloader: bootloader_measurement(),
    };
    let self_measured = now();
    dice::derive_into(uds, &measurement, Mode::Normal, shared::handoff_area());
    let attested = now();
    let stack = stack_used();

    let (mut a, mut b, mut c) = ([0; 20], [0; 20], [0; 20]);
    console::line(&[
        b"bench: ",
        console::decimal(image_len as u64, &mut a),
        b" bytes: sha256 ",
        console::decimal(instructions(start, hashed), &mut b),
        b" instructions, verify_slot ",
        console::decimal(instructions(hashed, done), &mut c),
        b" instructions",
    ]);
    console::line(&[
        b"bench: DICE: bootloader self-measurement (SHA-256 of 64 KiB) ",
        console::decimal(instructions(measured, self_measured), &mut a),
        b" instructions, derive and hand-off ",
        console::decimal(instructions(self_measured, attested), &mut b),
        b" instructions",
    ]);
    console::line(&[
        b"bench: stack high-water mark of the bench, verify_slot and DICE included: ",
        console::decimal(stack as u64, &mut a),
        b" bytes",
    ]);
    console::exit(true)
}
