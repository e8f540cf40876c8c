//! Reading the outbox gap-safely, and the relay's own tables (position, dead letters).
//!
//! Rows are read in `(tracking_xid, position)` order and only below a horizon: the oldest open
//! transaction that writes to the outbox (`taskpool_outbox_horizon()`, decision 0024), or the
//! oldest open transaction of the server (`pg_snapshot_xmin`, decision 0004). Every row that
//! could still appear (its transaction has not committed yet) sorts after what is read, so
//! advancing past what was read never skips a transaction that commits late.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use taskpool_service::backoff::Backoff;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::config::{Horizon, RelayConfig};
use crate::metrics::Metrics;

/// How far a relay has published. Ordered like the outbox is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub tracking_xid: i64,
    pub position: i64,
}

/// One outbox row, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub at: Position,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: i64,
    pub event_type: String,
    pub payload: Vec<u8>,
    /// Extra headers written with the event (`traceparent`, `occurred-at`).
    pub headers: Vec<(String, String)>,
    pub headers_json: String,
}

// The ORDER BY names the table's columns, not the output aliases: ordering by the converted
// output would rule out the (tracking_xid, position) index and sort the whole table.
macro_rules! read_batch_below {
    ($horizon:literal) => {
        concat!(
            "SELECT o.position, o.tracking_xid::text::int8 AS tracking, o.event_id, ",
            "o.aggregate_type, o.aggregate_id, o.aggregate_version, o.event_type, o.payload, ",
            "o.headers::text AS headers ",
            "FROM taskpool_outbox o ",
            "WHERE (o.tracking_xid, o.position) > ($1::text::xid8, $2) ",
            "AND o.tracking_xid < ",
            $horizon,
            " ORDER BY o.tracking_xid, o.position LIMIT $3"
        )
    };
}

/// Below the oldest transaction running on the server, taken in the reading statement itself.
const READ_BELOW_ALL_TRANSACTIONS: &str =
    read_batch_below!("pg_snapshot_xmin(pg_current_snapshot())");
/// Below the outbox writers' horizon, computed by the statement before (decision 0024).
const READ_BELOW_OUTBOX_WRITERS: &str = read_batch_below!("$4::text::xid8");

/// Reads committed outbox rows in the order they must be published.
#[derive(Debug, Clone, Copy)]
pub struct OutboxReader {
    horizon: Horizon,
}

impl OutboxReader {
    pub fn new(horizon: Horizon) -> OutboxReader {
        OutboxReader { horizon }
    }

    /// The next committed rows after `after`, at most `limit`.
    pub async fn read_batch(
        &self,
        pool: &PgPool,
        after: Position,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let statement = match self.horizon {
            Horizon::AllTransactions => READ_BELOW_ALL_TRANSACTIONS,
            Horizon::OutboxWriters => READ_BELOW_OUTBOX_WRITERS,
        };
        let query = sqlx::query(statement)
            .bind(after.tracking_xid.to_string())
            .bind(after.position)
            .bind(i64::from(limit));
        let rows = match self.horizon {
            Horizon::AllTransactions => query.fetch_all(pool).await?,
            Horizon::OutboxWriters => {
                // Its own statement, before the read: the read's snapshot must come later.
                let horizon: i64 = sqlx::query_scalar("SELECT taskpool_outbox_horizon()")
                    .fetch_one(pool)
                    .await?;
                query.bind(horizon.to_string()).fetch_all(pool).await?
            }
        };
        rows.iter().map(outbox_row).collect()
    }
}

pub(crate) fn outbox_row(row: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    // Columns by index, in READ_BATCH's order: this runs for every published event.
    let headers_json: String = row.try_get(8)?;
    Ok(OutboxRow {
        at: Position {
            tracking_xid: row.try_get(1)?,
            position: row.try_get(0)?,
        },
        event_id: row.try_get(2)?,
        aggregate_type: row.try_get(3)?,
        aggregate_id: row.try_get(4)?,
        version: row.try_get(5)?,
        event_type: row.try_get(6)?,
        payload: row.try_get(7)?,
        headers: parse_headers(&headers_json),
        headers_json,
    })
}

