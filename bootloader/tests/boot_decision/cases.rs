// Included once per envelope authenticator by ../boot_decision.rs, with `Auth` in scope.
use crate::support::*;
use rota_boot::sim::{CutKind, PowerCut, SimFlashError, SimOtpError};
use rota_boot::{
    BootDecision, Error, Rejection, Revert, RevertReason, Slot, Status, VerifiedImage,
};

type Dev = Device<4096, 4, Auth>;

const IMAGE: usize = 20_000;
/// The header area every simulated device has (see `Device::new`).
const HEADER: u32 = 1024;

fn factory() -> Release {
    release(0, 1, 1, IMAGE)
}

fn device() -> Dev {
    Dev::new(0xFF, 2, 16, &factory())
}

/// A device that has booted its factory image once (floor 1).
fn booted_device() -> Dev {
    let mut d = device();
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert_eq!(d.otp.floor_now(), 1);
    d
}

/// The image and trial flag of one boot; panics on recovery or an error.
fn boot_image<const E: usize, const W: usize>(d: &mut Device<E, W, Auth>) -> (VerifiedImage, bool) {
    match d.boot().expect("the bootloader runs") {
        BootDecision::Boot { image, trial } => (image, trial),
        BootDecision::Recovery(why) => panic!("recovery instead of a boot: {why:?}"),
    }
}

/// The slot and trial flag of one boot; panics on recovery or an error.
fn boot<const E: usize, const W: usize>(d: &mut Device<E, W, Auth>) -> (Slot, bool) {
    let (image, trial) = boot_image(d);
    (image.slot, trial)
}

fn last_revert<const E: usize, const W: usize>(d: &mut Device<E, W, Auth>) -> Option<Revert> {
    d.observe().state.last_revert
}

fn revert(slot: Slot, reason: RevertReason) -> Option<Revert> {
    Some(Revert { slot, reason })
}

/// Power cuts tried at each operation: each kind, torn ones with a few seeds.
fn cuts() -> Vec<(CutKind, u64)> {
    let mut cuts = vec![(CutKind::Before, 0), (CutKind::After, 0)];
    cuts.extend((0..4).map(|seed| (CutKind::Torn, seed)));
    cuts
}

fn is_power_loss<T>(result: &Result<T, Error<SimFlashError, SimOtpError>>) -> bool {
    matches!(
        result,
        Err(Error::Flash(SimFlashError::PowerLoss)) | Err(Error::Rot(SimOtpError::PowerLoss))
    )
}

/// Writes `image[from..]` through the updater in `CHUNK`-byte pieces.
fn write_from<F, R>(
    updater: &mut rota_boot::Updater<'_, F, R, Auth>,
    image: &[u8],
    from: usize,
) -> Result<(), Error<F::Error, R::Error>>
where
    F: embedded_storage::nor_flash::NorFlash,
    R: rota_boot::RootOfTrust,
{
    for (i, chunk) in image[from..].chunks(CHUNK).enumerate() {
        updater.write((from + i * CHUNK) as u32, chunk)?;
    }
    Ok(())
}

/// The byte range of the (one) Ed25519 signature in `envelope`: the last element of its
/// COSE_Sign1 `[protected, unprotected, nil (detached payload), bstr .size 64]`, which
/// ends the authentication wrapper, right before the `suit-manifest` key (3).
fn signature_range(envelope: &[u8]) -> std::ops::Range<usize> {
    let starts: Vec<usize> = envelope
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0xF6, 0x58, 0x40])
        .map(|(i, _)| i + 3)
        .collect();
    assert_eq!(starts.len(), 1, "one nil-payload, 64-byte signature");
    let range = starts[0]..starts[0] + 64;
    assert_eq!(
        envelope[range.end], 0x03,
        "the manifest member follows the signature"
    );
    range
}

/// The updater refuses to stage `bad` with `rejection` and touches nothing (with an
/// image already pending in the inactive slot, which stays pending); the bootloader,
/// given `bad` raw in the inactive slot and marked pending, never boots it, returns to
/// the confirmed image and records `reason`.
fn assert_refused_on_both_paths(
    d: &mut Dev,
    bad: &Release,
    rejection: Rejection,
    reason: RevertReason,
) {
    let confirmed = d.observe().state.confirmed;
    let inactive = confirmed.other();
    let floor = d.otp.floor_now();

    // The updater path, with a good image pending in the inactive slot.
    let filler = release(0, 50, u64::from(floor.max(1)), IMAGE);
    d.install(&filler).unwrap();
    let flash = d.flash.contents();
    let ops = d.rail.operations();
    let (burns, revoked) = (d.otp.burns(), d.otp.revoked_now().to_vec());
    let result = d.updater().unwrap().stage(&bad.key, &bad.envelope);
    assert_eq!(result, Err(Error::Rejected(rejection)));
    assert_eq!(
        d.rail.operations(),
        ops,
        "a refused stage performs no operation"
    );
    assert!(
        d.flash.contents() == flash,
        "a refused stage changes no flash byte"
    );
    assert!(d.holds(inactive, &filler));
    assert_eq!((d.otp.burns(), d.otp.revoked_now()), (burns, &revoked[..]));
    assert_eq!(d.updater().unwrap().status().pending, Some(inactive));

    // The bootloader path: the attacker writes the slot and the journal directly.
    program_slot(&mut d.flash, &d.layout, inactive, bad);
    d.force_pending();
    assert!(d.observe().state.pending);
    for _ in 0..3 {
        let (image, trial) = boot_image(d);
        assert_eq!(
            (image.slot, trial),
            (confirmed, false),
            "the bad image never boots"
        );
        let state = d.observe().state;
        assert!(!state.pending);
        assert_eq!(state.confirmed, confirmed);
        assert_eq!(state.last_revert, revert(inactive, reason));
    }
    assert_eq!(d.otp.floor_now(), floor);
}

// ---- Rejections: the updater refuses, and the bootloader never boots it ----

#[test]
fn boots_the_factory_image_and_commits_its_floor() {
    let mut d = device();
    let decision = d.boot().unwrap();
    assert_eq!(booted(&decision), Some((Slot::A, false)));
    assert_eq!(d.otp.floor_now(), 1);
}

