//! Factory provisioning: what `rota_boot::factory` writes is a device that boots its first
//! image, with the root of trust it was asked for, on any NOR flash.

mod support;

use rota_boot::board::QEMU_MPS2_AN386 as BOARD;
use rota_boot::factory::{
    self, FactoryError, Provisioning, RamFlash, program_bootloader, program_first_image,
};
use rota_boot::otp_map::{self, OtpRot};
use rota_boot::sim::{PowerRail, SimFlash, SimOtp};
use rota_boot::{BootDecision, Bootloader, Layout, RootOfTrust, Slot};
use rota_manifest::PublicKey;
use support::{CLASS, Release, VENDOR, public_key, release};

const BOOTLOADER: [u8; 1001] = [0xB0; 1001];

fn anchors() -> Vec<PublicKey> {
    [0, 1].map(|n| PublicKey::Ed25519(public_key(n))).to_vec()
}

/// Signed by signer 1 (key slot 1): sequence 7, security version 2, an odd length so
/// the last write word is padded.
fn first() -> Release {
    release(1, 7, 2, 5003)
}

fn provisioning(first: &Release, floor_bits: u32) -> Provisioning {
    let claims = factory::claims(&first.envelope, &anchors()).unwrap();
    Provisioning::new(&anchors(), &claims, floor_bits)
}

/// Boots once and says which slot and version it chose.
fn boot<F, R>(flash: &mut F, rot: R, layout: Layout) -> (Slot, bool, u64)
where
    F: embedded_storage::nor_flash::NorFlash,
    R: RootOfTrust,
    F::Error: core::fmt::Debug,
    R::Error: core::fmt::Debug,
{
    let mut scratch = vec![0u8; layout.header_size as usize];
    match Bootloader::<_, _>::new(flash, rot, layout, &mut scratch)
        .unwrap()
        .decide()
        .unwrap()
    {
        BootDecision::Boot { image, trial } => (image.slot, trial, image.sequence_number),
        other => panic!("no boot: {other:?}"),
    }
}

#[test]
fn the_envelope_names_the_signer_its_slot_and_the_devices() {
    let claims = factory::claims(&first().envelope, &anchors()).unwrap();
    assert_eq!(claims.signer, public_key(1));
    assert_eq!(claims.signer_slot, 1);
    assert_eq!((claims.vendor_id, claims.class_id), (VENDOR, CLASS));
}

#[test]
fn the_otp_map_a_factory_burns_reads_back_as_provisioned() {
    let mut map = provisioning(&first(), otp_map::FLOOR_BITS)
        .otp_map()
        .unwrap();
    let mut rot = OtpRot::open(&mut map).unwrap();
    for (slot, anchor) in anchors().iter().enumerate() {
        assert_eq!(rot.key_hash(slot), Ok(Some(anchor.key_id())));
        assert_eq!(rot.is_revoked(slot), Ok(false));
    }
    assert_eq!(rot.key_hash(2), Ok(None), "spare slots stay blank");
    assert_eq!(rot.vendor_id(), Ok(VENDOR));
    assert_eq!(rot.class_id(), Ok(CLASS));
    assert_eq!(rot.floor(), Ok(0));
    assert_eq!(rot.floor_budget(), otp_map::FLOOR_BITS);
}

