//! The device registry: rows in `devices`, a short-lived read cache in front of them for
//! the check-in path, and the batched last-seen writes.
//!
//! Cache entries live [`CACHE_TTL_MS`]; a suspension or decommission made through any
//! replica therefore takes effect on every replica within that time. Last-seen data is
//! collected in memory and written in one transaction per tick, so a check-in costs no
//! synchronous database write; a crash loses at most one tick of last-seen times, which
//! were never acknowledged as stored. Registrations and activations, which every device
//! makes once, go through group commits (`crate::db::batch`).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Result;
use rota_protocol::api::{
    AttestationState, DeviceInfo, DeviceState, FleetSummary, LastResult, SlotState, StateCount,
    VersionCount,
};
use rota_protocol::{CertBody, DeviceCertificate, PublicKey};
use sqlx::AnyConnection;

use crate::db::batch::WriteKey;
use crate::db::{Db, now_ms};
use crate::error::ApiError;

pub const CACHE_TTL_MS: i64 = 1000;

/// What the check-in path needs to know about a device.
#[derive(Debug, Clone)]
pub struct KnownDevice {
    pub id: String,
    pub public_key: PublicKey,
    pub class_id: String,
    pub tags: Vec<String>,
    pub state: DeviceState,
    /// The DICE DeviceID its certificate binds, where it has DICE.
    pub dice_device_id: Option<[u8; 32]>,
    /// Its latest attestation verdict: a `failed` device is offered no update.
    pub attestation: AttestationState,
    /// An operator asked for fresh evidence since the last: the check-in says so.
    pub attest_requested: bool,
    /// Why its key or certificate is revoked, if it is (`crate::revocation`).
    pub revoked: Option<String>,
    /// It is asked to rotate its identity key (`super::rotate`).
    pub rotate_requested: bool,
    /// When its current certificate was issued (unix ms), for scheduled rotation.
    pub issued_at_ms: Option<i64>,
    /// An operator order waits for it (`super::orders`): its check-in carries it.
    pub order_pending: bool,
}

/// The latest check-in of a device, waiting to be written.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: i64,
    pub running_version: u64,
    pub slot: SlotState,
    pub last_result: Option<LastResult>,
}

#[derive(Debug, Default)]
pub struct Directory {
    cache: Mutex<HashMap<String, (KnownDevice, i64)>>,
    seen: Mutex<HashMap<String, Seen>>,
}

type DeviceRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