#[test]
fn rejects_unsigned_image() {
    let good = release(0, 2, 2, IMAGE);
    let sig = signature_range(&good.envelope);

    let mut flipped = good.clone();
    flipped.envelope[sig.start + 17] ^= 0x01;
    let mut zeroed = good.clone();
    zeroed.envelope[sig.clone()].fill(0);

    for bad in [&flipped, &zeroed] {
        let mut d = booted_device();
        // The genuine release is accepted: only the signature bytes differ.
        d.fork().install(&good).unwrap();
        let flash = d.flash.contents();
        let result = d.updater().unwrap().stage(&bad.key, &bad.envelope);
        assert!(
            matches!(result, Err(Error::Rejected(Rejection::Manifest(_)))),
            "{result:?}"
        );
        assert!(
            d.flash.contents() == flash,
            "the inactive slot is untouched"
        );

        program_slot(&mut d.flash, &d.layout, Slot::B, bad);
        d.force_pending();
        assert_eq!(boot(&mut d), (Slot::A, false));
        assert_eq!(
            last_revert(&mut d),
            revert(Slot::B, RevertReason::BadManifest)
        );
        assert!(!d.observe().state.pending);
    }

    let mut d = booted_device();
    let result = d.updater().unwrap().stage(&flipped.key, &flipped.envelope);
    let Err(Error::Rejected(rejection @ Rejection::Manifest(_))) = result else {
        panic!("{result:?}");
    };
    assert_refused_on_both_paths(&mut d, &flipped, rejection, RevertReason::BadManifest);
}

#[test]
fn rejects_a_trusted_key_in_the_header_of_an_untrusted_signature() {
    // Signed by the untrusted signer, but the header claims trusted signer 0's key.
    let mut bad = release(UNTRUSTED_SIGNER, 2, 2, IMAGE);
    bad.key = public_key(0);
    let mut d = booted_device();
    let result = d.updater().unwrap().stage(&bad.key, &bad.envelope);
    let Err(Error::Rejected(rejection @ Rejection::Manifest(_))) = result else {
        panic!("{result:?}");
    };
    assert_refused_on_both_paths(&mut d, &bad, rejection, RevertReason::BadManifest);
}

#[test]
fn rejects_untrusted_key() {
    let bad = release(UNTRUSTED_SIGNER, 2, 2, IMAGE);
    let mut d = booted_device();
    assert_refused_on_both_paths(
        &mut d,
        &bad,
        Rejection::UntrustedKey,
        RevertReason::UntrustedKey,
    );
}

#[test]
fn rejects_wrong_class() {
    let bad = release_with(0, 2, 2, IMAGE, |m| m.class_id = *b"rota-test-class2");
    let mut d = booted_device();
    assert_refused_on_both_paths(
        &mut d,
        &bad,
        Rejection::WrongClass,
        RevertReason::WrongDevice,
    );
}

#[test]
fn rejects_wrong_vendor() {
    let bad = release_with(0, 2, 2, IMAGE, |m| m.vendor_id = *b"another-vendor!!");
    let mut d = booted_device();
    assert_refused_on_both_paths(
        &mut d,
        &bad,
        Rejection::WrongVendor,
        RevertReason::WrongDevice,
    );
}

#[test]
fn rejects_below_floor() {
    let mut d = booted_device();
    let v3 = release(0, 2, 3, IMAGE);
    d.install(&v3).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.otp.floor_now(), 3);
    assert_eq!(boot(&mut d), (Slot::B, false));

    // A newer sequence number does not help an older security version.
    let old = release(0, 3, 2, IMAGE);
    let rejection = Rejection::BelowFloor {
        security_version: 2,
        floor: 3,
    };
    assert_refused_on_both_paths(&mut d, &old, rejection, RevertReason::BelowFloor);

    // The factory image (sv 1) is refused the same way.
    let mut d2 = booted_device();
    d2.install(&v3).unwrap();
    boot(&mut d2);
    d2.updater().unwrap().confirm().unwrap();
    program_slot(&mut d2.flash, &d2.layout, Slot::A, &factory());
    d2.force_pending();
    assert_eq!(boot(&mut d2), (Slot::B, false));
    assert_eq!(
        last_revert(&mut d2),
        revert(Slot::A, RevertReason::BelowFloor)
    );
}

#[test]
fn rejects_revoked_key() {
    let mut d = booted_device();
    let by_signer_1 = release(1, 2, 2, IMAGE);
    // Before the revocation, signer 1's release is accepted.
    d.fork().install(&by_signer_1).unwrap();

    d.updater().unwrap().revoke(1).unwrap();
    assert_eq!(d.otp.revoked_now(), [false, true]);
    assert_refused_on_both_paths(
        &mut d,
        &by_signer_1,
        Rejection::RevokedKey { slot: 1 },
        RevertReason::RevokedKey,
    );
}

#[test]
fn rejects_truncated_image() {
    let v2 = release(0, 2, 2, IMAGE);
    assert_ne!(
        v2.image[IMAGE - 1],
        0xFF,
        "a missing last byte must be visible"
    );
    for written in [12_000, IMAGE - 1, 0] {
        // The updater: the envelope is fine, the image is short.
        let mut d = booted_device();
        let mut u = d.updater().unwrap();
        assert_eq!(u.stage(&v2.key, &v2.envelope), Ok(0));
        write_from(&mut u, &v2.image[..written], 0).unwrap();
        assert_eq!(
            u.mark_pending(),
            Err(Error::Rejected(Rejection::ImageMismatch))
        );
        assert!(!d.observe().state.pending, "{written}: not marked pending");
        assert_eq!(boot(&mut d), (Slot::A, false));

        // The bootloader: the short image raw, forced pending.
        program_raw(
            &mut d.flash,
            &d.layout,
            Slot::B,
            &v2.key,
            &v2.envelope,
            &v2.image[..written],
        );
        d.force_pending();
        assert_eq!(boot(&mut d), (Slot::A, false), "{written}");
        assert_eq!(
            last_revert(&mut d),
            revert(Slot::B, RevertReason::ImageMismatch)
        );
    }
}

