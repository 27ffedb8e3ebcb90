//! rota-boot wired to QEMU's mps2-an386 (Cortex-M4). Only wiring lives here; every
//! decision is `rota-boot`'s.
//!
//! - [`Flash`]: the board's NOR flash, emulated. Its persistent contents are the host
//!   file `flash.bin` (opened through semihosting in QEMU's working directory), and the
//!   CPU executes it in place from ZBT SSRAM1, where flash offset = address. QEMU
//!   restores images it loaded itself on every reset, so the bootloader loads the
//!   journal and the slots from the file on every boot ([`Flash::load`]) and every write
//!   or erase goes to the file first, then to memory. The driver enforces NOR rules:
//!   4-byte aligned writes only to erased words, erases of whole 4 KiB sectors, and no
//!   access to the bootloader's own region.
//! - [`OtpFile`]: the device's OTP, the host file `otp.bin` holding `rota-boot`'s OTP map
//!   ([`rota_boot::otp_map`]); programming can only set bits, and a range hidden until
//!   reset (the UDS, once the bootloader has read it) fails every read through it. The
//!   hide is a latch in [`shared`] RAM, which QEMU clears at reset like the RAM it is.
//! - [`shared`]: RAM at a fixed address that the bootloader and the application both link
//!   (`ram.x`): the OTP latch and the DICE hand-off area ([`rota_boot::dice::Handoff`]).
//! - [`bootloader_measurement`]: SHA-256 of the bootloader's whole flash region.
//! - [`console`]: semihosting output and exit, without `core::fmt` (it would double the
//!   bootloader's size).
//! - [`jump`]: hand the CPU to a verified image.
#![no_std]

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};
use rota_boot::board::{Board, QEMU_MPS2_AN386};
use rota_boot::otp_map::OtpCells;
use rota_manifest::digest::ImageDigest;

/// The board preset this firmware is built for (shared with `rota flash-image`).
pub const BOARD: Board = QEMU_MPS2_AN386;

/// The first byte rota-boot may touch: everything below is the running bootloader.
const FIRST: u32 = BOARD.layout.journal.offset;
const ERASED: u8 = BOARD.layout.erased;

/// Semihosting calls (ARM semihosting specification, operations 0x01–0x0C).
pub mod host {
    use cortex_m_semihosting::{nr, syscall};

    /// A host call failed (no such file, short read or write).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct HostError;

    /// `fopen` mode "r+b": read and write an existing binary file.
    const READ_WRITE_BINARY: usize = 3;

    /// Opens an existing file of the host for reading and writing.
    pub fn open(path_nul: &[u8]) -> Result<usize, HostError> {
        let len = path_nul.len() - 1;
        // SAFETY: the path is a NUL-terminated byte string that outlives the call.
        let handle = unsafe { syscall!(OPEN, path_nul.as_ptr(), READ_WRITE_BINARY, len) };
        if handle as isize == -1 {
            Err(HostError)
        } else {
            Ok(handle)
        }
    }

    pub fn close(handle: usize) {
        // SAFETY: closing a handle this module opened.
        unsafe { syscall!(CLOSE, handle) };
    }

    pub fn len(handle: usize) -> Result<usize, HostError> {
        // SAFETY: plain integer arguments.
        let len = unsafe { syscall!(FLEN, handle) };
        if len as isize == -1 {
            Err(HostError)
        } else {
            Ok(len)
        }
    }

    pub fn seek(handle: usize, at: usize) -> Result<(), HostError> {
        // SAFETY: plain integer arguments.
        if unsafe { syscall!(SEEK, handle, at) } == 0 {
            Ok(())
        } else {
            Err(HostError)
        }
    }

    /// Reads exactly `buf.len()` bytes at the file position.
    pub fn read(handle: usize, buf: &mut [u8]) -> Result<(), HostError> {
        // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
        let left = unsafe { syscall!(READ, handle, buf.as_mut_ptr(), buf.len()) };
        if left == 0 { Ok(()) } else { Err(HostError) }
    }

