//! Firmware trust-anchor rollover on the device (`rota_boot::anchor`): a new key added
//! to a spare key slot by a command the old key signs, releases moved to the new key,
//! the old key revoked by a command the new key signs; every bad command refused with
//! nothing burned; and the whole rollover cut at every flash and OTP operation.

mod support;

use rota_boot::anchor::{AnchorCommand, AnchorError, Change, EXTERNAL_AAD};
use rota_boot::otp_map::{self, OtpRot};
use rota_boot::sim::{CutKind, PowerCut, SimFlash};
use rota_boot::{AnchorOutcome, BootDecision, Bootloader, Error, KeyHash, Slot, Updater};
use rota_manifest::signer::Sign;
use support::*;

type Dev = Device<4096, 4>;

/// Image bytes of each release.
const IMAGE: usize = 6_000;
/// Key slot 0 holds the factory key (signer 0); slots 1 and 2 are spare.
const SLOTS: [Option<u8>; 3] = [Some(0), None, None];
const OLD: u8 = 0;
const NEW: u8 = 1;

/// The factory release (signer 0) and the first release under the new key (signer 1).
fn releases() -> [Release; 2] {
    [release(OLD, 1, 1, IMAGE), release(NEW, 2, 1, IMAGE)]
}

fn device() -> Dev {
    Dev::with_key_slots(0xFF, 2, 4, &releases()[0], &SLOTS)
}

/// A command signed by signer `by`.
fn command(by: u8, counter: u32, change: Change) -> Vec<u8> {
    command_for(by, CLASS, counter, change)
}

fn command_for(by: u8, class_id: [u8; 16], counter: u32, change: Change) -> Vec<u8> {
    AnchorCommand {
        class_id,
        counter,
        change,
    }
    .sign(&public_key(by), |message| {
        signer(by)
            .sign(message)
            .map(|s| s.try_into().expect("64-byte Ed25519 signatures"))
    })
    .expect("test keys sign")
    .as_bytes()
    .to_vec()
}

fn add(slot: usize, key: u8) -> Change {
    Change::Add {
        slot,
        key_hash: key_id(key),
    }
}

/// What the root of trust holds, all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Otp {
    keys: Vec<Option<KeyHash>>,
    cells: Vec<KeyHash>,
    revoked: Vec<bool>,
    counter: u32,
    floor: u32,
}

fn otp(d: &Dev) -> Otp {
    Otp {
        keys: d.otp.keys_now(),
        cells: d.otp.key_cells_now().to_vec(),
        revoked: d.otp.revoked_now().to_vec(),
        counter: d.otp.anchor_counter_now(),
        floor: d.otp.floor_now(),
    }
}

fn apply(d: &mut Dev, by: u8, cmd: &[u8]) -> Result<AnchorOutcome, SimError<4096, 4>> {
    d.updater()?.apply_anchor_command(&public_key(by), cmd)
}

fn booted_release(d: &mut Dev) -> (Slot, bool, usize) {
    let releases = releases();
    match d.boot().expect("the bootloader runs") {
        BootDecision::Boot { image, trial } => {
            let n = releases
                .iter()
                .position(|r| d.holds(image.slot, r))
                .expect("a signed release boots");
            (image.slot, trial, n)
        }
        BootDecision::Recovery(why) => panic!("bricked: recovery ({why})"),
    }
}

