//! One command through the engine's REST API, once (decision 0028).
//!
//! The REST call commits in the engine's transaction and our record in ours, so they cannot
//! be one. The record is therefore written first (`pending`: "may have been sent") and the
//! decision after; a command found `pending` again (the service stopped in between, or the
//! engine was not reached) is first compared with what the engine shows, and sent again only
//! when the engine does not show its effect. A row lock on the record keeps two replicas that
//! both received the command (a rebalance) from deciding it together.

use std::time::{Duration, Instant};

use sqlx::{PgPool, Row};
use taskpool_schemas::{CommandOutcome, OutcomeResult, TaskAction, TaskCommand, Timestamp};

use super::client::{CallError, EngineApi};
use super::effect::{self, Resumed};
use crate::EngineError;
use crate::consumer::Applier;
use crate::retention::Retention;
use crate::store::Decision;

const TAKE: &str = "INSERT INTO taskpool_processed_commands (command_id, task_id, result) \
                    VALUES ($1, $2, 'pending') ON CONFLICT (command_id) DO NOTHING";
const LOCK: &str = "SELECT result, reason, task_version FROM taskpool_processed_commands \
                    WHERE command_id = $1 FOR UPDATE";
const RECORDED: &str = "SELECT result, reason, task_version FROM taskpool_processed_commands \
                        WHERE command_id = $1";
const DECIDE: &str = "UPDATE taskpool_processed_commands \
                      SET result = $2, reason = $3, task_version = $4 WHERE command_id = $1";
/// Whether the capture has turned every recorded change of the task into events, and the
/// task's version then.
const CAPTURED_VERSION: &str = "SELECT NOT EXISTS (SELECT 1 FROM taskpool_capture \
                                  WHERE aggregate_type = 'task' AND aggregate_id = $1), \
                                (SELECT version FROM taskpool_aggregates \
                                  WHERE aggregate_type = 'task' AND aggregate_id = $1)";
const VERSION_POLL: Duration = Duration::from_millis(10);

/// Applies commands through the engine's REST API, recording decisions in the engine's
/// database (where the capture also is).
#[derive(Debug)]
pub struct RestApplier {
    pool: PgPool,
    engine: EngineApi,
    /// How long an applied command waits for the capture to give the task's new version.
    version_wait: Duration,
    retention: Retention,
}

impl RestApplier {
    pub fn new(
        pool: PgPool,
        engine: EngineApi,
        version_wait: Duration,
        retention: Retention,
    ) -> RestApplier {
        RestApplier {
            pool,
            engine,
            version_wait,
            retention,
        }
    }

    async fn decide(&self, command: &TaskCommand, fresh: bool) -> Result<Decision, EngineError> {
        if let Err(reason) = effect::check(command) {
            return Ok(rejected(reason));
        }
        if !fresh {
            let id = &command.task_id;
            let task = self.engine.task(id).await.map_err(unavailable)?;
            let ending = match task {
                Some(_) => None,
                None => self.engine.ending(id).await.map_err(unavailable)?,
            };
            match effect::resumed(command, task.as_ref(), ending) {
                Resumed::Applied => return Ok(self.applied(command).await?),
                Resumed::Rejected(reason) => return Ok(rejected(reason)),
                Resumed::SendAgain => {}
            }
        }
        match self.send(command).await {
            Ok(()) => Ok(self.applied(command).await?),
            Err(CallError::Refused(reason)) => Ok(rejected(reason)),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn send(&self, command: &TaskCommand) -> Result<(), CallError> {
        let (engine, id) = (&self.engine, command.task_id.as_str());
        match command.action {
            TaskAction::Claim => engine.claim(id, &command.issued_by).await,
            TaskAction::Unclaim => engine.unclaim(id).await,
            TaskAction::Assign => {
                engine
                    .assign(id, command.assignee.as_deref().unwrap_or_default())
                    .await
            }
            TaskAction::Complete => engine.complete(id, &command.variables).await,
            TaskAction::Defer => engine.set_follow_up(id, command.follow_up_date).await,
            TaskAction::Undefer => engine.set_follow_up(id, None).await,
        }
    }

    /// Applied, with the task's version once the capture has recorded the change (none when
    /// the capture is slower than `version_wait`: the tasklist then answers without waiting
    /// for its view).
    async fn applied(&self, command: &TaskCommand) -> sqlx::Result<Decision> {
        let deadline = Instant::now() + self.version_wait;
        let task_version = loop {
            let row = sqlx::query(CAPTURED_VERSION)
                .bind(&command.task_id)
                .fetch_one(&self.pool)
                .await?;
            if row.try_get::<bool, _>(0)? {
                break row.try_get::<Option<i64>, _>(1)?;
            }
            if Instant::now() + VERSION_POLL > deadline {
                break None;
            }
            tokio::time::sleep(VERSION_POLL).await;
        };
        Ok(Decision {
            result: OutcomeResult::Applied,
            reason: None,
            task_version,
        })
    }
}

impl Applier for RestApplier {
    async fn apply(&self, command: &TaskCommand) -> Result<CommandOutcome, EngineError> {
        let command_id = command.command_id.to_string();
        // Expired, its record may be gone: refused without one, answered by its decision with
        // one; a `pending` record (it may have reached the engine) goes the usual way below,
        // which compares it with what the engine shows.
        if self.retention.expired(command, Timestamp::now()) {
            let row = sqlx::query(RECORDED)
                .bind(&command_id)
                .fetch_optional(&self.pool)
                .await?;
            let decision = match row {
                None => Some(rejected(self.retention.expired_reason())),
                Some(row) => decision_of(&row)?,
            };
            if let Some(decision) = decision {
                return Ok(CommandOutcome::of(
                    command,
                    decision.result,
                    decision.reason,
                    decision.task_version,
                ));
            }
        }
        // Committed before anything is sent: from here on the command may have reached the engine.
        let fresh = sqlx::query(TAKE)
            .bind(&command_id)
            .bind(&command.task_id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(LOCK)
            .bind(&command_id)
            .fetch_one(&mut *tx)
            .await?;
        let decision = match decision_of(&row)? {
            None => {
                let decision = self.decide(command, fresh).await?;
                sqlx::query(DECIDE)
                    .bind(&command_id)
                    .bind(decision.result.as_str())
                    .bind(decision.reason.as_deref())
                    .bind(decision.task_version)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                decision
            }
            // Another replica decided it while this one waited for the lock.
            Some(decision) => decision,
        };
        Ok(CommandOutcome::of(
            command,
            decision.result,
            decision.reason,
            decision.task_version,
        ))
    }
}

/// The decision a record (result, reason, task version) holds; none while it is `pending`.
fn decision_of(row: &sqlx::postgres::PgRow) -> sqlx::Result<Option<Decision>> {
    let result: String = row.try_get(0)?;
    if result == "pending" {
        return Ok(None);
    }
    Ok(Some(Decision {
        result: if result == "applied" {
            OutcomeResult::Applied
        } else {
            OutcomeResult::Rejected
        },
        reason: row.try_get(1)?,
        task_version: row.try_get(2)?,
    }))
}

fn rejected(reason: String) -> Decision {
    Decision {
        result: OutcomeResult::Rejected,
        reason: Some(reason),
        task_version: None,
    }
}

fn unavailable(error: CallError) -> EngineError {
    EngineError::Handler(Box::new(error))
}
