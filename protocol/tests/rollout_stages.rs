//! Staged rollouts: deterministic, uniform stage membership, cumulative stage targets,
//! and the rules a rollout must satisfy to be created.

mod support;

use rota_protocol::api::{RolloutCreate, Selector, Stage};
use rota_protocol::rollout_bucket;
use support::CLASS_ID;

#[test]
fn bucket_is_the_documented_hash() {
    // first 8 bytes of sha256(b"rota-rollout-bucket\0rollout-1\0device-1"), big-endian,
    // as computed outside Rust: 3813246420091677544 / 2^64.
    assert_eq!(
        rollout_bucket("rollout-1", "device-1"),
        3_813_246_420_091_677_544u64 as f64 / 2f64.powi(64)
    );
    assert_eq!(rollout_bucket("rollout-1", "device-1"), 0.20671650264429847);
}

#[test]
fn bucket_is_deterministic_and_in_unit_interval() {
    for i in 0..1000 {
        let device = format!("device-{i}");
        let b = rollout_bucket("ro-7", &device);
        assert!((0.0..1.0).contains(&b), "{b}");
        assert_eq!(b, rollout_bucket("ro-7", &device));
    }
}

#[test]
fn bucket_depends_on_the_rollout() {
    let differ = (0..100)
        .filter(|i| {
            let d = format!("device-{i}");
            rollout_bucket("ro-a", &d) != rollout_bucket("ro-b", &d)
        })
        .count();
    assert_eq!(differ, 100);
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(rollout_bucket("ab", "c"), rollout_bucket("a", "bc"));
}

#[test]
fn buckets_are_roughly_uniform() {
    let mut deciles = [0u32; 10];
    for i in 0..10_000 {
        let b = rollout_bucket("rollout-uniformity", &format!("sensor-{i:05}"));
        deciles[(b * 10.0) as usize] += 1;
    }
    for (d, count) in deciles.iter().enumerate() {
        assert!(
            (800..=1200).contains(count),
            "decile {d} holds {count} of 10000: {deciles:?}"
        );
    }
}

fn valid() -> RolloutCreate {
    RolloutCreate {
        release_id: "rel-1".into(),
        selector: Selector {
            class_id: CLASS_ID.into(),
            tags: vec!["region:eu".into()],
            versions: vec![],
        },
        stages: vec![
            Stage::Count(5),
            Stage::Percent(1.0),
            Stage::Percent(10.0),
            Stage::Percent(100.0),
        ],
        success_gate: 1.0,
        failure_threshold: 0.0,
        min_sample: 0,
        device_timeout_s: 1,
        soak_s: 0,
        max_retries: 0,
    }
}

fn refusal(edit: impl FnOnce(&mut RolloutCreate)) -> String {
    let mut rollout = valid();
    edit(&mut rollout);
    rollout.validate().unwrap_err()
}

#[test]
fn valid_rollouts_pass() {
    assert_eq!(valid().validate(), Ok(()));
    let mut only_percent = valid();
    only_percent.stages = vec![Stage::Percent(0.1), Stage::Percent(50.0)];
    assert_eq!(only_percent.validate(), Ok(()), "need not reach 100%");
    let mut only_count = valid();
    only_count.stages = vec![Stage::Count(1), Stage::Count(10)];
    assert_eq!(only_count.validate(), Ok(()));
    let mut limits = valid();
    limits.success_gate = f64::MIN_POSITIVE;
    limits.failure_threshold = 0.999;
    assert_eq!(limits.validate(), Ok(()));
}

#[test]
fn refuses_stages_that_are_not_strictly_increasing() {
    let e = refusal(|r| r.stages = vec![Stage::Percent(10.0), Stage::Percent(10.0)]);
    assert_eq!(
        e,
        "stage 2 (10 percent) is not larger than the stage before it (10 percent), but stages are cumulative"
    );
    let e = refusal(|r| r.stages = vec![Stage::Percent(50.0), Stage::Percent(10.0)]);
    assert!(e.starts_with("stage 2 (10 percent) is not larger"), "{e}");
    let e = refusal(|r| r.stages = vec![Stage::Count(10), Stage::Count(3)]);
    assert!(e.starts_with("stage 2 (count 3) is not larger"), "{e}");
}

#[test]
fn refuses_count_stage_after_percent_stage() {
    let e = refusal(|r| r.stages = vec![Stage::Percent(10.0), Stage::Count(5000)]);
    assert_eq!(
        e,
        "stage 2 (count 5000) follows a percent stage, but count stages must come before percent stages"
    );
}

#[test]
fn refuses_percent_out_of_range_and_zero_count() {
    for p in [0.0, -1.0, 100.000001, f64::NAN, f64::INFINITY] {
        let e = refusal(|r| r.stages = vec![Stage::Percent(p)]);
        assert!(e.starts_with("stage 1 is"), "{p}: {e}");
        assert!(e.contains("at most 100"), "{e}");
    }
    let e = refusal(|r| r.stages = vec![Stage::Count(0)]);
    assert_eq!(e, "stage 1 has count 0, but a count must be at least 1");
}

#[test]
fn refuses_empty_or_too_many_stages() {
    assert_eq!(
        refusal(|r| r.stages.clear()),
        "a rollout needs at least one stage"
    );
    let e = refusal(|r| r.stages = (1..=101).map(Stage::Count).collect());
    assert_eq!(e, "a rollout has at most 100 stages, not 101");
}

#[test]
fn refuses_gates_out_of_range() {
    for gate in [0.0, -0.1, 1.01, f64::NAN] {
        let e = refusal(|r| r.success_gate = gate);
        assert!(e.starts_with("success_gate is"), "{gate}: {e}");
    }
    for threshold in [1.0, -0.01, f64::NAN] {
        let e = refusal(|r| r.failure_threshold = threshold);
        assert!(e.starts_with("failure_threshold is"), "{threshold}: {e}");
    }
}

#[test]
fn refuses_bad_selector_release_or_timeout() {
    assert_eq!(
        refusal(|r| r.release_id.clear()),
        "release_id must not be empty"
    );
    let e = refusal(|r| r.selector.class_id = CLASS_ID.to_uppercase());
    assert!(e.starts_with("selector.class_id"), "{e}");
    let e = refusal(|r| r.selector.tags = vec!["bad tag".into()]);
    assert!(
        e.starts_with("in selector.tags, the tag \"bad tag\""),
        "{e}"
    );
    let e = refusal(|r| r.selector.tags = (0..33).map(|i| format!("t{i}")).collect());
    assert!(e.contains("33 tags"), "{e}");
    assert_eq!(
        refusal(|r| r.device_timeout_s = 0),
        "device_timeout_s must be greater than 0"
    );
}

#[test]
fn validation_messages_are_single_sentences() {
    let messages = [
        refusal(|r| r.release_id.clear()),
        refusal(|r| r.stages.clear()),
        refusal(|r| r.stages = vec![Stage::Percent(0.0)]),
        refusal(|r| r.success_gate = 2.0),
        refusal(|r| r.failure_threshold = 1.0),
        refusal(|r| r.device_timeout_s = 0),
    ];
    for m in messages {
        assert!(
            !m.ends_with('.') && !m.contains(". ") && !m.contains('\n'),
            "{m}"
        );
    }
}
