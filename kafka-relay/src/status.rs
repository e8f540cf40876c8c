//! A relay's status: what `kafka-relay status` reports (position, head, lag, leader), and the
//! lag metrics a running relay keeps fresh.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Row};
use taskpool_service::shutdown::Shutdown;
use tracing::warn;

use crate::config::Horizon;
use crate::metrics::Metrics;

use crate::lease::{self, LeaseInfo};
use crate::outbox::{self, Lag, Position};
use taskpool_service::logging::error_chain;

#[derive(Debug, Clone)]
pub struct Status {
    pub relay: String,
    pub position: Position,
    pub head: i64,
    pub lag: Lag,
    pub leader: Option<LeaseInfo>,
    /// Events of this relay that could not be published and wait in its dead letters.
    pub dead_letters: i64,
    pub horizon: Horizon,
    /// The oldest open transaction the horizon waits for, if any.
    pub oldest_open: Option<OpenTransaction>,
}

/// An open transaction that holds back publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTransaction {
    pub pid: i32,
    pub database: Option<String>,
    /// Unknown when PostgreSQL hides other users' sessions (without `pg_read_all_stats`).
    pub open_seconds: Option<f64>,
}

// Sessions holding a write lock on this database's outbox, oldest transaction first.
const OLDEST_OUTBOX_WRITER: &str = r#"
SELECT l.pid, a.datname AS database,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS open_seconds
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = 'taskpool_outbox'::regclass
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
ORDER BY a.xact_start NULLS FIRST
LIMIT 1
"#;

// Sessions of any database whose transaction has an id, oldest first.
const OLDEST_WRITING_TRANSACTION: &str = r#"
SELECT pid, datname AS database,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS open_seconds
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY xact_start NULLS FIRST
LIMIT 1
"#;

async fn oldest_open(
    pool: &PgPool,
    horizon: Horizon,
) -> Result<Option<OpenTransaction>, sqlx::Error> {
    let statement = match horizon {
        Horizon::OutboxWriters => OLDEST_OUTBOX_WRITER,
        Horizon::AllTransactions => OLDEST_WRITING_TRANSACTION,
    };
    let row = sqlx::query(statement).fetch_optional(pool).await?;
    row.map(|row| {
        Ok(OpenTransaction {
            pid: row.try_get("pid")?,
            database: row.try_get("database")?,
            open_seconds: row.try_get("open_seconds")?,
        })
    })
    .transpose()
}

pub async fn read(pool: &PgPool, relay: &str, horizon: Horizon) -> Result<Status, sqlx::Error> {
    let position = outbox::load_position(pool, relay).await?;
    let dead_letters: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM taskpool_relay_dead_letters WHERE relay_name = $1",
    )
    .bind(relay)
    .fetch_one(pool)
    .await?;
    Ok(Status {
        relay: relay.to_string(),
        position,
        head: outbox::head(pool).await?,
        lag: outbox::lag(pool, position).await?,
        leader: lease::current(pool, relay).await?,
        dead_letters,
        horizon,
        oldest_open: oldest_open(pool, horizon).await?,
    })
}

/// Limits for `status` as a monitoring probe.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    pub max_lag_events: Option<i64>,
    pub max_lag_seconds: Option<f64>,
    pub max_dead_letters: Option<i64>,
}

impl Status {
    /// The status for scripts.
    pub fn to_json(&self) -> serde_json::Value {
        let leader = self.leader.as_ref().map(|lease| {
            serde_json::json!({
                "holder": lease.holder,
                "epoch": lease.epoch,
                "valid": lease.expires_in_ms > 0,
                "expiresInMs": lease.expires_in_ms,
            })
        });
        serde_json::json!({
            "relay": self.relay,
            "position": self.position.position,
            "trackingXid": self.position.tracking_xid,
            "newestRow": self.head,
            "lagEvents": self.lag.events,
            "lagSeconds": self.lag.seconds,
            "leader": leader,
            "deadLetters": self.dead_letters,
            "horizon": match self.horizon {
                Horizon::OutboxWriters => "outbox-writers",
                Horizon::AllTransactions => "all-transactions",
            },
            "oldestOpenTransaction": self.oldest_open.as_ref().map(|open| serde_json::json!({
                "pid": open.pid,
                "database": open.database,
                "openSeconds": open.open_seconds,
            })),
        })
    }

