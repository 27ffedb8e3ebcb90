//! The `openapi` feature: every wire type has a schema that matches its JSON form.

#![cfg(feature = "openapi")]

use rota_protocol::DeviceCertificate;
use rota_protocol::api::*;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(
    CheckInQuery,
    CheckInResponse,
    Assignment,
    Report,
    ReportKind,
    ReportAck,
    Enroll,
    DeviceCertificate,
    Role,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    DeviceRegister,
    DeviceStateChange,
    DeviceInfo,
    DeviceState,
    SlotState,
    LastResult,
    ReleaseInfo,
    RolloutCreate,
    Selector,
    Stage,
    RolloutState,
    RolloutStatus,
    RolloutCounts,
    StageCounts,
    ErrorBody,
    Evidence,
    Attest,
    AttestationChallenge,
    AttestationResult,
    AttestationState,
    AttestationPolicy,
    ClassAttestation,
    RevocationKind,
    RevocationCreate,
    RevocationInfo,
    KeyRotation,
    KeyRotated,
)))]
struct Doc;

#[test]
fn schemas_describe_the_json_forms() {
    let doc = serde_json::to_value(Doc::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let cert = &schemas["DeviceCertificate"]["properties"];
    assert_eq!(cert["body"]["type"], "string");
    assert_eq!(cert["signature"]["type"], "string");
    let roles = schemas["Role"]["enum"].as_array().unwrap();
    assert_eq!(roles.len(), 4);
    assert!(roles.contains(&"release".into()));
    let stage = serde_json::to_string(&schemas["Stage"]).unwrap();
    assert!(
        stage.contains("\"percent\"") && stage.contains("\"count\""),
        "{stage}"
    );
    let kinds = schemas["ReportKind"]["enum"].as_array().unwrap();
    assert!(kinds.contains(&"downloading".into()), "{kinds:?}");
    let required = schemas["Report"]["required"].as_array().unwrap();
    assert!(required.contains(&"event_id".into()), "{required:?}");
    assert!(!required.contains(&"reason".into()), "{required:?}");
}
