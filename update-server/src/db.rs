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
//! writer. On PostgreSQL reads and writes have separate pools too: a write waiting for a
//! rollout's row lock holds its connection, and a queue of them must not take every
//! connection from the check-ins' reads.
//!
//! The writes a fleet makes by the hundred thousand (registrations, activations, rollout
//! offers, reports) go through [`batch::WriteBatcher`]: many operations, one transaction,
//! one fsync.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

pub mod batch;

use batch::WriteBatcher;

/// The schema's migrations, embedded in the binary: (version, description, SQL), as
/// `sqlx::migrate!("./migrations")` would embed them (same checksums, so databases
/// migrated by either accept the other). Listed here rather than by that macro because
/// it pulls in sqlx's proc-macro crate, which compiles both database drivers a second
/// time for the compiler: about a minute of every cold build on 2 cores.
/// `tests::the_embedded_migrations_are_the_migrations_directory` keeps this list and
/// `migrations/` the same.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "rollout halt window",
        include_str!("../migrations/0002_rollout_halt_window.sql"),
    ),
    (
        3,
        "rollout counters",
        include_str!("../migrations/0003_rollout_counters.sql"),
    ),
    (
        4,
        "audit log bounds",
        include_str!("../migrations/0004_audit_log_bounds.sql"),
    ),
    (
        5,
        "attestation",
        include_str!("../migrations/0005_attestation.sql"),
    ),
    (
        6,
        "revocations",
        include_str!("../migrations/0006_revocations.sql"),
    ),
    (
        7,
        "key rotation",
        include_str!("../migrations/0007_key_rotation.sql"),
    ),
    (
        8,
        "device orders",
        include_str!("../migrations/0008_device_orders.sql"),
    ),
    (
        9,
        "ca registry",
        include_str!("../migrations/0009_ca_registry.sql"),
    ),
    (
        10,
        "session secret",
        include_str!("../migrations/0010_session_secret.sql"),
    ),
];

/// [`MIGRATIONS`] for sqlx's migrator (which records them in `_sqlx_migrations` and
/// refuses a database whose applied migrations were changed since).
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send>>
    {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into(),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database `conn` is connected to (for SQL that differs between the two).
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// The database's pools; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    /// Every statement that writes, and transactions.
    pub write: AnyPool,
    /// Plain reads.
    pub read: AnyPool,
    pub backend: Backend,
    /// Group commits on `write` for the writes a fleet makes by the hundred thousand.
    pub writes: WriteBatcher,
}

/// How the database is used: pool sizes, waits and group commits.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The longest a request waits for a connection (`--db-acquire-timeout`).
    pub acquire_timeout: Duration,
    /// Connections for reads (`--db-read-connections`).
    pub read_connections: u32,
    /// Operations per group commit at most (`--write-batch-max`).
    pub write_batch_max: usize,
    /// Operations waiting for the writer at most (`--write-queue-max`); beyond, 503.
    pub write_queue_max: usize,
    /// Bytes of an SQLite database read through a memory map (`--sqlite-mmap-size`).
    pub sqlite_mmap_bytes: u64,
}

impl DbOptions {
    /// The defaults, with `acquire_timeout`.
    pub fn new(acquire_timeout: Duration) -> DbOptions {
        DbOptions {
            acquire_timeout,
            read_connections: default_read_connections(),
            write_batch_max: batch::DEFAULT_BATCH_MAX,
            write_queue_max: batch::DEFAULT_QUEUE_MAX,
            sqlite_mmap_bytes: DEFAULT_SQLITE_MMAP_BYTES,
        }
    }
}

/// The default `--sqlite-mmap-size`. Reads through the map take pages from the kernel's
/// file cache in place: without it, every read connection copies them in with a system
/// call each time the writer's commits invalidate its page cache (at 100,000 devices,
/// about a fifth of the SQLite threads' time).
pub const DEFAULT_SQLITE_MMAP_BYTES: u64 = 256 << 20;

/// The default read pool: four connections a core, at least 8. SQLite reads are mostly
/// CPU on cached pages (each connection has its own thread in sqlx), PostgreSQL reads are
/// mostly waits on the network; either way a few per core keeps the cores busy without
/// queueing check-ins behind each other.
pub fn default_read_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores * 4).unwrap_or(u32::MAX).max(8)
}

