//! Shared test support: the two databases every server test runs against.
#![allow(dead_code)]

use rota_server::db::{Backend, Db};
use sqlx::Executor;

/// The PostgreSQL the tests use: `ROTA_TEST_POSTGRES_URL`, by default the machine's own
/// (127.0.0.1:5432, trust auth, database `test`).
pub fn postgres_base_url() -> String {
    std::env::var("ROTA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_string())
}

/// A fresh, empty database of `backend`, private to one test: a temporary SQLite file, or
/// a new schema in the test PostgreSQL (so tests run in parallel without seeing each
/// other). PostgreSQL missing is a failure, never a skip.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("rota.db").display());
                let db = Db::connect(&url, Db::ACQUIRE_TIMEOUT).await.unwrap();
                TestDb {
                    db,
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let url = postgres_schema_url().await;
                let db = Db::connect(&url, Db::ACQUIRE_TIMEOUT).await.unwrap();
                TestDb {
                    db,
                    url,
                    _dir: None,
                }
            }
        }
    }
}

/// Creates a new schema in the test PostgreSQL and returns a URL whose connections use it.
pub async fn postgres_schema_url() -> String {
    sqlx::any::install_default_drivers();
    let base = postgres_base_url();
    let mut conn = match <sqlx::AnyConnection as sqlx::Connection>::connect(&base).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {base} ({e}); start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
             or set ROTA_TEST_POSTGRES_URL"
        ),
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Both backends, for tests that must hold on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
pub mod process;
pub mod server;
