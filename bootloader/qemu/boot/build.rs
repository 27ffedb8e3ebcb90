//! Links the bootloader into the board preset's bootloader region.
use std::{env, fs, path::PathBuf};

use rota_boot::board::QEMU_MPS2_AN386 as BOARD;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let memory = format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = {:#x}, LENGTH = {:#x}\n}}\n{}",
        BOARD.bootloader.offset,
        BOARD.bootloader.size,
        include_str!("../board/ram.x")
    );
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=../board/ram.x");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
