//! Configuration: command-line flags, then `ROTA_SERVER_*` environment variables, then a
//! TOML file (`--config`), then the embedded defaults, in that order of precedence.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use governor::Quota;
use serde::Deserialize;

/// Every setting, all optional: the same shape serves flags, environment and file.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Directory for the embedded defaults: the SQLite database, the artifacts, the
    /// online TUF keys, the trusted device CAs and the first admin token.
    #[arg(long, env = "ROTA_SERVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve HTTP on.
    #[arg(long, env = "ROTA_SERVER_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// `postgres://user@host/db` to share one database between replicas; SQLite in
    /// DATA_DIR otherwise.
    #[arg(long, env = "ROTA_SERVER_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// `s3://bucket/prefix` for S3-compatible object storage (credentials, region and
    /// endpoint from the usual AWS_* variables); DATA_DIR/artifacts otherwise.
    #[arg(long, env = "ROTA_SERVER_ARTIFACTS", value_name = "URL")]
    pub artifacts: Option<String>,
    /// Directory holding the online TUF keys `snapshot.key` and `timestamp.key` made by
    /// `rota repo init`; DATA_DIR/tuf-online-keys by default.
    #[arg(long, env = "ROTA_SERVER_TUF_ONLINE_KEYS", value_name = "DIR")]
    pub tuf_online_keys: Option<PathBuf>,
    /// The snapshot key: a key file, or a PKCS#11 URI (RFC 7512) for a key in an HSM;
    /// TUF_ONLINE_KEYS/snapshot.key by default.
    #[arg(
        long,
        env = "ROTA_SERVER_TUF_SNAPSHOT_KEY",
        value_name = "FILE|PKCS11-URI"
    )]
    pub tuf_snapshot_key: Option<String>,
    /// The timestamp key, likewise; TUF_ONLINE_KEYS/timestamp.key by default.
    #[arg(
        long,
        env = "ROTA_SERVER_TUF_TIMESTAMP_KEY",
        value_name = "FILE|PKCS11-URI"
    )]
    pub tuf_timestamp_key: Option<String>,
    /// Directory of manufacturer CA public keys (`*.pub`), added to the server's CA registry
    /// at start-up (named by file name; a CA retired through the API stays retired);
    /// DATA_DIR/device-ca by default. More are introduced with `rota ca add`.
    #[arg(long, env = "ROTA_SERVER_DEVICE_CA_DIR", value_name = "DIR")]
    pub device_ca_dir: Option<PathBuf>,
    /// The operator's device CA (online, distinct from the offline manufacturer CA): a key
    /// file or a PKCS#11 URI. With it the server certifies devices' rotated identity keys;
    /// its public key is registered beside DEVICE_CA_DIR's and cannot be retired. Without
    /// it, rotation (and a class's rotation schedule) is refused.
    #[arg(
        long,
        env = "ROTA_SERVER_DEVICE_CA_KEY",
        value_name = "FILE|PKCS11-URI"
    )]
    pub device_ca_key: Option<String>,
    /// Seconds between device check-ins when there is nothing new (jittered by ±20 %).
    #[arg(long, env = "ROTA_SERVER_POLL_INTERVAL", value_name = "SECONDS")]
    pub poll_interval: Option<u32>,
    /// The most the poll hint is lengthened when the database falls behind: the check-in
    /// asks for up to this many poll intervals, in step with the write queue's depth and
    /// wait (1: never lengthened; default 4).
    #[arg(long, env = "ROTA_SERVER_POLL_HINT_MAX_FACTOR", value_name = "FACTOR")]
    pub poll_hint_max_factor: Option<u32>,
    /// The shortest time, in milliseconds, between two counts of a live rollout's members
    /// (a scan of its class's devices not yet assigned, over a second at 100,000 on SQLite):
    /// the tick and `rollout status` share the count for this long, unless the rollout
    /// changed meanwhile (default 5000; 0: count every time).
    #[arg(long, env = "ROTA_SERVER_MEMBER_COUNT_INTERVAL", value_name = "MS")]
    pub member_count_interval: Option<u64>,
    /// Lifetime of a timestamp metadata signature, in seconds; it is re-signed when half
    /// of it has passed.
    #[arg(long, env = "ROTA_SERVER_TIMESTAMP_LIFETIME", value_name = "SECONDS")]
    pub timestamp_lifetime: Option<u64>,
    /// Lifetime of a snapshot metadata signature, in seconds.
    #[arg(long, env = "ROTA_SERVER_SNAPSHOT_LIFETIME", value_name = "SECONDS")]
    pub snapshot_lifetime: Option<u64>,
    /// The largest artifact upload, in bytes.
    #[arg(long, env = "ROTA_SERVER_MAX_ARTIFACT_SIZE", value_name = "BYTES")]
    pub max_artifact_size: Option<u64>,
    /// Memory for the artifacts devices download most, kept whole and served without a
    /// store read (an artifact larger than a quarter of it is never kept); 0: none.
    #[arg(long, env = "ROTA_SERVER_ARTIFACT_CACHE_SIZE", value_name = "BYTES")]
    pub artifact_cache_size: Option<u64>,
    /// Seconds a request may take before it is answered 408.
    #[arg(long, env = "ROTA_SERVER_REQUEST_TIMEOUT", value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Milliseconds between background passes: last-seen writes, rollout timeouts and
    /// stage advances, timestamp re-signing.
    #[arg(long, env = "ROTA_SERVER_TICK", value_name = "MILLISECONDS")]
    pub tick: Option<u64>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "ROTA_SERVER_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds a check-in session lasts (60 to 86400): within it a device's check-ins and
    /// reports carry a MAC instead of a signature; a stolen session ends at the latest then.
    #[arg(long, env = "ROTA_SERVER_SESSION_LIFETIME", value_name = "SECONDS")]
    pub session_lifetime: Option<u32>,

    // Limits under attack: see `Limits`.
    /// Connections served at once (lowered to fit the open-file limit). At the limit, the
    /// connection that has waited longest without a request in flight is closed to make
    /// room; when every one is busy, the new one is closed at once.
    #[arg(long, env = "ROTA_SERVER_MAX_CONNECTIONS", value_name = "COUNT")]
    pub max_connections: Option<u32>,
    /// Seconds a client has to send a request's headers; also how long an idle
    /// keep-alive connection waits for its next request.
    #[arg(long, env = "ROTA_SERVER_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,
    /// Refused management requests per minute of one token, or with no valid token from
    /// one address (an IPv6 /64), that are audited one by one; beyond that they are
    /// answered 429 and only counted.
    #[arg(long, env = "ROTA_SERVER_REFUSALS_PER_MINUTE", value_name = "COUNT")]
    pub refusals_per_minute: Option<u32>,
    /// Refusals one token or address may have at once before `refusals-per-minute`
    /// applies.
    #[arg(long, env = "ROTA_SERVER_REFUSAL_BURST", value_name = "COUNT")]
    pub refusal_burst: Option<u32>,
    /// New reports per minute one device may send; beyond that, 429 with Retry-After.
    /// A retry of a stored report is always answered.
    #[arg(long, env = "ROTA_SERVER_REPORTS_PER_MINUTE", value_name = "COUNT")]
    pub reports_per_minute: Option<u32>,
    /// Reports one device may send at once before `reports-per-minute` applies.
    #[arg(long, env = "ROTA_SERVER_REPORT_BURST", value_name = "COUNT")]
    pub report_burst: Option<u32>,
    /// Seconds a request waits for a database connection; when the database falls that
    /// far behind, the request is answered 503 with Retry-After instead of hanging.
    #[arg(long, env = "ROTA_SERVER_DB_ACQUIRE_TIMEOUT", value_name = "SECONDS")]
    pub db_acquire_timeout: Option<u64>,
    /// Database connections for reads (check-ins), apart from the writes'; default four
    /// a core, at least 8.
    #[arg(long, env = "ROTA_SERVER_DB_READ_CONNECTIONS", value_name = "COUNT")]
    pub db_read_connections: Option<u32>,
    /// MiB of an SQLite database read through a memory map rather than copied in by
    /// reads (SQLite's `mmap_size`, per connection, sharing the same pages). The pages
    /// are the kernel's file cache, but the server's RSS counts them once per connection
    /// that maps them (its PSS once). 0 turns it off (default 256).
    #[arg(long, env = "ROTA_SERVER_SQLITE_MMAP_SIZE", value_name = "MIB")]
    pub sqlite_mmap_size: Option<u64>,
    /// Writes (registrations, offers, reports) committed together in one transaction at
    /// most: one fsync for all of them (default 256).
    #[arg(long, env = "ROTA_SERVER_WRITE_BATCH_MAX", value_name = "COUNT")]
    pub write_batch_max: Option<u32>,
    /// Writes waiting for the database at most; beyond that a request is answered 503
    /// with Retry-After at once (default 4096).
    #[arg(long, env = "ROTA_SERVER_WRITE_QUEUE_MAX", value_name = "COUNT")]
    pub write_queue_max: Option<u32>,
    /// Days an audit record is kept.
    #[arg(long, env = "ROTA_SERVER_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub audit_retention_days: Option<u32>,
    /// Audit records kept at most; the oldest go first.
    #[arg(long, env = "ROTA_SERVER_AUDIT_MAX_ROWS", value_name = "COUNT")]
    pub audit_max_rows: Option<u64>,
    /// Seconds an uploaded artifact may wait for signed targets metadata to list it; after
    /// that (and for a file the targets metadata stops listing) it is deleted. Unlisted
    /// artifacts are never served.
    #[arg(
        long,
        env = "ROTA_SERVER_UNLISTED_ARTIFACT_GRACE",
        value_name = "SECONDS"
    )]
    pub unlisted_artifact_grace: Option<u64>,
    /// Seconds an attestation challenge (nonce) stays valid; each is used at most once.
    #[arg(
        long,
        env = "ROTA_SERVER_ATTESTATION_NONCE_LIFETIME",
        value_name = "SECONDS"
    )]
    pub attestation_nonce_lifetime: Option<u32>,
    /// Unused, unexpired attestation challenges one device may hold at once; beyond that
    /// a request for another is answered 429.
    #[arg(
        long,
        env = "ROTA_SERVER_ATTESTATION_NONCES_PER_DEVICE",
        value_name = "COUNT"
    )]
    pub attestation_nonces_per_device: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: String,
    pub artifacts: String,
    pub tuf_online_keys: PathBuf,
    pub tuf_snapshot_key: rota_keys::KeyAddress,
    pub tuf_timestamp_key: rota_keys::KeyAddress,
    pub device_ca_dir: PathBuf,
    pub device_ca_key: Option<rota_keys::KeyAddress>,
    pub poll_interval_s: u32,
    pub poll_hint_max_factor: u32,
    pub member_count_interval_ms: u64,
    pub timestamp_lifetime_s: u64,
    pub snapshot_lifetime_s: u64,
    pub max_artifact_size: u64,
    pub artifact_cache_bytes: u64,
    pub request_timeout_s: u64,
    pub tick_ms: u64,
    pub log_format: LogFormat,
    pub unlisted_artifact_grace_s: u64,
    pub attestation_nonce_lifetime_s: u32,
    pub attestation_nonces_per_device: u32,
    /// Seconds a check-in session lasts (`rota_protocol::session`).
    pub session_lifetime_s: u32,
    pub limits: Limits,
}

