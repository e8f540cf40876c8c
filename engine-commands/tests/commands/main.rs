//! The engine's side of tasklist actions against a real PostgreSQL and broker (and SQLite):
//! a small engine whose own rule is "a claimed task cannot be claimed again".

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{PgPool, Row};
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::store::Connection;
use taskpool_core::{PgStore, SqliteStore};
use taskpool_engine_commands::consumer::{self, ConsumerConfig};
use taskpool_engine_commands::{CommandHandler, CommandStore, Refusal, Retention, apply_once};
use taskpool_schemas::{
    CommandOutcome, OutcomeResult, Payload, TaskAction, TaskCommand, Timestamp, Topics, decode_as,
    encode,
};
use taskpool_service::shutdown::{self, ShutdownTrigger};
use taskpool_testkit::fixtures::new_task;
use taskpool_testkit::{PgTestDb, SqliteTestDb, required_env, wait_for};
use tokio::task::JoinHandle;

const APPLICATION: &str = "shop";
const DEADLINE: Duration = Duration::from_secs(60);

/// The test engine: its own table of tasks and who has claimed them.
#[derive(Clone, Default)]
struct Engine {
    /// Attempts that fail (as if the database hiccuped) before the first one that works.
    failures_left: Arc<AtomicUsize>,
}

impl CommandHandler<PgStore> for Engine {
    async fn handle(
        &self,
        conn: &mut Connection<PgStore>,
        command: &TaskCommand,
        collector: &mut Collector,
    ) -> Result<(), Refusal> {
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Refusal::Failed("the engine's database hiccuped".into()));
        }
        let row = sqlx::query("SELECT assignee FROM engine_tasks WHERE task_id = $1 FOR UPDATE")
            .bind(&command.task_id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Err(Refusal::rejected("the task is gone"));
        };
        let assignee: Option<String> = row.try_get(0)?;
        let new_assignee = match (command.action, assignee) {
            (TaskAction::Claim, Some(holder)) => {
                return Err(Refusal::rejected(format!("already claimed by {holder}")));
            }
            (TaskAction::Claim, None) => Some(command.issued_by.clone()),
            (TaskAction::Unclaim, _) => None,
            (other, _) => return Err(Refusal::rejected(format!("{other} is not supported"))),
        };
        sqlx::query("UPDATE engine_tasks SET assignee = $2 WHERE task_id = $1")
            .bind(&command.task_id)
            .bind(&new_assignee)
            .execute(&mut *conn)
            .await?;
        collector
            .record(EngineEvent::TaskAssigned {
                task_id: command.task_id.clone(),
                assignee: new_assignee,
            })
            .map_err(|e| Refusal::Failed(Box::new(e)))?;
        Ok(())
    }
}

fn command(action: TaskAction, task_id: &str, user: &str) -> TaskCommand {
    TaskCommand {
        command_id: uuid::Uuid::new_v4(),
        action,
        task_id: task_id.into(),
        application: APPLICATION.into(),
        issued_by: user.into(),
        issued_at: Timestamp::now(),
        task_version: None,
        assignee: None,
        follow_up_date: None,
        variables: Payload::new(),
    }
}

// Each test's database, topics, Kafka clients and running engine.
mod world;
use world::*;
// How long decisions are kept.
mod retention;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_claims_wins_and_a_redelivered_command_is_applied_once() {
    let world = World::new().await;
    world.create_task("t1").await;
    let engine = world.start_engine(Engine::default());
    let mut outcomes = world.outcome_reader();

    let piggy = command(TaskAction::Claim, "t1", "piggy");
    let kermit = command(TaskAction::Claim, "t1", "kermit");
    world.send(&piggy).await;
    world.send(&kermit).await;
    world.send(&piggy).await;
    outcomes.until(3).await;

