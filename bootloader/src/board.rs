//! Board presets: where a bootloader, its journal and its slots live on a given part.
//! The firmware and `rota flash-image` read the same preset, so the image a factory
//! flashes is laid out exactly as the bootloader expects.

use crate::layout::{Layout, Region};

/// A board's flash map and geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    pub name: &'static str,
    /// Bytes of flash (the image `rota flash-image` writes is this long).
    pub flash_size: u32,
    pub erase_size: u32,
    pub write_size: u32,
    /// Where the bootloader itself lives.
    pub bootloader: Region,
    pub layout: Layout,
}

/// QEMU's `mps2-an386` (Cortex-M4) with rota's emulated flash: 640 KiB of 4 KiB sectors
/// programmed in 4-byte words, erased to 0xFF, executed in place from ZBT SSRAM1 at
/// address 0 (flash offsets are CPU addresses).
pub const QEMU_MPS2_AN386: Board = Board {
    name: "qemu-mps2-an386",
    flash_size: 0xA_0000,
    erase_size: 4096,
    write_size: 4,
    bootloader: Region::new(0, 0x1_0000),
    layout: Layout {
        journal: Region::new(0x1_0000, 0x2000),
        slots: [
            Region::new(0x2_0000, 0x4_0000),
            Region::new(0x6_0000, 0x4_0000),
        ],
        header_size: 0x400,
        erased: 0xFF,
        max_trial_boots: 3,
    },
};

/// Every preset, for tools to look up by name.
pub const BOARDS: &[Board] = &[QEMU_MPS2_AN386];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFlash;

    #[test]
    fn every_preset_is_a_valid_layout_clear_of_its_bootloader() {
        for board in BOARDS {
            assert_eq!(
                (board.erase_size, board.write_size),
                (4096, 4),
                "the check below assumes it"
            );
            board
                .layout
                .check::<SimFlash<4096, 4>>(board.flash_size as usize, 1024)
                .unwrap();
            assert!(board.bootloader.end() <= board.layout.journal.offset as u64);
        }
    }
}
