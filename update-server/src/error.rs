//! Every refusal is a 4xx with a one-sentence reason in `{"error": "..."}`; server faults
//! are a 500 whose details go to the log, not to the client.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a 429 or a 503: when the same request may pass, sent as `Retry-After` (whole
    /// seconds).
    pub retry_after: Option<Duration>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    /// A rate limit: `429 Too Many Requests` with `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, retry_after: Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }
    /// A fault of the server's own; logged in full, answered without details.
    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to handle the request; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            // RFC 9110 §10.2.3: delay-seconds, a whole number; round up so that a client
            // that waits exactly this long passes.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// How long a client refused for a busy database is asked to wait.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> ApiError {
        match err {
            // Backpressure: the database is behind (no connection within the pool's
            // acquire timeout). The request is answered at once, with when to retry,
            // rather than after a client's own timeout; nothing was changed.
            sqlx::Error::PoolTimedOut => {
                metrics::counter!("rota_busy_refusals_total").increment(1);
                tracing::warn!(
                    "refused a request: no database connection within the acquire timeout"
                );
                ApiError {
                    retry_after: Some(BUSY_RETRY_AFTER),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is busy (its database is behind); try again later",
                    )
                }
            }
            err => ApiError::internal(err),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        ApiError::internal(format!("{err:#}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Turns every error answer that is not already `{"error": ...}` JSON (axum's extractor
/// rejections, 405, 408, 413) into one, keeping its one-sentence text.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.lines().next().unwrap_or("").trim();
    let message = if text.is_empty() {
        match status {
            StatusCode::REQUEST_TIMEOUT => "the request took too long".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_string(),
            _ => status
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_string(),
        }
    } else {
        text.to_string()
    };
    let mut fixed = (status, Json(ErrorBody { error: &message })).into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_falls_behind_is_a_503_with_retry_after_not_a_500() {
        let response = ApiError::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let other = ApiError::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(other.headers().get(header::RETRY_AFTER).is_none());
    }
}
