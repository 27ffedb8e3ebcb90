//! Links the bootloader into the board preset's bootloader region.
use std::{env, fs, path::PathBuf};

use rota_boot::board::QEMU_MPS2_AN386 as BOARD;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let memory = format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = {:#x}, LENGTH = {:#x}\n  RAM : ORIGIN = 0x20000000, LENGTH = 64K\n}}\n",
        BOARD.bootloader.offset, BOARD.bootloader.size
    );
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