#[test]
fn rejects_tampered_image() {
    let mut bad = release(0, 2, 2, IMAGE);
    bad.image[IMAGE / 2] ^= 0x01;

    let mut d = booted_device();
    let mut u = d.updater().unwrap();
    assert_eq!(u.stage(&bad.key, &bad.envelope), Ok(0));
    write_from(&mut u, &bad.image, 0).unwrap();
    assert_eq!(
        u.mark_pending(),
        Err(Error::Rejected(Rejection::ImageMismatch))
    );
    assert!(!d.observe().state.pending);
    // The refused slot is discarded: staging the release again starts over, instead of
    // resuming on top of the wrong bytes.
    assert!(!d.holds(Slot::B, &bad), "the refused slot is discarded");
    let intact = release(0, 2, 2, IMAGE);
    assert_eq!(intact.envelope, bad.envelope);
    d.install(&intact).unwrap();
    assert!(d.holds(Slot::B, &intact));
    d.updater()
        .unwrap()
        .stage(&intact.key, &intact.envelope)
        .unwrap();

    program_slot(&mut d.flash, &d.layout, Slot::B, &bad);
    d.force_pending();
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::ImageMismatch)
    );
    assert_eq!(boot(&mut d), (Slot::A, false));
}

#[test]
fn rejects_oversized_image() {
    let capacity = device().layout.image_capacity(Slot::B);
    assert_eq!(capacity, 16 * 4096 - HEADER);

    // A genuinely larger image: refused before anything is erased.
    let mut d = booted_device();
    let large = release(0, 2, 2, capacity as usize + 1);
    let flash = d.flash.contents();
    assert_eq!(
        d.updater().unwrap().stage(&large.key, &large.envelope),
        Err(Error::Rejected(Rejection::TooLarge {
            image_size: u64::from(capacity) + 1,
            capacity,
        }))
    );
    assert!(d.flash.contents() == flash);

    // An envelope that claims more than the slot holds (the bytes that fit, raw).
    let claims_more = release_with(0, 2, 2, IMAGE, |m| m.image_size = 100_000);
    let mut d = booted_device();
    assert_refused_on_both_paths(
        &mut d,
        &claims_more,
        Rejection::TooLarge {
            image_size: 100_000,
            capacity,
        },
        RevertReason::ImageMismatch,
    );

    // Exactly the capacity is accepted.
    let full = release(0, 3, 2, capacity as usize);
    let mut d = booted_device();
    d.install(&full).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
}

#[test]
fn rejects_security_version_beyond_counter() {
    let beyond = release(0, 2, u64::from(FLOOR_BITS) + 1, IMAGE);
    let mut d = booted_device();
    // The counter's last value is still accepted.
    d.fork()
        .install(&release(0, 2, u64::from(FLOOR_BITS), IMAGE))
        .unwrap();
    assert_refused_on_both_paths(
        &mut d,
        &beyond,
        Rejection::BeyondFloorBudget {
            security_version: u64::from(FLOOR_BITS) + 1,
            budget: FLOOR_BITS,
        },
        RevertReason::BelowFloor,
    );

    let far = release(0, 3, u64::MAX, IMAGE);
    let mut d = booted_device();
    assert_refused_on_both_paths(
        &mut d,
        &far,
        Rejection::BeyondFloorBudget {
            security_version: u64::MAX,
            budget: FLOOR_BITS,
        },
        RevertReason::BelowFloor,
    );
}

// ---- Trial, revert, confirm ----

#[test]
fn trial_boot_is_counted_before_the_jump() {
    let mut d = booted_device();
    d.install(&release(0, 2, 2, IMAGE)).unwrap();
    assert_eq!(d.observe().state.trial_boots, 0);
    let pending = d.fork();

    assert_eq!(boot(&mut d), (Slot::B, true));
    let state = d.observe().state;
    assert!(state.pending);
    assert_eq!(state.trial_boots, 1, "counted before the jump");
    assert_eq!(boot(&mut d), (Slot::B, true));
    assert_eq!(d.observe().state.trial_boots, 2);

    // A cut at any operation of the count: the bootloader never returns a trial boot
    // it has not counted, and the count is 0 or 1 afterwards.
    let mut probe = pending.fork();
    probe.boot().unwrap();
    let ops = probe.rail.operations();
    assert!(ops >= 1, "the count is an operation");
    for at in 0..ops {
        for (kind, seed) in cuts() {
            let mut f = pending.fork();
            f.rail.schedule_cut(PowerCut { at, kind, seed });
            let result = f.boot();
            assert!(is_power_loss(&result), "{at} {kind:?}: {result:?}");
            f.rail.power_on();
            let count = f.observe().state.trial_boots;
            assert!(count <= 1, "{at} {kind:?}");
            assert_eq!(boot(&mut f), (Slot::B, true));
            assert_eq!(f.observe().state.trial_boots, count + 1);
        }
    }
}

#[test]
fn revert_after_failed_trial() {
    let mut d = booted_device();
    let v2 = release(0, 2, 2, IMAGE);
    d.install(&v2).unwrap();
    for n in 1..=3 {
        assert_eq!(boot(&mut d), (Slot::B, true), "trial boot {n}");
        assert_eq!(d.observe().state.trial_boots, n);
        assert_eq!(d.otp.floor_now(), 1);
    }
    assert_eq!(boot(&mut d), (Slot::A, false));
    let state = d.observe().state;
    assert!(!state.pending);
    assert_eq!(state.confirmed, Slot::A);
    assert_eq!(
        state.last_revert,
        revert(Slot::B, RevertReason::TrialExhausted)
    );
    assert_eq!(d.otp.floor_now(), 1, "the floor did not rise");
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert!(d.holds(Slot::B, &v2), "the reverted image is left in place");
}

#[test]
fn revert_when_the_application_rejects_itself() {
    let mut d = booted_device();
    assert_eq!(d.updater().unwrap().revert(), Err(Error::NotOnTrial));

    d.install(&release(0, 2, 2, IMAGE)).unwrap();
    // Pending but not started: not on trial either.
    assert_eq!(d.updater().unwrap().revert(), Err(Error::NotOnTrial));
    assert_eq!(boot(&mut d), (Slot::B, true));
    d.updater().unwrap().revert().unwrap();
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::RejectedByApplication)
    );
    assert_eq!(boot(&mut d), (Slot::A, false));
    let state = d.observe().state;
    assert!(!state.pending);
    assert_eq!(state.confirmed, Slot::A);
    assert_eq!(
        state.last_revert,
        revert(Slot::B, RevertReason::RejectedByApplication)
    );
    assert_eq!(d.otp.floor_now(), 1);
    assert_eq!(d.updater().unwrap().revert(), Err(Error::NotOnTrial));
    assert_eq!(boot(&mut d), (Slot::A, false));
}