    let piggy_outcomes = outcomes.of(&piggy);
    assert_eq!(piggy_outcomes.len(), 2, "one answer per delivery");
    for outcome in &piggy_outcomes {
        assert_eq!(outcome.result, OutcomeResult::Applied);
        assert_eq!(
            outcome.task_version,
            Some(2),
            "the version the claim produced"
        );
        assert_eq!(outcome.issued_by, "piggy");
    }
    let kermit_outcome = outcomes.of(&kermit)[0];
    assert_eq!(kermit_outcome.result, OutcomeResult::Rejected);
    assert_eq!(
        kermit_outcome.reason.as_deref(),
        Some("already claimed by piggy")
    );
    assert_eq!(world.assignee("t1").await.as_deref(), Some("piggy"));
    assert_eq!(
        world.outbox_versions("t1").await,
        [1, 2],
        "created, claimed once"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_command_is_dead_lettered_and_the_next_one_applied() {
    let world = World::new().await;
    world.create_task("t1").await;
    let engine = world.start_engine(Engine::default());
    let mut outcomes = world.outcome_reader();
    world.send_bytes("t1", b"not a command").await;
    let claim = command(TaskAction::Claim, "t1", "gonzo");
    world.send(&claim).await;
    assert_eq!(outcomes.until(1).await[0].result, OutcomeResult::Applied);

    let letter = wait_for("the dead letter", DEADLINE, || async {
        sqlx::query("SELECT key, payload, reason FROM taskpool_command_dead_letters")
            .fetch_optional(world.pool())
            .await
            .unwrap()
    })
    .await;
    assert_eq!(letter.get::<String, _>("key"), "t1");
    assert_eq!(letter.get::<Vec<u8>, _>("payload"), b"not a command");
    assert!(
        letter.get::<String, _>("reason").contains("marker"),
        "{}",
        letter.get::<String, _>("reason")
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_while_the_engine_is_down_for_15_seconds_are_all_applied_after() {
    let world = World::new().await;
    for id in ["before", "a", "b", "c", "d", "e"] {
        world.create_task(id).await;
    }
    // Up and working (its group has a position), then down.
    let engine = world.start_engine(Engine::default());
    let mut outcomes = world.outcome_reader();
    world
        .send(&command(TaskAction::Claim, "before", "fozzie"))
        .await;
    outcomes.until(1).await;
    engine.stop().await;
    let down = tokio::time::Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs(3));
    let mut sent = Vec::new();
    for id in ["a", "b", "c", "d", "e"] {
        pace.tick().await;
        let claim = command(TaskAction::Claim, id, "fozzie");
        world.send(&claim).await;
        sent.push(claim);
    }
    pace.tick().await;
    assert!(down.elapsed() >= Duration::from_secs(15));
    assert_eq!(outcomes.received.len(), 1);

    let engine = world.start_engine(Engine::default());
    outcomes.until(6).await;
    for claim in &sent {
        assert_eq!(outcomes.of(claim)[0].result, OutcomeResult::Applied);
        assert_eq!(
            world.assignee(&claim.task_id).await.as_deref(),
            Some("fozzie")
        );
    }
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_tried_again_and_nothing_is_skipped() {
    let world = World::new().await;
    world.create_task("t1").await;
    world.create_task("t2").await;
    let engine = Engine {
        failures_left: Arc::new(AtomicUsize::new(3)),
    };
    let failures = engine.failures_left.clone();
    let running = world.start_engine(engine);
    let mut outcomes = world.outcome_reader();
    let first = command(TaskAction::Claim, "t1", "rowlf");
    let second = command(TaskAction::Claim, "t2", "rowlf");
    world.send(&first).await;
    world.send(&second).await;
    outcomes.until(2).await;
    assert_eq!(failures.load(Ordering::SeqCst), 0, "it failed three times");
    assert_eq!(outcomes.of(&first)[0].result, OutcomeResult::Applied);
    assert_eq!(outcomes.of(&second)[0].result, OutcomeResult::Applied);
    assert_eq!(world.outbox_versions("t1").await, [1, 2]);
    running.stop().await;
}

/// An engine on SQLite that only records what the command says, and refuses `unclaim` after
/// having recorded it (a rejection must leave nothing behind).
struct Recorder;

impl CommandHandler<SqliteStore> for Recorder {
    async fn handle(
        &self,
        _conn: &mut Connection<SqliteStore>,
        command: &TaskCommand,
        collector: &mut Collector,
    ) -> Result<(), Refusal> {
        let assignee = (command.action == TaskAction::Claim).then(|| command.issued_by.clone());
        collector
            .record(EngineEvent::TaskAssigned {
                task_id: command.task_id.clone(),
                assignee,
            })
            .map_err(|e| Refusal::Failed(Box::new(e)))?;
        match command.action {
            TaskAction::Claim => Ok(()),
            _ => Err(Refusal::rejected("not today")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_command_is_decided_once_and_a_rejection_keeps_none_of_its_events() {
    let db = SqliteTestDb::new().await;
    SqliteStore::migrate_all(&db.pool).await.expect("migrate");
    let mut tx = db.pool.begin().await.unwrap();
    let mut collector = Collector::new();
    collector
        .record(EngineEvent::TaskCreated {
            task_id: "t1".into(),
            task: new_task("Approve"),
        })
        .unwrap();
    collector.flush::<SqliteStore>(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let outbox_rows = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM taskpool_outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };

    let claim = command(TaskAction::Claim, "t1", "piggy");
    let first = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &claim, Retention::default())
        .await
        .unwrap();
    let again = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &claim, Retention::default())
        .await
        .unwrap();
    assert_eq!(first.result, OutcomeResult::Applied);
    assert_eq!(first.task_version, Some(2));
    assert_eq!(
        (again.result, again.task_version),
        (first.result, first.task_version)
    );
    assert_eq!(outbox_rows().await, 2);

    let unclaim = command(TaskAction::Unclaim, "t1", "piggy");
    let refused = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &unclaim, Retention::default())
        .await
        .unwrap();
    assert_eq!(refused.result, OutcomeResult::Rejected);
    assert_eq!(refused.reason.as_deref(), Some("not today"));
    assert_eq!(
        outbox_rows().await,
        2,
        "the rejected command's event is gone"
    );
}