#[test]
fn a_full_rollover_moves_releases_to_the_new_key_and_revokes_the_old() {
    let [factory, under_new] = releases();
    let mut d = device();
    assert_eq!(booted_release(&mut d), (Slot::A, false, 0));
    let status = d.updater().unwrap().trust_status().unwrap();
    assert_eq!((status.free_key_slots, status.anchor_commands), (2, 0));
    assert_eq!(status.anchor_commands_left, 6);

    // Before the new key is trusted, its releases are refused.
    assert!(matches!(d.download(&under_new), Err(Error::Rejected(_))));

    // 1. The old key adds the new one to spare slot 1.
    let add_new = command(OLD, 1, add(1, NEW));
    assert_eq!(apply(&mut d, OLD, &add_new), Ok(AnchorOutcome::Applied));
    assert_eq!(d.otp.keys_now()[1], Some(key_id(NEW)));
    // Applying it again is a no-op.
    let before = otp(&d);
    assert_eq!(
        apply(&mut d, OLD, &add_new),
        Ok(AnchorOutcome::AlreadyApplied)
    );
    assert_eq!(otp(&d), before);

    // While the running image is the old key's, the new key cannot revoke it.
    let revoke_old = command(NEW, 2, Change::Revoke { slot: 0 });
    assert_eq!(
        apply(&mut d, NEW, &revoke_old),
        Err(Error::RevokesRunningKey)
    );
    assert_eq!(otp(&d), before, "nothing burned");

    // 2. A release under the new key installs, boots on trial, confirms.
    d.install(&under_new).unwrap();
    assert_eq!(booted_release(&mut d), (Slot::B, true, 1));
    // On trial the fallback (the old key's image) may be needed: no revocation.
    assert_eq!(apply(&mut d, NEW, &revoke_old), Err(Error::OnTrial));
    d.updater().unwrap().confirm().unwrap();
    assert_eq!(booted_release(&mut d), (Slot::B, false, 1));

    // 3. The new key revokes the old one.
    assert_eq!(apply(&mut d, NEW, &revoke_old), Ok(AnchorOutcome::Applied));
    assert_eq!(d.otp.revoked_now(), [true, false, false]);
    assert_eq!(booted_release(&mut d), (Slot::B, false, 1));
    // The old key's releases no longer install, and its commands are no longer taken.
    assert!(matches!(d.download(&factory), Err(Error::Rejected(_))));
    assert_eq!(
        apply(&mut d, OLD, &command(OLD, 3, add(2, 9))),
        Err(Error::Anchor(AnchorError::RevokedSigner { slot: 0 }))
    );
    // The running image's key is never revoked, even by a command it signs.
    assert_eq!(
        apply(&mut d, NEW, &command(NEW, 3, Change::Revoke { slot: 1 })),
        Err(Error::RevokesRunningKey)
    );
    let status = d.updater().unwrap().trust_status().unwrap();
    assert_eq!(
        (
            status.free_key_slots,
            status.revoked_key_slots,
            status.anchor_commands,
            status.anchor_commands_left
        ),
        (1, 1, 2, 4)
    );
}

type E = SimError<4096, 4>;

/// Every refusal leaves the root of trust exactly as it was.
fn refused(d: &mut Dev, by: u8, cmd: &[u8], why: E) {
    let before = otp(d);
    let burns = d.otp.burns();
    assert_eq!(apply(d, by, cmd), Err(why));
    assert_eq!((otp(d), d.otp.burns()), (before, burns), "refused: {why:?}");
}

fn anchor_error(e: AnchorError) -> E {
    Error::Anchor(e)
}

#[test]
fn refuses_a_wrong_signature_an_untrusted_or_mismatched_signer_and_another_class() {
    let mut d = device();
    let good = command(OLD, 1, add(1, NEW));
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    refused(
        &mut d,
        OLD,
        &forged,
        anchor_error(AnchorError::BadSignature),
    );
    // The payload altered after signing.
    let mut altered = good.clone();
    let at = altered.len() - 64 - 3;
    altered[at] ^= 1;
    refused(
        &mut d,
        OLD,
        &altered,
        anchor_error(AnchorError::BadSignature),
    );
    refused(
        &mut d,
        UNTRUSTED_SIGNER,
        &command(UNTRUSTED_SIGNER, 1, add(1, NEW)),
        anchor_error(AnchorError::UntrustedSigner),
    );
    // Signer 0's command presented as trusted signer 1's.
    let mut both = Dev::with_key_slots(0xFF, 2, 4, &releases()[0], &[Some(0), Some(1), None]);
    refused(
        &mut both,
        NEW,
        &good,
        anchor_error(AnchorError::SignerMismatch),
    );
    refused(
        &mut d,
        OLD,
        &command_for(OLD, *b"another-class-id", 1, add(2, 3)),
        anchor_error(AnchorError::WrongClass),
    );
    // A signature by the right key without the command's AAD (as a firmware signature
    // is made) does not verify as a command.
    let payload = payload_of(&good);
    refused(
        &mut d,
        OLD,
        &sign_raw(OLD, -19, &[], &payload, b""),
        anchor_error(AnchorError::BadSignature),
    );
    refused(
        &mut d,
        OLD,
        &sign_raw(OLD, -7, &[], &payload, EXTERNAL_AAD),
        anchor_error(AnchorError::NotEd25519 { alg: -7 }),
    );
}