    /// What exceeds the thresholds, in words (nothing: all within).
    pub fn exceeded(&self, limits: &Thresholds) -> Vec<String> {
        let mut exceeded = Vec::new();
        if let Some(max) = limits.max_lag_events.filter(|max| self.lag.events > *max) {
            exceeded.push(format!(
                "{} events to publish (at most {max})",
                self.lag.events
            ));
        }
        if let Some(max) = limits.max_lag_seconds.filter(|max| self.lag.seconds > *max) {
            exceeded.push(format!(
                "the oldest event waits {:.1} s (at most {max})",
                self.lag.seconds
            ));
        }
        if let Some(max) = limits
            .max_dead_letters
            .filter(|max| self.dead_letters > *max)
        {
            exceeded.push(format!(
                "{} dead letters (at most {max})",
                self.dead_letters
            ));
        }
        exceeded
    }
}

impl fmt::Display for Status {
    /// Published up to a row, how many committed rows are still to publish, and the leader.
    /// (Rows are published in commit order, not in position order: the newest position says
    /// nothing about what is left, so it is shown only for orientation.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "relay:       {}", self.relay)?;
        writeln!(
            f,
            "published:   through outbox row {} (transaction {})",
            self.position.position, self.position.tracking_xid
        )?;
        if self.lag.events == 0 {
            writeln!(f, "to publish:  nothing")?;
        } else {
            writeln!(
                f,
                "to publish:  {} committed events, the oldest waiting {:.1} s",
                self.lag.events, self.lag.seconds
            )?;
        }
        writeln!(f, "newest row:  {}", self.head)?;
        writeln!(f, "dead letters: {}", self.dead_letters)?;
        let waits_for = match self.horizon {
            Horizon::OutboxWriters => "open transactions writing to the outbox",
            Horizon::AllTransactions => "every open transaction of the server",
        };
        match &self.oldest_open {
            None => writeln!(f, "waits for:   {waits_for}; none open")?,
            Some(open) => writeln!(
                f,
                "waits for:   {waits_for}; the oldest: pid {} in {}, open {}",
                open.pid,
                open.database.as_deref().unwrap_or("(hidden)"),
                open.open_seconds
                    .map_or("(hidden)".to_string(), |s| format!("{s:.1} s"))
            )?,
        }
        match &self.leader {
            Some(lease) if lease.expires_in_ms > 0 => write!(
                f,
                "leader:      {} (epoch {}, lease valid {:.1} s more)",
                lease.holder,
                lease.epoch,
                lease.expires_in_ms as f64 / 1000.0
            ),
            Some(lease) => write!(
                f,
                "leader:      none (last: {}, epoch {}, expired)",
                lease.holder, lease.epoch
            ),
            None => write!(f, "leader:      none yet"),
        }
    }
}

/// Refreshes the lag metrics from the stored position.
pub async fn watch_lag(
    pool: PgPool,
    relay: String,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        match outbox::load_position(&pool, &relay).await {
            Ok(position) => match outbox::lag(&pool, position).await {
                Ok(lag) => {
                    metrics.lag_events.set(lag.events);
                    metrics.lag_seconds.set(lag.seconds);
                    metrics.position.set(position.position);
                }
                Err(e) => warn!(error = error_chain(&e), "cannot measure lag"),
            },
            Err(e) => warn!(error = error_chain(&e), "cannot read the stored position"),
        }
        if shutdown.sleep(interval).await {
            return;
        }
    }
}
