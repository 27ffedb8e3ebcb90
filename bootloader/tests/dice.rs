//! rota-boot's DICE layer on a simulated device: what each boot hands the image it
//! starts, and the UDS it reads once per reset.

mod support;

use rota_boot::dice::Handoff;
use rota_boot::sim::{CutKind, PowerCut, SimOtpError};
use rota_boot::{BootDecision, RootOfTrust as _, Slot};
use support::{Device, release};

const IMAGE: usize = 6000;
const BOOTLOADER: [u8; 32] = [0xb0; 32];

type Sim = Device<4096, 4>;

fn device() -> Sim {
    Device::new(0xff, 2, 4, &release(0, 1, 1, IMAGE))
}

fn attested(d: &mut Sim) -> Handoff {
    match d.boot_attested(BOOTLOADER).unwrap() {
        (BootDecision::Boot { .. }, Some(handoff)) => handoff,
        other => panic!("no hand-off: {:?}", other.0),
    }
}

#[test]
fn after_the_bootloader_reads_the_uds_the_image_cannot() {
    let mut d = device();
    let handoff = attested(&mut d);
    assert_eq!(handoff.certificate().len(), 441);
    // What runs after the bootloader (the application, the updater): hidden.
    assert_eq!(d.otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
    assert!(d.updater().is_ok());
    assert_eq!(d.otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
    // The next boot derives the same keys for the same image.
    let again = attested(&mut d);
    assert_eq!(again.alias_public_key(), handoff.alias_public_key());
    assert_eq!(again.device_id, handoff.device_id);
}

#[test]
fn after_an_update_the_alias_key_changes_and_the_device_id_does_not() {
    let mut d = device();
    let v1 = attested(&mut d);
    d.install(&release(1, 2, 2, IMAGE)).unwrap();
    let (decision, v2) = d.boot_attested(BOOTLOADER).unwrap();
    assert!(matches!(
        decision,
        BootDecision::Boot { image, trial: true } if image.slot == Slot::B
    ));
    let v2 = v2.unwrap();
    assert_eq!(v1.device_id, v2.device_id);
    assert_ne!(v1.alias_public_key(), v2.alias_public_key());
    // Reverted to v1 (not confirmed, trials used up): v1's Alias key again.
    for _ in 0..3 {
        d.boot_attested(BOOTLOADER).unwrap();
    }
    let back = attested(&mut d);
    assert_eq!(back.alias_public_key(), v1.alias_public_key());
}

#[test]
fn a_changed_bootloader_changes_the_alias_key() {
    let mut d = device();
    let first = attested(&mut d);
    let (_, other) = d.boot_attested([0xb1; 32]).unwrap();
    let other = other.unwrap();
    assert_eq!(other.device_id, first.device_id);
    assert_ne!(other.alias_public_key(), first.alias_public_key());
}

#[test]
fn a_power_cut_at_any_point_of_a_boot_never_leaves_the_uds_readable_after_it() {
    let mut reference = device();
    reference.install(&release(1, 2, 2, IMAGE)).unwrap();
    let mut d = reference.fork();
    let expected = attested(&mut d).alias_public_key();
    let operations = d.rail.operations();
    for at in 0..operations + 2 {
        for kind in [CutKind::Before, CutKind::After, CutKind::Torn] {
            let mut d = reference.fork();
            d.rail.schedule_cut(PowerCut { at, kind, seed: at });
            let cut = d.boot_attested(BOOTLOADER);
            if cut.is_ok() {
                // The cut fell after the boot: the UDS is hidden all the same.
                assert_eq!(d.otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
            }
            // Power back is a reset: the boot completes, hands off, and hides the UDS.
            d.rail.power_on();
            let handoff = attested(&mut d);
            assert_eq!(d.otp.take_uds().unwrap_err(), SimOtpError::UdsHidden);
            // A cut during the first boot counted a trial, or not: either way the image
            // booted now is v2 or v1, and its Alias key is that image's.
            let key = handoff.alias_public_key();
            assert!(
                key == expected || d.observe().state.last_revert.is_some(),
                "cut {kind:?} at {at}"
            );
        }
    }
}