impl Directory {
    /// The device `id`, from the cache if fresh, else from the database.
    pub async fn get(&self, db: &Db, id: &str) -> Result<Option<KnownDevice>, ApiError> {
        let now = now_ms();
        if let Some((device, fetched)) = self.cache.lock().unwrap().get(id) {
            if now - fetched < CACHE_TTL_MS {
                return Ok(Some(device.clone()));
            }
        }
        let row: Option<DeviceRow> = sqlx::query_as(&format!(
            "SELECT id, public_key, class_id, tags, state, dice_device_id, attestation, \
             CASE WHEN attest_requested_at IS NOT NULL AND \
             (attested_at IS NULL OR attest_requested_at > attested_at) THEN 1 ELSE 0 END, \
             {}, CASE WHEN rotate_requested_at IS NULL THEN 0 ELSE 1 END, issued_at, \
             CASE WHEN pending_order IS NOT NULL AND order_done_at IS NULL THEN 1 ELSE 0 END \
             FROM devices WHERE id = $1",
            crate::revocation::revoked_column()
        ))
        .bind(id)
        .fetch_optional(&db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let device = known_device(row)?;
        let mut cache = self.cache.lock().unwrap();
        // Bounded: a cache of every device is the fleet size; evict wholesale past it.
        if cache.len() >= 1_000_000 {
            cache.clear();
        }
        cache.insert(id.to_string(), (device.clone(), now));
        Ok(Some(device))
    }

    /// Forgets the cached copy of `id` (after a state change through this replica).
    pub fn invalidate(&self, id: &str) {
        self.cache.lock().unwrap().remove(id);
    }

    /// Forgets every cached device (after a revocation through this replica).
    pub fn invalidate_all(&self) {
        self.cache.lock().unwrap().clear();
    }

    /// provisioned → active, on the device's first authenticated request; in a group
    /// commit (`crate::db::batch`), since a whole fleet does it once.
    pub async fn activate(&self, db: &Db, id: &str) -> Result<(), ApiError> {
        let (device_id, now) = (id.to_string(), now_ms());
        db.writes
            .run(WriteKey::device(id), move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE devices SET state = 'active', updated_at = $1 \
                         WHERE id = $2 AND state = 'provisioned'",
                    )
                    .bind(now)
                    .bind(&device_id)
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
                    .map_err(ApiError::from)
                })
            })
            .await?;
        self.invalidate(id);
        Ok(())
    }

    /// Registers the device a verified certificate describes, as provisioned, in a group
    /// commit (`crate::db::batch`). Returns whether it was new; the same certificate
    /// again is a no-op, a different key or class for a known id is a conflict.
    pub async fn register(
        &self,
        db: &Db,
        certificate: &DeviceCertificate,
        cert: &CertBody,
    ) -> Result<bool, ApiError> {
        let now = now_ms();
        let subjects = crate::revocation::Subjects::of(certificate, cert);
        if let Some(reason) = subjects.revoked(db).await? {
            return Err(ApiError::forbidden(format!(
                "the certificate of device {} is revoked: {reason}",
                cert.device_id
            )));
        }
        let row = NewDevice {
            id: cert.device_id.clone(),
            public_key: cert.public_key.clone(),
            class_id: cert.class_id.clone(),
            tags: serde_json::to_string(&cert.tags).map_err(ApiError::internal)?,
            certificate: serde_json::to_string(certificate).map_err(ApiError::internal)?,
            dice_device_id: cert.dice_device_id.clone(),
            certificate_sha256: subjects.certificate_sha256,
            issuer: subjects.issuer,
            issued_at_ms: subjects.issued_at_ms,
            now,
        };
        db.writes
            .run(WriteKey::device(&cert.device_id), move |conn| {
                Box::pin(async move { row.insert(conn).await })
            })
            .await
    }

    /// Moves a device to `to` if its lifecycle allows it.
    pub async fn transition(
        &self,
        db: &Db,
        id: &str,
        to: DeviceState,
    ) -> Result<DeviceInfo, ApiError> {
        let current: Option<(String,)> = sqlx::query_as("SELECT state FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&db.read)
            .await?;
        let Some((current,)) = current else {
            return Err(ApiError::not_found(format!("there is no device {id}")));
        };
        let from = current
            .parse::<DeviceState>()
            .ok()
            .ok_or_else(|| ApiError::internal(format!("device {id} has state {current}")))?;
        if from != to {
            if !DeviceState::can_transition(from, to) {
                return Err(ApiError::conflict(format!(
                    "a {} device cannot become {}",
                    from.as_str(),
                    to.as_str()
                )));
            }
            // Compare-and-set on the state read above, so concurrent changes cannot skip
            // the lifecycle (e.g. un-decommission a device).
            let done = sqlx::query(
                "UPDATE devices SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
            )
            .bind(to.as_str())
            .bind(now_ms())
            .bind(id)
            .bind(from.as_str())
            .execute(&db.write)
            .await?;
            if done.rows_affected() == 0 {
                return Err(ApiError::conflict(format!(
                    "device {id} changed state meanwhile; try again"
                )));
            }
        }
        self.invalidate(id);
        device_info(db, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("there is no device {id}")))
    }

    /// Notes a check-in, to be written by the next [`Directory::flush_seen`].
    pub fn saw(&self, id: &str, seen: Seen) {
        self.seen.lock().unwrap().insert(id.to_string(), seen);
    }

    /// Writes the collected check-ins in one transaction.
    pub async fn flush_seen(&self, db: &Db) -> Result<usize> {
        let mut batch: Vec<(String, Seen)> = std::mem::take(&mut *self.seen.lock().unwrap())
            .into_iter()
            .collect();
        // Rows in id order, as group commits take them (`crate::db::batch`): replicas
        // flushing at once on PostgreSQL cannot deadlock on two devices' rows.
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = db.write.begin().await?;
        for (id, seen) in &batch {
            sqlx::query(
                "UPDATE devices SET last_seen_at = $1, running_version = $2, slot = $3, \
                 last_result = COALESCE($4, last_result) WHERE id = $5 AND \
                 (last_seen_at IS NULL OR last_seen_at <= $1)",
            )
            .bind(seen.at)
            .bind(seen.running_version as i64)
            .bind(seen.slot.as_str())
            .bind(seen.last_result.map(|r| r.as_str()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(batch.len())
    }
}

/// A device to register, from its verified certificate.
struct NewDevice {
    id: String,
    public_key: String,
    class_id: String,
    tags: String,
    certificate: String,
    dice_device_id: Option<String>,
    certificate_sha256: String,
    issuer: String,
    issued_at_ms: i64,
    now: i64,
}

impl NewDevice {
    /// The registration as one write operation: inserts the device as provisioned unless
    /// its id is known; whether it was new. A known id with this key and class is the same
    /// device enrolling again; with another, a conflict; decommissioned, refused.
    async fn insert(&self, conn: &mut AnyConnection) -> Result<bool, ApiError> {
        let inserted = sqlx::query(
            "INSERT INTO devices (id, public_key, class_id, tags, state, certificate, created_at, updated_at, \
             dice_device_id, certificate_sha256, issuer, issued_at) \
             VALUES ($1, $2, $3, $4, 'provisioned', $5, $6, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&self.id)
        .bind(&self.public_key)
        .bind(&self.class_id)
        .bind(&self.tags)
        .bind(&self.certificate)
        .bind(self.now)
        .bind(self.dice_device_id.clone())
        .bind(&self.certificate_sha256)
        .bind(&self.issuer)
        .bind(self.issued_at_ms)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        let (key, class, state): (String, String, String) =
            sqlx::query_as("SELECT public_key, class_id, state FROM devices WHERE id = $1")
                .bind(&self.id)
                .fetch_one(&mut *conn)
                .await?;
        if state == DeviceState::Decommissioned.as_str() {
            return Err(ApiError::forbidden(format!(
                "device {} is decommissioned and cannot be registered again",
                self.id
            )));
        }
        if key != self.public_key || class != self.class_id {
            return Err(ApiError::conflict(format!(
                "device {} is already registered with a different key or class",
                self.id
            )));
        }
        Ok(false)
    }
}

fn known_device(
    (
        id,
        key,
        class_id,
        tags,
        state,
        dice_device_id,
        attestation,
        attest_requested,
        revoked,
        rotate_requested,
        issued_at_ms,
        order_pending,
    ): DeviceRow,
) -> Result<KnownDevice, ApiError> {
    // Stored from a verified certificate (`CertBody::device_key`): Ed25519 or P-256.
    let public_key = hex::decode(&key)
        .ok()
        .and_then(|b| PublicKey::from_raw(&b))
        .ok_or_else(|| ApiError::internal(format!("device {id} has a malformed key")))?;
    public_key
        .validate()
        .map_err(|_| ApiError::internal(format!("device {id} has an invalid key")))?;
    let tags = serde_json::from_str(&tags).map_err(ApiError::internal)?;
    let state = state
        .parse::<DeviceState>()
        .ok()
        .ok_or_else(|| ApiError::internal(format!("device {id} has state {state}")))?;
    // Stored from a verified certificate (`CertBody::dice_device_id`).
    let dice_device_id = dice_device_id
        .map(|hex| {
            hex::decode(&hex)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| ApiError::internal(format!("device {id} has a malformed DeviceID")))
        })
        .transpose()?;
    Ok(KnownDevice {
        attestation: attestation.parse().unwrap_or(AttestationState::None),
        id,
        public_key,
        class_id,
        tags,
        state,
        dice_device_id,
        attest_requested: attest_requested != 0,
        revoked,
        rotate_requested: rotate_requested != 0,
        issued_at_ms,
        order_pending: order_pending != 0,
    })
}

pub(crate) type InfoRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

pub(crate) const INFO_COLUMNS: &str = "id, class_id, tags, state, created_at, last_seen_at, running_version, slot, last_result, \
     attestation, attestation_reason, attested_version, attested_by, attested_at";

pub(crate) fn info(row: InfoRow) -> Result<DeviceInfo, ApiError> {
    let (
        id,
        class_id,
        tags,
        state,
        created_at,
        last_seen_at,
        running_version,
        slot,
        last_result,
        attestation,
        attestation_reason,
        attested_version,
        attested_by,
        attested_at,
    ) = row;
    Ok(DeviceInfo {
        attestation: attestation.parse().unwrap_or(AttestationState::None),
        attestation_reason,
        attested_version: attested_version.map(|v| v as u64),
        attested_by,
        attested_at: attested_at.map(crate::db::api_time),
        tags: serde_json::from_str(&tags).map_err(ApiError::internal)?,
        state: state
            .parse::<DeviceState>()
            .ok()
            .ok_or_else(|| ApiError::internal(format!("device {id} has state {state}")))?,
        created_at: crate::db::api_time(created_at),
        last_seen_at: last_seen_at.map(crate::db::api_time),
        running_version: running_version.map(|v| v as u64),
        slot: slot.as_deref().and_then(|s| s.parse::<SlotState>().ok()),
        last_result: last_result
            .as_deref()
            .and_then(|s| s.parse::<LastResult>().ok()),
        id,
        class_id,
    })
}

/// One device's record.
pub async fn device_info(db: &Db, id: &str) -> Result<Option<DeviceInfo>, ApiError> {
    let row: Option<InfoRow> =
        sqlx::query_as(&format!("SELECT {INFO_COLUMNS} FROM devices WHERE id = $1"))
            .bind(id)
            .fetch_optional(&db.read)
            .await?;
    row.map(info).transpose()
}

/// The fleet (optionally one class) in numbers: devices per state, active devices per
/// running version. Two aggregate queries, whatever the fleet's size.
pub async fn fleet_summary(db: &Db, class_id: Option<&str>) -> Result<FleetSummary, ApiError> {
    let states: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM devices WHERE ($1 IS NULL OR class_id = $1) \
         GROUP BY state ORDER BY state",
    )
    .bind(class_id)
    .fetch_all(&db.read)
    .await?;
    let versions: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT running_version, COUNT(*) FROM devices WHERE ($1 IS NULL OR class_id = $1) \
         AND state = 'active' AND running_version IS NOT NULL \
         GROUP BY running_version ORDER BY running_version DESC",
    )
    .bind(class_id)
    .fetch_all(&db.read)
    .await?;
    let count = |n: i64| u64::try_from(n).map_err(|_| ApiError::internal("a negative count"));
    Ok(FleetSummary {
        states: states
            .into_iter()
            .map(|(state, n)| {
                Ok(StateCount {
                    state: state.parse().map_err(|_| {
                        ApiError::internal(format!("a device in an unknown state {state:?}"))
                    })?,
                    devices: count(n)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        versions: versions
            .into_iter()
            .map(|(version, n)| {
                Ok(VersionCount {
                    version: count(version)?,
                    devices: count(n)?,
                })
            })
            .collect::<Result<_, ApiError>>()?,
    })
}

/// Devices, optionally of one class, in id order, one page at a time.
pub async fn list_devices(
    db: &Db,
    class_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DeviceInfo>, ApiError> {
    let rows: Vec<InfoRow> = sqlx::query_as(&format!(
        "SELECT {INFO_COLUMNS} FROM devices WHERE ($1 IS NULL OR class_id = $1) \
         AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(class_id)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.read)
    .await?;
    rows.into_iter().map(info).collect()
}
