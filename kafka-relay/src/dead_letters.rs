//! The relay's dead letters for a person with a terminal: list them with their reasons, show
//! one, retry them (after fixing the cause: each is published again, in position order, and
//! removed once Kafka acknowledged it), or discard them (removed, and logged).

use std::time::Duration;

use serde_json::json;
use sqlx::{PgPool, Row};
use tracing::{info, warn};

use crate::outbox::{OutboxRow, Position, parse_headers};
use crate::publisher::Publisher;

/// One dead letter, as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub position: i64,
    pub event_id: uuid::Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: i64,
    pub event_type: String,
    pub topic: String,
    pub reason: String,
    pub failed_at: String,
    pub payload_bytes: i64,
    pub headers_json: String,
}

const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, aggregate_version, \
    event_type, topic, reason, to_char(failed_at AT TIME ZONE 'UTC', \
    'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS failed_at, octet_length(payload) AS payload_bytes, \
    headers::text AS headers";

fn dead_letter(row: &sqlx::postgres::PgRow) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        version: row.try_get("aggregate_version")?,
        event_type: row.try_get("event_type")?,
        topic: row.try_get("topic")?,
        reason: row.try_get("reason")?,
        failed_at: row.try_get("failed_at")?,
        payload_bytes: i64::from(row.try_get::<i32, _>("payload_bytes")?),
        headers_json: row.try_get("headers")?,
    })
}

/// This relay's dead letters, in position order (all of them, or those at `positions`).
pub async fn list(
    pool: &PgPool,
    relay: &str,
    positions: Option<&[i64]>,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM taskpool_relay_dead_letters \
         WHERE relay_name = $1 AND ($2::bigint[] IS NULL OR position = ANY($2)) \
         ORDER BY position"
    )))
    .bind(relay)
    .bind(positions)
    .fetch_all(pool)
    .await?;
    rows.iter().map(dead_letter).collect()
}

impl DeadLetter {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "position": self.position, "eventId": self.event_id.to_string(),
            "aggregateType": self.aggregate_type, "aggregateId": self.aggregate_id,
            "version": self.version, "eventType": self.event_type, "topic": self.topic,
            "reason": self.reason, "failedAt": self.failed_at,
            "payloadBytes": self.payload_bytes,
            "headers": serde_json::from_str::<serde_json::Value>(&self.headers_json).unwrap_or_default(),
        })
    }

    /// One line: position, event, aggregate, reason.
    pub fn line(&self) -> String {
        format!(
            "{:>10}  {}  {} {} v{}  {}  {}",
            self.position,
            self.failed_at,
            self.event_type,
            self.aggregate_id,
            self.version,
            self.topic,
            self.reason
        )
    }
}

/// What a retry did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Retried {
    pub published: Vec<i64>,
    /// Still refused: position and the new reason (they stay in the dead letters).
    pub refused: Vec<(i64, String)>,
}

/// Publishes the selected dead letters again, in position order (so an aggregate's events keep
/// their order), each removed once Kafka acknowledged it. Consumers apply events by version,
/// so an event published after a newer one of its aggregate changes nothing there.
pub async fn retry(
    pool: &PgPool,
    relay: &str,
    publisher: &Publisher,
    positions: Option<&[i64]>,
) -> Result<Retried, sqlx::Error> {
    let letters = sqlx::query(
        "SELECT position, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, \
         payload, headers::text AS headers FROM taskpool_relay_dead_letters \
         WHERE relay_name = $1 AND ($2::bigint[] IS NULL OR position = ANY($2)) ORDER BY position",
    )
    .bind(relay)
    .bind(positions)
    .fetch_all(pool)
    .await?;
    let mut retried = Retried::default();
    for letter in &letters {
        let headers_json: String = letter.try_get("headers")?;
        let row = OutboxRow {
            at: Position {
                tracking_xid: 0,
                position: letter.try_get("position")?,
            },
            event_id: letter.try_get("event_id")?,
            aggregate_type: letter.try_get("aggregate_type")?,
            aggregate_id: letter.try_get("aggregate_id")?,
            version: letter.try_get("aggregate_version")?,
            event_type: letter.try_get("event_type")?,
            payload: letter.try_get("payload")?,
            headers: parse_headers(&headers_json),
            headers_json,
        };
        let position = row.at.position;
        let outcome = match publisher.enqueue(&row).await {
            Ok(delivery) => match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                Ok(Ok(Ok(_))) => Ok(()),
                Ok(Ok(Err((error, _)))) => Err(error.to_string()),
                Ok(Err(_)) => Err("the producer dropped the message".to_string()),
                Err(_) => Err("Kafka did not acknowledge within 60 s".to_string()),
            },
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) => {
                sqlx::query(
                    "DELETE FROM taskpool_relay_dead_letters WHERE relay_name = $1 AND position = $2",
                )
                .bind(relay)
                .bind(position)
                .execute(pool)
                .await?;
                info!(relay, position, event = %row.event_id, "dead letter published again and removed");
                retried.published.push(position);
            }
            Err(reason) => {
                sqlx::query(
                    "UPDATE taskpool_relay_dead_letters SET reason = $3, failed_at = clock_timestamp() \
                     WHERE relay_name = $1 AND position = $2",
                )
                .bind(relay)
                .bind(position)
                .bind(&reason)
                .execute(pool)
                .await?;
                warn!(
                    relay,
                    position, reason, "dead letter refused again; it stays"
                );
                retried.refused.push((position, reason));
            }
        }
    }
    Ok(retried)
}

/// Removes the dead letters at `positions` for good; each is logged with what it was.
pub async fn discard(
    pool: &PgPool,
    relay: &str,
    positions: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    let letters = list(pool, relay, Some(positions)).await?;
    for letter in &letters {
        sqlx::query(
            "DELETE FROM taskpool_relay_dead_letters WHERE relay_name = $1 AND position = $2",
        )
        .bind(relay)
        .bind(letter.position)
        .execute(pool)
        .await?;
        warn!(
            relay,
            position = letter.position,
            event = %letter.event_id,
            aggregate = %letter.aggregate_id,
            version = letter.version,
            reason = %letter.reason,
            "dead letter discarded"
        );
    }
    Ok(letters.iter().map(|l| l.position).collect())
}
