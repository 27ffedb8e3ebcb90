//! End to end over loopback: the attacks the agent must refuse, one test each. A real
//! rota-server (SQLite), a fault-injecting proxy between it and one simulated device, and
//! the real agent driven pass by pass in the test thread.
//!
//! Every attack is checked the same way ([`Rig::refuses`]): the agent refuses with a
//! reason naming the property that was broken; nothing reaches the device (same version,
//! same firmware, no extra boot, no pending slot, no trial); the agent queues a `failed`
//! report for the assignment's rollout carrying that reason, and the server counts it. Then
//! the attack stops, and the same device installs the legitimate release: a refusal is
//! not a wedge.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use rota_agent::device::Device;
use rota_agent::device::sim::SimDevice;
use rota_agent::fleet::{new_uds, provision};
use rota_agent::state::write_atomically;
use rota_agent::{Agent, Outcome};
use rota_protocol::api::{
    CHECKIN_PATH, MAX_REASON_LEN, REPORT_PATH, ReportKind, RolloutCreate, Selector, Stage,
};
use rota_repo::OnlineSigner;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use support::proxy::{Action, FaultProxy, RequestInfo};
use support::{CLASS, OTHER_CLASS, Release, World, class_text};

const DEVICE: &str = "atk-0001";
/// How long a device may take to get to an outcome that is not "nothing to do yet".
const PATIENCE: Duration = Duration::from_secs(30);
const TIMESTAMP_PATH: &str = "/tuf/metadata/timestamp.json";

/// What the device shows of its boot state: an attack must change none of it.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    version: u64,
    firmware: Option<String>,
    boots: u64,
    pending: bool,
    on_trial: bool,
}

/// One device whose agent talks to the server through the proxy. Fields drop in order:
/// the agent, then the proxy, then the server.
struct Rig {
    agent: Agent<SimDevice>,
    proxy: FaultProxy,
    world: World,
}

impl Rig {
    /// A factory-fresh device (firmware 1.0.0, version 1), enrolled with the server.
    fn start(world: World) -> Rig {
        let proxy = FaultProxy::start(&world.base);
        let uds = new_uds().unwrap();
        let (identity, certificate) = provision(
            &world.ca,
            DEVICE,
            CLASS,
            &[],
            rota_keys::Algorithm::Ed25519,
            Some(&uds),
        )
        .unwrap();
        let state_dir = world.state_root("atk").join(DEVICE);
        let tuf_dir = state_dir.join("tuf");
        std::fs::create_dir_all(&tuf_dir).unwrap();
        write_atomically(&tuf_dir.join("root.json"), &world.root_json()).unwrap();
        let device =
            SimDevice::manufacture(identity, &world.factory(), state_dir, Some(uds)).unwrap();
        let agent = Agent::new(
            device,
            world.agent_config(&proxy.url()),
            world.http.clone(),
            Some(certificate),
        )
        .unwrap();
        let mut rig = Rig {
            agent,
            proxy,
            world,
        };
        assert_eq!(rig.cycle(), Outcome::UpToDate, "the first pass enrols");
        assert!(rig.agent.state().enrolled);
        assert_eq!(rig.facts().version, 1);
        rig
    }

    fn cycle(&mut self) -> Outcome {
        self.agent.cycle().expect("the device does not fail").0
    }