    /// Writes all of `buf` at the file position.
    pub fn write(handle: usize, buf: &[u8]) -> Result<(), HostError> {
        // SAFETY: the host reads `buf.len()` bytes from `buf`.
        let left = unsafe { syscall!(WRITE, handle, buf.as_ptr(), buf.len()) };
        if left == 0 { Ok(()) } else { Err(HostError) }
    }

    #[allow(unused_imports)]
    use nr as _;
}

/// Console output and exit, through semihosting.
pub mod console {
    use cortex_m_semihosting::{debug, hio};

    /// Prints `parts` in order, then a newline.
    pub fn line(parts: &[&[u8]]) {
        if let Ok(mut out) = hio::hstdout() {
            for part in parts {
                let _ = out.write_all(part);
            }
            let _ = out.write_all(b"\n");
        }
    }

    /// `n` in decimal, in `buf`.
    pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
        let mut at = buf.len();
        loop {
            // Long division by 10 in 16-bit steps: the Cortex-M4 divides 32-bit numbers
            // itself, while `n % 10` on a u64 links compiler-builtins' ~900-byte division.
            let (mut rem, mut quotient) = (0u32, 0u64);
            for shift in [48, 32, 16, 0] {
                let part = (rem << 16) | ((n >> shift) as u32 & 0xffff);
                quotient |= u64::from(part / 10) << shift;
                rem = part % 10;
            }
            n = quotient;
            at -= 1;
            buf[at] = b'0' + rem as u8;
            if n == 0 {
                return &buf[at..];
            }
        }
    }

    /// `bytes` in lowercase hex, in `buf`.
    pub fn hex<'b>(bytes: &[u8; 32], buf: &'b mut [u8; 64]) -> &'b [u8] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in buf.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        buf
    }

    /// Ends the QEMU run: status 0 when `success`, 1 otherwise.
    pub fn exit(success: bool) -> ! {
        debug::exit(if success {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::wfi();
        }
    }
}

/// Why a flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashError {
    /// `flash.bin` is missing, too short, or a host call failed.
    Host,
    NotAligned,
    /// Outside the flash, or inside the bootloader's region.
    OutOfBounds,
    /// A write to a word that is not erased.
    NotErased,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::Host | Self::NotErased => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for FlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        match kind {
            NorFlashErrorKind::NotAligned => Self::NotAligned,
            _ => Self::OutOfBounds,
        }
    }
}

/// The emulated NOR flash (see the crate documentation).
pub struct Flash {
    file: usize,
}

impl Flash {
    /// Opens `flash.bin` and loads the journal and slots from it into the memory the
    /// CPU executes from: what the bootloader does first on every boot.
    pub fn load() -> Result<Self, FlashError> {
        let flash = Self::attach()?;
        host::seek(flash.file, FIRST as usize).map_err(|_| FlashError::Host)?;
        host::read(flash.file, memory(FIRST, BOARD.flash_size - FIRST))
            .map_err(|_| FlashError::Host)?;
        Ok(flash)
    }

    /// Opens `flash.bin` whose contents are already in memory: what a booted
    /// application does.
    pub fn attach() -> Result<Self, FlashError> {
        let file = host::open(b"flash.bin\0").map_err(|_| FlashError::Host)?;
        if host::len(file) != Ok(BOARD.flash_size as usize) {
            host::close(file);
            return Err(FlashError::Host);
        }
        Ok(Self { file })
    }

    /// Persists `bytes` at `offset`: the file first (it is what survives power loss),
    /// then the memory the CPU reads.
    fn persist(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        host::seek(self.file, offset as usize).map_err(|_| FlashError::Host)?;
        host::write(self.file, bytes).map_err(|_| FlashError::Host)?;
        memory(offset, bytes.len() as u32).copy_from_slice(bytes);
        Ok(())
    }
}

impl Drop for Flash {
    fn drop(&mut self) {
        host::close(self.file);
    }
}

