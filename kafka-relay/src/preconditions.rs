//! What the relay's order rests on, checked at start (decision 0024): a primary server, ties on
//! the tracking id broken by positions handed out in order, and for the outbox writers' horizon
//! the version of `taskpool_outbox_horizon()`, the floor sequence and the guard on the outbox.
//! A relay that would publish out of order, or skip rows, refuses to start instead.

use sqlx::PgPool;

use crate::config::Horizon;

/// The `taskpool_outbox_horizon()` this relay reads below (relay migration 3).
pub const HORIZON_VERSION: i32 = 2;

/// An assumption of the relay's order that does not hold in this database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmet {
    #[error(
        "the database server is in recovery (a standby): a standby shows none of the primary's \
         open transactions, and the relay must store its position; point database.url at the \
         primary"
    )]
    InRecovery,
    #[error(
        "the outbox's position sequence hands out {cache} values at a time (CACHE {cache}): \
         events of one aggregate with the same tracking id could be published out of version \
         order; run ALTER SEQUENCE {sequence} CACHE 1"
    )]
    PositionsCached { sequence: String, cache: i64 },
    #[error(
        "relay.horizon = \"outbox-writers\" needs taskpool_outbox_horizon() version \
         {HORIZON_VERSION}, the database has {}: run once with database.migrate = true, or set \
         relay.horizon = \"all-transactions\"",
        found.map_or_else(|| "none".to_string(), |v| format!("version {v}"))
    )]
    HorizonVersion { found: Option<i32> },
    #[error(
        "relay.horizon = \"outbox-writers\" needs the sequence taskpool_outbox_floor, never \
         cycling: {problem}; run once with database.migrate = true, or set relay.horizon = \
         \"all-transactions\""
    )]
    Floor { problem: String },
    #[error(
        "relay.horizon = \"outbox-writers\" needs the trigger taskpool_outbox_floor_guard on \
         taskpool_outbox, enabled ALWAYS (it is {state}): without it a writer that does not take \
         the floor can commit rows the relay has passed; run once with database.migrate = true, \
         or ALTER TABLE taskpool_outbox ENABLE ALWAYS TRIGGER taskpool_outbox_floor_guard, or \
         set relay.horizon = \"all-transactions\""
    )]
    FloorGuard { state: &'static str },
}

/// A failed check: an assumption does not hold, or the database could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Unmet(#[from] Unmet),
    #[error("checking the outbox's order assumptions")]
    Database(#[from] sqlx::Error),
}

/// Whether the server is in recovery: checked before anything is written.
pub async fn check_primary(pool: &PgPool) -> Result<(), CheckError> {
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    if in_recovery {
        return Err(Unmet::InRecovery.into());
    }
    Ok(())
}

/// Everything the order of `horizon` rests on, after the migrations ran.
pub async fn check_order(pool: &PgPool, horizon: Horizon) -> Result<(), CheckError> {
    check_positions(pool).await?;
    if horizon == Horizon::OutboxWriters {
        check_horizon_version(pool).await?;
        check_floor(pool).await?;
        check_floor_guard(pool).await?;
    }
    Ok(())
}

/// Rows with the same tracking id are read in position order; for one aggregate that is version
/// order only while every position is drawn from the shared sequence when the row is written
/// (a later version's row is written after the earlier one committed: the aggregate's row lock).
/// With a cache, each session draws from a block of its own.
async fn check_positions(pool: &PgPool) -> Result<(), CheckError> {
    let (sequence, cache): (String, i64) = sqlx::query_as(
        "SELECT s.seqrelid::regclass::text, s.seqcache FROM pg_sequence s \
         WHERE s.seqrelid = pg_get_serial_sequence('taskpool_outbox', 'position')::regclass",
    )
    .fetch_one(pool)
    .await?;
    if cache != 1 {
        return Err(Unmet::PositionsCached { sequence, cache }.into());
    }
    Ok(())
}

async fn check_horizon_version(pool: &PgPool) -> Result<(), CheckError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT to_regproc('taskpool_outbox_horizon_version') IS NOT NULL \
         AND to_regproc('taskpool_outbox_horizon') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    let found = if exists {
        Some(
            sqlx::query_scalar("SELECT taskpool_outbox_horizon_version()")
                .fetch_one(pool)
                .await?,
        )
    } else {
        None
    };
    if found != Some(HORIZON_VERSION) {
        return Err(Unmet::HorizonVersion { found }.into());
    }
    Ok(())
}

async fn check_floor(pool: &PgPool) -> Result<(), CheckError> {
    let cycles: Option<bool> = sqlx::query_scalar(
        "SELECT s.seqcycle FROM pg_sequence s \
         WHERE s.seqrelid = to_regclass('taskpool_outbox_floor')",
    )
    .fetch_optional(pool)
    .await?;
    let problem = match cycles {
        None => "it does not exist",
        Some(true) => "it cycles, so it could fall back",
        Some(false) => return Ok(()),
    };
    Err(Unmet::Floor {
        problem: problem.to_string(),
    }
    .into())
}

async fn check_floor_guard(pool: &PgPool) -> Result<(), CheckError> {
    // tgenabled: O on origin and local (skipped by replication sessions), D disabled, R
    // replica only, A always.
    let enabled: Option<String> = sqlx::query_scalar(
        "SELECT tgenabled::text FROM pg_trigger \
         WHERE tgrelid = 'taskpool_outbox'::regclass AND tgname = 'taskpool_outbox_floor_guard'",
    )
    .fetch_optional(pool)
    .await?;
    let state = match enabled.as_deref() {
        Some("A") => return Ok(()),
        None => "missing",
        Some("D") => "disabled",
        Some(_) => "not enabled ALWAYS",
    };
    Err(Unmet::FloorGuard { state }.into())
}
