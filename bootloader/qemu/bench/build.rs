//! Links the bench where the bootloader would be (it replaces it in its QEMU run).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // The bootloader's RAM too (board/ram.x): the bench writes the DICE hand-off.
    let memory = format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = 0x0, LENGTH = 0x10000\n}}\n{}",
        include_str!("../board/ram.x")
    );
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rerun-if-changed=../board/ram.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