    /// Passes until one does something (the server may take a tick to offer a new
    /// rollout); returns the last outcome, `UpToDate` or `Retrying` after [`PATIENCE`].
    fn next_decision(&mut self) -> Outcome {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.cycle() {
                Outcome::UpToDate | Outcome::Retrying(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn facts(&mut self) -> Facts {
        let device = self.agent.device_mut();
        let version = device.running().map(|r| r.version).unwrap_or(0);
        let firmware = device.firmware().map(|f| f.label);
        let boots = device.boots();
        let status = device.boot_parts().updater().unwrap().status();
        Facts {
            version,
            firmware,
            boots,
            pending: status.pending.is_some(),
            on_trial: status.on_trial,
        }
    }

    /// Waits for the device to install `release`, confirmed, and to run it.
    fn installs(&mut self, release: &Release) {
        let outcome = self.next_decision();
        assert_eq!(
            outcome,
            Outcome::Confirmed(release.version),
            "the device installs {}",
            release.label
        );
        let facts = self.facts();
        assert_eq!(facts.version, release.version, "{facts:?}");
        assert_eq!(facts.firmware.as_deref(), Some(release.label.as_str()));
        assert!(!facts.pending && !facts.on_trial, "{facts:?}");
    }

    /// Publishes `release` and rolls it out to the device (one stage, no retries).
    fn roll_out(&self, release: &Release) -> String {
        let id = self.world.publish(release);
        self.roll_out_published(&id, 0)
    }

    fn roll_out_published(&self, release_id: &str, max_retries: u32) -> String {
        let create = RolloutCreate {
            release_id: release_id.into(),
            selector: Selector {
                class_id: class_text(CLASS),
                tags: vec![],
                versions: vec![],
            },
            stages: vec![Stage::Percent(100.0)],
            success_gate: 1.0,
            failure_threshold: 0.5,
            min_sample: 1,
            device_timeout_s: 600,
            soak_s: 0,
            max_retries,
        };
        let created = self.world.admin_call(
            Method::POST,
            "/api/v1/rollouts",
            Some(serde_json::to_value(create).unwrap()),
        );
        created["id"].as_str().unwrap().to_string()
    }

    fn abort(&self, rollout: &str) {
        self.world.admin_call(
            Method::POST,
            &format!("/api/v1/rollouts/{rollout}/abort"),
            None,
        );
    }

    /// Runs the device under `attack` (a proxy rule) until it refuses the assignment of
    /// `rollout`, and checks that nothing was installed and that the failed report carries
    /// the reason (reports are held back by the proxy meanwhile, so the test reads the
    /// report the agent queued). Then ends the attack, lets the report through, and checks
    /// that the server counted the failure. Returns the reason.
    fn refuses(
        &mut self,
        rollout: &str,
        attack: impl Fn(&RequestInfo) -> Action + Send + Sync + 'static,
    ) -> String {
        let before = self.facts();
        let failed_before = self.world.status(rollout).counts.total.failed;
        self.proxy.set_rule(move |request| {
            if request.path == REPORT_PATH {
                Action::Respond {
                    status: 503,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: br#"{"error":"held back by the test"}"#.to_vec(),
                }
            } else {
                attack(request)
            }
        });
        let outcome = self.next_decision();
        let Outcome::Refused(reason) = outcome else {
            panic!("the agent did not refuse the attack: {outcome:?}");
        };

        // Nothing reached the device: no new version, no boot, no pending slot.
        assert_eq!(
            self.facts(),
            before,
            "the refused update changed the device"
        );
        let state = self.agent.state();
        assert!(state.job.is_none(), "the refused job is over: {state:?}");
        let report = state.outbox.last().cloned().expect("a report is queued");
        assert_eq!(report.kind, ReportKind::Failed, "{report:?}");
        assert_eq!(report.rollout_id.as_deref(), Some(rollout), "{report:?}");
        let truncated: String = reason.chars().take(MAX_REASON_LEN).collect();
        assert_eq!(report.reason.as_deref(), Some(truncated.as_str()));

        // The attack stops: the next pass delivers the report, and as the rollout allows
        // no retry, nothing is assigned.
        self.proxy.clear_rule();
        assert_eq!(self.cycle(), Outcome::UpToDate);
        assert!(self.agent.state().outbox.is_empty(), "the report went out");
        let status = self.world.status(rollout);
        assert_eq!(
            status.counts.total.failed,
            failed_before + 1,
            "the server counted the refusal as failed: {status:?}"
        );
        assert_eq!(self.facts(), before);
        reason
    }

    /// The metadata file the server serves now, fetched directly (as an attacker would
    /// have captured it).
    fn metadata(&self, file: &str) -> Vec<u8> {
        let response = self
            .world
            .http
            .get(self.world.url(&format!("/tuf/metadata/{file}")))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "{file}: {response:?}");
        response.bytes().unwrap().to_vec()
    }

    /// The snapshot the server serves now: the version its timestamp lists.
    fn current_snapshot(&self) -> Vec<u8> {
        let timestamp: Value = serde_json::from_slice(&self.metadata("timestamp.json")).unwrap();
        let version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        self.metadata(&format!("{version}.snapshot.json"))
    }

    /// The version of the device's trusted (persisted) copy of `role`.
    fn trusted_version(&self, role: &str) -> u64 {
        let path = self
            .agent
            .device()
            .state_dir()
            .join("tuf")
            .join(format!("{role}.json"));
        let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        file["signed"]["version"].as_u64().unwrap()
    }
}

/// A proxy rule that rewrites the assignment in every check-in answer with `f`.
fn rewrite_assignment(
    f: impl Fn(&mut Map<String, Value>) + Send + Sync + 'static,
) -> impl Fn(&RequestInfo) -> Action + Send + Sync + 'static {
    let f = Arc::new(f);
    move |request| {
        if request.path != CHECKIN_PATH {
            return Action::Forward;
        }
        let f = f.clone();
        Action::Mutate(Arc::new(move |status, body| {
            if status != 200 {
                return body;
            }
            let mut answer: Value = serde_json::from_slice(&body).unwrap();
            if let Some(assignment) = answer.get_mut("assignment").and_then(Value::as_object_mut) {
                f(assignment);
            }
            serde_json::to_vec(&answer).unwrap()
        }))
    }
}

/// A check-in rewrite that points the assignment at `release`, with all of its facts
/// (target, envelope, version, security version, length, hash) consistent.
fn point_at(release: &Release) -> impl Fn(&RequestInfo) -> Action + Send + Sync + 'static {
    let fields = [
        ("target", Value::from(release.target())),
        ("envelope_target", Value::from(release.envelope_target())),
        ("version", Value::from(release.version)),
        ("security_version", Value::from(release.security_version)),
        ("length", Value::from(release.image.len() as u64)),
        (
            "sha256",
            Value::from(hex::encode(Sha256::digest(&release.image))),
        ),
    ];
    rewrite_assignment(move |assignment| {
        for (name, value) in &fields {
            assignment.insert((*name).to_string(), value.clone());
        }
    })
}

