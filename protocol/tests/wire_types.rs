//! The API's wire types: their JSON and query forms, strict inputs, tolerant outputs,
//! and the role and device-state rules.

mod support;

use rota_protocol::api::*;
use rota_protocol::issue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use support::{CLASS_ID, body, ca};

/// Serializes, deserializes, and checks nothing changed.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
}

/// An input must refuse a field it does not know, at the top level.
fn refuses_unknown_field<T: Serialize + DeserializeOwned + std::fmt::Debug>(value: &T) {
    let mut json = serde_json::to_value(value).unwrap();
    json["unexpected"] = json!(1);
    let err = serde_json::from_value::<T>(json).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

fn rollout() -> RolloutCreate {
    RolloutCreate {
        release_id: "rel-1".into(),
        selector: Selector {
            class_id: CLASS_ID.into(),
            tags: vec!["region:eu".into()],
            versions: vec![2, 3],
        },
        stages: vec![
            Stage::Count(5),
            Stage::Percent(1.0),
            Stage::Percent(10.0),
            Stage::Percent(100.0),
        ],
        success_gate: 0.95,
        failure_threshold: 0.05,
        min_sample: 20,
        device_timeout_s: 3600,
        soak_s: 600,
        max_retries: 1,
    }
}

fn report() -> Report {
    Report {
        event_id: "67e55044-10b1-426f-9247-bb680e5fe0c8".into(),
        rollout_id: Some("ro-1".into()),
        kind: ReportKind::Reverted,
        version: 4,
        reason: Some("health check timed out".into()),
        evidence: Some(rota_protocol::api::Evidence(vec![0x82, 0x40, 0x40])),
    }
}

#[test]
fn inputs_round_trip_and_refuse_unknown_fields() {
    let cert = issue(&ca(), &body()).unwrap();
    let query = CheckInQuery {
        version: 3,
        slot: SlotState::Trial,
        last: Some(LastResult::Failed),
    };
    round_trip(&query);
    refuses_unknown_field(&query);
    round_trip(&report());
    refuses_unknown_field(&report());
    let enroll = Enroll {
        certificate: cert.clone(),
    };
    round_trip(&enroll);
    refuses_unknown_field(&enroll);
    let register = DeviceRegister { certificate: cert };
    round_trip(&register);
    refuses_unknown_field(&register);
    let token = TokenCreate {
        name: "ci".into(),
        role: Role::Release,
    };
    round_trip(&token);
    refuses_unknown_field(&token);
    let change = DeviceStateChange {
        state: DeviceState::Suspended,
    };
    round_trip(&change);
    refuses_unknown_field(&change);
    round_trip(&rollout());
    refuses_unknown_field(&rollout());
    refuses_unknown_field(&rollout().selector);
}

#[test]
fn nested_input_refuses_unknown_fields() {
    let mut value = serde_json::to_value(rollout()).unwrap();
    value["selector"]["tag"] = json!("typo for tags");
    assert!(serde_json::from_value::<RolloutCreate>(value).is_err());
}

#[test]
fn outputs_round_trip_and_tolerate_new_fields() {
    let response = CheckInResponse {
        poll_after_s: 300,
        assignment: Some(Assignment {
            rollout_id: "ro-1".into(),
            release_id: "rel-1".into(),
            target: "fw/sensor-4.bin".into(),
            envelope_target: "fw/sensor-4.suit".into(),
            version: 4,
            security_version: 2,
            length: 123_456,
            sha256: "ab".repeat(32),
        }),
        attest: true,
        rotate: true,
        order: None,
    };
    round_trip(&response);
    let mut value = serde_json::to_value(&response).unwrap();
    value["added_later"] = json!("x");
    value["assignment"]["also_new"] = json!(1);
    let back: CheckInResponse = serde_json::from_value(value).unwrap();
    assert_eq!(back, response);

    let nothing: CheckInResponse =
        serde_json::from_str(r#"{"poll_after_s":60,"assignment":null}"#).unwrap();
    assert_eq!(nothing.assignment, None);
    assert_eq!(
        serde_json::to_value(&nothing).unwrap(),
        json!({"poll_after_s": 60, "assignment": null})
    );

    round_trip(&ReportAck { duplicate: true });
    round_trip(&TokenCreated {
        id: "tok-1".into(),
        token: "secret".into(),
        role: Role::Admin,
    });
    round_trip(&TokenInfo {
        id: "tok-1".into(),
        name: "ci".into(),
        role: Role::Viewer,
        created_at: 1,
        revoked: false,
    });
    round_trip(&DeviceInfo {
        id: "sensor-0001".into(),
        class_id: CLASS_ID.into(),
        tags: vec!["a".into()],
        state: DeviceState::Active,
        created_at: 1,
        last_seen_at: Some(2),
        running_version: Some(3),
        slot: Some(SlotState::Confirmed),
        last_result: Some(LastResult::None),
        attestation: rota_protocol::api::AttestationState::Failed,
        attestation_reason: Some("the measured firmware is in no signed release".into()),
        attested_version: Some(2),
        attested_by: Some("bootloader".into()),
        attested_at: Some(4),
    });
    round_trip(&ReleaseInfo {
        id: "rel-1".into(),
        target: "fw/a.bin".into(),
        envelope_target: "fw/a.suit".into(),
        class_id: CLASS_ID.into(),
        version: 4,
        security_version: 1,
        length: 10,
        sha256: "cd".repeat(32),
        created_at: 5,
    });
    let counts = StageCounts {
        members: 10,
        assigned: 8,
        in_progress: 3,
        confirmed: 4,
        failed: 1,
        timed_out: 0,
        pending: 5,
        decommissioned: 1,
    };
    round_trip(&RolloutStatus {
        id: "ro-1".into(),
        release_id: "rel-1".into(),
        state: RolloutState::Halted,
        current_stage: 1,
        stages: rollout().stages,
        selector: rollout().selector,
        counts: RolloutCounts {
            stages: vec![counts, StageCounts::default()],
            total: counts,
        },
        halted_reason: Some("failures reached 20% of 5 completed devices".into()),
        created_at: 1,
        updated_at: 2,
    });
    assert_eq!(
        serde_json::to_value(ErrorBody::new("no such device")).unwrap(),
        json!({"error": "no such device"})
    );
}

#[test]
fn check_in_query_string_round_trips_through_a_form_decoder() {
    for last in [None, Some(LastResult::None), Some(LastResult::Reverted)] {
        for slot in SlotState::ALL {
            let query = CheckInQuery {
                version: u64::MAX,
                slot: *slot,
                last,
            };
            let text = query.to_query_string();
            let back: CheckInQuery = serde_urlencoded::from_str(&text).unwrap();
            assert_eq!(back, query, "{text}");
        }
    }
    let query = CheckInQuery {
        version: 3,
        slot: SlotState::Confirmed,
        last: Some(LastResult::None),
    };
    assert_eq!(
        query.to_query_string(),
        "version=3&slot=confirmed&last=none"
    );
    assert_eq!(
        query.path_and_query(),
        "/api/v1/device/checkin?version=3&slot=confirmed&last=none"
    );
    let query = CheckInQuery {
        last: None,
        ..query
    };
    assert_eq!(query.to_query_string(), "version=3&slot=confirmed");
}

#[test]
fn check_in_query_string_is_strict() {
    for bad in [
        "version=3&slot=confirmed&extra=1",
        "version=3&slot=Confirmed",
        "version=-1&slot=trial",
        "slot=trial",
        "version=3&slot=trial&last=success",
    ] {
        assert!(
            serde_urlencoded::from_str::<CheckInQuery>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn enum_names_are_lowercase_and_agree_everywhere() {
    fn check<T>(all: &[T], names: &[&str])
    where
        T: Copy + Serialize + DeserializeOwned + std::fmt::Display + std::str::FromStr + PartialEq,
        T: std::fmt::Debug,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        assert_eq!(all.len(), names.len());
        for (value, name) in all.iter().zip(names) {
            assert_eq!(serde_json::to_value(value).unwrap(), json!(name));
            assert_eq!(&value.to_string(), name);
            assert_eq!(&name.parse::<T>().unwrap(), value);
            assert_eq!(serde_json::from_value::<T>(json!(name)).unwrap(), *value);
            assert!(name.to_uppercase().parse::<T>().is_err());
        }
    }
    check(SlotState::ALL, &["confirmed", "trial"]);
    check(
        LastResult::ALL,
        &["none", "confirmed", "reverted", "failed"],
    );
    check(
        ReportKind::ALL,
        &[
            "downloading",
            "downloaded",
            "installed",
            "trial",
            "confirmed",
            "reverted",
            "failed",
        ],
    );
    check(Role::ALL, &["admin", "release", "operator", "viewer"]);
    check(
        DeviceState::ALL,
        &["provisioned", "active", "suspended", "decommissioned"],
    );
    check(
        RolloutState::ALL,
        &["active", "paused", "halted", "aborted", "completed"],
    );
    assert_eq!(
        "root".parse::<Role>().unwrap_err().to_string(),
        "\"root\" is not a valid role; expected one of: admin, release, operator, viewer"
    );
}

#[test]
fn role_allows_matrix() {
    use Role::*;
    // Rows: the token's role; columns: the role needed (admin, release, operator, viewer).
    let table = [
        (Admin, [true, true, true, true]),
        (Release, [false, true, false, true]),
        (Operator, [false, false, true, true]),
        (Viewer, [false, false, false, true]),
    ];
    for (have, row) in table {
        for (needed, allowed) in [Admin, Release, Operator, Viewer].into_iter().zip(row) {
            assert_eq!(have.allows(needed), allowed, "{have} for {needed}");
        }
    }
}

#[test]
fn device_state_transitions() {
    use DeviceState::*;
    // Rows: from; columns: to (provisioned, active, suspended, decommissioned).
    let table = [
        (Provisioned, [false, true, false, true]),
        (Active, [false, false, true, true]),
        (Suspended, [false, true, false, true]),
        (Decommissioned, [false, false, false, false]),
    ];
    for (from, row) in table {
        for (to, allowed) in [Provisioned, Active, Suspended, Decommissioned]
            .into_iter()
            .zip(row)
        {
            assert_eq!(
                DeviceState::can_transition(from, to),
                allowed,
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn stage_json_form() {
    assert_eq!(
        serde_json::to_value(Stage::Count(5)).unwrap(),
        json!({"count": 5})
    );
    assert_eq!(
        serde_json::from_value::<Stage>(json!({"percent": 10})).unwrap(),
        Stage::Percent(10.0)
    );
    assert_eq!(
        serde_json::from_value::<Stage>(json!({"percent": 0.5})).unwrap(),
        Stage::Percent(0.5)
    );
    for bad in [
        json!({"percent": 10, "count": 5}),
        json!({"fraction": 0.1}),
        json!({"count": -1}),
        json!({"count": 1.5}),
        json!("percent"),
        json!(10),
    ] {
        assert!(
            serde_json::from_value::<Stage>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn report_validation() {
    assert_eq!(report().validate(), Ok(()));
    let mut r = report();
    r.reason = Some("é".repeat(MAX_REASON_LEN));
    assert_eq!(
        r.validate(),
        Ok(()),
        "the limit counts characters, not bytes"
    );
    r.reason = Some("x".repeat(MAX_REASON_LEN + 1));
    assert_eq!(
        r.validate(),
        Err("reason is 513 characters long, more than the 512 allowed".into())
    );
    for bad in ["", "not-a-uuid", "67E55044-10B1-426F-9247-BB680E5FE0C8"] {
        let r = Report {
            event_id: bad.into(),
            ..report()
        };
        assert!(r.validate().is_err(), "{bad}");
    }
    let minimal: Report = serde_json::from_str(
        r#"{"event_id":"67e55044-10b1-426f-9247-bb680e5fe0c8","kind":"downloading","version":4}"#,
    )
    .unwrap();
    assert_eq!((minimal.rollout_id, minimal.reason), (None, None));
}

#[test]
fn new_reports_get_fresh_canonical_event_ids() {
    let a = Report::new(ReportKind::Confirmed, 4, None, None).unwrap();
    let b = Report::new(ReportKind::Confirmed, 4, None, None).unwrap();
    assert_ne!(a.event_id, b.event_id);
    assert_eq!(a.validate(), Ok(()));
    assert_eq!(a.event_id.as_bytes()[14], b'4', "version 4 UUID");
}

#[test]
fn token_name_validation() {
    let token = |name: &str| TokenCreate {
        name: name.into(),
        role: Role::Viewer,
    };
    assert!(token("ci-publisher").validate().is_ok());
    assert!(token(&"n".repeat(64)).validate().is_ok());
    assert!(token("").validate().is_err());
    assert!(token(&"n".repeat(65)).validate().is_err());
    assert!(token("line\nbreak").validate().is_err());
    assert!(token("ci publisher, ünicode").validate().is_ok());
    for refused in [
        "\u{1b}[2J",
        "tab\t",
        "nul\0",
        "ls\u{2028}",
        "rlo\u{202e}",
        " padded",
        "  ",
    ] {
        assert!(token(refused).validate().is_err(), "{refused:?}");
    }
}

#[test]
fn selector_matching() {
    let selector = rollout().selector;
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(selector.matches(CLASS_ID, &tags(&["region:eu", "x"]), Some(3)));
    assert!(
        !selector.matches(CLASS_ID, &tags(&["x"]), Some(3)),
        "missing tag"
    );
    assert!(
        !selector.matches(CLASS_ID, &tags(&["region:eu"]), Some(4)),
        "version"
    );
    assert!(
        !selector.matches(CLASS_ID, &tags(&["region:eu"]), None),
        "unknown version"
    );
    assert!(
        !selector.matches(
            "00000000-0000-0000-0000-000000000000",
            &tags(&["region:eu"]),
            Some(3)
        ),
        "class"
    );
    let any = Selector {
        class_id: CLASS_ID.into(),
        tags: vec![],
        versions: vec![],
    };
    assert!(any.matches(CLASS_ID, &[], None));
}