#[test]
fn confirm_makes_the_trial_image_the_fallback_and_raises_the_floor() {
    let mut d = booted_device();
    let v2 = release(1, 2, 4, IMAGE);
    d.install(&v2).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    assert_eq!(d.otp.floor_now(), 1, "a trial does not raise the floor");
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.otp.floor_now(), 4);
    let state = d.observe().state;
    assert_eq!(state.confirmed, Slot::B);
    assert!(!state.pending);
    assert_eq!(state.trial_boots, 0);
    for _ in 0..5 {
        let (image, trial) = boot_image(&mut d);
        assert_eq!((image.slot, trial), (Slot::B, false));
        assert_eq!(image.security_version, 4);
        assert_eq!(image.key_slot, 1);
    }
    // Confirming the confirmed image again changes nothing.
    let ops = d.rail.operations();
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.rail.operations(), ops);
    // The old image can no longer come back.
    d.force_pending();
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::A, RevertReason::BelowFloor)
    );
    // The next update goes to slot A.
    let v3 = release(0, 3, 4, IMAGE);
    d.install(&v3).unwrap();
    assert!(d.holds(Slot::A, &v3));
    assert!(d.holds(Slot::B, &v2));
    assert_eq!(boot(&mut d), (Slot::A, true));
}

/// Boots `f` as long as the floor story holds: every boot is a verified image, none
/// below a floor of 5 once that floor is burned. A trial boot of B (the confirm was cut
/// before its journal record) is confirmed. Returns whether one was.
fn boot_through_a_cut_confirm(f: &mut Dev, v2: &Release, what: &str) -> bool {
    let mut floor_was_5 = false;
    let mut confirmed_on_trial = false;
    for n in 0..5 {
        floor_was_5 |= f.otp.floor_now() >= 5;
        let before = f.observe().state;
        let (image, trial) = boot_image(f);
        floor_was_5 |= f.otp.floor_now() >= 5;
        if floor_was_5 {
            assert!(
                image.security_version >= 5,
                "{what} boot {n}: below the floor"
            );
        }
        match (image.slot, trial) {
            (Slot::B, true) => {
                assert_eq!(image.security_version, 5);
                assert!(
                    !confirmed_on_trial,
                    "{what}: a second trial after confirming"
                );
                assert_eq!(before.confirmed, Slot::A, "{what}");
                assert_eq!(f.otp.floor_now(), 1, "{what}: no floor without the record");
                f.updater().unwrap().confirm().unwrap();
                assert_eq!(f.otp.floor_now(), 5, "{what}");
                confirmed_on_trial = true;
            }
            (Slot::B, false) => {
                assert_eq!(image.security_version, 5);
                assert_eq!(f.otp.floor_now(), 5, "{what}: the boot completes the burn");
            }
            (Slot::A, _) => panic!("{what} boot {n}: the old image booted"),
        }
    }
    assert!(f.holds(Slot::B, v2));
    let state = f.observe().state;
    assert_eq!(state.confirmed, Slot::B, "{what}");
    assert!(!state.pending, "{what}");
    assert_eq!(f.otp.floor_now(), 5, "{what}");
    confirmed_on_trial
}

#[test]
fn floor_holds_after_cut_during_confirm() {
    let mut d = booted_device();
    let v2 = release(0, 2, 5, IMAGE);
    d.install(&v2).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    let on_trial = d;

    // Uncut: the floor is 5 as soon as confirm returns, and the old image is refused.
    let mut probe = on_trial.fork();
    probe.updater().unwrap().confirm().unwrap();
    let ops = probe.rail.operations();
    assert!(ops >= 2, "a journal record and a burn at least");
    assert_eq!(probe.otp.floor_now(), 5);
    assert_eq!(probe.observe().state.confirmed, Slot::B);
    let old = factory();
    assert_eq!(
        probe.updater().unwrap().stage(&old.key, &old.envelope),
        Err(Error::Rejected(Rejection::BelowFloor {
            security_version: 1,
            floor: 5
        }))
    );
    probe.force_pending();
    assert_eq!(boot(&mut probe), (Slot::B, false));
    assert_eq!(
        last_revert(&mut probe),
        revert(Slot::A, RevertReason::BelowFloor)
    );

    let (mut before_record, mut after_record) = (0, 0);
    for i in 0..ops {
        for (kind, seed) in cuts() {
            let what = format!("cut at confirm op {i} {kind:?} seed {seed}");
            let mut f = on_trial.fork();
            f.rail.schedule_cut(PowerCut {
                at: f.rail.operations() + i,
                kind,
                seed,
            });
            let result = f.updater().unwrap().confirm();
            assert!(is_power_loss(&result), "{what}: {result:?}");
            f.rail.power_on();

            // Right after the cut: the state before or after the confirm record, and a
            // floor of 5 only with the record.
            let state = f.observe().state;
            let recorded = state.confirmed == Slot::B;
            if recorded {
                assert!(!state.pending, "{what}");
            } else {
                assert!(state.pending && state.trial_boots == 1, "{what}: {state:?}");
            }
            let floor = f.otp.floor_now();
            assert!(
                floor == 1 || (floor == 5 && recorded),
                "{what}: floor {floor}"
            );

            let confirmed_on_trial = boot_through_a_cut_confirm(&mut f, &v2, &what);
            assert_eq!(confirmed_on_trial, !recorded, "{what}");
            if recorded {
                after_record += 1;
            } else {
                before_record += 1;
            }

            // The old image is refused for good.
            f.force_pending();
            assert_eq!(boot(&mut f), (Slot::B, false), "{what}");
            assert_eq!(
                last_revert(&mut f),
                revert(Slot::A, RevertReason::BelowFloor)
            );
        }
    }
    assert!(
        before_record > 0 && after_record > 0,
        "both sides of the record were cut"
    );
}

// ---- Recovery ----

