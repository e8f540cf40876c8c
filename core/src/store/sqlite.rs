//! SQLite store (single-node mode). SQLite allows one writer at a time, so a transaction that
//! writes holds the database lock until it ends; begin write transactions with
//! `BEGIN IMMEDIATE` (`pool.begin_with("BEGIN IMMEDIATE")`) so that concurrent writers wait
//! for the lock instead of failing with `SQLITE_BUSY` when they upgrade from reading.

use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};

use super::{Store, StoreError, StoredAggregate, WriteBatch, migrations};
use crate::command::AggregateKey;
use taskpool_schemas::Timestamp;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteStore;

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "outbox",
    include_str!("../../migrations/sqlite/0001_outbox.sql"),
)];

impl Store for SqliteStore {
    type Db = Sqlite;

    async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
        migrations::migrator(MIGRATIONS).run(pool).await?;
        Ok(())
    }

    async fn lock_and_load(
        conn: &mut SqliteConnection,
        keys: &[AggregateKey],
    ) -> Result<Vec<StoredAggregate>, StoreError> {
        let mut loaded = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query(
                "SELECT version, state FROM taskpool_aggregates \
                 WHERE aggregate_type = ?1 AND aggregate_id = ?2",
            )
            .bind(key.aggregate_type.as_str())
            .bind(&key.id)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                loaded.push(StoredAggregate {
                    key: key.clone(),
                    version: row.try_get("version")?,
                    state: row.try_get("state")?,
                });
            }
        }
        Ok(loaded)
    }

    async fn save(conn: &mut SqliteConnection, batch: &WriteBatch) -> Result<(), StoreError> {
        // A savepoint makes the batch all-or-nothing inside the caller's transaction.
        sqlx::query("SAVEPOINT taskpool_save")
            .execute(&mut *conn)
            .await?;
        match write(conn, batch).await {
            Ok(()) => {
                sqlx::query("RELEASE taskpool_save")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
            Err(error) => {
                sqlx::query("ROLLBACK TO taskpool_save")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("RELEASE taskpool_save")
                    .execute(&mut *conn)
                    .await?;
                Err(error)
            }
        }
    }

    async fn create_if_absent(
        conn: &mut SqliteConnection,
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        // SQLite has one writer at a time: nothing can appear between the check and the write.
        let keys: Vec<AggregateKey> = batch.created.iter().map(|a| a.key.clone()).collect();
        if !Self::lock_and_load(conn, &keys).await?.is_empty() {
            return Ok(false);
        }
        Self::save(conn, batch).await?;
        Ok(true)
    }
}

async fn write(conn: &mut SqliteConnection, batch: &WriteBatch) -> Result<(), StoreError> {
    let now = Timestamp::now().millis();
    for aggregate in &batch.created {
        sqlx::query(
            "INSERT INTO taskpool_aggregates (aggregate_type, aggregate_id, version, state, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(aggregate.key.aggregate_type.as_str())
        .bind(&aggregate.key.id)
        .bind(aggregate.version)
        .bind(aggregate.state.as_slice())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_or(e, &aggregate.key))?;
    }
    for aggregate in &batch.changed {
        let updated = sqlx::query(
            "UPDATE taskpool_aggregates SET version = ?1, state = ?2, updated_at = ?3 \
             WHERE aggregate_type = ?4 AND aggregate_id = ?5 AND version = ?6",
        )
        .bind(aggregate.version)
        .bind(aggregate.state.as_slice())
        .bind(now)
        .bind(aggregate.key.aggregate_type.as_str())
        .bind(&aggregate.key.id)
        .bind(aggregate.expected_version)
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict(vec![aggregate.key.clone()]));
        }
    }
    for event in &batch.events {
        sqlx::query(
            "INSERT INTO taskpool_outbox (event_id, aggregate_type, aggregate_id, aggregate_version, \
             event_type, schema_fingerprint, payload, headers, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(event.event_id.to_string())
        .bind(event.key.aggregate_type.as_str())
        .bind(&event.key.id)
        .bind(event.version)
        .bind(event.event_type)
        .bind(i64::from_ne_bytes(event.schema_fingerprint.to_ne_bytes()))
        .bind(event.payload.as_slice())
        .bind(&event.headers)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_or(e, &event.key))?;
    }
    Ok(())
}

fn conflict_or(error: sqlx::Error, key: &AggregateKey) -> StoreError {
    if error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
    {
        StoreError::Conflict(vec![key.clone()])
    } else {
        StoreError::Database(error)
    }
}
