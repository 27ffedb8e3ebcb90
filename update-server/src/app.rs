//! The server's shared state and its HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use rota_protocol::{PublicKey, RequestVerifier};
use rota_repo::RoleName;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::db::{Db, DbOptions};
use crate::device::checkin::ReportLimiter;
use crate::device::directory::Directory;
use crate::live::LiveRollouts;
use crate::manage::audit::AuditLog;
use crate::rollout::Engine;
use crate::tuf::Repository;
use crate::{device, manage, ops, tuf};

/// Everything a request handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub artifacts: Artifacts,
    pub engine: Arc<Engine>,
    pub repo: Arc<Repository>,
    pub devices: Arc<Directory>,
    pub live: Arc<LiveRollouts>,
    pub verifier: Arc<RequestVerifier>,
    /// The device CAs whose certificates the server accepts (the registry, cached briefly).
    pub cas: Arc<crate::cas::Registry>,
    /// The audit log's bounds under a flood of refusals.
    pub audit: Arc<AuditLog>,
    /// New reports per device (`reports-per-minute`, `report-burst`).
    pub report_limiter: Arc<ReportLimiter>,
    /// Device classes' attestation policies, cached briefly.
    pub policies: Arc<crate::attestation::Policies>,
    /// Device classes' scheduled key rotation, cached briefly.
    pub rotation: Arc<crate::device::rotate::RotationPolicies>,
    /// The operator's device CA, which certifies rotated device keys (`--device-ca-key`).
    pub device_ca: Option<Arc<dyn rota_keys::Sign>>,
    /// Check-in sessions: the fleet's token secret and the lifetime (`--session-lifetime`).
    pub sessions: Arc<crate::device::session::Sessions>,
}

/// The largest JSON body of a management request (rollouts, tokens, devices); signed
/// metadata has its role's own limit, the device's download limit.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The body limit of an upload of `role` metadata: the device client's download limit.
fn metadata_body_limit(role: RoleName) -> DefaultBodyLimit {
    DefaultBodyLimit::max(usize::try_from(rota_repo::max_metadata_len(role)).unwrap_or(usize::MAX))
}

impl AppState {
    /// Opens the database and the artifact store and loads the keys the config names.
    pub async fn open(config: Config) -> Result<AppState> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let db = Db::connect_with(
            &config.database_url,
            &DbOptions {
                acquire_timeout: Duration::from_secs(config.limits.db_acquire_timeout_s),
                read_connections: config.limits.db_read_connections,
                write_batch_max: config.limits.write_batch_max as usize,
                write_queue_max: config.limits.write_queue_max as usize,
                sqlite_mmap_bytes: config.limits.sqlite_mmap_mib << 20,
            },
        )
        .await?;
        let filled = crate::revocation::backfill(&db)
            .await
            .context("cannot fill in the revocation subjects of registered devices")?;
        if filled > 0 {
            tracing::info!(devices = filled, "filled in revocation subjects");
        }
        let artifacts = Artifacts::open(&config.artifacts, config.artifact_cache_bytes)?;
        let mut device_cas = load_device_cas(&config)?;
        let device_ca: Option<Arc<dyn rota_keys::Sign>> = match &config.device_ca_key {
            Some(address) => {
                let key = address
                    .open()
                    .with_context(|| format!("cannot open the device CA key {address}"))?;
                // Certificates it issues are trusted like the manufacturer's.
                device_cas.push((
                    "operator device CA".to_string(),
                    rota_keys::Sign::public_key(&key),
                ));
                Some(Arc::new(key))
            }
            None => None,
        };
        crate::cas::register_configured(&db, &device_cas)
            .await
            .context("cannot register the configured device CAs")?;
        let repo = Repository::open(db.clone(), &config)?;
        let engine = Arc::new(Engine::with_member_count_interval(
            db.clone(),
            Duration::from_millis(config.member_count_interval_ms),
        ));
        let live = Arc::new(LiveRollouts::default());
        live.refresh(&engine).await?;
        let audit = Arc::new(AuditLog::new(&config.limits));
        let report_limiter = Arc::new(device::checkin::report_limiter(&config.limits));
        let sessions = Arc::new(
            device::session::Sessions::load(&db, config.session_lifetime_s)
                .await
                .context("cannot set up check-in sessions")?,
        );
        Ok(AppState {
            sessions,
            audit,
            report_limiter,
            policies: Arc::default(),
            rotation: Arc::default(),
            cas: Arc::default(),
            device_ca,
            config: Arc::new(config),
            db,
            artifacts,
            engine,
            repo: Arc::new(repo),
            devices: Arc::new(Directory::default()),
            live,
            verifier: Arc::new(RequestVerifier::default()),
        })
    }
}

