//! rota's A/B bootloader core: it decides what runs, from flash it cannot trust and
//! power that can fail at any instant.
//!
//! Everything here is `no_std` and allocation-free and generic over
//! [`embedded_storage::nor_flash::NorFlash`]; flash geometry is always a parameter.
//! The [`sim`] module (feature `sim`, and in tests) simulates NOR flash with the real
//! programming rules and power cuts, including torn writes and erases.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "sim"))]
extern crate alloc;

#[cfg(any(test, feature = "sim"))]
pub mod sim;