#[test]
fn recovery_when_the_confirmed_image_is_corrupt_and_no_loop() {
    let f = factory();
    let mut corrupt = f.image.clone();
    corrupt[IMAGE / 3] ^= 0x40;

    let mut d = booted_device();
    program_raw(
        &mut d.flash,
        &d.layout,
        Slot::A,
        &f.key,
        &f.envelope,
        &corrupt,
    );
    assert_eq!(
        d.boot().unwrap(),
        BootDecision::Recovery(Rejection::ImageMismatch)
    );
    let ops = d.rail.operations();
    let flash = d.flash.contents();
    for _ in 0..3 {
        assert_eq!(
            d.boot().unwrap(),
            BootDecision::Recovery(Rejection::ImageMismatch)
        );
        assert_eq!(
            d.rail.operations(),
            ops,
            "a recovery decision writes nothing"
        );
        assert!(d.flash.contents() == flash);
    }
    assert_eq!(d.otp.floor_now(), 1);

    // The same after a trial of B ran out, the revert recorded once.
    let mut d = booted_device();
    d.install(&release(0, 2, 2, IMAGE)).unwrap();
    program_raw(
        &mut d.flash,
        &d.layout,
        Slot::A,
        &f.key,
        &f.envelope,
        &corrupt,
    );
    for _ in 0..3 {
        assert_eq!(boot(&mut d), (Slot::B, true));
    }
    assert_eq!(
        d.boot().unwrap(),
        BootDecision::Recovery(Rejection::ImageMismatch)
    );
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::TrialExhausted)
    );
    let ops = d.rail.operations();
    for _ in 0..3 {
        assert_eq!(
            d.boot().unwrap(),
            BootDecision::Recovery(Rejection::ImageMismatch)
        );
        assert_eq!(d.rail.operations(), ops);
    }

    // An erased slot A: recovery, for the empty slot.
    let mut d = device();
    let a = d.layout.slot(Slot::A);
    embedded_storage::nor_flash::NorFlash::erase(&mut d.flash, a.offset, a.end() as u32).unwrap();
    let ops = d.rail.operations();
    for _ in 0..2 {
        assert_eq!(
            d.boot().unwrap(),
            BootDecision::Recovery(Rejection::EmptySlot)
        );
        assert_eq!(d.rail.operations(), ops);
    }
}

// ---- What the updater refuses ----

#[test]
fn stage_refuses_while_on_trial() {
    let mut d = booted_device();
    d.install(&release(0, 2, 2, IMAGE)).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    let v3 = release(0, 3, 3, IMAGE);
    let ops = d.rail.operations();
    let flash = d.flash.contents();
    let mut u = d.updater().unwrap();
    assert_eq!(u.stage(&v3.key, &v3.envelope), Err(Error::OnTrial));
    assert_eq!(u.write(0, &v3.image[..CHUNK]), Err(Error::NotStaged));
    assert_eq!(u.mark_pending(), Err(Error::OnTrial));
    assert_eq!(u.revoke(1), Err(Error::OnTrial));
    assert_eq!(u.revoke(0), Err(Error::OnTrial));
    assert_eq!(d.rail.operations(), ops);
    assert!(
        d.flash.contents() == flash,
        "slot A (the fallback) is untouched"
    );
    assert_eq!(d.otp.revoked_now(), [false, false]);
    assert!(d.holds(Slot::A, &factory()));

    // Once confirmed, staging works again (into slot A).
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.updater().unwrap().stage(&v3.key, &v3.envelope), Ok(0));
}

#[test]
fn revoke_refuses_the_running_key() {
    let mut d = booted_device();
    let ops = d.rail.operations();
    assert_eq!(
        d.updater().unwrap().revoke(0),
        Err(Error::RevokesRunningKey)
    );
    assert_eq!(d.otp.revoked_now(), [false, false]);
    assert_eq!(d.otp.burns(), 1, "only the factory floor bit");
    assert_eq!(d.rail.operations(), ops);

    // Running a signer-1 image, key 1 is the running key and key 0 may go.
    d.install(&release(1, 2, 2, IMAGE)).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert_eq!(
        d.updater().unwrap().revoke(1),
        Err(Error::RevokesRunningKey)
    );
    assert_eq!(d.otp.revoked_now(), [false, false]);
    d.updater().unwrap().revoke(0).unwrap();
    assert_eq!(d.otp.revoked_now(), [true, false]);
    // The fallback signed by the revoked key no longer boots.
    d.install(&release(1, 3, 2, IMAGE)).unwrap();
    program_slot(&mut d.flash, &d.layout, Slot::A, &release(0, 3, 2, IMAGE));
    d.force_pending();
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::A, RevertReason::RevokedKey)
    );
}

#[test]
fn revoke_refuses_an_unknown_key_slot() {
    let mut d = booted_device();
    let ops = d.rail.operations();
    for slot in [TRUSTED_SIGNERS.len(), 100, usize::MAX] {
        assert_eq!(d.updater().unwrap().revoke(slot), Err(Error::NoSuchKeySlot));
    }
    assert_eq!(d.otp.revoked_now(), [false, false]);
    assert_eq!(d.rail.operations(), ops);
}

// ---- Downloads ----