/// The string-valued entries of a headers object; anything else is left out.
pub(crate) fn parse_headers(json: &str) -> Vec<(String, String)> {
    if let Ok(strings) = serde_json::from_str::<BTreeMap<String, String>>(json) {
        return strings.into_iter().collect();
    }
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .map(|map| {
            map.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The stored position of a relay; creates it at the start of the outbox if missing.
pub async fn load_position(pool: &PgPool, relay: &str) -> Result<Position, sqlx::Error> {
    sqlx::query(
        "INSERT INTO taskpool_relay_position (relay_name, tracking_xid, position) \
         VALUES ($1, '0', 0) ON CONFLICT (relay_name) DO NOTHING",
    )
    .bind(relay)
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT tracking_xid::text::int8 AS tracking_xid, position \
         FROM taskpool_relay_position WHERE relay_name = $1",
    )
    .bind(relay)
    .fetch_one(pool)
    .await?;
    Ok(Position {
        tracking_xid: row.try_get("tracking_xid")?,
        position: row.try_get("position")?,
    })
}

/// Who may store positions: the lease holder with its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
}

/// Stores a relay's position, only while `fence` still holds the lease (in the caller's
/// transaction, or on its own). Returns false, storing nothing, when another process took
/// the lease.
pub async fn store_position(
    conn: &mut PgConnection,
    relay: &str,
    at: Position,
    fence: &Fence,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE taskpool_relay_position p \
         SET tracking_xid = $2::text::xid8, position = $3, updated_at = clock_timestamp() \
         FROM taskpool_relay_lease l \
         WHERE p.relay_name = $1 AND l.relay_name = $1 AND l.holder = $4 AND l.epoch = $5",
    )
    .bind(relay)
    .bind(at.tracking_xid.to_string())
    .bind(at.position)
    .bind(&fence.holder)
    .bind(fence.epoch)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records a row that can never be published, with the reason (once per relay and position).
pub async fn dead_letter(
    tx: &mut Transaction<'_, Postgres>,
    relay: &str,
    row: &OutboxRow,
    topic: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO taskpool_relay_dead_letters (relay_name, position, event_id, aggregate_type, \
         aggregate_id, aggregate_version, event_type, topic, payload, headers, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::json, $11) \
         ON CONFLICT (relay_name, position) DO NOTHING",
    )
    .bind(relay)
    .bind(row.at.position)
    .bind(row.event_id)
    .bind(&row.aggregate_type)
    .bind(&row.aggregate_id)
    .bind(row.version)
    .bind(&row.event_type)
    .bind(topic)
    .bind(row.payload.as_slice())
    .bind(&row.headers_json)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What is waiting to be published after `after`: rows and age of the oldest, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    pub events: i64,
    pub seconds: f64,
}

pub async fn lag(pool: &PgPool, after: Position) -> Result<Lag, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS events, \
         coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS seconds \
         FROM taskpool_outbox WHERE (tracking_xid, position) > ($1::text::xid8, $2)",
    )
    .bind(after.tracking_xid.to_string())
    .bind(after.position)
    .fetch_one(pool)
    .await?;
    Ok(Lag {
        events: row.try_get("events")?,
        seconds: row.try_get("seconds")?,
    })
}

/// The newest outbox position (0 when empty).
pub async fn head(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM taskpool_outbox")
        .fetch_one(pool)
        .await
}

/// Reads batches after `start` as long as the channel takes them; polls with back-off when
/// the outbox is idle. Stops on shutdown (the channel closes) or a database error (sent on).
pub async fn read_ahead(
    pool: PgPool,
    start: Position,
    relay: RelayConfig,
    metrics: Arc<Metrics>,
    batches: mpsc::Sender<Result<Vec<OutboxRow>, sqlx::Error>>,
    mut shutdown: Shutdown,
) {
    let reader = OutboxReader::new(relay.horizon);
    let mut after = start;
    // Idle polling slows down from poll_min_ms to poll_max_ms, exactly (no jitter: one reader).
    let mut idle = Backoff::new(
        Duration::from_millis(relay.poll_min_ms),
        Duration::from_millis(relay.poll_max_ms),
    )
    .with_jitter(0.0);
    // Ends on shutdown, or once the relay stopped taking batches (it dropped the receiver).
    while !shutdown.is_requested() && !batches.is_closed() {
        let rows = reader.read_batch(&pool, after, relay.batch_size).await;
        metrics.reads.inc();
        match rows {
            Ok(rows) if rows.is_empty() => {
                shutdown.sleep(idle.next_pause()).await;
            }
            Ok(rows) => {
                idle.reset();
                after = rows.last().map_or(after, |row| row.at);
                if batches.send(Ok(rows)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = batches.send(Err(error)).await;
                return;
            }
        }
    }
}