/// What one client may cost the server: every limit that keeps it serving under a flood
/// (issue 12), each a setting.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: u32,
    pub header_read_timeout_s: u64,
    pub refusals_per_minute: u32,
    pub refusal_burst: u32,
    pub reports_per_minute: u32,
    pub report_burst: u32,
    pub db_acquire_timeout_s: u64,
    pub db_read_connections: u32,
    pub sqlite_mmap_mib: u64,
    pub write_batch_max: u32,
    pub write_queue_max: u32,
    pub audit_retention_days: u32,
    pub audit_max_rows: u64,
}

/// The largest `--sqlite-mmap-size`: 64 GiB of address space, well past any database
/// this server keeps on one machine.
const MAX_SQLITE_MMAP_MIB: u64 = 64 << 10;

impl Limits {
    fn resolve(s: &Settings) -> Result<Limits> {
        let limits = Limits {
            max_connections: s.max_connections.unwrap_or(1024),
            header_read_timeout_s: s.header_read_timeout.unwrap_or(15),
            refusals_per_minute: s.refusals_per_minute.unwrap_or(60),
            refusal_burst: s.refusal_burst.unwrap_or(20),
            reports_per_minute: s.reports_per_minute.unwrap_or(60),
            report_burst: s.report_burst.unwrap_or(30),
            db_acquire_timeout_s: s.db_acquire_timeout.unwrap_or(5),
            db_read_connections: s
                .db_read_connections
                .unwrap_or_else(crate::db::default_read_connections),
            sqlite_mmap_mib: s.sqlite_mmap_size.unwrap_or(256),
            write_batch_max: s
                .write_batch_max
                .unwrap_or(crate::db::batch::DEFAULT_BATCH_MAX as u32),
            write_queue_max: s
                .write_queue_max
                .unwrap_or(crate::db::batch::DEFAULT_QUEUE_MAX as u32),
            audit_retention_days: s.audit_retention_days.unwrap_or(90),
            audit_max_rows: s.audit_max_rows.unwrap_or(1_000_000),
        };
        for (name, value) in [
            ("max-connections", u64::from(limits.max_connections)),
            ("header-read-timeout", limits.header_read_timeout_s),
            ("refusals-per-minute", u64::from(limits.refusals_per_minute)),
            ("refusal-burst", u64::from(limits.refusal_burst)),
            ("reports-per-minute", u64::from(limits.reports_per_minute)),
            ("report-burst", u64::from(limits.report_burst)),
            ("db-acquire-timeout", limits.db_acquire_timeout_s),
            ("db-read-connections", u64::from(limits.db_read_connections)),
            ("write-batch-max", u64::from(limits.write_batch_max)),
            ("write-queue-max", u64::from(limits.write_queue_max)),
            (
                "audit-retention-days",
                u64::from(limits.audit_retention_days),
            ),
            ("audit-max-rows", limits.audit_max_rows),
        ] {
            if value == 0 {
                bail!("{name} must be at least 1");
            }
        }
        if limits.sqlite_mmap_mib > MAX_SQLITE_MMAP_MIB {
            bail!("sqlite-mmap-size must be at most {MAX_SQLITE_MMAP_MIB} MiB");
        }
        Ok(limits)
    }