/// Every `*.pub` in the device CA directory, named by its file name (missing directory: no
/// CAs from it; they may be introduced through `POST /api/v1/cas`).
fn load_device_cas(config: &Config) -> Result<Vec<(String, PublicKey)>> {
    let dir = &config.device_ca_dir;
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::info!(dir = %dir.display(), "no device CA directory: only the registry's CAs are trusted");
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pub") {
            let pem = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key = rota_keys::public_key_from_pem(&pem).with_context(|| {
                format!("{} is not an Ed25519 or P-256 public key", path.display())
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            keys.push((name, key));
        }
    }
    Ok(keys)
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.request_timeout_s);
    let management = Router::new()
        .route(
            "/api/v1/tokens",
            post(manage::tokens::create).get(manage::tokens::list),
        )
        .route("/api/v1/tokens/{id}", delete(manage::tokens::revoke))
        .route("/api/v1/audit", get(manage::tokens::audit_log))
        // Signed metadata may be as large as a device downloads (rota_tuf::limits), no
        // larger: the server accepts nothing its devices would refuse, and refuses
        // nothing they would take.
        .route(
            "/api/v1/repo/root",
            put(manage::releases::put_root).layer(metadata_body_limit(RoleName::Root)),
        )
        .route(
            "/api/v1/repo/targets",
            put(manage::releases::put_targets).layer(metadata_body_limit(RoleName::Targets)),
        )
        .route("/api/v1/releases", get(manage::releases::list))
        .route(
            "/api/v1/devices",
            post(manage::devices::register).get(manage::devices::list),
        )
        .route("/api/v1/fleet", get(manage::devices::summary))
        .route("/api/v1/devices/{id}", get(manage::devices::get))
        .route(
            "/api/v1/devices/{id}/{action}",
            post(manage::devices::lifecycle),
        )
        .route(
            "/api/v1/devices/{id}/orders",
            post(device::orders::create).delete(device::orders::withdraw),
        )
        .route(
            "/api/v1/revocations",
            post(crate::revocation::create).get(crate::revocation::list),
        )
        .route(
            "/api/v1/revocations/{id}/devices",
            get(crate::revocation::devices),
        )
        .route(
            "/api/v1/classes/{class_id}/attestation",
            put(crate::attestation::set_policy).get(crate::attestation::get_policy),
        )
        .route(
            "/api/v1/classes/{class_id}/rotation",
            put(device::rotate::set_policy).get(device::rotate::get_policy),
        )
        .route(
            "/api/v1/cas",
            post(crate::cas::create).get(crate::cas::list),
        )
        .route("/api/v1/cas/{key_id}/devices", get(crate::cas::devices))
        .route("/api/v1/cas/{key_id}/retire", post(crate::cas::retire))
        .route(
            "/api/v1/rollouts",
            post(manage::rollouts::create).get(manage::rollouts::list),
        )
        .route("/api/v1/rollouts/{id}", get(manage::rollouts::get))
        .route(
            "/api/v1/rollouts/{id}/{action}",
            post(manage::rollouts::action),
        )
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
    // Artifact uploads stream any size up to the configured limit, for as long as it takes.
    let uploads = Router::new()
        .route(
            "/api/v1/artifacts/{sha256}",
            put(manage::releases::put_artifact),
        )
        .layer(DefaultBodyLimit::disable());
    let management = management
        .merge(uploads)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            manage::authorize,
        ));
    let devices = Router::new()
        .route(
            rota_protocol::api::CHECKIN_PATH,
            get(device::checkin::checkin),
        )
        .route(
            rota_protocol::api::REPORT_PATH,
            post(device::checkin::report),
        )
        .route(rota_protocol::api::ENROLL_PATH, post(device::enroll))
        .route(
            rota_protocol::session::SESSION_PATH,
            post(device::session::open),
        )
        .route(
            rota_protocol::api::ATTESTATION_NONCE_PATH,
            post(crate::attestation::challenge),
        )
        .route(
            rota_protocol::api::ATTESTATION_PATH,
            post(crate::attestation::attest),
        )
        .route(
            rota_protocol::api::ROTATE_PATH,
            post(device::rotate::rotate),
        )
        .route(
            rota_protocol::order::ORDER_DONE_PATH,
            post(device::orders::done),
        )
        .route(
            rota_protocol::order::TRANSFER_PATH,
            post(device::orders::take_in),
        )
        .route("/api/v1/device/self", get(device::whoami))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    let public = Router::new()
        .route("/tuf/metadata/{file}", get(tuf::serve_metadata))
        .route("/tuf/targets/{*path}", get(tuf::serve_target))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .merge(management)
        .merge(devices)
        .merge(public)
        // A route layer, so that the matched route (not the raw path) labels the metric.
        .route_layer(middleware::from_fn(count_requests))
        .fallback(ops::not_found)
        .layer(middleware::from_fn(crate::error::json_errors))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// Whether the request's `If-None-Match` names `etag` (or `*`): the client already holds
/// this representation and gets `304 Not Modified`.
pub fn if_none_match(headers: &axum::http::HeaderMap, etag: &str) -> bool {
    headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `rota_http_requests_total{method, route, status}` and the latency histogram.
///
/// Every label comes from a fixed set, so a client cannot create series: 200,000
/// invented methods once made 220,000 series and a 20 MB `/metrics` (issue 12). The
/// route is the matched route's template, never the raw path; the method is one of
/// [`metric_method`]'s.
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = metric_method(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("rota_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("rota_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a metric label: the standard methods by name (RFC 9110 §9), any other
/// as `other`.
fn metric_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}
