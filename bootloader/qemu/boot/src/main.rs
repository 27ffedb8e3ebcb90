//! rota's bootloader for QEMU mps2-an386: load the flash, let `rota-boot` decide, hand
//! the chosen image its DICE identity, jump.
//!
//! After the decision, [`Bootloader::attest`] takes the UDS from the OTP (which hides it
//! until reset) and derives the DeviceID and Alias keys and the Alias certificate from it,
//! the image's measurement and the bootloader's own ([`bootloader_measurement`]); the
//! hand-off goes into the shared RAM area ([`shared::handoff_area`]), its magic last.
//! A part without a UDS gets an empty area. Before the jump, the stack the derivation
//! used is wiped: no copy of the UDS or of a key derived from it is left for the image.
#![no_std]
#![no_main]

mod mem;

use cortex_m_rt::entry;
use rota_boot::dice::{Handoff, Mode};
use rota_boot::header::FIXED_LEN;
use rota_boot::otp_map::OtpRot;
use rota_boot::{BootDecision, Bootloader, CompactBootAuth, Error, RevertReason, Slot};
use rota_qemu_board::{BOARD, Flash, OtpFile, bootloader_measurement, console, jump, shared};

/// Holds an envelope while it is verified.
const SCRATCH: usize = BOARD.layout.header_size as usize - FIXED_LEN;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(b"panic")
}

fn fail(why: &[u8]) -> ! {
    console::line(&[b"rota-boot: ", why]);
    console::exit(false)
}

#[entry]
fn main() -> ! {
    let mut scratch = [0u8; SCRATCH];
    let address = decide(&mut scratch);
    wipe_stack();
    // SAFETY: `decide` returns only the address of an image rota-boot verified, after
    // dropping (closing) the flash and OTP handles.
    unsafe { jump(address) }
}

unsafe extern "C" {
    /// The lowest address the stack may grow to (cortex-m-rt).
    static mut __sheap: u32;
}

/// Zeroes the stack below this function's frame, where `decide` ran: derivations leave
/// intermediate values (HMAC states keyed with the UDS, scalars) that no type wipes.
#[inline(never)]
fn wipe_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut at = (&raw mut __sheap) as usize;
    while at < sp - 64 {
        // SAFETY: [__sheap, sp - 64) is RAM below the live stack, which nothing uses now.
        unsafe { core::ptr::write_volatile(at as *mut u32, 0) };
        at += 4;
    }
}

fn decide(scratch: &mut [u8]) -> u32 {
    let Ok(flash) = Flash::load() else {
        fail(b"flash.bin is missing or not the board's flash size")
    };
    let Ok(otp) = OtpFile::open() else {
        fail(b"otp.bin is missing")
    };
    let Ok(otp) = OtpRot::open(otp) else {
        fail(b"otp.bin is not a provisioned OTP map")
    };
    let Ok(mut bootloader) =
        Bootloader::<_, _, CompactBootAuth>::new(flash, otp, BOARD.layout, scratch)
    else {
        fail(b"the board layout does not fit the flash")
    };
    match bootloader.decide() {
        Ok(BootDecision::Boot { image, trial }) => {
            let (mut seq, mut sv) = ([0; 20], [0; 20]);
            console::line(&[
                b"rota-boot: booting slot ",
                match image.slot {
                    Slot::A => b"A",
                    Slot::B => b"B",
                },
                b", sequence ",
                console::decimal(image.sequence_number, &mut seq),
                b", security version ",
                console::decimal(image.security_version, &mut sv),
                if trial { b", on trial" } else { b"" },
            ]);
            let area = shared::handoff_area();
            Handoff::wipe(area);
            if bootloader
                .attest_into(&image, bootloader_measurement(), Mode::Normal, area)
                .is_err()
            {
                console::line(&[b"rota-boot: no DICE hand-off"]);
            }
            image.address
        }
        Ok(BootDecision::Recovery(why)) => {
            fail_with(b"nothing bootable, recovery: ", RevertReason::from(&why))
        }
        Err(Error::Rejected(why)) => fail_with(b"rejected: ", RevertReason::from(&why)),
        Err(Error::Flash(_)) => fail(b"flash error"),
        Err(Error::Rot(_)) => fail(b"OTP error"),
        Err(_) => fail(b"error"),
    }
}

fn fail_with(what: &[u8], reason: RevertReason) -> ! {
    console::line(&[b"rota-boot: ", what, reason.as_str().as_bytes()]);
    console::exit(false)
}