#[test]
fn resumes_an_interrupted_download() {
    // Not a multiple of the write size: the padded last word is cut as well.
    const BIG: usize = 40_003;
    const SECTOR: u32 = 4096;
    let d = booted_device();
    let big = release(0, 2, 2, BIG);
    let used_sectors = (HEADER as usize + BIG).div_ceil(SECTOR as usize);
    let slot_b = (d.layout.slot(Slot::B).offset / SECTOR) as usize;

    // Where the image writes are, on an uncut run.
    let mut probe = d.fork();
    let rail = probe.rail.clone();
    let mut u = probe.updater().unwrap();
    assert_eq!(u.stage(&big.key, &big.envelope), Ok(0));
    let first_write = rail.operations();
    write_from(&mut u, &big.image, 0).unwrap();
    let last_write = rail.operations();
    assert!(last_write - first_write >= (BIG / CHUNK) as u64);

    let mut resumed_midway = 0;
    for at in first_write..last_write {
        for (kind, seed) in cuts() {
            let what = format!("cut at op {at} {kind:?} seed {seed}");
            let mut f = d.fork();
            let rail = f.rail.clone();
            let erases_before = f.flash.erase_counts().to_vec();
            rail.schedule_cut(PowerCut { at, kind, seed });
            let (mut completed, mut attempted) = (0usize, 0usize);
            let mut u = f.updater().unwrap();
            assert_eq!(u.stage(&big.key, &big.envelope), Ok(0), "{what}");
            for (i, chunk) in big.image.chunks(CHUNK).enumerate() {
                attempted = i * CHUNK + chunk.len();
                match u.write((i * CHUNK) as u32, chunk) {
                    Ok(()) => completed = attempted,
                    Err(e) => {
                        assert_eq!(e, Error::Flash(SimFlashError::PowerLoss), "{what}");
                        break;
                    }
                }
            }
            assert!(!rail.is_powered(), "{what}: the cut happened");
            rail.power_on();

            let mut u = f.updater().unwrap();
            let r = u.stage(&big.key, &big.envelope).unwrap();
            assert_eq!(
                u.progress().map(|p| (p.slot, p.next, p.size)),
                Some((Slot::B, r, BIG as u32))
            );
            let r = r as usize;
            assert!(
                r == 0 || (r + HEADER as usize) % SECTOR as usize == 0,
                "{what}: resume at {r} is not a sector start"
            );
            assert!(r <= attempted, "{what}: resume at {r} past {attempted}");
            // At most the sector holding the last completed byte is lost.
            if completed > 0 {
                let sector_start =
                    (HEADER as usize + completed - 1) / SECTOR as usize * SECTOR as usize;
                let floor = sector_start.saturating_sub(HEADER as usize);
                assert!(r >= floor, "{what}: resume at {r}, completed {completed}");
            }
            if completed > SECTOR as usize {
                assert!(r > 0, "{what}");
                resumed_midway += 1;
            }
            write_from(&mut u, &big.image, r).unwrap();
            let image = u.mark_pending().unwrap();
            assert_eq!((image.slot, image.size), (Slot::B, BIG as u32));
            assert!(f.holds(Slot::B, &big), "{what}");

            // One extra erase at most for the interruption, only in the slot's used
            // sectors.
            let erases: Vec<u32> = f
                .flash
                .erase_counts()
                .iter()
                .zip(&erases_before)
                .map(|(a, b)| a - b)
                .collect();
            let slot_erases: u32 = erases[slot_b..slot_b + used_sectors].iter().sum();
            assert!(
                slot_erases <= used_sectors as u32 + 1,
                "{what}: {slot_erases} erases"
            );
            assert!(
                erases[slot_b + used_sectors..].iter().all(|&n| n == 0),
                "{what}"
            );
            assert!(
                erases[slot_b - 16..slot_b].iter().all(|&n| n == 0),
                "{what}: slot A"
            );

            assert_eq!(boot(&mut f), (Slot::B, true), "{what}");
        }
    }
    assert!(resumed_midway > 0);

    // Staging a different release after an interruption starts over.
    let mut f = d.fork();
    let rail = f.rail.clone();
    rail.schedule_cut(PowerCut {
        at: (first_write + last_write) / 2,
        kind: CutKind::Torn,
        seed: 3,
    });
    assert!(is_power_loss(&f.download(&big)));
    rail.power_on();
    let other = release(0, 3, 2, BIG);
    let mut u = f.updater().unwrap();
    assert_eq!(u.stage(&other.key, &other.envelope), Ok(0));
    write_from(&mut u, &other.image, 0).unwrap();
    u.mark_pending().unwrap();
    assert!(f.holds(Slot::B, &other));
    assert_eq!(boot(&mut f), (Slot::B, true));
}

#[test]
fn out_of_order_and_past_end_writes_are_refused() {
    let mut d = booted_device();
    let v2 = release(0, 2, 2, IMAGE);
    let img = &v2.image;
    let mut u = d.updater().unwrap();
    assert_eq!(u.write(0, &img[..CHUNK]), Err(Error::NotStaged));
    assert_eq!(u.progress(), None);
    assert_eq!(u.stage(&v2.key, &v2.envelope), Ok(0));
    assert_eq!(
        u.write(4, &img[4..CHUNK]),
        Err(Error::OutOfOrder { expected: 0 })
    );
    u.write(0, &img[..3]).unwrap();
    // A partial word is buffered; the next write must continue right after it.
    assert_eq!(
        u.write(4, &img[4..8]),
        Err(Error::OutOfOrder { expected: 3 })
    );
    assert_eq!(
        u.write(0, &img[..3]),
        Err(Error::OutOfOrder { expected: 3 })
    );
    u.write(3, &img[3..CHUNK]).unwrap();
    assert_eq!(u.progress().map(|p| p.next), Some(CHUNK as u32));
    assert_eq!(
        u.write(CHUNK as u32 + 1, &img[CHUNK + 1..2 * CHUNK]),
        Err(Error::OutOfOrder {
            expected: CHUNK as u32
        })
    );
    // Past the end: refused whole, and the download goes on.
    let mut too_long = img[CHUNK..].to_vec();
    too_long.push(0);
    assert_eq!(u.write(CHUNK as u32, &too_long), Err(Error::PastEnd));
    assert_eq!(u.progress().map(|p| p.next), Some(CHUNK as u32));
    write_from(&mut u, img, CHUNK).unwrap();
    assert_eq!(u.write(IMAGE as u32, &[0]), Err(Error::PastEnd));
    assert_eq!(
        u.write(IMAGE as u32 - 1, &[0]),
        Err(Error::OutOfOrder {
            expected: IMAGE as u32
        })
    );
    u.mark_pending().unwrap();
    assert_eq!(u.write(IMAGE as u32, &[0]), Err(Error::NotStaged));
    assert!(d.holds(Slot::B, &v2));
    // A fresh updater has nothing staged: staging lives in RAM.
    assert_eq!(
        d.updater().unwrap().write(0, &img[..4]),
        Err(Error::NotStaged)
    );
    assert_eq!(boot(&mut d), (Slot::B, true));
}

#[test]
fn status_reports_running_slot_trial_and_last_revert() {
    let status = |d: &mut Dev| d.updater().unwrap().status();
    let mut d = booted_device();
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::A,
            on_trial: false,
            pending: None,
            last_revert: None
        }
    );
    d.install(&release(0, 2, 2, IMAGE)).unwrap();
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::A,
            on_trial: false,
            pending: Some(Slot::B),
            last_revert: None
        }
    );
    boot(&mut d);
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::B,
            on_trial: true,
            pending: None,
            last_revert: None
        }
    );
    d.updater().unwrap().revert().unwrap();
    let reverted = revert(Slot::B, RevertReason::RejectedByApplication);
    boot(&mut d);
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::A,
            on_trial: false,
            pending: None,
            last_revert: reverted
        }
    );
    d.install(&release(0, 3, 3, IMAGE)).unwrap();
    boot(&mut d);
    d.updater().unwrap().confirm().unwrap();
    boot(&mut d);
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::B,
            on_trial: false,
            pending: None,
            last_revert: reverted
        }
    );
    // Exhausted trials are reported too, from slot A this time.
    d.install(&release(0, 4, 4, IMAGE)).unwrap();
    for _ in 0..4 {
        boot(&mut d);
    }
    assert_eq!(
        status(&mut d),
        Status {
            running: Slot::B,
            on_trial: false,
            pending: None,
            last_revert: revert(Slot::A, RevertReason::TrialExhausted)
        }
    );
}