    /// Refused management requests per source, as a governor quota.
    pub fn refusal_quota(&self) -> Quota {
        per_minute(self.refusals_per_minute, self.refusal_burst)
    }

    /// New reports per device, as a governor quota.
    pub fn report_quota(&self) -> Quota {
        per_minute(self.reports_per_minute, self.report_burst)
    }
}

/// `rate` cells a minute, `burst` at once (both at least 1; `resolve` refuses 0).
fn per_minute(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(rate).allow_burst(burst)
}

impl Settings {
    /// Fills every setting missing here from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            data_dir: self.data_dir.or(lower.data_dir),
            listen: self.listen.or(lower.listen),
            database_url: self.database_url.or(lower.database_url),
            artifacts: self.artifacts.or(lower.artifacts),
            tuf_online_keys: self.tuf_online_keys.or(lower.tuf_online_keys),
            tuf_snapshot_key: self.tuf_snapshot_key.or(lower.tuf_snapshot_key),
            tuf_timestamp_key: self.tuf_timestamp_key.or(lower.tuf_timestamp_key),
            device_ca_dir: self.device_ca_dir.or(lower.device_ca_dir),
            device_ca_key: self.device_ca_key.or(lower.device_ca_key),
            poll_interval: self.poll_interval.or(lower.poll_interval),
            poll_hint_max_factor: self.poll_hint_max_factor.or(lower.poll_hint_max_factor),
            member_count_interval: self.member_count_interval.or(lower.member_count_interval),
            timestamp_lifetime: self.timestamp_lifetime.or(lower.timestamp_lifetime),
            snapshot_lifetime: self.snapshot_lifetime.or(lower.snapshot_lifetime),
            max_artifact_size: self.max_artifact_size.or(lower.max_artifact_size),
            artifact_cache_size: self.artifact_cache_size.or(lower.artifact_cache_size),
            request_timeout: self.request_timeout.or(lower.request_timeout),
            tick: self.tick.or(lower.tick),
            log_format: self.log_format.or(lower.log_format),
            session_lifetime: self.session_lifetime.or(lower.session_lifetime),
            max_connections: self.max_connections.or(lower.max_connections),
            header_read_timeout: self.header_read_timeout.or(lower.header_read_timeout),
            refusals_per_minute: self.refusals_per_minute.or(lower.refusals_per_minute),
            refusal_burst: self.refusal_burst.or(lower.refusal_burst),
            reports_per_minute: self.reports_per_minute.or(lower.reports_per_minute),
            report_burst: self.report_burst.or(lower.report_burst),
            db_acquire_timeout: self.db_acquire_timeout.or(lower.db_acquire_timeout),
            db_read_connections: self.db_read_connections.or(lower.db_read_connections),
            sqlite_mmap_size: self.sqlite_mmap_size.or(lower.sqlite_mmap_size),
            write_batch_max: self.write_batch_max.or(lower.write_batch_max),
            write_queue_max: self.write_queue_max.or(lower.write_queue_max),
            audit_retention_days: self.audit_retention_days.or(lower.audit_retention_days),
            audit_max_rows: self.audit_max_rows.or(lower.audit_max_rows),
            unlisted_artifact_grace: self
                .unlisted_artifact_grace
                .or(lower.unlisted_artifact_grace),
            attestation_nonce_lifetime: self
                .attestation_nonce_lifetime
                .or(lower.attestation_nonce_lifetime),
            attestation_nonces_per_device: self
                .attestation_nonces_per_device
                .or(lower.attestation_nonces_per_device),
        }
    }

    /// Reads a TOML file of settings (kebab-case keys, as the flags).
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid configuration file", path.display()))
    }

    /// Resolves `self` (flags and environment) over `file`, then the defaults.
    pub fn resolve(self, file: Option<Settings>) -> Result<Config> {
        let s = self.or(file.unwrap_or_default());
        let limits = Limits::resolve(&s)?;
        let Some(data_dir) = s.data_dir else {
            bail!(
                "--data-dir is required (or ROTA_SERVER_DATA_DIR, or data-dir in the config file)"
            );
        };
        let database_url = match s.database_url {
            Some(url) => url,
            None => format!("sqlite://{}?mode=rwc", data_dir.join("rota.db").display()),
        };
        let artifacts = s
            .artifacts
            .unwrap_or_else(|| data_dir.join("artifacts").display().to_string());
        let online_keys = s
            .tuf_online_keys
            .clone()
            .unwrap_or_else(|| data_dir.join("tuf-online-keys"));
        let config = Config {
            limits,
            listen: s.listen.unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
            database_url,
            artifacts,
            tuf_snapshot_key: online_key(&s.tuf_snapshot_key, &online_keys, "snapshot.key")?,
            tuf_timestamp_key: online_key(&s.tuf_timestamp_key, &online_keys, "timestamp.key")?,
            tuf_online_keys: online_keys,
            device_ca_key: s
                .device_ca_key
                .as_deref()
                .map(|text| text.parse().context("the device-ca-key setting"))
                .transpose()?,
            device_ca_dir: s
                .device_ca_dir
                .unwrap_or_else(|| data_dir.join("device-ca")),
            poll_interval_s: s.poll_interval.unwrap_or(300),
            poll_hint_max_factor: s.poll_hint_max_factor.unwrap_or(4),
            member_count_interval_ms: s.member_count_interval.unwrap_or(5000),
            timestamp_lifetime_s: s.timestamp_lifetime.unwrap_or(24 * 3600),
            snapshot_lifetime_s: s.snapshot_lifetime.unwrap_or(30 * 24 * 3600),
            max_artifact_size: s.max_artifact_size.unwrap_or(1 << 30),
            artifact_cache_bytes: s.artifact_cache_size.unwrap_or(128 << 20),
            request_timeout_s: s.request_timeout.unwrap_or(30),
            tick_ms: s.tick.unwrap_or(250),
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            unlisted_artifact_grace_s: s.unlisted_artifact_grace.unwrap_or(24 * 3600),
            attestation_nonce_lifetime_s: s.attestation_nonce_lifetime.unwrap_or(300),
            attestation_nonces_per_device: s.attestation_nonces_per_device.unwrap_or(8),
            session_lifetime_s: s
                .session_lifetime
                .unwrap_or(rota_protocol::session::DEFAULT_SESSION_LIFETIME_S),
            data_dir,
        };
        if !(rota_protocol::session::MIN_SESSION_LIFETIME_S
            ..=rota_protocol::session::MAX_SESSION_LIFETIME_S)
            .contains(&config.session_lifetime_s)
        {
            bail!(
                "the session lifetime must be {} to {} seconds",
                rota_protocol::session::MIN_SESSION_LIFETIME_S,
                rota_protocol::session::MAX_SESSION_LIFETIME_S
            );
        }
        if config.poll_interval_s == 0 {
            bail!("the poll interval must be at least one second");
        }
        if config.poll_hint_max_factor == 0 {
            bail!("poll-hint-max-factor must be at least 1 (1: the poll hint is never lengthened)");
        }
        if config.member_count_interval_ms > 600_000 {
            bail!("member-count-interval must be at most 600000 ms (ten minutes)");
        }
        if config.timestamp_lifetime_s < 60 {
            bail!("the timestamp lifetime must be at least 60 seconds");
        }
        if !(10..=86_400).contains(&config.attestation_nonce_lifetime_s) {
            bail!("the attestation nonce lifetime must be between 10 and 86400 seconds");
        }
        if config.attestation_nonces_per_device == 0 {
            bail!("a device must be allowed at least one attestation nonce at a time");
        }
        if config.tick_ms == 0 || config.tick_ms > 1000 {
            bail!("the tick must be between 1 and 1000 milliseconds");
        }
        Ok(config)
    }
}

