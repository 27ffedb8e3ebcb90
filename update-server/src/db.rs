//! The database: SQLite on embedded defaults, PostgreSQL at scale, one code path.
//!
//! Queries go through sqlx's `Any` driver with `$N` placeholders, which both SQLite and
//! PostgreSQL accept, and the schema in `migrations/` uses only portable types, so the same
//! migrations and the same queries serve both.
//!
//! SQLite allows one writer at a time, and a deferred transaction that reads before it
//! writes fails with SQLITE_BUSY instead of waiting when another writer got there first.
//! So on SQLite all writes go through a pool of one connection (they queue in the pool,
//! never fail), while reads use a pool of their own; WAL mode lets those run beside the
//! writer. On PostgreSQL both are the same pool.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database's pools; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// Every statement that writes, and transactions.
    pub write: AnyPool,
    /// Plain reads.
    pub read: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and brings the schema up to date.
    /// The default wait for a connection (`--db-acquire-timeout`).
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens the database at `url`; a request waits at most `acquire_timeout` for a
    /// connection (then `sqlx::Error::PoolTimedOut`: a 503, `crate::error`).
    pub async fn connect(url: &str, acquire_timeout: Duration) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            bail!("the database URL must start with sqlite:// or postgres://");
        };
        let options = AnyConnectOptions::from_str(url)
            .with_context(|| format!("cannot parse the database URL {}", redact(url)))?;
        let db = match backend {
            Backend::Sqlite => {
                let path = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("cannot parse the database URL {}", redact(url)))?
                    .get_filename()
                    .to_path_buf();
                restrict_sqlite_files(&path)?;
                let write = sqlite_pool(options.clone(), 1, acquire_timeout).await?;
                let read = sqlite_pool(options, 8, acquire_timeout).await?;
                Db {
                    write,
                    read,
                    backend,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?;
                Db {
                    write: pool.clone(),
                    read: pool,
                    backend,
                }
            }
        };
        MIGRATOR
            .run(&db.write)
            .await
            .context("cannot apply the database migrations")?;
        Ok(db)
    }

    /// The embedded default: `DIR/rota.db`, created if missing.
    pub async fn open_sqlite_in(dir: &Path) -> Result<Db> {
        let path = dir.join("rota.db");
        Db::connect(
            &format!("sqlite://{}?mode=rwc", path.display()),
            Self::ACQUIRE_TIMEOUT,
        )
        .await
    }
}

/// Makes the SQLite database at `path` readable and writable by its owner only (mode
/// 0600, like the keys): it holds the token hashes, the device registry and the audit log.
/// A missing file is created so, whatever the umask, before SQLite opens it; an existing
/// one, and its `-wal` and `-shm` files, are set to 0600. SQLite creates `-wal` and `-shm`
/// with the database file's permissions (`unixOpen` takes them from the database file
/// and `fchmod`s against the umask), so they follow.
fn restrict_sqlite_files(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the database {}", path.display()))?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = Path::new(&file);
            match std::fs::set_permissions(file, owner_only.clone()) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other.with_context(|| format!("cannot make {} private", file.display()))?
                }
            }
        }
    }
    Ok(())
}

async fn sqlite_pool(
    options: AnyConnectOptions,
    size: u32,
    acquire_timeout: Duration,
) -> Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets reads run beside the writer; synchronous=FULL makes every
                // acknowledged commit survive a power cut, not only a process crash.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .context("cannot open the SQLite database")
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch, the unit of every time column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new random identifier (UUID v4 text).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A stored time (unix milliseconds) as the API gives times: unix seconds.
pub fn api_time(ms: i64) -> u64 {
    (ms.max(0) / 1000) as u64
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The database holds token hashes, the device registry and the audit log: neither it
    /// nor its WAL and shared-memory files may be readable by other users, whatever the
    /// umask.
    #[tokio::test]
    async fn database_files_are_not_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite_in(dir.path()).await.unwrap();
        sqlx::query("INSERT INTO artifacts (sha256, length, created_at) VALUES ('x', 1, 1)")
            .execute(&db.write)
            .await
            .unwrap();
        for name in ["rota.db", "rota.db-wal", "rota.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
        }
    }
}
