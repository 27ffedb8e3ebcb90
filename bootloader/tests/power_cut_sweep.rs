//! The power-cut sweep: an update scenario cut at every flash and OTP operation, in
//! each of the three ways (before, after, torn), on three flash geometries.
//!
//! After every cut the device reboots until it settles (a boot that is not a trial),
//! and the sweep checks that:
//! - every boot runs an image that is byte-for-byte one of the signed releases, at or
//!   above both the OTP floor and every floor a returned `confirm` committed to, and
//!   signed by a key that is not revoked;
//! - the device never falls into recovery (a confirmed image is never lost);
//! - what it does from then on (each boot's decision, journal state, floor, revocation
//!   bits) is exactly what it does when the interrupted step never ran or fully ran:
//!   the state is before or after the step, never in between;
//! - an interrupted download resumes where `rota-boot` says and completes to a
//!   verifiable image;
//! - a second cut, at any operation of the first reboot, still settles safely where
//!   the step had never run or fully ran.
//!
//! `ROTA_SWEEP_TORN_SEEDS` (default 4) sets how many different torn outcomes are tried
//! at each operation.

mod support;

use std::time::Instant;

use rota_boot::sim::{CutKind, PowerCut};
use rota_boot::{BootDecision, Slot};
use support::*;

/// Image bytes of each release: several sectors on the small geometries.
const IMAGE: usize = 20_000;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Power on: the bootloader decides.
    Boot,
    /// The running firmware stages release `n` and writes its image.
    Download(usize),
    MarkPending,
    Confirm,
    /// The trial image fails its health check and rejects itself.
    RejectTrial,
    /// The running firmware revokes a root-of-trust key slot.
    Revoke(usize),
}

/// v1 (factory), v2, v3 (signed by the second key), v4.
fn releases() -> Vec<Release> {
    vec![
        release(0, 1, 1, IMAGE),
        release(0, 2, 2, IMAGE),
        release(1, 3, 3, IMAGE),
        release(0, 4, 4, IMAGE + 4_321),
    ]
}

/// Update to v2 and confirm it; v3 never confirms and is reverted after its trial
/// boots; the key that signed v3 is revoked; v4 is staged again while pending (an agent
/// restarting its download), then fails its health check.
const SCENARIO: [Step; 20] = [
    Step::Boot,
    Step::Download(1),
    Step::MarkPending,
    Step::Boot,
    Step::Confirm,
    Step::Boot,
    Step::Download(2),
    Step::MarkPending,
    Step::Boot,
    Step::Boot,
    Step::Boot,
    Step::Boot,
    Step::Revoke(1),
    Step::Download(3),
    Step::MarkPending,
    Step::Download(3),
    Step::MarkPending,
    Step::Boot,
    Step::RejectTrial,
    Step::Boot,
];

fn run<const E: usize, const W: usize>(
    d: &mut Device<E, W>,
    step: Step,
    releases: &[Release],
) -> Result<(), SimError<E, W>> {
    match step {
        Step::Boot => d.boot().map(|_| ()),
        Step::Download(n) => d.download(&releases[n]),
        Step::MarkPending => d.updater()?.mark_pending().map(|_| ()),
        Step::Confirm => d.updater()?.confirm(),
        Step::RejectTrial => d.updater()?.revert(),
        Step::Revoke(key_slot) => d.updater()?.revoke(key_slot),
    }
}

/// What one boot did, as ground truth: which release ran, from where, on trial or not.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    slot: Slot,
    trial: bool,
    release: usize,
    observed: Observed,
}

/// Boots until a non-trial boot, checking every boot's safety; returns what happened.
fn settle<const E: usize, const W: usize>(
    d: &mut Device<E, W>,
    releases: &[Release],
    committed_floor: u32,
) -> Vec<Outcome> {
    let mut trace = Vec::new();
    for _ in 0..=d.layout.max_trial_boots + 1 {
        let decision = d.boot().expect("the bootloader runs with power on");
        let (slot, trial) = match decision {
            BootDecision::Boot { image, trial } => (image.slot, trial),
            BootDecision::Recovery(why) => panic!("a confirmed image was lost: recovery ({why})"),
        };
        let release = releases
            .iter()
            .position(|r| d.holds(slot, r))
            .unwrap_or_else(|| panic!("booted slot {slot:?} holds no signed release"));
        let r = &releases[release];
        let observed = d.observe();
        assert!(
            r.security_version >= u64::from(observed.floor)
                && r.security_version >= u64::from(committed_floor),
            "booted security version {} below the floor (OTP {}, committed {committed_floor})",
            r.security_version,
            observed.floor
        );
        let key_slot = TRUSTED_SIGNERS
            .iter()
            .position(|&n| public_key(n) == r.key)
            .expect("releases are signed by trusted keys");
        assert!(
            !observed.revoked[key_slot],
            "booted an image signed by revoked key slot {key_slot}"
        );
        trace.push(Outcome {
            slot,
            trial,
            release,
            observed,
        });
        if !trial {
            return trace;
        }
    }
    panic!("the device did not settle: {trace:#?}");
}

struct Figures {
    points: u64,
    double_cuts: u64,
    operations: u64,
}