/// The flash contents at `offset`, as the CPU sees them.
fn memory(offset: u32, len: u32) -> &'static mut [u8] {
    debug_assert!(offset >= FIRST && offset + len <= BOARD.flash_size);
    // SAFETY: [FIRST, flash_size) is ZBT SSRAM1 on mps2-an386, RAM that nothing else
    // owns: the journal and the slots (the running application only writes the slot it
    // does not run from, through this driver). Callers check bounds first.
    unsafe { core::slice::from_raw_parts_mut(offset as usize as *mut u8, len as usize) }
}

fn check_region(offset: u32) -> Result<(), FlashError> {
    if offset < FIRST {
        Err(FlashError::OutOfBounds)
    } else {
        Ok(())
    }
}

impl ErrorType for Flash {
    type Error = FlashError;
}

impl ReadNorFlash for Flash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check_read(self, offset, bytes.len())?;
        check_region(offset)?;
        bytes.copy_from_slice(memory(offset, bytes.len() as u32));
        Ok(())
    }

    fn capacity(&self) -> usize {
        BOARD.flash_size as usize
    }
}

impl NorFlash for Flash {
    const WRITE_SIZE: usize = BOARD.write_size as usize;
    const ERASE_SIZE: usize = BOARD.erase_size as usize;

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check_write(self, offset, bytes.len())?;
        check_region(offset)?;
        if memory(offset, bytes.len() as u32)
            .iter()
            .any(|&b| b != ERASED)
        {
            return Err(FlashError::NotErased);
        }
        self.persist(offset, bytes)
    }

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        check_erase(self, from, to)?;
        check_region(from)?;
        // Filled at run time: a constant would cost 256 bytes of flash.
        let blank = [ERASED; 256];
        let mut at = from;
        while at < to {
            let n = (to - at).min(blank.len() as u32);
            self.persist(at, &blank[..n as usize])?;
            at += n;
        }
        Ok(())
    }
}

/// RAM the bootloader and the application share, at the fixed address `ram.x` gives the
/// section `.shared` (the last 1 KiB of SRAM). Neither program's start-up code touches
/// it, so what the bootloader leaves there survives the jump; a reset clears it (QEMU
/// starts with zeroed RAM).
pub mod shared {
    use core::mem::MaybeUninit;
    use rota_boot::dice::MAX_HANDOFF_LEN;

    #[repr(C)]
    struct Shared {
        /// The OTP range hidden until reset, `start` then `end` (`[0, 0]`: none).
        otp_hidden: [u16; 2],
        /// The DICE hand-off (`rota_boot::dice::Handoff`'s format).
        handoff: [u8; MAX_HANDOFF_LEN],
    }

    // Placed by ram.x; a firmware that never touches it (the vector runner) links
    // without it.
    #[unsafe(link_section = ".shared")]
    static mut SHARED: MaybeUninit<Shared> = MaybeUninit::uninit();

    fn latch() -> *mut [u16; 2] {
        // SAFETY: a raw pointer into the static, no reference formed.
        unsafe {
            (&raw mut SHARED)
                .cast::<Shared>()
                .byte_add(core::mem::offset_of!(Shared, otp_hidden))
                .cast()
        }
    }

    /// The OTP range hidden until reset, if any.
    pub(crate) fn otp_hidden() -> core::ops::Range<usize> {
        // SAFETY: the latch is plain RAM that only this module writes.
        let [start, end] = unsafe { latch().read_volatile() };
        usize::from(start)..usize::from(end)
    }

    pub(crate) fn set_otp_hidden(range: core::ops::Range<usize>) {
        // SAFETY: as above; OTP offsets fit 16 bits (the map is 212 bytes).
        unsafe { latch().write_volatile([range.start as u16, range.end as u16]) }
    }

    /// The hand-off area: the bootloader writes it before the jump, the application reads
    /// and wipes it.
    pub fn handoff_area() -> &'static mut [u8; MAX_HANDOFF_LEN] {
        // SAFETY: single-threaded firmware; the area is plain RAM (any byte pattern is a
        // valid `[u8; N]`), and each program takes it once.
        unsafe {
            &mut *(&raw mut SHARED)
                .cast::<Shared>()
                .byte_add(core::mem::offset_of!(Shared, handoff))
                .cast()
        }
    }
}