/// A proxy rule that answers every request whose path `matches` with `body` (status 200).
fn serve_instead(
    matches: impl Fn(&str) -> bool + Send + Sync + 'static,
    body: Vec<u8>,
) -> impl Fn(&RequestInfo) -> Action + Send + Sync + 'static {
    move |request| {
        if matches(&request.path) {
            Action::Respond {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.clone(),
            }
        } else {
            Action::Forward
        }
    }
}

fn assert_mentions(reason: &str, words: &[&str]) {
    for word in words {
        assert!(
            reason.contains(word),
            "the refusal {reason:?} does not mention {word:?}"
        );
    }
}

/// The server assigns an image that was uploaded but never signed into TUF targets: TUF
/// §5.7.2 finds no signed target of that name, and nothing is downloaded.
#[test]
fn refuses_a_target_that_is_not_in_the_signed_targets() {
    let mut rig = Rig::start(World::start());
    let good = rig.world.release("1.1.0", 2, 0);
    let rollout = rig.roll_out(&good);

    let unsigned = rig.world.release("6.6.6-unsigned", 6, 0);
    rig.world.upload(&unsigned.image);
    rig.world.upload(&unsigned.envelope);
    rig.proxy.reset_stats();
    let reason = rig.refuses(&rollout, point_at(&unsigned));
    assert_mentions(
        &reason,
        &[
            &unsigned.target(),
            "is not listed by any trusted targets role",
        ],
    );
    let stats = rig.proxy.stats();
    assert!(
        !stats.by_path.keys().any(|p| p.starts_with("/tuf/targets/")),
        "no target was downloaded: {:?}",
        stats.by_path.keys()
    );

    rig.abort(&rollout);
    let next = rig.world.release("1.2.0", 3, 0);
    rig.roll_out(&next);
    rig.installs(&next);
}

/// The image bytes on the wire differ from the TUF-signed hash by one flipped byte: the
/// streamed hash check (TUF §5.7.3) refuses the slot before it is marked pending, and
/// discards it, so the same release installs cleanly once the attack stops.
#[test]
fn refuses_target_bytes_that_differ_from_the_signed_hash() {
    let mut rig = Rig::start(World::start());
    let good = rig.world.release("1.1.0", 2, 0);
    let release_id = rig.world.publish(&good);
    let rollout = rig.roll_out_published(&release_id, 0);

    let image_name = format!("{}-2.bin", class_text(CLASS));
    let reason = rig.refuses(&rollout, move |request| {
        if request.path.starts_with("/tuf/targets/") && request.path.ends_with(&image_name) {
            Action::Mutate(Arc::new(|status, mut body| {
                if status / 100 == 2 && !body.is_empty() {
                    let middle = body.len() / 2;
                    body[middle] ^= 0x01;
                }
                body
            }))
        } else {
            Action::Forward
        }
    });
    assert_mentions(&reason, &["does not match its signed hashes"]);

    // The same release, through a new rollout: the download starts over (the bad slot
    // was discarded, not resumed) and verifies.
    rig.abort(&rollout);
    rig.proxy.reset_stats();
    rig.roll_out_published(&release_id, 0);
    rig.installs(&good);
    let fetched: u64 = rig
        .proxy
        .stats()
        .by_path
        .iter()
        .filter(|(path, _)| path.ends_with(".bin"))
        .map(|(_, s)| s.body_bytes_sent)
        .sum();
    assert_eq!(
        fetched,
        good.image.len() as u64,
        "the image was fetched whole"
    );
}