#[test]
fn refuses_a_revoked_signer() {
    let mut d = Dev::with_key_slots(0xFF, 2, 4, &releases()[0], &[Some(0), Some(1), None]);
    d.updater().unwrap().revoke(1).unwrap();
    refused(
        &mut d,
        NEW,
        &command(NEW, 1, add(2, 3)),
        anchor_error(AnchorError::RevokedSigner { slot: 1 }),
    );
}

#[test]
fn refuses_replayed_and_out_of_order_commands_and_takes_an_applied_one_as_a_no_op() {
    let mut d = device();
    refused(
        &mut d,
        OLD,
        &command(OLD, 2, add(1, NEW)),
        anchor_error(AnchorError::OutOfOrder {
            counter: 2,
            expected: 1,
        }),
    );
    let first = command(OLD, 1, add(1, NEW));
    // Another command 1, signed but superseded by the one applied: a replay.
    let superseded = command(OLD, 1, add(2, 3));
    assert_eq!(apply(&mut d, OLD, &first), Ok(AnchorOutcome::Applied));
    refused(
        &mut d,
        OLD,
        &superseded,
        anchor_error(AnchorError::Replayed {
            counter: 1,
            current: 1,
        }),
    );
    assert_eq!(
        apply(&mut d, OLD, &first),
        Ok(AnchorOutcome::AlreadyApplied)
    );
    refused(
        &mut d,
        NEW,
        &command(NEW, 0, add(2, 3)),
        anchor_error(AnchorError::Malformed {
            offset: 20,
            expected: "a counter from 1 to 2^32 - 1",
        }),
    );
}

#[test]
fn refuses_a_slot_that_is_not_spare_out_of_range_empty_or_a_key_already_trusted() {
    let mut d = device();
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, add(0, NEW)),
        anchor_error(AnchorError::SlotNotSpare { slot: 0 }),
    );
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, add(3, NEW)),
        anchor_error(AnchorError::NoSuchSlot { slot: 3 }),
    );
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, Change::Revoke { slot: 7 }),
        anchor_error(AnchorError::NoSuchSlot { slot: 7 }),
    );
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, add(2, OLD)),
        anchor_error(AnchorError::AlreadyTrusted { slot: 0 }),
    );
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, Change::Revoke { slot: 2 }),
        anchor_error(AnchorError::SlotEmpty { slot: 2 }),
    );
    // A spare slot revoked before it held a key never takes one.
    d.updater().unwrap().revoke(2).unwrap();
    refused(
        &mut d,
        OLD,
        &command(OLD, 1, add(2, NEW)),
        anchor_error(AnchorError::SlotNotSpare { slot: 2 }),
    );
}

/// The payload of a signed command (the COSE_Sign1's third item).
fn payload_of(cmd: &[u8]) -> Vec<u8> {
    rota_manifest::CoseSign1::from_bytes(cmd)
        .unwrap()
        .payload
        .unwrap()
        .to_vec()
}

/// A COSE_Sign1 over any `payload`, with protected `{1: alg, 4: kid}` followed by the
/// raw header entries `extra` (counted in the map), signed by signer `by` with `aad`.
fn sign_raw(by: u8, alg: i64, extra: &[(u8, &[u8])], payload: &[u8], aad: &[u8]) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, n: usize) {
        match n {
            0..=23 => out.push(major << 5 | n as u8),
            24..=255 => out.extend([major << 5 | 24, n as u8]),
            _ => out.extend([major << 5 | 25, (n >> 8) as u8, n as u8]),
        }
    }
    let mut protected = Vec::new();
    head(&mut protected, 5, 2 + extra.len());
    protected.push(1);
    match alg {
        0.. => head(&mut protected, 0, alg as usize),
        _ => head(&mut protected, 1, (-1 - alg) as usize),
    }
    protected.push(4);
    head(&mut protected, 2, 32);
    protected.extend(key_id(by));
    for (label, value) in extra {
        protected.push(*label);
        protected.extend(*value);
    }
    let mut tbs = [0u8; 512];
    let message = rota_manifest::cose::sig_structure(&protected, aad, payload, &mut tbs).unwrap();
    let signature = signer(by).sign(message).unwrap();
    let mut out = vec![0xd2, 0x84];
    head(&mut out, 2, protected.len());
    out.extend(&protected);
    out.push(0xa0);
    head(&mut out, 2, payload.len());
    out.extend(payload);
    head(&mut out, 2, signature.len());
    out.extend(&signature);
    out
}

