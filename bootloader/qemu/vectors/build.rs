//! Links the vector runner where the bootloader would be (it replaces it in its QEMU run).
//! Twice the bootloader's room: it holds both Ed25519 verifiers.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let memory = "MEMORY\n{\n  FLASH : ORIGIN = 0x0, LENGTH = 0x20000\n  RAM : ORIGIN = 0x20000000, LENGTH = 64K\n}\n";
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
}
