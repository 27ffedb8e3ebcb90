//! Check-in sessions on the server (`rota_protocol::session`): opening one
//! (`POST /api/v1/device/session`, signed), the fleet's token-sealing secret, and the
//! verification of a session request (for check-ins and reports only).
//!
//! The server keeps no session state: a token carries its session sealed under a secret
//! in the database (table `server_secrets`, row `session-token`), made once by the first
//! server to start, so every replica opens every other's tokens. Revocation, suspension
//! and the rest are checked on every request as after a signature, and a token is bound
//! to the device key that opened it: rotating or revoking the key ends its sessions.

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use rota_protocol::AuthError;
use rota_protocol::session::{
    self, MAX_SESSION_LIFETIME_S, MIN_SESSION_LIFETIME_S, OpenSession, Session, SessionError,
    SessionHeaders, SessionOpened, TokenSealer,
};

use super::{SignedByDevice, auth_error, path_and_query};
use crate::app::AppState;
use crate::db::{Db, now_ms};
use crate::error::{ApiError, ApiResult};

/// The `server_secrets` row of the token-sealing secret.
const SECRET_NAME: &str = "session-token";

/// The fleet's sessions: the sealer of tokens and how long a new session lasts.
#[derive(Debug)]
pub struct Sessions {
    sealer: TokenSealer,
    lifetime_s: u32,
}

impl Sessions {
    /// Reads the fleet's token secret from the database, making it first if no server
    /// has (two replicas starting at once agree: the first insert wins, both read it).
    pub async fn load(db: &Db, lifetime_s: u32) -> Result<Sessions> {
        if !(MIN_SESSION_LIFETIME_S..=MAX_SESSION_LIFETIME_S).contains(&lifetime_s) {
            bail!(
                "the session lifetime must be {MIN_SESSION_LIFETIME_S} to {MAX_SESSION_LIFETIME_S} seconds"
            );
        }
        let fresh = TokenSealer::generate_secret()?;
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(SECRET_NAME)
        .bind(hex::encode(fresh))
        .bind(now_ms())
        .execute(&db.write)
        .await
        .context("cannot store the session token secret")?;
        let (secret,): (String,) =
            sqlx::query_as("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(SECRET_NAME)
                .fetch_one(&db.write)
                .await
                .context("cannot read the session token secret")?;
        let secret: [u8; TokenSealer::SECRET_LEN] = hex::decode(&secret)
            .ok()
            .and_then(|s| s.try_into().ok())
            .context("the session token secret in the database is not 32 bytes of hex")?;
        Ok(Sessions {
            sealer: TokenSealer::new(&secret)?,
            lifetime_s,
        })
    }

    /// Verifies a session request (`rota_protocol::RequestVerifier::verify_session`); the
    /// caller still checks the device.
    pub(super) fn verify(
        &self,
        state: &AppState,
        parts: &Parts,
        headers: &SessionHeaders,
        body: &[u8],
    ) -> Result<Session, ApiError> {
        state
            .verifier
            .verify_session(
                headers,
                parts.method.as_str(),
                path_and_query(parts),
                body,
                &self.sealer,
                now_ms() as u64,
            )
            .map_err(|err| {
                tracing::info!(device = %headers.device_id, error = %err, "refused a session request");
                auth_error(err)
            })
    }
}

/// `POST /api/v1/device/session`: a signed request with the device's ephemeral X25519
/// key; the answer is the server's, a token and the lifetime (`rota_protocol::session`).
#[utoipa::path(post, path = "/api/v1/device/session", request_body = OpenSession,
    responses((status = 200, body = SessionOpened)), tag = "device")]
pub async fn open(
    State(state): State<AppState>,
    signed: SignedByDevice,
) -> ApiResult<Json<SessionOpened>> {
    // `session_allowed` already refuses a session here; a session never opens another.
    if signed.via_session {
        return Err(auth_error(AuthError::SessionNotAllowed));
    }
    let request: OpenSession = serde_json::from_slice(&signed.body).map_err(|e| {
        ApiError::bad_request(format!("the session request is not valid JSON: {e}"))
    })?;
    let device_public = request
        .public_key()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (server_public, key) =
        session::accept(&signed.device.id, &device_public).map_err(|e| match e {
            SessionError::KeyAgreement | SessionError::InvalidPublicKey => {
                ApiError::bad_request(e.to_string())
            }
            other => ApiError::internal(other),
        })?;
    let sessions = &state.sessions;
    let expires_ms = (now_ms() as u64).saturating_add(u64::from(sessions.lifetime_s) * 1000);
    let token = sessions
        .sealer
        .seal(&Session {
            device_id: signed.device.id.clone(),
            device_key_id: signed.device.public_key.key_id(),
            key,
            expires_ms,
        })
        .map_err(ApiError::internal)?;
    metrics::counter!("rota_sessions_opened_total").increment(1);
    Ok(Json(SessionOpened {
        x25519_public: hex::encode(server_public),
        token,
        lifetime_s: sessions.lifetime_s,
        expires_at_ms: expires_ms,
    }))
}