/// Why an OTP access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpFileError {
    /// `otp.bin` is missing or a host call failed.
    Host,
    /// The read touched cells hidden until reset.
    HiddenUntilReset,
}

/// The emulated OTP: `otp.bin` in the working directory, and the hide latch in
/// [`shared`] RAM.
pub struct OtpFile {
    file: usize,
}

impl OtpFile {
    pub fn open() -> Result<Self, OtpFileError> {
        Ok(Self {
            file: host::open(b"otp.bin\0").map_err(|_| OtpFileError::Host)?,
        })
    }
}

impl Drop for OtpFile {
    fn drop(&mut self) {
        host::close(self.file);
    }
}

impl OtpCells for OtpFile {
    type Error = OtpFileError;

    fn read(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), OtpFileError> {
        if self.is_hidden(offset, buf.len()) {
            return Err(OtpFileError::HiddenUntilReset);
        }
        host::seek(self.file, offset)
            .and_then(|()| host::read(self.file, buf))
            .map_err(|_| OtpFileError::Host)
    }

    /// OTP semantics: the new byte is the old one with more bits set, never fewer.
    fn program(&mut self, offset: usize, mask: u8) -> Result<(), OtpFileError> {
        let mut byte = [0u8];
        self.read(offset, &mut byte)?;
        host::seek(self.file, offset)
            .and_then(|()| host::write(self.file, &[byte[0] | mask]))
            .map_err(|_| OtpFileError::Host)
    }

    /// Until reset. A second hide widens the range to cover both: never less hidden.
    fn hide_until_reset(&mut self, offset: usize, len: usize) -> Result<(), OtpFileError> {
        let hidden = shared::otp_hidden();
        shared::set_otp_hidden(if hidden.is_empty() {
            offset..offset + len
        } else {
            hidden.start.min(offset)..hidden.end.max(offset + len)
        });
        Ok(())
    }

    fn is_hidden(&self, offset: usize, len: usize) -> bool {
        let hidden = shared::otp_hidden();
        offset < hidden.end && hidden.start < offset + len
    }
}

/// The bootloader's measurement of itself: SHA-256 of its whole flash region as the CPU
/// sees it (code, data and padding; flash offset = address on this board).
pub fn bootloader_measurement() -> [u8; 32] {
    let region = BOARD.bootloader;
    let mut hasher = ImageDigest::new();
    // The region starts at address 0, which Rust may not read through a reference (it
    // is null): its first word goes through an instruction, the rest through a slice.
    let first: u32;
    // SAFETY: address 0 is the bootloader's vector table (ZBT SSRAM1), readable.
    unsafe {
        core::arch::asm!("ldr {w}, [{a}]", a = in(reg) region.offset, w = out(reg) first,
            options(nostack, readonly, preserves_flags));
    }
    hasher.update(&first.to_le_bytes());
    // SAFETY: [offset + 4, end) is the rest of the region, plain RAM nothing writes while
    // the bootloader runs.
    let rest = unsafe {
        core::slice::from_raw_parts(
            (region.offset + 4) as usize as *const u8,
            region.size as usize - 4,
        )
    };
    hasher.update(rest);
    hasher.finalize()
}

/// Starts the image whose vector table is at `address`: points VTOR at it, loads its
/// initial stack pointer and jumps to its reset handler. Interrupts were never enabled,
/// and the caller has dropped (closed) every host handle, so the image starts clean.
///
/// # Safety
/// `address` must hold a verified image's vector table.
pub unsafe fn jump(address: u32) -> ! {
    // SAFETY: single-threaded, before any other use of SCB; the caller guarantees the
    // vector table.
    unsafe {
        (*cortex_m::peripheral::SCB::PTR).vtor.write(address);
        cortex_m::asm::dsb();
        cortex_m::asm::isb();
        cortex_m::asm::bootload(address as *const u32)
    }
}
