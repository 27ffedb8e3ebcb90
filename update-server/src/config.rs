//! Configuration: command-line flags, then `ROTA_SERVER_*` environment variables, then a
//! TOML file (`--config`), then the embedded defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
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
    /// Directory of trusted manufacturer CA public keys (`*.pub`); DATA_DIR/device-ca by
    /// default.
    #[arg(long, env = "ROTA_SERVER_DEVICE_CA_DIR", value_name = "DIR")]
    pub device_ca_dir: Option<PathBuf>,
    /// Seconds between device check-ins when there is nothing new (jittered by ±20 %).
    #[arg(long, env = "ROTA_SERVER_POLL_INTERVAL", value_name = "SECONDS")]
    pub poll_interval: Option<u32>,
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
    /// Seconds an uploaded artifact may wait for signed targets metadata to list it; after
    /// that (and for a file the targets metadata stops listing) it is deleted. Unlisted
    /// artifacts are never served.
    #[arg(
        long,
        env = "ROTA_SERVER_UNLISTED_ARTIFACT_GRACE",
        value_name = "SECONDS"
    )]
    pub unlisted_artifact_grace: Option<u64>,
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
    pub device_ca_dir: PathBuf,
    pub poll_interval_s: u32,
    pub timestamp_lifetime_s: u64,
    pub snapshot_lifetime_s: u64,
    pub max_artifact_size: u64,
    pub request_timeout_s: u64,
    pub tick_ms: u64,
    pub log_format: LogFormat,
    pub unlisted_artifact_grace_s: u64,
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
            device_ca_dir: self.device_ca_dir.or(lower.device_ca_dir),
            poll_interval: self.poll_interval.or(lower.poll_interval),
            timestamp_lifetime: self.timestamp_lifetime.or(lower.timestamp_lifetime),
            snapshot_lifetime: self.snapshot_lifetime.or(lower.snapshot_lifetime),
            max_artifact_size: self.max_artifact_size.or(lower.max_artifact_size),
            request_timeout: self.request_timeout.or(lower.request_timeout),
            tick: self.tick.or(lower.tick),
            log_format: self.log_format.or(lower.log_format),
            unlisted_artifact_grace: self
                .unlisted_artifact_grace
                .or(lower.unlisted_artifact_grace),
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
        let config = Config {
            listen: s.listen.unwrap_or_else(|| ([127, 0, 0, 1], 8080).into()),
            database_url,
            artifacts,
            tuf_online_keys: s
                .tuf_online_keys
                .unwrap_or_else(|| data_dir.join("tuf-online-keys")),
            device_ca_dir: s
                .device_ca_dir
                .unwrap_or_else(|| data_dir.join("device-ca")),
            poll_interval_s: s.poll_interval.unwrap_or(300),
            timestamp_lifetime_s: s.timestamp_lifetime.unwrap_or(24 * 3600),
            snapshot_lifetime_s: s.snapshot_lifetime.unwrap_or(30 * 24 * 3600),
            max_artifact_size: s.max_artifact_size.unwrap_or(1 << 30),
            request_timeout_s: s.request_timeout.unwrap_or(30),
            tick_ms: s.tick.unwrap_or(250),
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            unlisted_artifact_grace_s: s.unlisted_artifact_grace.unwrap_or(24 * 3600),
            data_dir,
        };
        if config.poll_interval_s == 0 {
            bail!("the poll interval must be at least one second");
        }
        if config.timestamp_lifetime_s < 60 {
            bail!("the timestamp lifetime must be at least 60 seconds");
        }
        if config.tick_ms == 0 || config.tick_ms > 1000 {
            bail!("the tick must be between 1 and 1000 milliseconds");
        }
        Ok(config)
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
    }
}
