//! The management API: bearer tokens with roles, and an audit record of every action.
//!
//! [`ENDPOINTS`] is the one place that says which role each management endpoint needs;
//! the authorization middleware enforces it and the authorization-matrix test walks it.
//! An endpoint missing from the table is refused (fail closed).

pub mod devices;
pub mod releases;
pub mod rollouts;
pub mod tokens;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use rota_protocol::api::Role;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::db::{new_id, now_ms};
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
    (Method::GET, "/api/v1/devices/{id}", Role::Viewer),
    (
        Method::POST,
        "/api/v1/devices/{id}/{action}",
        Role::Operator,
    ),
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
/// handler, and writes the audit record: every non-GET request and every refusal.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let subject = req.uri().path().to_string();
    let caller = match authenticate(&state, req.headers()).await {
        Ok(caller) => caller,
        Err(err) => {
            audit(
                &state,
                None,
                &method,
                &subject,
                err.status.as_u16(),
                &err.message,
            )
            .await;
            return axum::response::IntoResponse::into_response(err);
        }
    };
    let Some(needed) = required_role(&method, &route) else {
        let err = ApiError::forbidden("this endpoint has no permission defined");
        audit(&state, Some(&caller), &method, &subject, 403, &err.message).await;
        return axum::response::IntoResponse::into_response(err);
    };
    if !caller.role.allows(needed) {
        let err = ApiError::forbidden(format!(
            "the {} role may not do this; it needs the {} role",
            caller.role.as_str(),
            needed.as_str()
        ));
        audit(&state, Some(&caller), &method, &subject, 403, &err.message).await;
        return axum::response::IntoResponse::into_response(err);
    }
    req.extensions_mut().insert(caller.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if method != Method::GET || status >= 400 {
        let detail = response
            .extensions()
            .get::<AuditDetail>()
            .map(|d| d.0.clone())
            .unwrap_or_default();
        audit(&state, Some(&caller), &method, &subject, status, &detail).await;
    }
    response
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

/// Writes one audit record. An audit write that fails is logged loudly; the action has
/// already happened by then, so failing the response would only hide it from the caller.
pub async fn audit(
    state: &AppState,
    caller: Option<&Caller>,
    method: &Method,
    subject: &str,
    status: u16,
    detail: &str,
) {
    let outcome = if status < 400 {
        "ok".to_string()
    } else {
        format!("refused {status}")
    };
    let result = sqlx::query(
        "INSERT INTO audit_log (id, at, token_id, role, action, subject, outcome, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(now_ms())
    .bind(caller.map(|c| c.token_id.clone()))
    .bind(caller.map(|c| c.role.as_str().to_string()))
    .bind(method.as_str().to_string())
    .bind(subject.to_string())
    .bind(outcome)
    .bind(detail.to_string())
    .execute(&state.db.write)
    .await;
    if let Err(err) = result {
        tracing::error!(error = %err, %method, subject, "cannot write the audit log");
    }
}
