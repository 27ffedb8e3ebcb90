//! A demo application for rota on QEMU mps2-an386, built to run from slot A or slot B.
//!
//! On every boot it:
//! 1. takes the DICE hand-off the bootloader left in shared RAM (and wipes the area),
//!    prints its DeviceID and Alias public keys in hex, and tries to read the UDS, which
//!    the bootloader has hidden until reset (it reports the refusal);
//! 2. reports its version, its slot, whether it is on trial, and the last revert;
//! 3. runs its health check (it passes unless built with `ROTA_APP_HEALTH=fail`); on
//!    trial it then confirms itself, or rejects itself and stops (exit status 1);
//! 4. revokes a key slot if the host file `revoke.bin` holds its number (one byte);
//! 5. installs an update if the host file `update.bin` holds one: `u32` little-endian
//!    envelope length, the signer's 32-byte Ed25519 public key, the envelope, then the
//!    image. It stages it through `rota-boot`'s updater (resuming a download that a
//!    power cut interrupted), writes it in 4 KiB chunks and marks it pending. If the
//!    host file `pause.bin` holds a `u32` byte count, it stops once that much of the
//!    image is written and waits, so that a test can cut the power mid-download.
//!
//! Then it exits (status 0): the next QEMU run is the next boot.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use rota_boot::dice::Handoff;
use rota_boot::header::FIXED_LEN;
use rota_boot::otp_map::{self, OtpCells, OtpError, OtpRot};
use rota_boot::{CompactBootAuth, Error, RevertReason, RootOfTrust, Slot, Updater};
use rota_qemu_board::{BOARD, Flash, OtpFile, OtpFileError, console, host, shared};

const VERSION: &str = env!("ROTA_APP_VERSION");
const LINKED_SLOT: &str = env!("ROTA_SLOT");
const HEALTHY: bool = matches!(env!("ROTA_APP_HEALTH").as_bytes(), b"ok");
const SCRATCH: usize = BOARD.layout.header_size as usize - FIXED_LEN;
const CHUNK: usize = 4096;

type Board = Updater<'static, Flash, OtpRot<OtpFile>, CompactBootAuth>;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    say(&[b"panic"]);
    console::exit(false)
}

fn say(parts: &[&[u8]]) {
    let mut line: [&[u8]; 8] = [b""; 8];
    line[0] = b"app: ";
    line[1..=parts.len()].copy_from_slice(parts);
    console::line(&line[..=parts.len()]);
}

fn slot_name(slot: Slot) -> &'static [u8] {
    match slot {
        Slot::A => b"A",
        Slot::B => b"B",
    }
}

/// A short name for an updater error.
fn error_name<FE, RE>(e: &Error<FE, RE>) -> &'static [u8] {
    match e {
        Error::Rejected(why) => RevertReason::from(why).as_str().as_bytes(),
        Error::Flash(_) => b"flash error",
        Error::Rot(_) => b"OTP error",
        Error::OnTrial => b"on trial",
        Error::RevokesRunningKey => b"that key signed the running image",
        Error::NoSuchKeySlot => b"no such key slot",
        Error::EnvelopeTooLarge => b"envelope too large",
        _ => b"updater error",
    }
}

#[entry]
fn main() -> ! {
    static mut SCRATCH_BUF: [u8; SCRATCH] = [0; SCRATCH];
    // SAFETY: `entry` runs once; cortex-m-rt hands out this `&'static mut` exactly once.
    let scratch: &'static mut [u8; SCRATCH] = SCRATCH_BUF;
    let (Ok(flash), Ok(otp)) = (Flash::attach(), OtpFile::open()) else {
        say(&[b"cannot open flash.bin or otp.bin"]);
        console::exit(false)
    };
    let Ok(mut otp) = OtpRot::open(otp) else {
        say(&[b"otp.bin is not provisioned"]);
        console::exit(false)
    };
    report_attestation(&mut otp);
    let Ok(mut updater) = Board::new(flash, otp, BOARD.layout, scratch) else {
        say(&[b"cannot open the updater"]);
        console::exit(false)
    };

    let status = updater.status();
    say(&[
        b"v",
        VERSION.as_bytes(),
        b" running from slot ",
        slot_name(status.running),
        if status.on_trial { b", on trial" } else { b"" },
    ]);
    if slot_name(status.running) != LINKED_SLOT.as_bytes() {
        say(&[
            b"linked for slot ",
            LINKED_SLOT.as_bytes(),
            b" but the journal says otherwise",
        ]);
    }
    if let Some(revert) = status.last_revert {
        say(&[
            b"last revert: slot ",
            slot_name(revert.slot),
            b", ",
            revert.reason.as_str().as_bytes(),
        ]);
    }

    if status.on_trial {
        if !HEALTHY {
            say(&[b"health check failed: rejecting this image"]);
            let _ = updater.revert();
            console::exit(false);
        }
        match updater.confirm() {
            Ok(()) => say(&[b"health check passed: confirmed v", VERSION.as_bytes()]),
            Err(e) => say(&[b"confirm failed: ", error_name(&e)]),
        }
    } else if !HEALTHY {
        say(&[b"health check failed (not on trial: nothing to revert to)"]);
    }

    revoke_if_asked(&mut updater);
    install_if_offered(&mut updater);
    drop(updater);
    console::exit(true)
}

