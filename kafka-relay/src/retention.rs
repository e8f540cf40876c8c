//! Retention: published outbox rows older than the configured age are deleted in bounded
//! batches. A row is deleted only when every relay reading the outbox has published it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use taskpool_service::shutdown::Shutdown;
use tracing::warn;

use crate::config::Config;
use crate::lease::Lease;
use crate::metrics::Metrics;
use taskpool_service::logging::error_chain;

const DELETE_PUBLISHED: &str = r#"
DELETE FROM taskpool_outbox
WHERE position IN (
    SELECT o.position FROM taskpool_outbox o
    WHERE o.created_at < clock_timestamp() - $1 * interval '1 millisecond'
      AND EXISTS (SELECT 1 FROM taskpool_relay_position)
      AND NOT EXISTS (
          SELECT 1 FROM taskpool_relay_position p
          WHERE (o.tracking_xid, o.position) > (p.tracking_xid, p.position))
    ORDER BY o.position
    LIMIT $2)
"#;

/// Deletes one batch of published rows older than `max_age`; returns how many.
pub async fn delete_batch(
    pool: &PgPool,
    max_age: Duration,
    batch_size: u32,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(DELETE_PUBLISHED)
        .bind(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX))
        .bind(i64::from(batch_size))
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected())
}

/// Deletes old published rows, in bounded batches, while this process is the leader.
pub async fn apply_retention(
    pool: PgPool,
    config: Config,
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let retention = &config.retention;
    if retention.max_age_secs == 0 {
        return;
    }
    let max_age = Duration::from_secs(retention.max_age_secs);
    loop {
        while lease.remaining().is_some() && !shutdown.is_requested() {
            match delete_batch(&pool, max_age, retention.batch_size).await {
                Ok(deleted) => {
                    metrics.retention_deleted(deleted);
                    if deleted < u64::from(retention.batch_size) {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = error_chain(&e), "retention failed");
                    break;
                }
            }
        }
        if shutdown
            .sleep(Duration::from_secs(retention.interval_secs.max(1)))
            .await
        {
            return;
        }
    }
}