/// Runs an uncut `stage` of `release` on a fork of `d` and returns how many
/// operations it took.
fn stage_ops(d: &Dev, release: &Release) -> u64 {
    let mut probe = d.fork();
    let rail = probe.rail.clone();
    probe
        .updater()
        .unwrap()
        .stage(&release.key, &release.envelope)
        .unwrap();
    rail.operations()
}

#[test]
fn resumes_after_an_interrupted_resume() {
    const BIG: usize = 40_000;
    let d = booted_device();
    let big = release(0, 2, 2, BIG);
    // First cut: a torn write in the middle of the image.
    let mut first = d.fork();
    let ops = stage_ops(&first, &big);
    first.rail.schedule_cut(PowerCut {
        at: ops + 25,
        kind: CutKind::Torn,
        seed: 7,
    });
    assert!(is_power_loss(&first.download(&big)));
    first.rail.power_on();
    let r1 = first
        .fork()
        .updater()
        .unwrap()
        .stage(&big.key, &big.envelope)
        .unwrap();
    assert!(r1 > 0 && (r1 + HEADER) % 4096 == 0, "{r1}");

    // Second cut: anywhere in the resume (its re-erase) or the writes right after it.
    let resume_ops = stage_ops(&first, &big);
    for at in 0..resume_ops + 6 {
        for (kind, seed) in cuts() {
            let what = format!("second cut at op {at} {kind:?} seed {seed}");
            let mut f = first.fork();
            f.rail.schedule_cut(PowerCut { at, kind, seed });
            assert!(is_power_loss(&f.download(&big)), "{what}");
            f.rail.power_on();
            let mut u = f.updater().unwrap();
            let r2 = u.stage(&big.key, &big.envelope).unwrap();
            assert!(r2 == 0 || (r2 + HEADER) % 4096 == 0, "{what}: {r2}");
            assert!(
                r2 + 4096 >= r1,
                "{what}: lost more than a sector ({r1} -> {r2})"
            );
            write_from(&mut u, &big.image, r2 as usize).unwrap();
            u.mark_pending().unwrap();
            assert!(f.holds(Slot::B, &big), "{what}");
            assert_eq!(boot(&mut f), (Slot::B, true), "{what}");
        }
    }
}

#[test]
fn restaging_a_complete_image_rewrites_only_its_last_sector() {
    let mut d = booted_device();
    let v2 = release(0, 2, 2, IMAGE);
    d.install(&v2).unwrap();
    for _ in 0..4 {
        boot(&mut d);
    }
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::TrialExhausted)
    );
    // The same release again: the slot holds it whole; only the last sector is redone.
    let before = d.flash.erase_counts().to_vec();
    let mut u = d.updater().unwrap();
    let r = u.stage(&v2.key, &v2.envelope).unwrap();
    let last_sector = (HEADER + IMAGE as u32 - 1) / 4096 * 4096 - HEADER;
    assert_eq!(r, last_sector);
    write_from(&mut u, &v2.image, r as usize).unwrap();
    u.mark_pending().unwrap();
    let erased: u32 = d
        .flash
        .erase_counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .sum();
    assert_eq!(erased, 1);
    assert!(d.holds(Slot::B, &v2));
    assert_eq!(boot(&mut d), (Slot::B, true));
}

fn odd_sizes_round_trip<const E: usize, const W: usize>(erased: u8, slot_sectors: u32) {
    for (n, size) in [1, 3, W - 1, W + 1, IMAGE - 1, IMAGE + 5]
        .into_iter()
        .enumerate()
    {
        let mut d = Device::<E, W, Auth>::new(erased, 2, slot_sectors, &factory());
        assert_eq!(boot(&mut d), (Slot::A, false));
        let r = release(0, 2 + n as u64, 2, size);
        d.install(&r).unwrap();
        assert!(d.holds(Slot::B, &r), "{size}");
        let (image, trial) = boot_image(&mut d);
        assert_eq!(
            (image.slot, trial, image.size),
            (Slot::B, true, size as u32)
        );
        d.updater().unwrap().confirm().unwrap();
        assert_eq!(boot(&mut d), (Slot::B, false));
        // The padding is the erased value, so a short write of the same bytes is not
        // mistaken for the image: one byte less fails.
        let mut short = Device::<E, W, Auth>::new(erased, 2, slot_sectors, &factory());
        let mut u = short.updater().unwrap();
        u.stage(&r.key, &r.envelope).unwrap();
        write_from(&mut u, &r.image[..size - 1], 0).unwrap();
        if r.image[size - 1] != erased {
            assert_eq!(
                u.mark_pending(),
                Err(Error::Rejected(Rejection::ImageMismatch)),
                "{size}"
            );
        }
    }
}

#[test]
fn odd_sized_images_round_trip_on_every_geometry() {
    odd_sizes_round_trip::<4096, 4>(0xFF, 16);
    odd_sizes_round_trip::<{ 128 * 1024 }, 16>(0xFF, 1);
    odd_sizes_round_trip::<2048, 8>(0x00, 16);
}

/// draft-ietf-suit-manifest §8.4.2 (and README, "The manifest"): a manifest older than
/// the running one is refused by the updater, before anything is erased. The bootloader
/// does not compare sequence numbers: anti-rollback at boot is the OTP floor.
#[test]
fn refuses_a_manifest_older_than_the_running_one() {
    let mut d = booted_device();
    d.install(&release(0, 5, 1, IMAGE)).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(boot(&mut d), (Slot::B, false));

    let before = d.flash.contents();
    let older = release(0, 3, 1, IMAGE);
    let result = d.updater().unwrap().stage(&older.key, &older.envelope);
    assert_eq!(
        result,
        Err(Error::Rejected(Rejection::OlderSequence {
            sequence_number: 3,
            running: 5
        }))
    );
    assert_eq!(
        d.flash.contents(),
        before,
        "a refused stage changes nothing"
    );

    // Written behind the updater's back, it is still refused when marked pending.
    program_slot(&mut d.flash, &d.layout, Slot::A, &older);
    assert!(matches!(
        d.updater().unwrap().mark_pending(),
        Err(Error::Rejected(Rejection::OlderSequence { .. }))
    ));
    // The same release again is not older: reinstalling it is allowed.
    let same = release(0, 5, 1, IMAGE);
    assert_eq!(d.updater().unwrap().stage(&same.key, &same.envelope), Ok(0));
}