/// A release properly published in TUF whose SUIT envelope is signed by a key the
/// device's root of trust does not hold: only the envelope check catches it.
#[test]
fn refuses_an_envelope_signed_by_an_untrusted_key() {
    let mut rig = Rig::start(World::start());
    let world = &rig.world;
    let evil = world.release_with("2.0.0-evil", 2, 2, 0, CLASS, &world.attacker);
    let rollout = rig.roll_out(&evil);

    rig.proxy.reset_stats();
    let reason = rig.refuses(&rollout, |_| Action::Forward);
    assert_mentions(&reason, &["the envelope does not verify"]);
    // TUF vouched for the envelope (it was fetched and matched its signed hashes); the
    // image was never downloaded.
    let stats = rig.proxy.stats();
    let fetched = |suffix: &str| {
        stats
            .by_path
            .iter()
            .any(|(path, s)| path.ends_with(suffix) && s.statuses.contains_key(&200))
    };
    assert!(fetched(".suit"), "{:?}", stats.by_path.keys());
    assert!(!fetched(".bin"), "{:?}", stats.by_path.keys());

    rig.abort(&rollout);
    let good = rig.world.release("2.0.1", 3, 0);
    rig.roll_out(&good);
    rig.installs(&good);
}

/// Firmware of another device class, two ways: (a) the check-in answer points the device
/// at a genuine release of the other class, which TUF's signed class field refuses; (b) a
/// release whose TUF class says this class but whose signed envelope is for the other one
/// (a mistaken or compromised publish, which the server rolls out as usual): the envelope's
/// class condition refuses it.
#[test]
fn refuses_another_class_release() {
    let mut rig = Rig::start(World::start());
    let world = &rig.world;
    let other = world.release_with("9.0.0-other", 9, 9, 0, OTHER_CLASS, &world.firmware);
    world.publish(&other);
    let good = world.release("1.1.0", 2, 0);
    let good_id = world.publish(&good);
    let rollout = rig.roll_out_published(&good_id, 0);

    // (a) Redirected to the other class's genuine release.
    let reason = rig.refuses(&rollout, point_at(&other));
    assert_mentions(
        &reason,
        &[
            &format!("is firmware for class {}", class_text(OTHER_CLASS)),
            &format!("not this device's class {}", class_text(CLASS)),
        ],
    );
    rig.abort(&rollout);

    // (b) Published as this class in TUF, but the envelope is for the other class.
    let world = &rig.world;
    let image = rota_agent::firmware::SimFirmware {
        label: "3.0.0-mislabelled".into(),
        fail_health_percent: 0,
    }
    .image(support::IMAGE_SIZE);
    let mut mislabelled = support::sign_release(
        "3.0.0-mislabelled",
        3,
        3,
        OTHER_CLASS,
        image,
        &world.firmware,
    );
    mislabelled.class = CLASS;
    let rollout = rig.roll_out(&mislabelled);
    let reason = rig.refuses(&rollout, |_| Action::Forward);
    assert_mentions(&reason, &["the envelope is for another device class"]);
    rig.abort(&rollout);

    rig.roll_out_published(&good_id, 0);
    rig.installs(&good);
}

/// After the device confirmed security version 2 (its floor is now 2), a newer version
/// with security version 1 is refused by rota-boot's stage before anything is erased.
#[test]
fn refuses_a_release_below_the_floor() {
    let mut rig = Rig::start(World::start());
    let world = &rig.world;
    let secure = world.release_with("2.0.0", 2, 2, 0, CLASS, &world.firmware);
    rig.roll_out(&secure);
    rig.installs(&secure);
    assert_eq!(rig.agent.device().floor(), 2, "confirming raised the floor");

    let world = &rig.world;
    let below = world.release_with("3.0.0-old-security", 3, 1, 0, CLASS, &world.firmware);
    let rollout = rig.roll_out(&below);
    let reason = rig.refuses(&rollout, |_| Action::Forward);
    assert_mentions(
        &reason,
        &[
            "rota-boot refused",
            "security version 1 is below the device's floor 2",
        ],
    );
    assert_eq!(rig.agent.device().floor(), 2);

    let world = &rig.world;
    let fixed = world.release_with("4.0.0", 4, 2, 0, CLASS, &world.firmware);
    rig.roll_out(&fixed);
    rig.installs(&fixed);
}

