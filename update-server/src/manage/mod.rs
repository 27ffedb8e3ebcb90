//! The management API: bearer tokens with roles, and an audit record of every action.
//!
//! [`ENDPOINTS`] is the one place that says which role each management endpoint needs;
//! the authorization middleware enforces it and the authorization-matrix test walks it.
//! An endpoint missing from the table is refused (fail closed).

pub mod audit;
pub mod devices;
pub mod releases;
pub mod rollouts;
pub mod tokens;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rota_protocol::api::Role;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::error::ApiError;

/// Who made a management request: the token's id and role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

/// What a handler wants written to the audit log beside the method, path and outcome.
#[derive(Debug, Clone)]
pub struct AuditDetail(pub String);

/// Every management endpoint and the least role it needs.
pub const ENDPOINTS: &[(Method, &str, Role)] = &[
    (Method::POST, "/api/v1/tokens", Role::Admin),
    (Method::GET, "/api/v1/tokens", Role::Admin),
    (Method::DELETE, "/api/v1/tokens/{id}", Role::Admin),
    (Method::GET, "/api/v1/audit", Role::Admin),
    (Method::PUT, "/api/v1/repo/root", Role::Admin),
    (Method::PUT, "/api/v1/artifacts/{sha256}", Role::Release),
    (Method::PUT, "/api/v1/repo/targets", Role::Release),
    (Method::GET, "/api/v1/releases", Role::Viewer),
    (Method::POST, "/api/v1/devices", Role::Operator),
    (Method::GET, "/api/v1/devices", Role::Viewer),
    (Method::GET, "/api/v1/fleet", Role::Viewer),
    (Method::GET, "/api/v1/devices/{id}", Role::Viewer),
    (
        Method::POST,
        "/api/v1/devices/{id}/{action}",
        Role::Operator,
    ),
    (Method::POST, "/api/v1/devices/{id}/orders", Role::Admin),
    (Method::DELETE, "/api/v1/devices/{id}/orders", Role::Admin),
    (Method::POST, "/api/v1/revocations", Role::Admin),
    (Method::GET, "/api/v1/revocations", Role::Viewer),
    (
        Method::GET,
        "/api/v1/revocations/{id}/devices",
        Role::Viewer,
    ),
    (
        Method::PUT,
        "/api/v1/classes/{class_id}/attestation",
        Role::Admin,
    ),
    (
        Method::GET,
        "/api/v1/classes/{class_id}/attestation",
        Role::Viewer,
    ),
    (
        Method::PUT,
        "/api/v1/classes/{class_id}/rotation",
        Role::Operator,
    ),
    (
        Method::GET,
        "/api/v1/classes/{class_id}/rotation",
        Role::Viewer,
    ),
    (Method::POST, "/api/v1/cas", Role::Admin),
    (Method::GET, "/api/v1/cas", Role::Viewer),
    (Method::GET, "/api/v1/cas/{key_id}/devices", Role::Viewer),
    (Method::POST, "/api/v1/cas/{key_id}/retire", Role::Admin),
    (Method::POST, "/api/v1/rollouts", Role::Operator),
    (Method::GET, "/api/v1/rollouts", Role::Viewer),
    (Method::GET, "/api/v1/rollouts/{id}", Role::Viewer),
    (
        Method::POST,
        "/api/v1/rollouts/{id}/{action}",
        Role::Operator,
    ),
];

/// The role `method path` needs, if it is a management endpoint.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    ENDPOINTS
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map(|(_, _, role)| *role)
}

/// A token as it is handed out: `rota_` and 32 random bytes in hex. Only its SHA-256 is
/// stored, which is safe for a 256-bit random secret (no salt or slow hash needed).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Authenticates the bearer token, checks the role against [`ENDPOINTS`], runs the
/// handler, and writes the audit record: every non-GET request and every refusal, the
/// refusals within their source's rate ([`audit`]).
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let subject = req.uri().path().to_string();
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Who asked for what; `refuse` and the handler's answer fill in the outcome.
    let request = |caller| audit::Record {
        source,
        caller,
        method: &method,
        subject: &subject,
        status: 0,
        detail: "",
    };
    let caller = match authenticate(&state, req.headers()).await {
        Ok(caller) => caller,
        Err(err) => return refuse(&state, request(None), err).await,
    };
    let Some(needed) = required_role(&method, &route) else {
        let err = ApiError::forbidden("this endpoint has no permission defined");
        return refuse(&state, request(Some(&caller)), err).await;
    };
    if !caller.role.allows(needed) {
        let err = ApiError::forbidden(format!(
            "the {} role may not do this; it needs the {} role",
            caller.role.as_str(),
            needed.as_str()
        ));
        return refuse(&state, request(Some(&caller)), err).await;
    }
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let detail = response
        .extensions()
        .get::<AuditDetail>()
        .map(|d| d.0.clone())
        .unwrap_or_default();
    let entry = audit::Record {
        status,
        detail: &detail,
        ..request(Some(&caller))
    };
    if status >= 400 {
        // The handler's answer stands; over the rate, the refusal is only counted.
        let _ = state.audit.refusal(&state.db, &entry).await;
    } else if method != Method::GET {
        state.audit.record(&state.db, &entry).await;
    }
    response
}

/// Answers `err`, recorded if its source is within the refusal rate; beyond it, a 429
/// that tells the client when to try again, and a count instead of a record.
async fn refuse(state: &AppState, request: audit::Record<'_>, err: ApiError) -> Response {
    let record = audit::Record {
        status: err.status.as_u16(),
        detail: &err.message,
        ..request
    };
    match state.audit.refusal(&state.db, &record).await {
        Ok(()) => err.into_response(),
        Err(retry_after) => ApiError::too_many_requests(
            format!(
                "too many refused requests from this address (the last: {}); try again later",
                err.message
            ),
            retry_after,
        )
        .into_response(),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized("the request has no bearer token"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not a bearer token"))?;
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT id, role FROM tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind(token_hash(token.trim()))
    .fetch_optional(&state.db.read)
    .await?;
    let Some((token_id, role)) = row else {
        return Err(ApiError::unauthorized(
            "the bearer token is unknown or revoked",
        ));
    };
    let role = role
        .parse::<Role>()
        .ok()
        .ok_or_else(|| ApiError::internal("a token has an unknown role"))?;
    Ok(Caller { token_id, role })
}
