//! The TUF repository as the server holds it: metadata rows in `tuf_metadata`, exactly as
//! signed, served under `/tuf/metadata/` with consistent-snapshot names, and target files
//! from the artifact store under `/tuf/targets/`, with ETags and HTTP Range.
//!
//! The server holds only the online keys (snapshot, timestamp). Root and targets arrive
//! signed offline; the server checks them with the device's own TUF client code (rota-tuf's
//! model and trusted set, through `rota_repo`) before it records them, then signs a new
//! snapshot and timestamp. Every write is an insert keyed by
//! (role, version), so two replicas that race produce one version, never two.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rota_repo::{OnlineSigner, RepoKey, RoleName, RotaTarget, SignedBytes, VerifiedTargets};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::artifacts::Artifacts;
use crate::config::Config;
use crate::db::{Db, new_id, now_ms};
use crate::error::{ApiError, ApiResult};

pub struct Repository {
    db: Db,
    signer: Option<OnlineSigner>,
    keys_dir: std::path::PathBuf,
    timestamp_lifetime: Duration,
    snapshot_lifetime: Duration,
    /// What the newest targets metadata lists, read again when a newer version appears.
    listed: std::sync::Mutex<Arc<Listed>>,
    /// When this replica last swept unlisted artifacts (unix ms).
    last_sweep_ms: AtomicI64,
}

/// The target files one version of the targets metadata lists: the only files served.
#[derive(Debug, Default)]
pub struct Listed {
    /// The targets metadata version (0: none yet).
    pub version: i64,
    /// Every path a client asks for a listed file under (`rota_repo::layout::target_paths`),
    /// with its SHA-256 in lowercase hex.
    pub paths: HashMap<String, String>,
    /// The SHA-256 of every listed file.
    pub sha256s: HashSet<String>,
}

/// How often the sweep of unlisted artifacts runs at most (more often with a shorter
/// grace period): it lists the whole artifact store.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// One stored metadata file.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: i64,
    pub body: String,
    pub sha256: String,
    pub expires_at: i64,
}

/// `SELECT version, body, sha256, expires_at` (a tuple, not `#[derive(FromRow)]`: the
/// server does without sqlx's proc macros, see `db::MIGRATIONS`).
type StoredRow = (i64, String, String, i64);

impl From<StoredRow> for Stored {
    fn from((version, body, sha256, expires_at): StoredRow) -> Self {
        Stored {
            version,
            body,
            sha256,
            expires_at,
        }
    }
}

fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