#[test]
fn refuses_malformed_and_partial_commands_signed_or_not_and_never_panics() {
    let mut d = device();
    let good = command(OLD, 1, add(1, NEW));
    // Every prefix (a partial download) and a trailing byte.
    for len in 0..good.len() {
        assert!(matches!(
            apply(&mut d, OLD, &good[..len]),
            Err(Error::Anchor(AnchorError::Cose(_)))
        ));
    }
    let mut trailing = good.clone();
    trailing.push(0);
    refused(
        &mut d,
        OLD,
        &trailing,
        anchor_error(AnchorError::Cose(rota_manifest::Error::TrailingBytes {
            offset: good.len(),
        })),
    );
    // Every byte flipped: refused, nothing burned, no panic.
    let before = otp(&d);
    for at in 0..good.len() {
        for bit in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[at] ^= bit;
            assert!(apply(&mut d, OLD, &bad).is_err(), "byte {at} ^ {bit:#x}");
        }
    }
    assert_eq!(otp(&d), before);

    // Payloads that are signed correctly but break a rule of the format.
    let class = {
        let mut c = vec![0x01, 0x50];
        c.extend(CLASS);
        c
    };
    let hash = {
        let mut h = vec![0x58, 0x20];
        h.extend(key_id(NEW));
        h
    };
    let with = |parts: &[&[u8]]| parts.concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "duplicate key",
            with(&[&[0xa3], &class, &class, &[0x04, 0x00]]),
            "no duplicate key",
        ),
        (
            "keys out of order",
            with(&[&[0xa3, 0x02, 0x01], &class, &[0x04, 0x00]]),
            "keys in ascending order",
        ),
        (
            "unknown key",
            with(&[&[0xa3], &class, &[0x02, 0x01, 0x05, 0x00]]),
            "a known key (1 to 4)",
        ),
        (
            "add and revoke",
            with(&[
                &[0xa4],
                &class,
                &[0x02, 0x01, 0x03, 0x82, 0x01],
                &hash,
                &[0x04, 0x00],
            ]),
            "a map of 3 entries (class, counter, add or revoke)",
        ),
        (
            "no change",
            with(&[&[0xa2], &class, &[0x02, 0x01]]),
            "a map of 3 entries (class, counter, add or revoke)",
        ),
        (
            "trailing bytes in the payload",
            with(&[&[0xa3], &class, &[0x02, 0x01, 0x04, 0x00, 0x00]]),
            "the end of the payload",
        ),
        (
            "a counter not in shortest form",
            with(&[&[0xa3], &class, &[0x02, 0x18, 0x01, 0x04, 0x00]]),
            "a shortest-form CBOR head",
        ),
        (
            "an indefinite-length map",
            with(&[&[0xbf], &class, &[0x02, 0x01, 0x04, 0x00, 0xff]]),
            "a definite-length CBOR head",
        ),
        (
            "a short class id",
            with(&[&[0xa3, 0x01, 0x4f], &CLASS[..15], &[0x02, 0x01, 0x04, 0x00]]),
            "a 16-byte class id",
        ),
        (
            "an all-zero key hash",
            with(&[
                &[0xa3],
                &class,
                &[0x02, 0x01, 0x03, 0x82, 0x01, 0x58, 0x20],
                &[0; 32],
            ]),
            "a key hash that is not all zero",
        ),
        (
            "a signed integer slot",
            with(&[&[0xa3], &class, &[0x02, 0x01, 0x04, 0x20]]),
            "a key slot",
        ),
        (
            "add and revoke, no counter",
            with(&[&[0xa3], &class, &[0x03, 0x82, 0x01], &hash, &[0x04, 0x00]]),
            "one change: add or revoke, not both",
        ),
        (
            "a counter beyond 32 bits",
            with(&[
                &[0xa3],
                &class,
                &[0x02, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0, 0x04, 0x00],
            ]),
            "a counter from 1 to 2^32 - 1",
        ),
    ];
    for (what, payload, expected) in cases {
        let cmd = sign_raw(OLD, -19, &[], &payload, EXTERNAL_AAD);
        match apply(&mut d, OLD, &cmd) {
            Err(Error::Anchor(AnchorError::Malformed { expected: e, .. })) if e == expected => {}
            other => panic!("{what}: {other:?}, expected Malformed({expected})"),
        }
    }
    assert_eq!(otp(&d), before);
    // The payload builder's own output decodes to what it encoded.
    assert_eq!(
        AnchorCommand::decode(&payload_of(&good)).unwrap().change,
        add(1, NEW)
    );
    // An unknown critical header (crit: [99]).
    let crit = sign_raw(
        OLD,
        -19,
        &[(2, &[0x81, 0x18, 99])],
        &payload_of(&good),
        EXTERNAL_AAD,
    );
    refused(
        &mut d,
        OLD,
        &crit,
        anchor_error(AnchorError::Cose(
            rota_manifest::Error::UnknownCriticalHeader { label: Some(99) },
        )),
    );
}

