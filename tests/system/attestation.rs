//! Remote attestation end to end: simulated devices whose rota-boot runs its DICE layer,
//! the real agent's evidence, a real rota-server appraising it. Each test is named after
//! what it catches.

use crate::support;

use reqwest::Method;
use rota_agent::attest;
use rota_agent::device::Device;
use rota_agent::device::sim::{SimDevice, sim_bootloader};
use rota_agent::fleet::new_uds;
use rota_agent::server::{AnswerLimits, ServerClient, ServerError};
use rota_protocol::api::{AttestationState, CheckInQuery, Evidence, Report, ReportKind, SlotState};
use rota_protocol::{DeviceCertificate, SoftwareKey};
use serde_json::{Value, json};
use support::{CLASS, World, class_text};

/// One simulated device talking to the server directly, so a test can make it say what
/// a compromised application would.
struct Rig {
    device: SimDevice,
    certificate: DeviceCertificate,
    client: ServerClient,
}

impl Rig {
    /// A device with `uds` and identity `key` (certified with that UDS's DeviceID by the
    /// world's CA unless `certificate` is given), running `factory`'s image, enrolled.
    fn new(
        world: &World,
        id: &str,
        uds: [u8; 32],
        identity: Option<(SoftwareKey, DeviceCertificate)>,
        bootloader: [u8; 32],
    ) -> Rig {
        let (key, certificate) = identity.unwrap_or_else(|| world.dice_identity(id, &uds));
        let mut factory = world.factory();
        factory.bootloader = bootloader;
        let dir = world
            .state_root("attest")
            .join(format!("{id}-{}", hex::encode(&uds[..4])));
        let device = world.manufacture(id, &key, uds, &factory, dir);
        let client = ServerClient::new(world.http.clone(), &world.base, AnswerLimits::default());
        client
            .enroll(device.identity(), &certificate)
            .expect("enrolment");
        Rig {
            device,
            certificate,
            client,
        }
    }

    /// Evidence of the device's current boot, answering a fresh challenge.
    fn evidence(&self) -> Evidence {
        let nonce = self
            .client
            .attestation_nonce(self.device.identity())
            .unwrap();
        attest::evidence(&self.device, &nonce).unwrap()
    }

    fn attest(&self, evidence: Evidence) -> Result<AttestationState, ServerError> {
        self.client
            .attest(self.device.identity(), evidence)
            .map(|r| r.attestation)
    }
}

fn set_policy(world: &World, policy: &str, bootloaders: &[[u8; 32]]) {
    let bootloaders: Vec<String> = bootloaders.iter().map(hex::encode).collect();
    world.admin_call(
        Method::PUT,
        &format!("/api/v1/classes/{}/attestation", class_text(CLASS)),
        Some(json!({ "policy": policy, "bootloaders": bootloaders })),
    );
}

fn device_record(world: &World, id: &str) -> Value {
    world.admin_call(Method::GET, &format!("/api/v1/devices/{id}"), None)
}