/// PostgreSQL connections for writes: the group-commit writer, the background pass,
/// last-seen flushes and management requests.
const POSTGRES_WRITE_CONNECTIONS: u32 = 4;

impl Db {
    /// The default wait for a connection (`--db-acquire-timeout`).
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens the database at `url` (`sqlite://…` or `postgres://…`) on the default options
    /// and brings the schema up to date; a request waits at most `acquire_timeout` for a
    /// connection (then `sqlx::Error::PoolTimedOut`: a 503, `crate::error`).
    pub async fn connect(url: &str, acquire_timeout: Duration) -> Result<Db> {
        Db::connect_with(url, &DbOptions::new(acquire_timeout)).await
    }

    /// Opens the database at `url` with `options` and brings the schema up to date.
    pub async fn connect_with(url: &str, options: &DbOptions) -> Result<Db> {
        let DbOptions {
            acquire_timeout,
            read_connections,
            write_batch_max,
            write_queue_max,
            sqlite_mmap_bytes,
        } = *options;
        let read_connections = read_connections.max(1);
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
        let (write, read) = match backend {
            Backend::Sqlite => {
                let path = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("cannot parse the database URL {}", redact(url)))?
                    .get_filename()
                    .to_path_buf();
                restrict_sqlite_files(&path)?;
                let write =
                    sqlite_pool(options.clone(), 1, acquire_timeout, sqlite_mmap_bytes).await?;
                let read = sqlite_pool(
                    options,
                    read_connections,
                    acquire_timeout,
                    sqlite_mmap_bytes,
                )
                .await?;
                (write, read)
            }
            Backend::Postgres => {
                let pool = |size: u32| {
                    AnyPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(acquire_timeout)
                        .connect_with(options.clone())
                };
                let write = pool(POSTGRES_WRITE_CONNECTIONS)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?;
                let read = pool(read_connections)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact(url)))?;
                (write, read)
            }
        };
        let writes = WriteBatcher::start(
            write.clone(),
            write_batch_max,
            write_queue_max,
            acquire_timeout,
        );
        let db = Db {
            write,
            read,
            backend,
            writes,
        };
        Migrator::new(Embedded)
            .await
            .context("cannot load the database migrations")?
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
    mmap_bytes: u64,
) -> Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        // No ping before each use: a connection to a local file cannot go stale, and the
        // ping is a round trip to the connection's worker thread (two thread switches per
        // query; 5% of the server's CPU under a fleet). PostgreSQL keeps its ping: a
        // connection there can die with the network or a server restart.
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // WAL lets reads run beside the writer; synchronous=FULL makes every
                // acknowledged commit survive a power cut, not only a process crash.
                conn.execute(
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA mmap_size = {mmap_bytes};"
                    )
                    .as_str(),
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

    /// Every file in `migrations/` is in [`MIGRATIONS`] with the version, description and
    /// checksum `sqlx::migrate!` would give it, and nothing else is.
    #[tokio::test]
    async fn the_embedded_migrations_are_the_migrations_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let summary = |migrator: Migrator| -> Vec<_> {
            migrator
                .iter()
                .map(|m| (m.version, m.description.to_string(), m.checksum.to_vec()))
                .collect()
        };
        let from_files = summary(Migrator::new(dir.as_path()).await.unwrap());
        let embedded = summary(Migrator::new(Embedded).await.unwrap());
        assert!(!from_files.is_empty());
        assert_eq!(embedded, from_files);
    }

    /// `--sqlite-mmap-size` reaches every connection, the reads' and the writer's; 0 is
    /// no map.
    #[tokio::test]
    async fn every_sqlite_connection_maps_the_configured_size() {
        for mmap_bytes in [0, 8 << 20] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("rota.db").display());
            let db = Db::connect_with(
                &url,
                &DbOptions {
                    read_connections: 2,
                    sqlite_mmap_bytes: mmap_bytes,
                    ..DbOptions::new(Db::ACQUIRE_TIMEOUT)
                },
            )
            .await
            .unwrap();
            let mut reads = vec![
                db.read.acquire().await.unwrap(),
                db.read.acquire().await.unwrap(),
            ];
            reads.push(db.write.acquire().await.unwrap());
            for mut conn in reads {
                let mapped: i64 = sqlx::query_scalar("PRAGMA mmap_size")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
                assert_eq!(mapped, mmap_bytes as i64);
            }
        }
    }

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
