//! Links the application to run from one slot, and bakes in its version and health.
//!
//! - `ROTA_SLOT`: `A` (default) or `B`: the slot whose image address the application is
//!   linked at (the board preset's, so it matches the bootloader).
//! - `ROTA_APP_VERSION`: the version it reports (default `1`).
//! - `ROTA_APP_HEALTH`: `ok` (default) or `fail`: whether its health check passes.
use std::{env, fs, path::PathBuf};

use rota_boot::Slot;
use rota_boot::board::QEMU_MPS2_AN386 as BOARD;

fn main() {
    let slot = match env::var("ROTA_SLOT").as_deref() {
        Ok("A") | Err(_) => Slot::A,
        Ok("B") => Slot::B,
        Ok(other) => panic!("ROTA_SLOT must be A or B, not {other:?}"),
    };
    let health = env::var("ROTA_APP_HEALTH").unwrap_or_else(|_| "ok".into());
    assert!(
        health == "ok" || health == "fail",
        "ROTA_APP_HEALTH must be ok or fail"
    );
    let version = env::var("ROTA_APP_VERSION").unwrap_or_else(|_| "1".into());

    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let memory = format!(
        "MEMORY\n{{\n  FLASH : ORIGIN = {:#x}, LENGTH = {:#x}\n}}\n{}",
        BOARD.layout.image_address(slot),
        BOARD.layout.image_capacity(slot),
        include_str!("../board/ram.x")
    );
    fs::write(out.join("memory.x"), memory).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=../board/ram.x");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!(
        "cargo:rustc-env=ROTA_SLOT={}",
        if slot == Slot::A { "A" } else { "B" }
    );
    println!("cargo:rustc-env=ROTA_APP_VERSION={version}");
    println!("cargo:rustc-env=ROTA_APP_HEALTH={health}");
    for var in ["ROTA_SLOT", "ROTA_APP_VERSION", "ROTA_APP_HEALTH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}
