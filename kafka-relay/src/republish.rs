//! Sending retained outbox events again: by position range, aggregate id or time range, to
//! their topics or a named one. Consumers apply events by version, so republishing is safe: an
//! event a consumer already has changes nothing there.

use std::time::Duration;

use sqlx::PgPool;

use crate::outbox::{OutboxRow, outbox_row};
use crate::publisher::Publisher;

/// Rows read and sent at once.
const PAGE: i64 = 1_000;

/// Which events: every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub from_position: Option<i64>,
    pub to_position: Option<i64>,
    pub aggregate_id: Option<String>,
    /// RFC 3339; the outbox row's commit-side creation time, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.from_position.is_none()
            && self.to_position.is_none()
            && self.aggregate_id.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }
}

const CONDITIONS: &str = "($1::int8 IS NULL OR o.position >= $1) \
    AND ($2::int8 IS NULL OR o.position <= $2) AND ($3::text IS NULL OR o.aggregate_id = $3) \
    AND ($4::timestamptz IS NULL OR o.created_at >= $4::timestamptz) \
    AND ($5::timestamptz IS NULL OR o.created_at < $5::timestamptz)";

#[derive(Debug, thiserror::Error)]
pub enum RepublishError {
    #[error("the outbox")]
    Database(#[from] sqlx::Error),
    #[error("event at position {position} not published: {reason}")]
    Refused { position: i64, reason: String },
}

/// How many retained events the selection names.
pub async fn count(pool: &PgPool, selection: &Selection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM taskpool_outbox o WHERE {CONDITIONS}"
    )))
    .bind(selection.from_position)
    .bind(selection.to_position)
    .bind(&selection.aggregate_id)
    .bind(&selection.since)
    .bind(&selection.until)
    .fetch_one(pool)
    .await
}

async fn page(
    pool: &PgPool,
    selection: &Selection,
    after: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT o.position, o.tracking_xid::text::int8 AS tracking, o.event_id, o.aggregate_type, \
         o.aggregate_id, o.aggregate_version, o.event_type, o.payload, o.headers::text AS headers \
         FROM taskpool_outbox o WHERE {CONDITIONS} AND o.position > $6 \
         ORDER BY o.position LIMIT $7"
    )))
    .bind(selection.from_position)
    .bind(selection.to_position)
    .bind(&selection.aggregate_id)
    .bind(&selection.since)
    .bind(&selection.until)
    .bind(after)
    .bind(PAGE)
    .fetch_all(pool)
    .await?;
    rows.iter().map(outbox_row).collect()
}

/// Sends the selected events in position order (so each aggregate's stay in order), waiting
/// for Kafka's acknowledgement page by page. Returns how many were sent.
pub async fn republish(
    pool: &PgPool,
    publisher: &Publisher,
    selection: &Selection,
    topic: Option<&str>,
) -> Result<u64, RepublishError> {
    let mut sent = 0;
    let mut after = i64::MIN;
    loop {
        let rows = page(pool, selection, after).await?;
        let Some(last) = rows.last() else {
            return Ok(sent);
        };
        after = last.at.position;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery = publisher.enqueue_to(row, topic).await.map_err(|error| {
                RepublishError::Refused {
                    position: row.at.position,
                    reason: error.to_string(),
                }
            })?;
            deliveries.push((row.at.position, delivery));
        }
        for (position, delivery) in deliveries {
            let refused = |reason: String| RepublishError::Refused { position, reason };
            match tokio::time::timeout(Duration::from_secs(120), delivery).await {
                Ok(Ok(Ok(_))) => sent += 1,
                Ok(Ok(Err((error, _)))) => return Err(refused(error.to_string())),
                Ok(Err(_)) => return Err(refused("the producer dropped the message".into())),
                Err(_) => return Err(refused("Kafka did not acknowledge within 120 s".into())),
            }
        }
    }
}