fn torn_seeds() -> u64 {
    std::env::var("ROTA_SWEEP_TORN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

fn sweep<const E: usize, const W: usize>(
    erased: u8,
    journal_sectors: u32,
    slot_sectors: u32,
) -> Figures {
    let releases = releases();
    let mut device = Device::<E, W>::new(erased, journal_sectors, slot_sectors, &releases[0]);
    let mut committed_floor = 0;
    let mut figures = Figures {
        points: 0,
        double_cuts: 0,
        operations: 0,
    };
    let mut kinds = vec![(CutKind::Before, 0), (CutKind::After, 0)];
    kinds.extend((0..torn_seeds()).map(|seed| (CutKind::Torn, seed)));

    for (index, &step) in SCENARIO.iter().enumerate() {
        let before_trace = settle(&mut device.fork(), &releases, committed_floor);
        let mut after = device.fork();
        run(&mut after, step, &releases)
            .unwrap_or_else(|e| panic!("step {index} {step:?} fails uncut: {e}"));
        let operations = after.rail.operations();
        let after_floor = committed_floor.max(if matches!(step, Step::Confirm) {
            after.otp.floor_now()
        } else {
            0
        });
        let after_trace = settle(&mut after.fork(), &releases, after_floor);
        figures.operations += operations;

        for op in 0..operations {
            for &(kind, seed) in &kinds {
                let mut cut = device.fork();
                let seed = seed ^ (index as u64) << 32 ^ op << 8 ^ (E as u64);
                cut.rail.schedule_cut(PowerCut { at: op, kind, seed });
                let result = run(&mut cut, step, &releases);
                assert!(
                    result.is_err() && !cut.rail.is_powered(),
                    "step {index} {step:?}: the cut at operation {op} did not stop it"
                );
                cut.rail.power_on();
                let unbooted = cut.fork();
                let trace = settle(&mut cut, &releases, committed_floor);
                assert!(
                    trace == before_trace || trace == after_trace,
                    "step {index} {step:?}, cut {kind:?} at operation {op}/{operations} (seed {seed}): \
                     neither before nor after\n  cut:    {trace:?}\n  before: {before_trace:?}\n  after:  {after_trace:?}"
                );
                if let Step::Download(n) = step {
                    cut.download(&releases[n]).unwrap_or_else(|e| {
                        panic!("step {index}: resuming after a cut at {op} fails: {e}")
                    });
                    cut.updater().unwrap().mark_pending().unwrap_or_else(|e| {
                        panic!("step {index}: the resumed download does not verify after a cut at {op}: {e}")
                    });
                    let slot = cut.updater().unwrap().status().pending.unwrap();
                    assert!(cut.holds(slot, &releases[n]));
                }
                figures.points += 1;

                // A second cut, during the first reboot after this one (which may be
                // journaling a trial start or a revert, or completing a floor burn).
                // Boots it cut short may consume trial starts, so only where the device
                // settles must match: before's or after's.
                let mut probe = unbooted.fork();
                probe.boot().expect("the reboot runs");
                for op2 in 0..probe.rail.operations() {
                    for &(kind2, seed2) in &kinds {
                        let mut twice = unbooted.fork();
                        twice.rail.schedule_cut(PowerCut {
                            at: op2,
                            kind: kind2,
                            seed: seed ^ seed2 ^ op2,
                        });
                        assert!(twice.boot().is_err(), "the second cut stops the reboot");
                        twice.rail.power_on();
                        let settled = settle(&mut twice, &releases, committed_floor);
                        assert!(
                            settled.last() == before_trace.last()
                                || settled.last() == after_trace.last(),
                            "step {index} {step:?}, cut {kind:?} at {op}, then {kind2:?} at reboot operation {op2}: \
                             settles to neither before nor after\n  cut: {settled:?}\n  before: {before_trace:?}\n  after: {after_trace:?}"
                        );
                        figures.double_cuts += 1;
                    }
                }
            }
        }
        device = after;
        committed_floor = after_floor;
    }
    assert_eq!(committed_floor, 2, "the scenario confirms v2 only");
    figures
}

fn report(name: &str, started: Instant, figures: Figures) {
    eprintln!(
        "power-cut sweep, {name}: {} cut points over {} operations, and {} second cuts during the reboot, in {:.1} s",
        figures.points,
        figures.operations,
        figures.double_cuts,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn every_cut_leaves_a_safe_device_4k_sectors_4_byte_writes_erased_ff() {
    let started = Instant::now();
    report(
        "4 KiB sectors, 4-byte writes, erased 0xFF",
        started,
        sweep::<4096, 4>(0xFF, 2, 16),
    );
}

#[test]
fn every_cut_leaves_a_safe_device_128k_sectors_16_byte_writes_erased_ff() {
    let started = Instant::now();
    report(
        "128 KiB sectors, 16-byte writes, erased 0xFF",
        started,
        sweep::<131072, 16>(0xFF, 2, 1),
    );
}

#[test]
fn every_cut_leaves_a_safe_device_2k_sectors_8_byte_writes_erased_00() {
    let started = Instant::now();
    report(
        "2 KiB sectors, 8-byte writes, erased 0x00",
        started,
        sweep::<2048, 8>(0x00, 2, 16),
    );
}
