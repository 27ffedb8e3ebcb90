//! NOR flash on Linux: a file (an image of the part, for gateways that keep their slots
//! on a file system, and for demos) or an MTD partition (`/dev/mtdN`, the kernel's raw
//! flash interface). Both obey NOR's rules: erase by whole sectors, program only erased
//! bytes. Every completed operation is synced, as a completed flash operation is durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

/// Sector size of a Linux flash: 4 KiB, the common NOR sector (an MTD partition must
/// have this erase size).
pub const ERASE_SIZE: usize = 4096;

#[derive(Debug)]
pub enum FileFlashError {
    Io(io::Error),
    Kind(NorFlashErrorKind),
    /// A write to bytes that are not erased, at this offset: NOR cannot do it.
    NotErased(u32),
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Kind(kind) => *kind,
            _ => NorFlashErrorKind::Other,
        }
    }
}

impl From<NorFlashErrorKind> for FileFlashError {
    fn from(kind: NorFlashErrorKind) -> Self {
        Self::Kind(kind)
    }
}

impl From<io::Error> for FileFlashError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A flash on a file or an MTD character device.
pub struct FileFlash {
    file: File,
    capacity: usize,
    erased: u8,
    mtd: bool,
}

impl FileFlash {
    /// A new flash image of `capacity` bytes, all erased. Refuses to overwrite a file.
    pub fn create(path: &Path, capacity: usize, erased: u8) -> io::Result<Self> {
        if capacity % ERASE_SIZE != 0 {
            return Err(io::Error::other(format!(
                "the flash size must be a multiple of {ERASE_SIZE} bytes"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let sector = vec![erased; ERASE_SIZE];
        for at in (0..capacity).step_by(ERASE_SIZE) {
            file.write_all_at(&sector, at as u64)?;
        }
        file.sync_all()?;
        Ok(Self {
            file,
            capacity,
            erased,
            mtd: false,
        })
    }

    /// Opens a flash image, or an MTD partition when `path` is a character device.
    pub fn open(path: &Path, erased: u8) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let meta = file.metadata()?;
        let (capacity, mtd) = if std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()) {
            (mtd::size_checked(&file, ERASE_SIZE)?, true)
        } else {
            (meta.len() as usize, false)
        };
        if capacity % ERASE_SIZE != 0 {
            return Err(io::Error::other(format!(
                "{} is {capacity} bytes, not a whole number of {ERASE_SIZE}-byte sectors",
                path.display()
            )));
        }
        Ok(Self {
            file,
            capacity,
            erased,
            mtd,
        })
    }
}

impl ErrorType for FileFlash {
    type Error = FileFlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        check_read(self, offset, bytes.len())?;
        self.file.read_exact_at(bytes, offset.into())?;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FileFlashError> {
        check_erase(self, from, to)?;
        if self.mtd {
            mtd::erase(&self.file, from, to - from)?;
        } else {
            let sector = vec![self.erased; ERASE_SIZE];
            for at in (from..to).step_by(ERASE_SIZE) {
                self.file.write_all_at(&sector, at.into())?;
            }
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FileFlashError> {
        check_write(self, offset, bytes.len())?;
        // NOR programs only erased bytes; a write onto anything else is a bug upstream
        // that real flash would turn into corrupt data, so it is refused here too.
        let mut current = vec![0u8; bytes.len()];
        self.file.read_exact_at(&mut current, offset.into())?;
        if let Some(i) = current.iter().position(|&b| b != self.erased) {
            return Err(FileFlashError::NotErased(offset + i as u32));
        }
        self.file.write_all_at(bytes, offset.into())?;
        if !self.mtd {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// The two MTD ioctls rota needs (linux/include/uapi/mtd/mtd-abi.h).
// The MTD ioctls have no safe wrapper; each call states its safety argument.
#[allow(unsafe_code)]
mod mtd {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    /// `struct mtd_info_user`.
    #[repr(C)]
    #[derive(Default)]
    struct MtdInfo {
        kind: u8,
        flags: u32,
        size: u32,
        erasesize: u32,
        writesize: u32,
        oobsize: u32,
        padding: u64,
    }

    /// `struct erase_info_user`.
    #[repr(C)]
    struct EraseInfo {
        start: u32,
        length: u32,
    }

    /// `_IOR('M', 1, struct mtd_info_user)`.
    const MEMGETINFO: libc::c_ulong = 0x8020_4d01;
    /// `_IOW('M', 2, struct erase_info_user)`.
    const MEMERASE: libc::c_ulong = 0x4008_4d02;

    /// The partition's size, checking that its erase size is `erase_size`.
    pub fn size_checked(file: &File, erase_size: usize) -> io::Result<usize> {
        let mut info = MtdInfo::default();
        // SAFETY: MEMGETINFO writes one `mtd_info_user` into `info`, which outlives the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), MEMGETINFO as _, &mut info) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if info.erasesize as usize != erase_size {
            return Err(io::Error::other(format!(
                "the MTD partition erases {}-byte blocks; rota's Linux device needs {erase_size}",
                info.erasesize
            )));
        }
        Ok(info.size as usize)
    }

    pub fn erase(file: &File, start: u32, length: u32) -> io::Result<()> {
        let info = EraseInfo { start, length };
        // SAFETY: MEMERASE reads one `erase_info_user` from `info`, which outlives the call.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), MEMERASE as _, &info) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_flash_follows_nor_rules_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flash.bin");
        let mut flash = FileFlash::create(&path, 4 * ERASE_SIZE, 0xFF).unwrap();
        flash.write(10, b"abc").unwrap();
        assert!(matches!(
            flash.write(11, b"x"),
            Err(FileFlashError::NotErased(11))
        ));
        assert!(
            flash.erase(1, 4096).is_err(),
            "erase must be sector-aligned"
        );
        drop(flash);
        let mut flash = FileFlash::open(&path, 0xFF).unwrap();
        assert_eq!(flash.capacity(), 4 * ERASE_SIZE);
        let mut got = [0u8; 4];
        flash.read(9, &mut got).unwrap();
        assert_eq!(&got, b"\xffabc");
        flash.erase(0, ERASE_SIZE as u32).unwrap();
        flash.read(9, &mut got).unwrap();
        assert_eq!(got, [0xFF; 4]);
        assert!(
            FileFlash::create(&path, ERASE_SIZE, 0xFF).is_err(),
            "never overwrites"
        );
    }
}
