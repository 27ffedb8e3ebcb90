//! Flash the bootloader cannot trust: whatever the journal region and the slots hold,
//! the bootloader decides without panicking and boots only a signed image.
//!
//! Every case runs once per envelope authenticator a bootloader may be built with: the
//! general SUIT decoder with ed25519-dalek (the default, what hosts run), and, with
//! `compact-ed25519`, the boot profile with salty (what rota's QEMU bootloader links).

mod support;

mod suit_decoder {
    type Auth = rota_boot::SuitDecoder;
    include!("hostile_flash/cases.rs");
}

#[cfg(feature = "compact-ed25519")]
mod boot_profile_compact {
    type Auth = rota_boot::CompactBootAuth;
    include!("hostile_flash/cases.rs");
}
