//! Puts memory.x where cortex-m-rt's link.x finds it, and links with link.x.
//!
//! The link argument is given here rather than as `rustflags` in .cargo/config.toml
//! so that a `RUSTFLAGS` variable (scripts/size-probe.sh sets one for the sha2
//! variants) does not silently replace it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=../testdata/ed25519-envelope.suit");
    println!("cargo:rerun-if-changed=../testdata/ed25519-envelope-deep.suit");
    println!("cargo:rerun-if-changed=../testdata/ed25519-image.bin");
}
