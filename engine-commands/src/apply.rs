//! Applying one command once: in one transaction, the processed-command record, the engine's
//! own changes (its handler) and the events its collector recorded; a rejection keeps only the
//! record, with the reason.

use sqlx::Pool;
use taskpool_collector::Collector;
use taskpool_core::AggregateType;
use taskpool_core::store::Connection;
use taskpool_schemas::{CommandOutcome, OutcomeResult, TaskCommand, Timestamp};

use crate::EngineError;
use crate::retention::Retention;
use crate::store::{CommandStore, Decision};

/// Why a handler did not apply a command.
#[derive(Debug)]
pub enum Refusal {
    /// The engine's own rules refuse it (already claimed, not a candidate, task gone): the
    /// reason goes back to the user. The handler's changes are rolled back.
    Rejected(String),
    /// Something failed (database, a service): nothing is decided, the command is tried again.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl Refusal {
    pub fn rejected(reason: impl Into<String>) -> Refusal {
        Refusal::Rejected(reason.into())
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Refusal {
        Refusal::Failed(Box::new(error))
    }
}

/// The engine's side of a command: change its own state on `conn` and record what changed on
/// `collector` (its events are written in the same transaction).
pub trait CommandHandler<S: CommandStore>: Send + Sync {
    /// Whether the command's own values are acceptable (a form's values of the right types),
    /// without looking at any state: where the engine runs in the tasklist's process, a
    /// refusal here answers the request with 400 before anything is sent. `handle` refuses such
    /// a command too (it may arrive without that check).
    fn check(&self, _command: &TaskCommand) -> Result<(), String> {
        Ok(())
    }

    fn handle<'a>(
        &'a self,
        conn: &'a mut Connection<S>,
        command: &'a TaskCommand,
        collector: &'a mut Collector,
    ) -> impl Future<Output = Result<(), Refusal>> + Send + 'a;
}

/// Applies `command` unless it was decided before; either way returns its outcome. Safe to
/// call again with the same command, also concurrently: it is decided once. A command issued
/// more than half the retention ago is refused (its record may have been pruned), unless its
/// decision is still on record.
pub async fn apply_once<S, H>(
    pool: &Pool<S::Db>,
    handler: &H,
    command: &TaskCommand,
    retention: Retention,
) -> Result<CommandOutcome, EngineError>
where
    S: CommandStore,
    H: CommandHandler<S>,
{
    let command_id = command.command_id.to_string();
    if retention.expired(command, Timestamp::now()) {
        let decision = S::decided(pool, &command_id).await?.unwrap_or(Decision {
            result: OutcomeResult::Rejected,
            reason: Some(retention.expired_reason()),
            task_version: None,
        });
        return Ok(outcome(command, decision));
    }
    let mut tx = S::begin(pool).await?;
    if !S::take(&mut tx, &command_id, &command.task_id).await? {
        drop(tx);
        let decision = S::decided(pool, &command_id)
            .await?
            .ok_or(EngineError::Undecided)?;
        return Ok(outcome(command, decision));
    }
    let decision = {
        // The handler's work in a savepoint: a rejection undoes it and keeps the record.
        let mut attempt = sqlx::Acquire::begin(&mut tx).await?;
        let mut collector = Collector::new();
        match handler.handle(&mut attempt, command, &mut collector).await {
            Ok(()) => {
                let recorded = collector.flush::<S>(&mut attempt).await?;
                attempt.commit().await?;
                let task_version = recorded
                    .iter()
                    .filter(|e| e.key.aggregate_type == AggregateType::Task)
                    .filter(|e| e.key.id == command.task_id)
                    .map(|e| e.version)
                    .max();
                Decision {
                    result: OutcomeResult::Applied,
                    reason: None,
                    task_version,
                }
            }
            Err(Refusal::Rejected(reason)) => {
                attempt.rollback().await?;
                Decision {
                    result: OutcomeResult::Rejected,
                    reason: Some(reason),
                    task_version: None,
                }
            }
            Err(Refusal::Failed(error)) => return Err(EngineError::Handler(error)),
        }
    };
    S::decide(&mut tx, &command_id, &decision).await?;
    tx.commit().await?;
    Ok(outcome(command, decision))
}

fn outcome(command: &TaskCommand, decision: Decision) -> CommandOutcome {
    CommandOutcome::of(
        command,
        decision.result,
        decision.reason,
        decision.task_version,
    )
}
