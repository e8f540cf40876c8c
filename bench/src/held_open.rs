//! `--long-tx`: writing transactions held open for a whole benchmark run, one in another
//! database of the same server and one in the engine's database on a table of its own. With the
//! server-wide horizon they hold back every event; with the outbox writers' horizon, nothing.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::server_env;
use crate::setup::{BenchResult, Scratch, err};

/// The open transactions; they roll back when closed or dropped.
pub struct HeldOpen {
    other_database: Transaction<'static, Postgres>,
    engine: Transaction<'static, Postgres>,
}

impl HeldOpen {
    pub async fn open(scratch: &Scratch) -> BenchResult<HeldOpen> {
        let base: PgConnectOptions = server_env("DATABASE_URL")?
            .parse()
            .map_err(|e| format!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
        let elsewhere = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.database("postgres"))
            .await
            .map_err(err("connect to the database postgres"))?;
        let mut other_database = elsewhere.begin().await.map_err(err("begin"))?;
        sqlx::query("CREATE TEMP TABLE held_open (id INT)")
            .execute(&mut *other_database)
            .await
            .map_err(err("write in the other database"))?;
        sqlx::query("CREATE TABLE IF NOT EXISTS engine_history (id INT)")
            .execute(&scratch.pool)
            .await
            .map_err(err("create the engine's own table"))?;
        let mut engine = scratch.pool.begin().await.map_err(err("begin"))?;
        sqlx::query("INSERT INTO engine_history VALUES (1)")
            .execute(&mut *engine)
            .await
            .map_err(err("write to the engine's own table"))?;
        Ok(HeldOpen {
            other_database,
            engine,
        })
    }

    pub async fn close(self) -> BenchResult<()> {
        self.other_database
            .rollback()
            .await
            .map_err(err("roll back"))?;
        self.engine.rollback().await.map_err(err("roll back"))
    }
}
