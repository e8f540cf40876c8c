//! A scratch PostgreSQL schema per benchmark run, dropped afterwards.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

use crate::server_env;

pub type BenchResult<T> = Result<T, String>;

/// Turns a database error into a message naming what was being done.
pub fn err(context: &str) -> impl Fn(sqlx::Error) -> String + '_ {
    move |e| format!("{context}: {e}")
}

/// A fresh schema on the server of `DATABASE_URL`, with taskpool's tables.
#[derive(Debug)]
pub struct Scratch {
    admin: PgPool,
    pub pool: PgPool,
    pub schema: String,
    base_url: String,
}

impl Scratch {
    pub async fn new(max_connections: u32) -> BenchResult<Scratch> {
        let base_url = server_env("DATABASE_URL")?;
        let base: PgConnectOptions = base_url
            .parse()
            .map_err(|e| format!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(err("connect to DATABASE_URL"))?;
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .map_err(err("create schema"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(base.options([("search_path", schema.as_str())]))
            .await
            .map_err(err("connect"))?;
        use taskpool_core::Store;
        taskpool_core::PgStore::migrate(&pool)
            .await
            .map_err(|e| format!("migrate: {e}"))?;
        Ok(Scratch {
            admin,
            pool,
            schema,
            base_url,
        })
    }

    /// A URL for this schema, for components that connect on their own.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base_url, self.schema
        )
    }

    pub async fn drop_schema(self) -> BenchResult<()> {
        self.pool.close().await;
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.admin)
        .await
        .map_err(err("drop schema"))?;
        Ok(())
    }
}
