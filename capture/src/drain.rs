//! Draining the capture queue (`taskpool_capture`) into the outbox, through core's rules.
//!
//! One transaction takes the oldest queued rows (locked), turns each task's (or data entry's)
//! rows of each recording transaction into commands with a [`Collector`] of its own, in the
//! order they were queued, writes their events to the outbox and deletes the rows (a Camunda
//! task's queued state first becomes the events of what changed: [`crate::snapshots`]). A
//! refused event keeps that aggregate's rows of that transaction in the dead letters, not the
//! others'. Crash anywhere before the commit: nothing happened, the rows are drained again.
//! Rows that only become visible later (a late commit) are drained when they do: nothing is
//! read past. Per aggregate, rows were queued in commit order (the SQL functions serialize
//! recorders of one aggregate), so events follow it.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use taskpool_collector::{Collector, CollectorError};
use taskpool_core::{CommandError, PgStore, StoreError};
use taskpool_schemas::Timestamp;

use crate::captured::Captured;
use crate::shaping;
use crate::snapshots::LastStates;

/// What one drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Queued rows taken out of the queue.
    pub rows: usize,
    /// Groups (one task's or data entry's events of one recording transaction) whose events
    /// reached the outbox.
    pub groups: usize,
    /// Rows moved to `taskpool_capture_dead_letters` instead, with the reason.
    pub dead_letters: usize,
}

/// Why a drain did nothing this time (it is retried; the queue is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// Storage failed, or another writer changed an aggregate at the same time.
    #[error(transparent)]
    Store(#[from] taskpool_core::StoreError),
}

/// One queued row and the recording transaction it belongs to.
struct Queued {
    position: i64,
    transaction_id: String,
    captured: Captured,
}

const TAKE: &str = "SELECT position, transaction_id::text, aggregate_type, aggregate_id, kind, \
     fields::text, (extract(epoch FROM recorded_at) * 1000)::int8 AS recorded_at \
     FROM taskpool_capture ORDER BY position LIMIT $1 FOR UPDATE";

/// Drains at most `limit` queued rows in one transaction.
pub async fn drain_once(pool: &PgPool, limit: i64) -> Result<Drained, DrainError> {
    let mut tx = pool.begin().await?;
    let mut rows: Vec<Queued> = sqlx::query(TAKE)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(queued)
        .collect::<Result<_, _>>()?;
    let mut drained = Drained {
        rows: rows.len(),
        ..Drained::default()
    };
    shaping::shape(&mut tx, rows.iter_mut().map(|r| &mut r.captured)).await?;
    let captured: Vec<&Captured> = rows.iter().map(|r| &r.captured).collect();
    let mut last_states = LastStates::load(&mut tx, &captured).await?;
    for group in &by_transaction_and_aggregate(&rows) {
        // Groups in queue order, so each task's states are compared in commit order.
        let checkpoint = last_states.checkpoint(&group[0].captured);
        let outcome = match group_events(&mut last_states, group) {
            Ok(events) => record(&mut tx, &events).await?,
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(()) => drained.groups += 1,
            Err(reason) => {
                last_states.restore(checkpoint);
                dead_letter(&mut tx, group, &reason).await?;
                drained.dead_letters += group.len();
            }
        }
    }
    last_states.save(&mut tx).await?;
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    sqlx::query("DELETE FROM taskpool_capture WHERE position = ANY($1)")
        .bind(&positions)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(drained)
}

fn queued(row: &PgRow) -> Result<Queued, sqlx::Error> {
    Ok(Queued {
        position: row.try_get(0)?,
        transaction_id: row.try_get(1)?,
        captured: Captured {
            aggregate_type: row.try_get(2)?,
            aggregate_id: row.try_get(3)?,
            kind: row.try_get(4)?,
            fields: serde_json::from_str::<Value>(row.try_get(5)?)
                .map_err(|e| sqlx::Error::Decode(e.into()))?,
            recorded_at: Timestamp(row.try_get(6)?),
        },
    })
}

/// The rows of each aggregate in each recording transaction, in the order of their first
/// row. One aggregate's events of one transaction stand or fall together; a refused one does
/// not take the transaction's other tasks with it.
fn by_transaction_and_aggregate(rows: &[Queued]) -> Vec<Vec<&Queued>> {
    let mut groups: Vec<Vec<&Queued>> = Vec::new();
    let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for row in rows {
        let key = (
            row.transaction_id.as_str(),
            row.captured.aggregate_type.as_str(),
            row.captured.aggregate_id.as_str(),
        );
        match index.get(&key) {
            Some(&group) => groups[group].push(row),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![row]);
            }
        }
    }
    groups
}

/// The events of one group's rows, each with its row's position, or why they have none.
fn group_events(
    last_states: &mut LastStates,
    group: &[&Queued],
) -> Result<Vec<(i64, Captured)>, String> {
    let mut events = Vec::new();
    for row in group {
        let made = last_states
            .events(&row.captured)
            .map_err(|reason| format!("position {}: {reason}", row.position))?;
        events.extend(made.into_iter().map(|captured| (row.position, captured)));
    }
    Ok(events)
}

/// One recording transaction's events into the outbox, in a savepoint: on a rule's refusal or
/// an undecodable row nothing of it stays, and the reason comes back.
async fn record(
    tx: &mut Transaction<'_, Postgres>,
    events: &[(i64, Captured)],
) -> Result<Result<(), String>, DrainError> {
    let Some((_, first)) = events.first() else {
        return Ok(Ok(())); // a task state that did not change
    };
    let mut collector = Collector::new().with_occurred_at(first.recorded_at);
    for (position, captured) in events {
        let event = match captured.engine_event() {
            Ok(event) => event,
            Err(reason) => return Ok(Err(format!("position {position}: {reason}"))),
        };
        if let Err(e) = collector.record(event) {
            return Ok(Err(format!("position {position}: {e}")));
        }
    }
    // A savepoint: the connection is inside the drain's transaction.
    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
    match collector.flush::<PgStore>(&mut *savepoint).await {
        Ok(_) => {
            savepoint.commit().await?;
            Ok(Ok(()))
        }
        // Not the events' fault: the whole drain is tried again.
        Err(CollectorError::Command(CommandError::Store(
            e @ (StoreError::Database(_) | StoreError::Conflict(_) | StoreError::Migration(_)),
        ))) => Err(e.into()),
        Err(refused) => {
            savepoint.rollback().await?;
            Ok(Err(refused.to_string()))
        }
    }
}

async fn dead_letter(
    tx: &mut Transaction<'_, Postgres>,
    group: &[&Queued],
    reason: &str,
) -> Result<(), sqlx::Error> {
    let positions: Vec<i64> = group.iter().map(|r| r.position).collect();
    sqlx::query(
        "INSERT INTO taskpool_capture_dead_letters (position, transaction_id, aggregate_type, \
         aggregate_id, kind, fields, recorded_at, reason) \
         SELECT position, transaction_id, aggregate_type, aggregate_id, kind, fields, \
         recorded_at, $2 FROM taskpool_capture WHERE position = ANY($1)",
    )
    .bind(&positions)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