// ---- Wear ----

#[test]
fn an_update_costs_one_erase_per_sector_it_uses() {
    const BIG: usize = 131_072;
    const SECTOR: usize = 4096;
    let factory = factory();
    let mut d = Device::<4096, 4, Auth>::new(0xFF, 2, 64, &factory);
    assert_eq!(boot(&mut d), (Slot::A, false));
    let before = d.flash.erase_counts().to_vec();

    let v2 = release(0, 2, 2, BIG);
    d.install(&v2).unwrap();
    assert_eq!(boot(&mut d), (Slot::B, true));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert!(d.holds(Slot::B, &v2));
    assert!(d.holds(Slot::A, &factory));

    let delta: Vec<u32> = d
        .flash
        .erase_counts()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let (journal, slot_a, slot_b) = (&delta[..2], &delta[2..66], &delta[66..130]);
    let used = (HEADER as usize + BIG).div_ceil(SECTOR);
    assert_eq!(used, 33);
    assert!(
        slot_b[..used].iter().all(|&n| n == 1),
        "{:?}",
        &slot_b[..used]
    );
    assert!(
        slot_b[used..].iter().all(|&n| n == 0),
        "sectors beyond the image"
    );
    assert!(slot_a.iter().all(|&n| n == 0), "slot A untouched");
    let journal_erases: u32 = journal.iter().sum();
    assert!(journal_erases <= 1, "journal erases: {journal_erases}");
    let total: u32 = delta.iter().sum();
    let max = delta.iter().max().copied().unwrap_or(0);
    eprintln!(
        "erases for a 128 KiB image update on 4 KiB sectors: {total} in total \
         ({} in slot B, {journal_erases} in the journal), at most {max} per sector",
        slot_b.iter().sum::<u32>()
    );
}

// ---- Other geometries ----

/// Install, trial, confirm, application revert, exhausted trial, rollback refusal and an
/// interrupted download, on flash of `E`-byte sectors and `W`-byte words.
fn full_update_cycle<const E: usize, const W: usize>(erased: u8, slot_sectors: u32) {
    let v1 = release(0, 1, 1, IMAGE);
    let mut d = Device::<E, W, Auth>::new(erased, 2, slot_sectors, &v1);
    assert!(d.layout.image_capacity(Slot::A) as usize >= IMAGE);
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert_eq!(d.otp.floor_now(), 1);

    // v2 into B: trial, confirm.
    let v2 = release(1, 2, 2, IMAGE);
    d.install(&v2).unwrap();
    assert!(d.holds(Slot::B, &v2));
    assert_eq!(boot(&mut d), (Slot::B, true));
    assert_eq!(d.observe().state.trial_boots, 1);
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.otp.floor_now(), 2);
    assert_eq!(boot(&mut d), (Slot::B, false));

    // v3 into A: the application rejects it.
    d.install(&release(0, 3, 3, IMAGE)).unwrap();
    assert_eq!(boot(&mut d), (Slot::A, true));
    d.updater().unwrap().revert().unwrap();
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::A, RevertReason::RejectedByApplication)
    );

    // v4 into A: never confirmed.
    d.install(&release(0, 4, 4, IMAGE)).unwrap();
    for _ in 0..3 {
        assert_eq!(boot(&mut d), (Slot::A, true));
    }
    assert_eq!(boot(&mut d), (Slot::B, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::A, RevertReason::TrialExhausted)
    );
    assert_eq!(d.otp.floor_now(), 2);

    // v5 into A, downloaded through a power cut in the middle of its image.
    let v5 = release(0, 5, 5, IMAGE);
    let mut probe = d.fork();
    let rail = probe.rail.clone();
    let mut u = probe.updater().unwrap();
    u.stage(&v5.key, &v5.envelope).unwrap();
    let first = rail.operations();
    write_from(&mut u, &v5.image, 0).unwrap();
    let last = rail.operations();
    d.rail.schedule_cut(PowerCut {
        at: d.rail.operations() + (first + last) / 2,
        kind: CutKind::Torn,
        seed: 1,
    });
    assert!(is_power_loss(&d.download(&v5)));
    d.rail.power_on();
    let mut u = d.updater().unwrap();
    let r = u.stage(&v5.key, &v5.envelope).unwrap();
    assert!(r == 0 || (r + HEADER) % E as u32 == 0, "resume at {r}");
    write_from(&mut u, &v5.image, r as usize).unwrap();
    u.mark_pending().unwrap();
    assert!(d.holds(Slot::A, &v5));
    assert_eq!(boot(&mut d), (Slot::A, true));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(d.otp.floor_now(), 5);
    assert_eq!(boot(&mut d), (Slot::A, false));

    // v2 (sv 2) cannot come back.
    d.force_pending();
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::BelowFloor)
    );
    // Nor can a tampered copy of v5.
    let mut bad = v5.clone();
    bad.image[7] ^= 0x80;
    program_slot(&mut d.flash, &d.layout, Slot::B, &bad);
    d.force_pending();
    assert_eq!(boot(&mut d), (Slot::A, false));
    assert_eq!(
        last_revert(&mut d),
        revert(Slot::B, RevertReason::ImageMismatch)
    );
}

#[test]
fn full_update_cycle_on_4k_sectors_4_byte_writes() {
    full_update_cycle::<4096, 4>(0xFF, 16);
}

#[test]
fn full_update_cycle_on_128k_sectors_16_byte_writes() {
    full_update_cycle::<{ 128 * 1024 }, 16>(0xFF, 1);
}

#[test]
fn full_update_cycle_on_2k_sectors_8_byte_writes_erased_zero() {
    full_update_cycle::<2048, 8>(0x00, 16);
}
