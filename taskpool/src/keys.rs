//! Actions' `Idempotency-Key` bindings in the single node's SQLite database: they hold across
//! restarts, so a retried request after one is still the command it was.

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::{Row, SqlitePool};
use taskpool_tasklist::actions::keys::{KeyBinding, KeyStore};
use taskpool_tasklist::view::ViewError;
use uuid::Uuid;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS taskpool_idempotency_keys (
    user_id    TEXT NOT NULL,
    key        TEXT NOT NULL,
    request    TEXT NOT NULL,
    command_id TEXT NOT NULL,
    bound_at   INTEGER NOT NULL,
    sent       BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, key))";
const INDEX: &str = "CREATE INDEX IF NOT EXISTS taskpool_idempotency_keys_bound_at \
                     ON taskpool_idempotency_keys (bound_at)";
const SELECT: &str = "SELECT request, command_id, bound_at, sent \
                      FROM taskpool_idempotency_keys WHERE user_id = $1 AND key = $2 AND bound_at >= $3";
const CONFIRM: &str =
    "UPDATE taskpool_idempotency_keys SET sent = true WHERE user_id = $1 AND key = $2";
const DELETE_EXPIRED: &str = "DELETE FROM taskpool_idempotency_keys WHERE bound_at < $1";
const INSERT: &str = "INSERT INTO taskpool_idempotency_keys \
                      (user_id, key, request, command_id, bound_at, sent) \
                      VALUES ($1, $2, $3, $4, $5, $6) \
                      ON CONFLICT (user_id, key) DO NOTHING";

#[derive(Debug, Clone)]
pub struct SqliteKeys {
    pool: SqlitePool,
}

impl SqliteKeys {
    /// Creates the table if needed.
    pub async fn prepare(pool: SqlitePool) -> sqlx::Result<SqliteKeys> {
        sqlx::query(CREATE).execute(&pool).await?;
        sqlx::query(INDEX).execute(&pool).await?;
        Ok(SqliteKeys { pool })
    }

    async fn find(
        &self,
        executor: impl sqlx::SqliteExecutor<'_>,
        user: &str,
        key: &str,
        valid_since: i64,
    ) -> sqlx::Result<Option<KeyBinding>> {
        let row = sqlx::query(SELECT)
            .bind(user)
            .bind(key)
            .bind(valid_since)
            .fetch_optional(executor)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let command_id: String = row.try_get(1)?;
        Ok(Some(KeyBinding {
            user: user.to_string(),
            key: key.to_string(),
            request: row.try_get(0)?,
            command_id: Uuid::parse_str(&command_id)
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
            bound_at: row.try_get(2)?,
            sent: row.try_get(3)?,
        }))
    }

    /// In one writing transaction: the expired bindings go, this one is stored unless the
    /// user's key is bound already, and the binding in force is read.
    async fn insert(&self, binding: &KeyBinding, valid_since: i64) -> sqlx::Result<KeyBinding> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(DELETE_EXPIRED)
            .bind(valid_since)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT)
            .bind(&binding.user)
            .bind(&binding.key)
            .bind(&binding.request)
            .bind(binding.command_id.to_string())
            .bind(binding.bound_at)
            .bind(binding.sent)
            .execute(&mut *tx)
            .await?;
        let bound = self
            .find(&mut *tx, &binding.user, &binding.key, valid_since)
            .await?;
        tx.commit().await?;
        bound.ok_or(sqlx::Error::RowNotFound)
    }
}

impl KeyStore for SqliteKeys {
    fn bound<'a>(
        &'a self,
        user: &'a str,
        key: &'a str,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<Option<KeyBinding>, ViewError>> {
        async move {
            self.find(&self.pool, user, key, valid_since)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn bind<'a>(
        &'a self,
        binding: &'a KeyBinding,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<KeyBinding, ViewError>> {
        async move {
            self.insert(binding, valid_since)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn confirm<'a>(&'a self, user: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), ViewError>> {
        async move {
            sqlx::query(CONFIRM)
                .bind(user)
                .bind(key)
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(ViewError::new)
        }
        .boxed()
    }
}