#[test]
fn a_map_before_version_3_takes_no_commands() {
    let mut d = device();
    let mut map = otp_map::provision(&[Some(key_id(OLD))], &VENDOR, &CLASS, None).unwrap();
    map[4] = 1;
    map[otp_map::V1_LEN..].fill(0);
    let mut flash = d.flash.fork(d.rail.clone());
    let mut updater = Updater::<_, _>::new(
        &mut flash,
        OtpRot::open(&mut map).unwrap(),
        d.layout,
        &mut d.scratch,
    )
    .unwrap();
    assert!(matches!(
        updater.apply_anchor_command(&public_key(OLD), &command(OLD, 1, add(1, NEW))),
        Err(Error::Anchor(AnchorError::Unsupported))
    ));
    assert_eq!(updater.trust_status().unwrap().free_key_slots, 0);
}

// ---------------------------------------------------------------------------------
// The power-cut sweep over the whole rollover.

#[derive(Clone, Debug)]
enum Step {
    Boot,
    /// A trust-anchor command, signed by signer `by`.
    Anchor {
        by: u8,
        cmd: Vec<u8>,
    },
    Download(usize),
    MarkPending,
    Confirm,
}

fn scenario() -> Vec<Step> {
    vec![
        Step::Boot,
        Step::Anchor {
            by: OLD,
            cmd: command(OLD, 1, add(1, NEW)),
        },
        Step::Boot,
        Step::Download(1),
        Step::MarkPending,
        Step::Boot,
        Step::Confirm,
        Step::Boot,
        Step::Anchor {
            by: NEW,
            cmd: command(NEW, 2, Change::Revoke { slot: 0 }),
        },
        Step::Boot,
    ]
}

fn run(d: &mut Dev, step: &Step) -> Result<(), SimError<4096, 4>> {
    let releases = releases();
    match step {
        Step::Boot => d.boot().map(|_| ()),
        Step::Anchor { by, cmd } => apply(d, *by, cmd).map(|_| ()),
        Step::Download(n) => d.download(&releases[*n]),
        Step::MarkPending => d.updater()?.mark_pending().map(|_| ()),
        Step::Confirm => d.updater()?.confirm(),
    }
}

/// Boots until a boot that is not a trial; every boot runs a signed release whose key
/// is trusted and not revoked, and never falls into recovery.
fn settle(d: &mut Dev) -> Vec<(Slot, bool, usize)> {
    let releases = releases();
    let mut trace = Vec::new();
    for _ in 0..=d.layout.max_trial_boots + 1 {
        let (slot, trial, n) = booted_release(d);
        let key = key_id([OLD, NEW][n]);
        let keys = d.otp.keys_now();
        let slot_of = keys.iter().position(|k| *k == Some(key));
        assert!(
            slot_of.is_some_and(|s| !d.otp.revoked_now()[s]),
            "booted release {n} ({:?}) signed by a key not trusted: {keys:?}",
            releases[n].key
        );
        trace.push((slot, trial, n));
        if !trial {
            return trace;
        }
    }
    panic!("the device did not settle: {trace:?}");
}