/// An online key's address: as configured (a file or a PKCS#11 URI), else `name` in the
/// online keys directory.
fn online_key(given: &Option<String>, dir: &Path, name: &str) -> Result<rota_keys::KeyAddress> {
    match given {
        Some(text) => text
            .parse()
            .with_context(|| format!("the {} setting", name.trim_end_matches(".key"))),
        None => Ok(dir.join(name).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: Settings = toml::from_str(
            "data-dir = \"/from/file\"\nlisten = \"127.0.0.1:9000\"\npoll-interval = 60\n",
        )
        .unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        };
        let config = flags.resolve(Some(file)).unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.poll_interval_s, 60);
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.database_url, "sqlite:///from/file/rota.db?mode=rwc");
        assert_eq!(config.artifacts, "/from/file/artifacts");
        assert_eq!(config.tick_ms, 250);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        assert!(toml::from_str::<Settings>("no-such-key = 1").is_err());
        let err = Settings::default().resolve(None).unwrap_err();
        assert!(err.to_string().contains("--data-dir"));
        let zero = Settings {
            data_dir: Some("/d".into()),
            poll_interval: Some(0),
            ..Default::default()
        };
        assert!(zero.resolve(None).is_err());
        let no_connections = Settings {
            data_dir: Some("/d".into()),
            max_connections: Some(0),
            ..Default::default()
        };
        let err = no_connections.resolve(None).unwrap_err();
        assert!(err.to_string().contains("max-connections"), "{err}");
        let huge_map = Settings {
            data_dir: Some("/d".into()),
            sqlite_mmap_size: Some(MAX_SQLITE_MMAP_MIB + 1),
            ..Default::default()
        };
        let err = huge_map.resolve(None).unwrap_err();
        assert!(err.to_string().contains("sqlite-mmap-size"), "{err}");
        let no_map = Settings {
            data_dir: Some("/d".into()),
            sqlite_mmap_size: Some(0),
            ..Default::default()
        };
        assert_eq!(no_map.resolve(None).unwrap().limits.sqlite_mmap_mib, 0);
    }
}
