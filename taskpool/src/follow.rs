//! The in-process reader that keeps the embedded view: at start it loads every aggregate's
//! current state (so the view is exactly the committed state, whatever happened before), then
//! follows the SQLite outbox from the newest position it saw.
//!
//! SQLite has one writer at a time, so outbox positions are taken in commit order: a reader
//! that has seen position P has seen every transaction that committed before P's, and reading
//! `position > P` can never skip a late commit (unlike PostgreSQL, see decision 0004).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Row, SqlitePool};
use taskpool_schemas::{Timestamp, decode};
use taskpool_service::backoff::Backoff;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use taskpool_tasklist::fold::Folded;
use taskpool_tasklist::metrics::{Metrics, flag};
use taskpool_tasklist::view::{EmbeddedView, ViewError};
use tracing::info;

/// Outbox rows read at once.
const BATCH: i64 = 1_000;

/// How often an idle reader looks for new rows: the most a commit waits to be seen.
const IDLE_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the SQLite database")]
    Database(#[from] sqlx::Error),
    #[error("the embedded view")]
    View(#[from] ViewError),
}

/// Creates the reader's dead-letter table (idempotent).
pub async fn prepare(pool: &SqlitePool) -> Result<(), FollowError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS taskpool_view_dead_letters (
            position INTEGER PRIMARY KEY, aggregate_id TEXT NOT NULL, payload BLOB NOT NULL,
            reason TEXT NOT NULL, failed_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Loads every aggregate's current state into `view`, in one read transaction with the outbox
/// position it corresponds to, which it returns.
pub async fn rebuild(
    pool: &SqlitePool,
    view: &EmbeddedView,
    metrics: &Metrics,
) -> Result<i64, FollowError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let position: i64 = sqlx::query("SELECT COALESCE(MAX(position), 0) FROM taskpool_outbox")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let states = sqlx::query("SELECT aggregate_id, state FROM taskpool_aggregates")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut folded = Folded::new();
    for (index, row) in states.iter().enumerate() {
        let bytes: Vec<u8> = row.try_get("state")?;
        match decode(&bytes) {
            Ok(event) => folded.add(&event, index),
            Err(error) => {
                let id: String = row.try_get("aggregate_id")?;
                metrics.unreadable_document(&id, &error);
            }
        }
    }
    folded.write(view).await?;
    info!(
        aggregates = states.len(),
        position,
        millis = started.elapsed().as_millis() as u64,
        "view rebuilt from the committed state"
    );
    Ok(position)
}

/// Follows the outbox after `position` until shutdown, applying each batch to `view`.
pub async fn follow(
    pool: SqlitePool,
    view: EmbeddedView,
    mut position: i64,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    metrics.projection_running.set(flag(true));
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        match read_and_apply(&pool, &view, position, &metrics).await {
            Ok(Some(last)) => {
                position = last;
                backoff.reset();
                continue;
            }
            Ok(None) => {
                if shutdown.sleep(IDLE_POLL).await {
                    break;
                }
            }
            Err(error) => {
                let what = "cannot read the outbox";
                if backoff
                    .wait_after_failure(what, &error, &mut shutdown)
                    .await
                {
                    break;
                }
            }
        }
        if shutdown.is_requested() {
            break;
        }
    }
    metrics.projection_running.set(flag(false));
}

/// One batch after `position`: the last position applied, or `None` when there was nothing.
async fn read_and_apply(
    pool: &SqlitePool,
    view: &EmbeddedView,
    position: i64,
    metrics: &Metrics,
) -> Result<Option<i64>, FollowError> {
    let rows = sqlx::query(
        "SELECT position, aggregate_id, payload FROM taskpool_outbox
         WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(position)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let last: i64 = last.try_get("position")?;
    let started = Instant::now();
    let mut folded = Folded::new();
    let mut dead = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let payload: Vec<u8> = row.try_get("payload")?;
        match decode(&payload) {
            Ok(event) => folded.add(&event, index),
            Err(error) => dead.push((index, format!("undecodable: {}", error_chain(&error)))),
        }
    }
    let written = folded.write(view).await?;
    dead.extend(written.refused.iter().cloned());
    for (index, reason) in &dead {
        let row = &rows[*index];
        sqlx::query(
            "INSERT OR IGNORE INTO taskpool_view_dead_letters
             (position, aggregate_id, payload, reason, failed_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.try_get::<i64, _>("position")?)
        .bind(row.try_get::<String, _>("aggregate_id")?)
        .bind(row.try_get::<Vec<u8>, _>("payload")?)
        .bind(reason)
        .bind(Timestamp::now().millis())
        .execute(pool)
        .await?;
        metrics.dead_lettered(reason);
    }
    metrics.consumed_events.inc_by(rows.len() as u64);
    metrics.batch_applied(&written, started.elapsed());
    Ok(Some(last))
}