/// The trusted keys and revocations alone: what decides what boots.
fn trust(d: &Dev) -> (Vec<Option<KeyHash>>, Vec<bool>) {
    (d.otp.keys_now(), d.otp.revoked_now().to_vec())
}

#[test]
fn every_cut_in_a_rollover_leaves_the_old_trust_or_the_new_never_a_half_trusted_key() {
    let started = std::time::Instant::now();
    let mut device = device();
    let mut kinds = vec![(CutKind::Before, 0), (CutKind::After, 0)];
    kinds.extend((0..4).map(|seed| (CutKind::Torn, seed)));
    let (mut points, mut second_cuts, mut operations) = (0u64, 0u64, 0u64);
    for (index, step) in scenario().iter().enumerate() {
        let before_trace = settle(&mut device.fork());
        let before_trust = trust(&device);
        let mut after = device.fork();
        run(&mut after, step).unwrap_or_else(|e| panic!("step {index} {step:?} fails uncut: {e}"));
        let ops = after.rail.operations();
        operations += ops;
        let after_trace = settle(&mut after.fork());
        let (after_trust, after_otp) = (trust(&after), otp(&after));
        for op in 0..ops {
            for &(kind, seed) in &kinds {
                let seed = seed ^ (index as u64) << 32 ^ op << 8;
                let mut cut = device.fork();
                cut.rail.schedule_cut(PowerCut { at: op, kind, seed });
                assert!(
                    run(&mut cut, step).is_err(),
                    "step {index}: cut at {op} did not stop it"
                );
                cut.rail.power_on();
                let t = trust(&cut);
                assert!(
                    t == before_trust || t == after_trust,
                    "step {index} {step:?}, cut {kind:?} at {op}/{ops}: half-trusted\n  cut: {t:?}\n  before: {before_trust:?}\n  after: {after_trust:?}"
                );
                let unbooted = cut.fork();
                let trace = settle(&mut cut);
                assert!(
                    trace == before_trace || trace == after_trace,
                    "step {index} {step:?}, cut {kind:?} at {op}: boots {trace:?}, before {before_trace:?}, after {after_trace:?}"
                );
                points += 1;
                let Step::Anchor { by, cmd } = step else {
                    continue;
                };
                // The same command again completes it, exactly.
                assert!(
                    apply(&mut cut, *by, cmd).is_ok(),
                    "step {index}: re-applying after a cut at {op}"
                );
                assert_eq!(
                    otp(&cut),
                    after_otp,
                    "step {index}: re-applied after a cut at {op}"
                );
                // ...even when that is cut too, at any of its own operations.
                let mut probe = unbooted.fork();
                apply(&mut probe, *by, cmd).unwrap();
                for op2 in 0..probe.rail.operations() {
                    for &(kind2, seed2) in &kinds[..3] {
                        let mut twice = unbooted.fork();
                        twice.rail.schedule_cut(PowerCut {
                            at: op2,
                            kind: kind2,
                            seed: seed ^ seed2 ^ op2,
                        });
                        assert!(apply(&mut twice, *by, cmd).is_err());
                        twice.rail.power_on();
                        let t = trust(&twice);
                        assert!(
                            t == before_trust || t == after_trust,
                            "step {index}: cut at {op}, then at {op2}: {t:?}"
                        );
                        settle(&mut twice.fork());
                        apply(&mut twice, *by, cmd).unwrap();
                        assert_eq!(
                            otp(&twice),
                            after_otp,
                            "step {index}: cut at {op}, then at {op2}, re-applied"
                        );
                        second_cuts += 1;
                    }
                }
            }
        }
        device = after;
    }
    assert_eq!(device.otp.keys_now()[1], Some(key_id(NEW)));
    assert_eq!(device.otp.revoked_now(), [true, false, false]);
    eprintln!(
        "trust-anchor rollover power-cut sweep: {points} cut points over {operations} operations, \
         {second_cuts} second cuts while re-applying a command, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------
// The figure: what a full rollover costs in OTP bits.

/// Ones in the map, per field: its own accounting of what was burned.
fn ones(map: &[u8]) -> u32 {
    map.iter().map(|b| b.count_ones()).sum()
}

/// A full rollover on the real OTP map (`otp_map`, version 3): add key 1 in slot 1
/// (signed by key 0), move to it, revoke slot 0 (signed by key 1). Prints the bits it
/// programs and the map cells it uses up for good.
#[test]
fn a_full_rollover_costs_otp_bits_from_the_maps_own_accounting() {
    let [_, under_new] = releases();
    let d = device();
    let mut flash: SimFlash<4096, 4> = d.flash.fork(d.rail.clone());
    let layout = d.layout;
    let mut scratch = vec![0u8; 1024];
    let mut map = otp_map::provision(
        &[Some(key_id(OLD)), None, None, None],
        &VENDOR,
        &CLASS,
        None,
    )
    .unwrap();
    let fresh = map;
    let boot =
        |flash: &mut SimFlash<4096, 4>, map: &mut [u8; otp_map::OTP_LEN], scratch: &mut [u8]| {
            Bootloader::<_, _>::new(flash, OtpRot::open(map).unwrap(), layout, scratch)
                .unwrap()
                .decide()
                .unwrap()
        };
    macro_rules! updater {
        () => {
            Updater::<_, _>::new(
                &mut flash,
                OtpRot::open(&mut map).unwrap(),
                layout,
                &mut scratch,
            )
            .unwrap()
        };
    }
    boot(&mut flash, &mut map, &mut scratch);
    // After the first boot, which burns the factory image's floor.
    let floor_before = map;
    let status_before = updater!().trust_status().unwrap();
    let add_new = command(OLD, 1, add(1, NEW));
    assert_eq!(
        updater!().apply_anchor_command(&public_key(OLD), &add_new),
        Ok(AnchorOutcome::Applied)
    );
    let after_add = map;
    {
        let mut u = updater!();
        let from = u.stage(&under_new.key, &under_new.envelope).unwrap();
        assert_eq!(from, 0);
        for (i, chunk) in under_new.image.chunks(CHUNK).enumerate() {
            u.write((i * CHUNK) as u32, chunk).unwrap();
        }
        u.mark_pending().unwrap();
    }
    assert!(matches!(
        boot(&mut flash, &mut map, &mut scratch),
        BootDecision::Boot { trial: true, .. }
    ));
    updater!().confirm().unwrap();
    let before_revoke = map;
    let revoke_old = command(NEW, 2, Change::Revoke { slot: 0 });
    assert_eq!(
        updater!().apply_anchor_command(&public_key(NEW), &revoke_old),
        Ok(AnchorOutcome::Applied)
    );
    let status_after = updater!().trust_status().unwrap();
    assert!(matches!(
        boot(&mut flash, &mut map, &mut scratch),
        BootDecision::Boot { trial: false, .. }
    ));
    assert_ne!(floor_before, fresh, "the first boot commits the floor");

    // Bits programmed: the add, then the revoke (the floor is the releases', not the rollover's).
    let programmed_add = ones(&after_add) - ones(&floor_before);
    let programmed_revoke = ones(&map) - ones(&before_revoke);
    let hash_ones = key_id(NEW).iter().map(|b| b.count_ones()).sum::<u32>();
    assert_eq!(
        programmed_add,
        hash_ones + 1 + 1,
        "the hash's ones, the valid bit, a counter bit"
    );
    assert_eq!(programmed_revoke, 1 + 1, "a revocation bit, a counter bit");

    // Cells used up for good: a whole key slot (256 hash bits and its valid bit), one
    // revocation bit, two counter bits.
    let slots_used = status_before.free_key_slots - status_after.free_key_slots;
    let counter_bits = status_after.anchor_commands - status_before.anchor_commands;
    let revocation_bits = status_after.revoked_key_slots - status_before.revoked_key_slots;
    let used = slots_used as u32 * (256 + 1) + counter_bits + revocation_bits as u32;
    assert_eq!((slots_used, counter_bits, revocation_bits), (1, 2, 1));
    assert_eq!(used, 260);
    eprintln!(
        "a full firmware-key rollover (add + revoke) uses {used} bits of the OTP map for good \
         (a key slot's 256 hash bits and its valid bit, 1 revocation bit, 2 command-counter bits) \
         and programs {} of them to 1 ({programmed_add} for the add: {hash_ones} ones in the key's \
         hash + valid + counter; {programmed_revoke} for the revoke); the map has room for {} more \
         adds and {} more commands",
        programmed_add + programmed_revoke,
        status_after.free_key_slots,
        status_after.anchor_commands_left
    );
}