/// Takes the bootloader's DICE hand-off and shows that the UDS stays out of reach.
fn report_attestation(otp: &mut OtpRot<OtpFile>) {
    let area = shared::handoff_area();
    let handoff = Handoff::read(area);
    Handoff::wipe(area);
    let mut hex = [0; 64];
    match handoff {
        Ok(handoff) => {
            say(&[b"DeviceID ", console::hex(&handoff.device_id, &mut hex)]);
            say(&[
                b"Alias key ",
                console::hex(&handoff.alias_public_key(), &mut hex),
            ]);
        }
        Err(_) => say(&[b"no DICE hand-off"]),
    }
    // Through the root of trust, and straight from the cells.
    say(&[
        b"reading the UDS: ",
        match otp.take_uds() {
            Err(OtpError::UdsHidden) => b"refused, hidden until reset",
            Ok(None) => b"this part has none",
            Ok(Some(_)) => b"READ: the UDS is exposed",
            Err(_) => b"OTP error",
        },
    ]);
    let mut otp = OtpFile::open();
    let mut uds = [0u8; otp_map::UDS_LEN];
    let read = otp
        .as_mut()
        .map(|cells| cells.read(otp_map::UDS_AT, &mut uds));
    say(&[
        b"reading the UDS cells: ",
        match read {
            Ok(Err(OtpFileError::HiddenUntilReset)) => b"refused, hidden until reset",
            Ok(Ok(())) if uds == [0; otp_map::UDS_LEN] => b"all zero",
            Ok(Ok(())) => b"READ: the UDS is exposed",
            _ => b"OTP error",
        },
    ]);
}

/// Reads all of `name` at `at` into `buf`, if the file exists and is long enough.
fn read_file(name: &[u8], at: usize, buf: &mut [u8]) -> Option<()> {
    let file = host::open(name).ok()?;
    let ok = host::seek(file, at)
        .and_then(|_| host::read(file, buf))
        .ok();
    host::close(file);
    ok
}

fn revoke_if_asked(updater: &mut Board) {
    let mut slot = [0u8];
    if read_file(b"revoke.bin\0", 0, &mut slot).is_none() {
        return;
    }
    let mut n = [0; 20];
    match updater.revoke(slot[0] as usize) {
        Ok(()) => say(&[
            b"revoked key slot ",
            console::decimal(slot[0].into(), &mut n),
        ]),
        Err(e) => say(&[b"revoking key slot refused: ", error_name(&e)]),
    }
}

fn install_if_offered(updater: &mut Board) {
    let Ok(file) = host::open(b"update.bin\0") else {
        return;
    };
    let result = install(updater, file);
    host::close(file);
    if let Err(e) = result {
        say(&[b"update refused: ", error_name(&e)]);
    }
}

fn install(
    updater: &mut Board,
    file: usize,
) -> Result<(), Error<rota_qemu_board::FlashError, rota_boot::otp_map::OtpError<OtpFileError>>> {
    let host_error = Error::Flash(rota_qemu_board::FlashError::Host);
    let mut head = [0u8; 36];
    host::read(file, &mut head).map_err(|_| host_error)?;
    let envelope_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut key = [0u8; 32];
    key.copy_from_slice(&head[4..]);
    let mut envelope = [0u8; SCRATCH];
    let envelope = envelope
        .get_mut(..envelope_len)
        .ok_or(Error::EnvelopeTooLarge)?;
    host::read(file, envelope).map_err(|_| host_error)?;

    let from = updater.stage(&key, envelope)? as usize;
    let size = updater.progress().map_or(0, |p| p.size as usize);
    let mut pause = [0u8; 4];
    let pause_at =
        read_file(b"pause.bin\0", 0, &mut pause).map(|_| u32::from_le_bytes(pause) as usize);
    let (mut a, mut b) = ([0; 20], [0; 20]);
    if from > 0 {
        say(&[
            b"resuming the download at byte ",
            console::decimal(from as u64, &mut a),
        ]);
    }
    let mut chunk = [0u8; CHUNK];
    let mut at = from;
    host::seek(file, 36 + envelope_len + from).map_err(|_| host_error)?;
    while at < size {
        let n = (size - at).min(CHUNK);
        host::read(file, &mut chunk[..n]).map_err(|_| host_error)?;
        updater.write(at as u32, &chunk[..n])?;
        at += n;
        if pause_at.is_some_and(|p| at >= p && at < size) {
            say(&[
                b"paused after ",
                console::decimal(at as u64, &mut a),
                b" bytes",
            ]);
            loop {
                cortex_m::asm::wfi();
            }
        }
    }
    let image = updater.mark_pending()?;
    say(&[
        b"update staged in slot ",
        slot_name(image.slot),
        b" (sequence ",
        console::decimal(image.sequence_number, &mut b),
        b"): reboot to try it",
    ]);
    Ok(())
}