#[test]
fn a_factory_fresh_board_boots_its_first_image_and_commits_its_floor() {
    let first = first();
    let mut map = provisioning(&first, otp_map::FLOOR_BITS).otp_map().unwrap();
    let layout = BOARD.layout;
    let mut flash = RamFlash::<4096, 4>::new((BOARD.flash_size / 4096) as usize, layout.erased);
    program_bootloader(&mut flash, BOARD.bootloader, &BOOTLOADER, layout.erased).unwrap();
    program_first_image(
        &mut flash,
        &layout,
        &first.key,
        &first.envelope,
        &first.image,
    )
    .unwrap();

    let bytes = flash.contents();
    assert_eq!(bytes.len(), BOARD.flash_size as usize);
    assert_eq!(&bytes[..1001], &BOOTLOADER[..]);
    assert_eq!(
        &bytes[1001..1004],
        &[0xFF; 3],
        "the last word padded erased"
    );
    let journal = &bytes[layout.journal.offset as usize..layout.journal.end() as usize];
    assert!(journal.iter().all(|&b| b == 0xFF), "a blank journal");
    let at = layout.image_address(Slot::A) as usize;
    assert_eq!(&bytes[at..at + first.image.len()], &first.image[..]);

    assert_eq!(
        boot(&mut flash, OtpRot::open(&mut map).unwrap(), layout),
        (Slot::A, false, 7)
    );
    assert_eq!(OtpRot::open(&mut map).unwrap().floor(), Ok(2));
}

#[test]
fn a_simulated_device_made_by_the_factory_boots_its_first_image() {
    let first = first();
    let layout = BOARD.layout;
    let rail = PowerRail::new();
    let mut flash = SimFlash::<4096, 8>::on_rail(
        rail.clone(),
        (BOARD.flash_size / 4096) as usize,
        layout.erased,
    );
    program_first_image(
        &mut flash,
        &layout,
        &first.key,
        &first.envelope,
        &first.image,
    )
    .unwrap();
    let mut otp = SimOtp::provision(rail, &provisioning(&first, 16));
    assert_eq!(boot(&mut flash, &mut otp, layout), (Slot::A, false, 7));
    assert_eq!(otp.floor_now(), 2);
    assert_eq!(otp.floor_budget(), 16);
}

#[test]
fn refuses_a_first_image_no_trust_anchor_signed() {
    let stranger = release(support::UNTRUSTED_SIGNER, 7, 2, 100);
    assert!(matches!(
        factory::claims(&stranger.envelope, &anchors()),
        Err(FactoryError::NotSignedByAnchor(_))
    ));
    assert!(matches!(
        factory::claims(b"not an envelope", &anchors()),
        Err(FactoryError::NotSignedByAnchor(_))
    ));
}

#[test]
fn refuses_a_root_of_trust_the_otp_map_cannot_hold() {
    let mut five = provisioning(&first(), otp_map::FLOOR_BITS);
    five.keys.resize(5, None);
    assert_eq!(five.otp_map(), Err(FactoryError::TooManyKeys { given: 5 }));
    assert_eq!(
        provisioning(&first(), 32).otp_map(),
        Err(FactoryError::FloorBits { given: 32 })
    );
}

#[test]
fn refuses_what_does_not_fit_and_writes_nothing() {
    let first = first();
    let layout = BOARD.layout;
    let blank = RamFlash::<4096, 4>::new((BOARD.flash_size / 4096) as usize, layout.erased);
    let mut flash = blank.clone();
    let capacity = layout.image_capacity(Slot::A);
    let too_large = vec![0u8; capacity as usize + 1];
    assert_eq!(
        program_first_image(&mut flash, &layout, &first.key, &first.envelope, &too_large),
        Err(FactoryError::ImageTooLarge {
            size: too_large.len(),
            capacity
        })
    );
    let envelope = vec![0u8; layout.header_size as usize];
    assert_eq!(
        program_first_image(&mut flash, &layout, &first.key, &envelope, &first.image),
        Err(FactoryError::EnvelopeTooLarge {
            size: envelope.len(),
            header_size: layout.header_size
        })
    );
    let bootloader = vec![0u8; BOARD.bootloader.size as usize + 1];
    assert_eq!(
        program_bootloader(&mut flash, BOARD.bootloader, &bootloader, layout.erased),
        Err(FactoryError::BootloaderTooLarge {
            size: bootloader.len(),
            region: BOARD.bootloader.size
        })
    );
    assert_eq!(flash, blank);
}