impl Repository {
    /// Loads the online keys from `snapshot.key` and `timestamp.key` in the configured
    /// directory. Without them the server still serves what it has, but cannot accept
    /// new roots or targets.
    pub fn open(db: Db, config: &Config) -> Result<Repository> {
        let dir = &config.tuf_online_keys;
        let signer = match (
            read_key(&config.tuf_snapshot_key)?,
            read_key(&config.tuf_timestamp_key)?,
        ) {
            (Some(snapshot), Some(timestamp)) => Some(OnlineSigner::new(snapshot, timestamp)),
            _ => {
                tracing::warn!(dir = %dir.display(), "no online TUF keys: publishing is disabled");
                None
            }
        };
        Ok(Repository {
            db,
            signer,
            keys_dir: dir.clone(),
            timestamp_lifetime: Duration::from_secs(config.timestamp_lifetime_s),
            snapshot_lifetime: Duration::from_secs(config.snapshot_lifetime_s),
            listed: Default::default(),
            last_sweep_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// The target files the newest targets metadata lists. One indexed read per call; the
    /// metadata itself is parsed again only when its version changed (another replica may
    /// have published it).
    pub async fn listed(&self) -> Result<Arc<Listed>> {
        let newest: Option<(i64,)> = sqlx::query_as(
            "SELECT version FROM tuf_metadata WHERE role = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(RoleName::Targets.as_str())
        .fetch_optional(&self.db.read)
        .await?;
        let cached = self.cached_listed();
        if newest.map_or(0, |(v,)| v) <= cached.version {
            return Ok(cached);
        }
        let Some(stored) = self.latest(RoleName::Targets).await? else {
            return Ok(cached);
        };
        let targets = rota_repo::listed_targets(stored.body.as_bytes())
            .context("the stored targets metadata does not parse")?;
        let listed = Arc::new(Listed {
            version: stored.version,
            paths: targets
                .iter()
                .flat_map(|t| {
                    let sha256 = hex::encode(t.sha256);
                    t.paths().into_iter().map(move |p| (p, sha256.clone()))
                })
                .collect(),
            sha256s: targets.iter().map(|t| hex::encode(t.sha256)).collect(),
        });
        let mut slot = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.version < listed.version {
            *slot = listed.clone();
        }
        Ok(listed)
    }

    /// Deletes the artifacts that the current targets metadata does not list and that
    /// were stored more than `grace` ago (uploads never published, files no longer
    /// listed), with their rows, so that the store holds only what may be served. Runs at
    /// most once per `grace` or `SWEEP_EVERY`, whichever is shorter; returns how many
    /// files it deleted.
    ///
    /// The listing is read after the store, so a targets version published meanwhile
    /// keeps its files; only one that commits while its files are being deleted, and
    /// lists files uploaded more than `grace` ago, can lose them (it then lists files the
    /// server cannot serve, until they are uploaded again).
    pub async fn sweep_unlisted(
        &self,
        artifacts: &Artifacts,
        grace: Duration,
        now_ms: i64,
    ) -> Result<usize> {
        let every = grace.min(SWEEP_EVERY).as_millis() as i64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < every {
            return Ok(0);
        }
        self.last_sweep_ms.store(now_ms, Ordering::Relaxed);
        let cutoff = from_ms(now_ms).checked_sub(grace).unwrap_or(UNIX_EPOCH);
        let old = artifacts.stored_before(cutoff).await?;
        let listed = self.listed().await?;
        let mut swept = 0;
        for sha256 in old.iter().filter(|s| !listed.sha256s.contains(*s)) {
            // The file first, then its row: a cut in between leaves a row whose file is
            // gone, which the next sweep finishes (deleting a missing file succeeds); the
            // other order could leave a file no row leads to, never swept.
            artifacts.delete(sha256).await?;
            sqlx::query("DELETE FROM artifacts WHERE sha256 = $1")
                .bind(sha256)
                .execute(&self.db.write)
                .await?;
            tracing::info!(sha256, "deleted an artifact that no signed targets list");
            swept += 1;
        }
        Ok(swept)
    }

    fn cached_listed(&self) -> Arc<Listed> {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn signer(&self) -> Result<&OnlineSigner, ApiError> {
        self.signer.as_ref().ok_or_else(|| {
            ApiError::conflict(format!(
                "the server has no online TUF keys; copy snapshot.key and timestamp.key from \
                 `rota repo init`'s online/ directory to {}",
                self.keys_dir.display()
            ))
        })
    }

    /// The newest version of `role`.
    pub async fn latest(&self, role: RoleName) -> Result<Option<Stored>, sqlx::Error> {
        let row: Option<StoredRow> = sqlx::query_as(
            "SELECT version, body, sha256, expires_at FROM tuf_metadata WHERE role = $1 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(role.as_str())
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.map(Stored::from))
    }

    /// Version `version` of `role`.
    pub async fn version(
        &self,
        role: RoleName,
        version: i64,
    ) -> Result<Option<Stored>, sqlx::Error> {
        let row: Option<StoredRow> = sqlx::query_as(
            "SELECT version, body, sha256, expires_at FROM tuf_metadata WHERE role = $1 AND version = $2",
        )
        .bind(role.as_str())
        .bind(version)
        .fetch_optional(&self.db.read)
        .await?;
        Ok(row.map(Stored::from))
    }

    /// Accepts a root: the first one (trusted on first use by an admin), or version N+1
    /// of the trusted one, signed by a threshold of both the old and the new root keys
    /// (TUF 1.0.34 §5.3.4). Both are checked by the device's own TUF client code
    /// (`rota_repo::verify_first_root`, `verify_root_update`: rota-tuf's model and trusted
    /// set), so the server never serves a root a device refuses. Either way the root must
    /// name this server's online keys for snapshot and timestamp, or the server could not
    /// sign anything it would trust.
    pub async fn put_root(&self, bytes: &[u8]) -> ApiResult<i64> {
        let signer = self.signer()?;
        let current = self.latest(RoleName::Root).await?;
        let now = SystemTime::now();
        let info = match &current {
            None => rota_repo::verify_first_root(bytes, now),
            Some(trusted) => rota_repo::verify_root_update(trusted.body.as_bytes(), bytes, now),
        }
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        signer
            .check_against_root(bytes)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the root metadata is not UTF-8"))?;
        let mut tx = self.db.write.begin().await?;
        insert(
            &mut tx,
            RoleName::Root,
            info.version as i64,
            text,
            to_ms(info.expires),
        )
        .await?;
        tx.commit().await.map_err(conflict_on_race)?;
        Ok(info.version as i64)
    }

    /// Checks another repository's root as this server's devices will before they move
    /// to it (an ownership transfer): cross-signed by a threshold of this repository's
    /// latest root keys and of its own, and not expired (rota-tuf's
    /// `TrustedSet::cross_signed_root`).
    pub async fn check_cross_signed(&self, new_root: &[u8]) -> ApiResult<()> {
        let current = self.latest(RoleName::Root).await?.ok_or_else(|| {
            ApiError::conflict("this repository has no root: its devices trust none to move from")
        })?;
        rota_repo::verify_cross_signed_root(current.body.as_bytes(), new_root, SystemTime::now())
            .map(|_| ())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the new root is not cross-signed by this repository's root keys \
                     (rota repo cross-sign): {e}"
                ))
            })
    }

    /// Accepts offline-signed targets metadata: checked against the trusted root as a
    /// device checks it (`rota_repo::verify_targets_upload`: rota-tuf's model and trusted
    /// set, TUF 1.0.34 §5.3.10, §5.6.3, §5.6.5),
    /// every target file must already be uploaded with its exact length, then the new
    /// targets, the releases they list, a new snapshot and a new timestamp are recorded in
    /// one transaction.
    pub async fn put_targets(
        &self,
        bytes: &[u8],
        artifacts: &Artifacts,
    ) -> ApiResult<VerifiedTargets> {
        let signer = self.signer()?;
        let root = self.latest(RoleName::Root).await?.ok_or_else(|| {
            ApiError::conflict("the repository has no root yet; run `rota repo push --dir REPO`")
        })?;
        let previous = self.latest(RoleName::Targets).await?;
        let now = SystemTime::now();
        let verified = rota_repo::verify_targets_upload(
            root.body.as_bytes(),
            previous.as_ref().map(|p| p.body.as_bytes()),
            bytes,
            now,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // Targets listed before were checked when they were published, and a published
        // name never changes content (rota_repo enforces it): only new ones need a look.
        let added = || {
            verified
                .targets
                .iter()
                .filter(|t| verified.added.contains(&t.name))
        };
        for target in added() {
            let sha256 = hex::encode(target.sha256);
            match artifacts.len(&sha256).await? {
                Some(len) if len == target.length => {}
                Some(len) => {
                    return Err(ApiError::bad_request(format!(
                        "target {} is listed with {} bytes but the uploaded file has {len}",
                        target.name, target.length
                    )));
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "target {} has not been uploaded; PUT /api/v1/artifacts/{sha256} first",
                        target.name
                    )));
                }
            }
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the targets metadata is not UTF-8"))?;
        let snapshot_version = self
            .latest(RoleName::Snapshot)
            .await?
            .map_or(1, |s| s.version + 1);
        let snapshot = signer
            .snapshot(bytes, snapshot_version as u64, now + self.snapshot_lifetime)
            .map_err(ApiError::internal)?;
        let timestamp_version = self
            .latest(RoleName::Timestamp)
            .await?
            .map_or(1, |t| t.version + 1);
        let timestamp = signer
            .timestamp(
                &snapshot.bytes,
                timestamp_version as u64,
                now + self.timestamp_lifetime,
            )
            .map_err(ApiError::internal)?;

        let mut tx = self.db.write.begin().await?;
        insert(
            &mut tx,
            RoleName::Targets,
            verified.version as i64,
            text,
            to_ms(verified.expires),
        )
        .await?;
        for target in added() {
            let Some(RotaTarget::Image {
                class_id,
                version,
                security_version,
                envelope,
            }) = target.rota.clone()
            else {
                continue;
            };
            sqlx::query(
                "INSERT INTO releases (id, target, envelope_target, class_id, version, \
                 security_version, length, sha256, targets_version, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (target) DO NOTHING",
            )
            .bind(new_id())
            .bind(&target.name)
            .bind(&envelope)
            .bind(class_id.hyphenated().to_string())
            .bind(version as i64)
            .bind(security_version as i64)
            .bind(target.length as i64)
            .bind(hex::encode(target.sha256))
            .bind(verified.version as i64)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        insert_signed(&mut tx, &snapshot).await?;
        insert_signed(&mut tx, &timestamp).await?;
        tx.commit().await.map_err(conflict_on_race)?;
        Ok(verified)
    }

    /// Re-signs the timestamp (and the snapshot) once half of its lifetime has passed, so
    /// clients never see expired freshness metadata while the server runs (§5.4.4,
    /// §5.5.6 on the client side).
    pub async fn refresh_expiring(&self, now_ms: i64) -> Result<()> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        let (Some(snapshot), Some(timestamp)) = (
            self.latest(RoleName::Snapshot).await?,
            self.latest(RoleName::Timestamp).await?,
        ) else {
            return Ok(());
        };
        let now = from_ms(now_ms);
        let half = |lifetime: Duration| (lifetime / 2).as_millis() as i64;
        let mut snapshot_bytes = snapshot.body.into_bytes();
        let mut tx = self.db.write.begin().await?;
        let mut changed = false;
        if snapshot.expires_at - now_ms < half(self.snapshot_lifetime) {
            let targets = self
                .latest(RoleName::Targets)
                .await?
                .context("a snapshot exists without targets")?;
            let fresh = signer.snapshot(
                targets.body.as_bytes(),
                snapshot.version as u64 + 1,
                now + self.snapshot_lifetime,
            )?;
            if !insert_resigned(&mut tx, &fresh).await? {
                return Ok(());
            }
            snapshot_bytes = fresh.bytes;
            changed = true;
        }
        if changed || timestamp.expires_at - now_ms < half(self.timestamp_lifetime) {
            let fresh = signer.timestamp(
                &snapshot_bytes,
                timestamp.version as u64 + 1,
                now + self.timestamp_lifetime,
            )?;
            if !insert_resigned(&mut tx, &fresh).await? {
                return Ok(());
            }
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        match tx.commit().await {
            Ok(()) => {
                tracing::info!("re-signed TUF freshness metadata before it expired");
                Ok(())
            }
            // Another replica re-signed first: its version stands.
            Err(e) if is_unique_violation(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Records re-signed freshness metadata; `false` if another replica recorded that version
/// first. On PostgreSQL the second of two racing inserts fails on the primary key as soon
/// as the first commits (not at its own commit), so the race shows up here; the
/// transaction is then dropped, and rolled back, with nothing of this pass written.
async fn insert_resigned(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    signed: &SignedBytes,
) -> Result<bool> {
    match insert_signed(tx, signed).await {
        Ok(()) => Ok(true),
        Err(e) if e.status == StatusCode::CONFLICT => Ok(false),
        Err(e) => Err(anyhow::anyhow!(e.message)),
    }
}

/// An online key: a key file (a missing one is `None`: publishing stays off), a stub or a
/// PKCS#11 URI, opened once at start (a token's login lasts while the server runs).
fn read_key(address: &rota_keys::KeyAddress) -> Result<Option<RepoKey>> {
    if let Some(path) = address.file()
        && !path.exists()
    {
        return Ok(None);
    }
    let key = address
        .open()
        .with_context(|| format!("cannot use the online key {address}"))?;
    Ok(Some(RepoKey::from_private(key).with_context(|| {
        format!("{address} is not a usable online key")
    })?))
}

fn conflict_on_race(err: sqlx::Error) -> ApiError {
    if is_unique_violation(&err) {
        ApiError::conflict(
            "another change to the repository was recorded at the same time; try again",
        )
    } else {
        err.into()
    }
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    role: RoleName,
    version: i64,
    body: &str,
    expires_at: i64,
) -> ApiResult<()> {
    let sha256 = hex::encode(Sha256::digest(body.as_bytes()));
    sqlx::query(
        "INSERT INTO tuf_metadata (role, version, body, sha256, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(role.as_str())
    .bind(version)
    .bind(body)
    .bind(sha256)
    .bind(expires_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(format!(
                "{role} version {version} already exists; sign a higher version"
            ))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

async fn insert_signed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    signed: &SignedBytes,
) -> ApiResult<()> {
    let body = std::str::from_utf8(&signed.bytes).map_err(ApiError::internal)?;
    insert(
        tx,
        signed.role,
        signed.version as i64,
        body,
        to_ms(signed.expires),
    )
    .await
}

/// Which stored file a metadata name means.
fn parse_metadata_name(file: &str) -> Option<(RoleName, Option<i64>)> {
    let stem = file.strip_suffix(".json")?;
    let role = |name: &str| match name {
        "root" => Some(RoleName::Root),
        "targets" => Some(RoleName::Targets),
        "snapshot" => Some(RoleName::Snapshot),
        "timestamp" => Some(RoleName::Timestamp),
        _ => None,
    };
    match stem.split_once('.') {
        None => Some((role(stem)?, None)),
        Some((version, name)) => {
            // Canonical decimal only: one name per file.
            if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let version = version.parse().ok()?;
            // timestamp.json is never versioned (TUF 1.0.34 §5.4).
            let role = role(name).filter(|r| *r != RoleName::Timestamp)?;
            Some((role, Some(version)))
        }
    }
}

/// `GET /tuf/metadata/{file}`: `N.root.json`, `N.targets.json`, `N.snapshot.json`,
/// `timestamp.json` (and the unversioned latest root, targets and snapshot).
pub async fn serve_metadata(
    State(state): State<AppState>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some((role, version)) = parse_metadata_name(&file) else {
        return Err(ApiError::not_found(format!(
            "{file} is not a metadata file name"
        )));
    };
    let stored = match version {
        Some(v) => state.repo.version(role, v).await?,
        None => state.repo.latest(role).await?,
    };
    let stored = stored.ok_or_else(|| ApiError::not_found(format!("there is no {file}")))?;
    let etag = format!("\"{}\"", stored.sha256);
    let cache = if version.is_some() {
        // A versioned file never changes.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if crate::app::if_none_match(&headers, &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache.into())],
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_string()),
        ],
        stored.body,
    )
        .into_response())
}

/// `GET /tuf/targets/{path}`: a target of the current targets metadata by its
/// consistent-snapshot name `[dir/]SHA256.name` (TUF 1.0.34 §5.7.3), with `Range` and
/// `ETag`. Uploads that no signed targets metadata lists are not served: the artifact
/// store holds them only until they are published or swept.
pub async fn serve_target(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    // The specification (and python-tuf) put the hash on the file name, `dir/HASH.file`;
    // tough 0.24 puts it on the whole path, `HASH.dir/file`: `Listed` has both.
    let listed = state.repo.listed().await?;
    let Some(sha256) = listed.paths.get(&path) else {
        return Err(ApiError::not_found(format!(
            "{path} is not a target of the current targets metadata \
             (targets are served under consistent-snapshot names, SHA256.name)"
        )));
    };
    let sha256 = sha256.as_str();
    let length = state
        .artifacts
        .len(sha256)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("there is no target {path}")))?;
    let etag = format!("\"{sha256}\"");
    if crate::app::if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // If-Range with another validator: the client's partial copy is stale, send it all.
    let range_applies = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v == etag));
    let range = match headers.get(header::RANGE).filter(|_| range_applies) {
        None => None,
        Some(value) => match parse_range(value.to_str().unwrap_or(""), length) {
            RangeRequest::Satisfiable(range) => Some(range),
            RangeRequest::Ignore => None,
            RangeRequest::Unsatisfiable => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{length}"))],
                )
                    .into_response());
            }
        },
    };
    let stream = state.artifacts.get(sha256, range.clone()).await?;
    let mut response = Response::new(Body::from_stream(stream));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    match range {
        Some(range) => {
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(range.end - range.start),
            );
            let content_range = format!("bytes {}-{}/{length}", range.start, range.end - 1);
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).map_err(ApiError::internal)?,
            );
        }
        None => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
    Ok(response)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Satisfiable(std::ops::Range<u64>),
    /// Syntax the server does not serve (several ranges, other units): RFC 9110 §14.2
    /// lets a server ignore Range and send the whole representation.
    Ignore,
    Unsatisfiable,
}

