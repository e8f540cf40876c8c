//! Test support: an isolated database per test on the real servers that `scripts/services.sh`
//! starts, and waiting for a condition with a deadline instead of sleeping.
//!
//! Tests never skip: a missing server is a failure with a message saying how to start it.
//! [`debugger`] holds a server process at a breakpoint for deterministic interleavings;
//! [`kafka`] starts a broker of a test's own; [`fixtures`] holds domain values many tests build; [`monitoring`] what `deploy/` expects of
//! the binaries' metrics; [`operaton`] the real Camunda 7 engine (Operaton) and its REST API.

pub mod debugger;
pub mod fixtures;
pub mod http;
pub mod kafka;
pub mod kafka_topics;
pub mod monitoring;
pub mod operaton;

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

const START_SERVICES: &str = "start the test servers with `scripts/services.sh start` and \
     `eval \"$(scripts/services.sh env)\"`, or run `scripts/test.sh`";

/// The value of a required environment variable, or a panic saying how to provide it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {START_SERVICES}"))
}

/// A fresh PostgreSQL schema on the server of `DATABASE_URL`; every connection of `pool` uses
/// it as its search path, so each test has its own tables.
#[derive(Debug)]
pub struct PgTestDb {
    pub pool: PgPool,
    pub schema: String,
    pub options: PgConnectOptions,
    server_url: String,
}

impl PgTestDb {
    pub async fn new() -> PgTestDb {
        PgTestDb::with_pool_size(8).await
    }

    pub async fn with_pool_size(max_connections: u32) -> PgTestDb {
        PgTestDb::on("DATABASE_URL", max_connections).await
    }

    /// A fresh schema on the server named by the URL in environment variable `url_variable`
    /// (`DATABASE_TLS_URL`: the server that accepts TLS connections only).
    pub async fn on(url_variable: &str, max_connections: u32) -> PgTestDb {
        let url = required_env(url_variable);
        let base = PgConnectOptions::from_str(&url)
            .unwrap_or_else(|e| panic!("{url_variable} is not a PostgreSQL URL: {e}"));
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.clone())
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to PostgreSQL at {url_variable} ({e}); {START_SERVICES}")
            });
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let options = base.options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await
            .expect("connect to the test schema");
        PgTestDb {
            pool,
            schema,
            options,
            server_url: url,
        }
    }

    /// A connection string for this schema, for processes started by a test.
    pub fn url(&self) -> String {
        let url = &self.server_url;
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-csearch_path%3D{}", self.schema)
    }
}

/// A fresh SQLite database file in the temporary directory, removed when dropped.
#[derive(Debug)]
pub struct SqliteTestDb {
    pub pool: SqlitePool,
    pub path: PathBuf,
}

impl SqliteTestDb {
    pub async fn new() -> SqliteTestDb {
        let path = std::env::temp_dir().join(format!("taskpool-{}.db", uuid::Uuid::new_v4()));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("open a temporary SQLite database");
        SqliteTestDb { pool, path }
    }
}

impl Drop for SqliteTestDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Polls `condition` until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        if tokio::time::Instant::now() >= give_up {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