/// Rollback: the device trusts timestamp version N (it did an update); the attacker
/// replays a timestamp captured before that (TUF §5.4.3.1).
#[test]
fn refuses_a_replayed_old_timestamp() {
    let mut rig = Rig::start(World::start());
    let old_timestamp = rig.metadata("timestamp.json");
    let old: Value = serde_json::from_slice(&old_timestamp).unwrap();
    let old_version = old["signed"]["version"].as_u64().unwrap();

    let first = rig.world.release("1.1.0", 2, 0);
    rig.roll_out(&first);
    rig.installs(&first);
    let trusted = rig.trusted_version("timestamp");
    assert!(trusted > old_version, "{trusted} > {old_version}");

    let second = rig.world.release("1.2.0", 3, 0);
    let second_id = rig.world.publish(&second);
    let rollout = rig.roll_out_published(&second_id, 0);
    let reason = rig.refuses(
        &rollout,
        serve_instead(|path| path == TIMESTAMP_PATH, old_timestamp),
    );
    assert_mentions(
        &reason,
        &[
            &format!("timestamp version {old_version} is lower than the trusted version {trusted}"),
            "rollback",
        ],
    );
    assert_eq!(
        rig.trusted_version("timestamp"),
        trusted,
        "kept the trusted one"
    );

    rig.abort(&rollout);
    rig.roll_out_published(&second_id, 0);
    rig.installs(&second);
}

/// Freeze: the attacker serves a timestamp that is genuinely signed by the server's
/// online timestamp key but whose lifetime is over (TUF §5.4.4), to keep the device from
/// seeing the new release. The server refuses timestamp lifetimes under 60 s, so rather
/// than waiting a minute for a captured one to expire, the test signs the stale timestamp
/// itself with the online key the server uses: what a captured one is, once expired.
#[test]
fn refuses_an_expired_timestamp() {
    let mut rig = Rig::start(World::start());
    let first = rig.world.release("1.1.0", 2, 0);
    rig.roll_out(&first);
    rig.installs(&first);
    let trusted = rig.trusted_version("timestamp");

    // The metadata the device trusts now: the view the attacker wants to freeze it at.
    let frozen_snapshot = rig.current_snapshot();
    let keys = rig.world.data.path().join("tuf-online-keys");
    let online = OnlineSigner::from_pem(
        &std::fs::read_to_string(keys.join("snapshot.key")).unwrap(),
        &std::fs::read_to_string(keys.join("timestamp.key")).unwrap(),
    )
    .unwrap();
    let expired = online
        .timestamp(
            &frozen_snapshot,
            trusted + 1,
            SystemTime::now() - Duration::from_secs(3600),
        )
        .unwrap()
        .bytes;

    let second = rig.world.release("1.2.0", 3, 0);
    let second_id = rig.world.publish(&second);
    let rollout = rig.roll_out_published(&second_id, 0);
    let reason = rig.refuses(
        &rollout,
        serve_instead(|path| path == TIMESTAMP_PATH, expired),
    );
    assert_mentions(
        &reason,
        &["timestamp metadata expired at", "before the update started"],
    );
    assert_eq!(
        rig.trusted_version("timestamp"),
        trusted,
        "the expired timestamp was not persisted"
    );

    rig.abort(&rollout);
    rig.roll_out_published(&second_id, 0);
    rig.installs(&second);
}