/// One `bytes=` range of RFC 9110 §14.1.2: `a-b`, `a-` or `-n`.
fn parse_range(value: &str, length: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let range = match (first.is_empty(), last.is_empty()) {
        (false, _) => {
            let Some(start) = number(first) else {
                return RangeRequest::Ignore;
            };
            let end = if last.is_empty() {
                length
            } else {
                let Some(last) = number(last) else {
                    return RangeRequest::Ignore;
                };
                if last < start {
                    return RangeRequest::Ignore;
                }
                last.saturating_add(1).min(length)
            };
            if start >= length {
                return RangeRequest::Unsatisfiable;
            }
            start..end
        }
        (true, false) => {
            let Some(suffix) = number(last) else {
                return RangeRequest::Ignore;
            };
            if suffix == 0 {
                return RangeRequest::Unsatisfiable;
            }
            // An empty representation has no byte to select: §14.4's Content-Range
            // cannot name an empty range, so no 206 can answer, and the server answers
            // 416 with `bytes */0` (§15.5.17), as for every range on an empty file.
            // (§14.1.1 calls a non-zero suffix satisfiable here; a client asking for the
            // last byte of nothing is told there is none rather than sent a 200.)
            if length == 0 {
                return RangeRequest::Unsatisfiable;
            }
            length.saturating_sub(suffix)..length
        }
        (true, true) => return RangeRequest::Ignore,
    };
    RangeRequest::Satisfiable(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Satisfiable(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Satisfiable(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Satisfiable(90..100));
        assert_eq!(parse_range("bytes=-1000", 100), Satisfiable(0..100));
        assert_eq!(parse_range("bytes=50-1000", 100), Satisfiable(50..100));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-4", 100), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(parse_range("items=0-1", 100), Ignore);
        assert_eq!(parse_range("bytes=a-b", 100), Ignore);
        assert_eq!(parse_range("bytes=+1-2", 100), Ignore);
        // An empty representation: every range is unsatisfiable.
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 0), Unsatisfiable);
    }

    #[test]
    fn metadata_names_are_canonical() {
        assert_eq!(
            parse_metadata_name("timestamp.json"),
            Some((RoleName::Timestamp, None))
        );
        assert_eq!(
            parse_metadata_name("3.root.json"),
            Some((RoleName::Root, Some(3)))
        );
        assert_eq!(
            parse_metadata_name("12.snapshot.json"),
            Some((RoleName::Snapshot, Some(12)))
        );
        assert_eq!(parse_metadata_name("2.timestamp.json"), None);
        assert_eq!(parse_metadata_name("03.root.json"), None);
        assert_eq!(parse_metadata_name("1.mirrors.json"), None);
        assert_eq!(parse_metadata_name("root.txt"), None);
    }
}