fn refused_with(result: Result<AttestationState, ServerError>, status: u16, needle: &str) {
    match result {
        Err(ServerError::Refused { status: s, message }) => {
            assert_eq!(s, status, "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

/// A world whose class requires hardware-rooted evidence from the simulated bootloader,
/// with the factory image (1.0.0) published as a signed release.
fn attesting_world() -> World {
    let world = World::start();
    world.publish(&world.release("1.0.0", 1, 0));
    set_policy(&world, "required", &[sim_bootloader()]);
    world
}

#[test]
fn an_application_reporting_the_new_version_while_the_old_image_is_measured_is_not_counted_and_is_flagged()
 {
    let world = attesting_world();
    let liar = Rig::new(&world, "liar-1", new_uds().unwrap(), None, sim_bootloader());
    let mute = Rig::new(&world, "mute-1", new_uds().unwrap(), None, sim_bootloader());
    assert_eq!(liar.attest(liar.evidence()).unwrap(), AttestationState::Ok);

    let release = world.publish(&world.release("1.1.0", 2, 0));
    let rollout = world.rollout(&release, &[100.0], 1, 0.9);
    let query = CheckInQuery {
        version: 1,
        slot: SlotState::Confirmed,
        last: None,
    };
    let assigned = |rig: &Rig| {
        rig.client
            .check_in(rig.device.identity(), &query, None)
            .unwrap()
            .answer
            .assignment
            .expect("version 2 is assigned")
            .rollout_id
    };
    let (liar_rollout, mute_rollout) = (assigned(&liar), assigned(&mute));

    // A confirmation with no evidence at all is not counted.
    let report = Report::new(ReportKind::Confirmed, 2, Some(mute_rollout), None).unwrap();
    mute.client.report(mute.device.identity(), &report).unwrap();
    let status = world.status(&rollout);
    assert_eq!(status.counts.total.confirmed, 0, "{status:?}");

    // The application never installs version 2, and reports it confirmed, with evidence
    // of the boot it really runs (version 1: the only Alias key it holds).
    let mut report = Report::new(ReportKind::Confirmed, 2, Some(liar_rollout), None).unwrap();
    report.evidence = Some(liar.evidence());
    liar.client.report(liar.device.identity(), &report).unwrap();

    let status = world.status(&rollout);
    assert_eq!(status.counts.total.confirmed, 0, "{status:?}");
    assert_eq!(status.counts.total.failed, 2, "{status:?}");
    let record = device_record(&world, "liar-1");
    assert_eq!(record["attestation"], "failed", "{record}");
    assert!(
        record["attestation_reason"]
            .as_str()
            .unwrap()
            .contains("measured at boot is version 1"),
        "{record}"
    );
    // Flagged: offered nothing from now on.
    let again = liar
        .client
        .check_in(liar.device.identity(), &query, None)
        .unwrap();
    assert!(again.answer.assignment.is_none(), "{again:?}");
}

#[test]
fn replayed_evidence_with_an_old_nonce_is_refused() {
    let world = attesting_world();
    let rig = Rig::new(
        &world,
        "replay-1",
        new_uds().unwrap(),
        None,
        sim_bootloader(),
    );
    let evidence = rig.evidence();
    assert_eq!(rig.attest(evidence.clone()).unwrap(), AttestationState::Ok);
    refused_with(rig.attest(evidence), 400, "nonce");
    // A nonce the server never issued.
    let made_up = attest::evidence(&rig.device, &[7; 32]).unwrap();
    refused_with(rig.attest(made_up), 400, "nonce");
    // Each refusal is in the audit log.
    let audit = world.admin_call(Method::GET, "/api/v1/audit", None);
    let entries = audit.as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["subject"]
            .as_str()
            .is_some_and(|s| s.contains("attestation of device replay-1"))
            && e["detail"].as_str().is_some_and(|d| d.contains("nonce"))),
        "{audit}"
    );
    // Still attested: refusals change nothing.
    assert_eq!(device_record(&world, "replay-1")["attestation"], "ok");
}

#[test]
fn evidence_signed_by_another_devices_alias_key_is_refused() {
    let world = attesting_world();
    let mine = Rig::new(
        &world,
        "alias-1",
        new_uds().unwrap(),
        None,
        sim_bootloader(),
    );
    let theirs = Rig::new(
        &world,
        "alias-2",
        new_uds().unwrap(),
        None,
        sim_bootloader(),
    );
    // Their evidence (their Alias key, their chain), answering my challenge, sent as mine.
    let nonce = mine
        .client
        .attestation_nonce(mine.device.identity())
        .unwrap();
    let stolen = attest::evidence(&theirs.device, &nonce).unwrap();
    refused_with(
        mine.attest(stolen),
        403,
        "not the one the device's certificate binds",
    );
    assert_ne!(device_record(&world, "alias-1")["attestation"], "ok");
}

#[test]
fn a_clone_with_the_identity_certificate_copied_to_another_uds_is_detected() {
    let world = attesting_world();
    let uds = new_uds().unwrap();
    let (key, certificate) = world.dice_identity("original-1", &uds);
    let original = Rig::new(
        &world,
        "original-1",
        uds,
        Some((key.clone(), certificate.clone())),
        sim_bootloader(),
    );
    assert_eq!(
        original.attest(original.evidence()).unwrap(),
        AttestationState::Ok
    );
    // The identity key and certificate copied onto another part (another UDS).
    let clone = Rig::new(
        &world,
        "original-1",
        new_uds().unwrap(),
        Some((key, certificate)),
        sim_bootloader(),
    );
    assert_eq!(clone.certificate, original.certificate);
    refused_with(clone.attest(clone.evidence()), 403, "copied identity");
    let record = device_record(&world, "original-1");
    assert_eq!(record["attestation"], "failed", "{record}");
    // The flag sticks: the original's good evidence does not clear it.
    assert_eq!(
        original.attest(original.evidence()).unwrap(),
        AttestationState::Ok,
        "the original's evidence itself verifies"
    );
    let record = device_record(&world, "original-1");
    assert_eq!(record["attestation"], "failed", "{record}");
    assert!(
        record["attestation_reason"]
            .as_str()
            .unwrap()
            .starts_with("clone: "),
        "{record}"
    );
}

#[test]
fn a_changed_bootloader_changes_the_measurement_and_the_server_notices() {
    let world = attesting_world();
    let mut other = sim_bootloader();
    other[0] ^= 1;
    let good = Rig::new(
        &world,
        "boot-good",
        new_uds().unwrap(),
        None,
        sim_bootloader(),
    );
    let changed = Rig::new(&world, "boot-changed", new_uds().unwrap(), None, other);
    // The same image, another bootloader: another Alias key.
    assert_eq!(
        good.device.handoff().unwrap().device_id.len(),
        changed.device.handoff().unwrap().device_id.len()
    );
    assert_eq!(good.attest(good.evidence()).unwrap(), AttestationState::Ok);
    let state = changed.attest(changed.evidence()).unwrap();
    assert_eq!(state, AttestationState::Failed);
    let record = device_record(&world, "boot-changed");
    assert!(
        record["attestation_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("bootloader measurement {}", hex::encode(other))),
        "{record}"
    );
    // Excluded from rollouts; the good device is offered the release.
    let release = world.publish(&world.release("1.1.0", 2, 0));
    world.rollout(&release, &[100.0], 1, 0.9);
    let query = CheckInQuery {
        version: 1,
        slot: SlotState::Confirmed,
        last: None,
    };
    let offered = |rig: &Rig| {
        rig.client
            .check_in(rig.device.identity(), &query, None)
            .unwrap()
            .answer
            .assignment
            .is_some()
    };
    assert!(offered(&good));
    assert!(!offered(&changed));
}

#[test]
fn malformed_oversized_or_unknown_evidence_is_a_clear_4xx_and_counts_nothing() {
    let world = attesting_world();
    let rig = Rig::new(&world, "junk-1", new_uds().unwrap(), None, sim_bootloader());
    refused_with(rig.attest(Evidence(vec![0x82, 0x01])), 400, "malformed");
    refused_with(rig.attest(Evidence(vec![0; 5000])), 400, "more than");
    // Software-measured evidence from a device whose certificate binds a DeviceID.
    let nonce = rig.client.attestation_nonce(rig.device.identity()).unwrap();
    let software = rota_protocol::attestation::software_evidence(
        &*rig.device.identity().key,
        &rota_boot::dice::Measurement {
            image_digest: rig.device.running().unwrap().digest,
            security_version: 1,
            sequence: 1,
            slot: rota_boot::Slot::A,
            signer: [0; 32],
            bootloader: [0; 32],
        },
        &rota_protocol::attestation::Statement {
            nonce: &nonce,
            boot_count: 1,
        },
    )
    .unwrap();
    refused_with(rig.attest(Evidence(software)), 400, "software-measured");
    assert_eq!(device_record(&world, "junk-1")["attestation"], "none");
    // A body that is not an attestation at all.
    let metrics = world
        .http
        .get(world.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("rota_attestation_total{result=\"refused\""),
        "{metrics}"
    );
}

#[test]
fn a_device_sending_evidence_in_a_loop_is_answered_429_like_report_spam() {
    let world = World::start_with(|s| {
        s.reports_per_minute = Some(1);
        s.report_burst = Some(2);
    });
    world.publish(&world.release("1.0.0", 1, 0));
    let rig = Rig::new(&world, "spam-1", new_uds().unwrap(), None, sim_bootloader());
    for _ in 0..2 {
        assert_eq!(rig.attest(rig.evidence()).unwrap(), AttestationState::Ok);
    }
    match rig.attest(rig.evidence()) {
        Err(ServerError::Transient(message)) => assert!(message.contains("429"), "{message}"),
        other => panic!("expected a 429, got {other:?}"),
    }
}