/// Mix-and-match: metadata from different moments of the repository combined. (a) The
/// previous snapshot served for the one the new timestamp lists (TUF §5.5.2); (b) the
/// previous targets metadata served for the one the new snapshot lists (§5.6.2). Each is
/// caught by the length and hashes the newer role lists for it. (In this order: after
/// (b)'s attempt the device has persisted the new snapshot, and rightly never asks for a
/// snapshot again.)
#[test]
fn refuses_a_mix_of_snapshot_and_targets_versions() {
    let mut rig = Rig::start(World::start());
    let first = rig.world.release("1.1.0", 2, 0);
    rig.roll_out(&first);
    rig.installs(&first);

    // Captured before the next publish.
    let old_targets = rig.metadata("targets.json");
    let old_snapshot = rig.current_snapshot();
    let trusted_targets = rig.trusted_version("targets");
    let trusted_snapshot = rig.trusted_version("snapshot");

    let second = rig.world.release("1.2.0", 3, 0);
    let second_id = rig.world.publish(&second);

    // (a) The new timestamp, the old snapshot.
    let rollout = rig.roll_out_published(&second_id, 0);
    let reason = rig.refuses(
        &rollout,
        serve_instead(
            |path| path.starts_with("/tuf/metadata/") && path.ends_with(".snapshot.json"),
            old_snapshot,
        ),
    );
    assert_mentions(
        &reason,
        &["snapshot.json does not match its trusted length and hashes"],
    );
    assert_eq!(rig.trusted_version("snapshot"), trusted_snapshot);
    rig.abort(&rollout);

    // (b) The new snapshot, the old targets.
    let rollout = rig.roll_out_published(&second_id, 0);
    let reason = rig.refuses(
        &rollout,
        serve_instead(
            |path| path.starts_with("/tuf/metadata/") && path.ends_with(".targets.json"),
            old_targets,
        ),
    );
    assert_mentions(
        &reason,
        &["targets.json does not match its trusted length and hashes"],
    );
    assert!(rig.trusted_version("snapshot") > trusted_snapshot);
    assert_eq!(rig.trusted_version("targets"), trusted_targets);
    rig.abort(&rollout);

    rig.roll_out_published(&second_id, 0);
    rig.installs(&second);
}

/// A tampered check-in answer is refused; once the tampering stops, a rollout that allows
/// retries must get the device to the genuine release. The server answers the retried
/// check-in 304 Not Modified (its ETag is over the genuine assignment, which has not
/// changed), so an agent that kept the tampered body as "the previous answer" with the
/// genuine ETag refuses the tampered assignment again, until the retries run out.
#[test]
fn a_refusal_of_a_tampered_check_in_does_not_outlive_the_tampering() {
    let mut rig = Rig::start(World::start());
    let good = rig.world.release("1.1.0", 2, 0);
    let good_id = rig.world.publish(&good);
    let rollout = rig.roll_out_published(&good_id, 2);

    let unsigned = rig.world.release("6.6.6-unsigned", 6, 0);
    rig.world.upload(&unsigned.image);
    rig.proxy.set_rule(point_at(&unsigned));
    let outcome = rig.next_decision();
    assert!(
        matches!(&outcome, Outcome::Refused(r) if r.contains("is not listed")),
        "{outcome:?}"
    );

    rig.proxy.clear_rule();
    rig.proxy.reset_stats();
    let outcome = rig.next_decision();
    let check_ins = rig
        .proxy
        .stats()
        .by_path
        .get(CHECKIN_PATH)
        .map(|s| s.statuses.clone());
    assert_eq!(
        outcome,
        Outcome::Confirmed(2),
        "after the tampering stopped (check-in answers by status: {check_ins:?}; rollout: {:?})",
        rig.world.status(&rollout).counts.total
    );
    let status = rig.world.status(&rollout);
    assert_eq!(status.counts.total.confirmed, 1, "{status:?}");
}

/// A hostile server answers a check-in with far more than any check-in answer can be:
/// the agent gives up at its limit (at once when Content-Length says so, one byte past it
/// when the answer is chunked), names the limit, and holds no more than that in memory.
#[test]
fn agent_refuses_an_oversized_check_in_answer_without_reading_it_whole() {
    const FLOOD: u64 = 64 * 1024 * 1024;
    let mut rig = Rig::start(World::start());
    let limit = rig.world.agent_config("").answer_limits.check_in;
    for declare_length in [true, false] {
        rig.proxy.reset_stats();
        rig.proxy.set_rule(move |request| {
            if request.path == CHECKIN_PATH {
                Action::Flood {
                    status: 200,
                    bytes: FLOOD,
                    declare_length,
                }
            } else {
                Action::Forward
            }
        });
        let outcome = rig.cycle();
        let Outcome::Retrying(reason) = &outcome else {
            panic!("an oversized check-in answer is a failing server: {outcome:?}");
        };
        assert_mentions(reason, &["check-in", &format!("{limit} bytes")]);
        // What the proxy handed to the connection before the agent hung up: the limit
        // plus what the socket buffers took, nowhere near the whole answer.
        let sent = rig.proxy.stats().by_path[CHECKIN_PATH].body_bytes_sent;
        assert!(
            sent < FLOOD / 4,
            "declared length {declare_length}: {sent} of {FLOOD} bytes were sent"
        );
    }
    rig.proxy.clear_rule();
    assert_eq!(
        rig.cycle(),
        Outcome::UpToDate,
        "the next honest answer is read"
    );
}
