//! What the capture's tests on a database of their own share.
// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use taskpool_capture::{camunda, drain_once};
use taskpool_core::{PgStore, Store};
use taskpool_schemas::{DecodedEvent, Task, TaskEvent, decode};
use taskpool_testkit::operaton::{Engine, Flavour, installation};
use taskpool_testkit::{PgTestDb, wait_for};

const DEADLINE: Duration = Duration::from_secs(30);

/// A database of its own with the engine's tables (from the running engine's schema) and
/// taskpool's.
pub async fn engine_schema(flavour: Flavour) -> PgTestDb {
    let db = PgTestDb::new().await;
    let schema_sql = std::fs::read_to_string(flavour.schema_sql()).unwrap();
    // The dump names the public schema; here the engine's tables go into the test's schema.
    let schema_sql = schema_sql.replace("public.", "").replace(
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "",
    );
    sqlx::raw_sql(AssertSqlSafe(schema_sql))
        .execute(&db.pool)
        .await
        .expect("the engine's tables");
    PgStore::migrate(&db.pool).await.unwrap();
    db
}

/// Runs a drain until it has read the queue and waits to write the outbox (locked meanwhile
/// by this function), then kills its connection, as when the draining process dies before its
/// commit. Returns once the killed drain has failed and the outbox is free again.
pub async fn kill_a_drain_waiting_on_the_outbox(db: &PgTestDb) {
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE taskpool_outbox IN SHARE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let drainer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options.clone())
        .await
        .unwrap();
    let drainer_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&drainer)
        .await
        .unwrap();
    let draining = tokio::spawn(async move { drain_once(&drainer, 100).await });
    wait_for("the drain to wait on the outbox", DEADLINE, || async {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted \
             AND relation = 'taskpool_outbox'::regclass)",
        )
        .bind(drainer_pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        waiting.then_some(())
    })
    .await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(drainer_pid)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(draining.await.unwrap().is_err(), "the killed drain failed");
    holder.commit().await.unwrap();
}

/// An engine database with the capture installed and one process definition.
pub async fn captured_engine() -> PgTestDb {
    let db = engine_schema(Flavour::Operaton).await;
    camunda::install(&db.pool, &installation()).await.unwrap();
    sqlx::query("INSERT INTO act_re_procdef (id_, key_, version_) VALUES ('check:1', 'check', 1)")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// Tasks of a "check" process definition (added when missing), as the engine writes them: their
/// rows, and history rows for those `in_history`.
pub async fn add_check_tasks(pool: &PgPool, tasks: &[&str], in_history: &[&str]) {
    sqlx::query(
        "INSERT INTO act_re_procdef (id_, key_, version_) VALUES ('check:1', 'check', 1) \
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, task_def_key_, proc_def_id_, priority_, \
                                  create_time_) \
         SELECT id, 1, 'Check', 'check', 'check:1', 50, now() FROM unnest($1::text[]) id",
    )
    .bind(tasks)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO act_hi_taskinst (id_, task_def_key_, start_time_) \
         SELECT id, 'check', now() FROM unnest($1::text[]) id",
    )
    .bind(in_history)
    .execute(pool)
    .await
    .unwrap();
}

/// Drains the capture's queue until it is empty.
pub async fn drain_all(pool: &PgPool) {
    while drain_once(pool, 100).await.unwrap().rows > 0 {}
}

/// A new task row, as the engine inserts it.
pub async fn insert_task(conn: &mut PgConnection, id: &str) {
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, task_def_key_, proc_def_id_, priority_, \
         create_time_) VALUES ($1, 1, 'Check', 'check', 'check:1', 50, now())",
    )
    .bind(id)
    .execute(conn)
    .await
    .unwrap();
}

/// The outbox's task events of `tasks` (every task when none), in the order the relay reads
/// them: `(task, version, event)`.
pub async fn outbox_task_events(
    pool: &PgPool,
    tasks: Option<&[String]>,
) -> Vec<(String, i64, TaskEvent)> {
    sqlx::query(
        "SELECT aggregate_id, aggregate_version, payload FROM taskpool_outbox \
         WHERE $1::text[] IS NULL OR aggregate_id = ANY($1) ORDER BY tracking_xid, position",
    )
    .bind(tasks)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let payload: Vec<u8> = row.get(2);
        let Ok(DecodedEvent::Task(event)) = decode(&payload) else {
            panic!("not a task event");
        };
        (row.get(0), row.get(1), event)
    })
    .collect()
}

/// Drains until the queue holds nothing of these tasks; returns their outbox events in order:
/// `(task id, version, event type, task)`.
pub async fn events_of(engine: &Engine, tasks: &[&str]) -> Vec<(String, i64, String, Task)> {
    let ids: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
    wait_for("the tasks' events to be drained", DEADLINE, || async {
        drain_once(&engine.pool, 500).await.expect("drain");
        let queued: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM taskpool_capture WHERE aggregate_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(&engine.pool)
        .await
        .unwrap();
        (queued == 0).then_some(())
    })
    .await;
    outbox_task_events(&engine.pool, Some(&ids))
        .await
        .into_iter()
        .map(|(task, version, event)| (task, version, event.event_type, event.task))
        .collect()
}

pub fn kinds(events: &[(String, i64, String, Task)], task: &str) -> Vec<(i64, String)> {
    events
        .iter()
        .filter(|e| e.0 == task)
        .map(|e| (e.1, e.2.clone()))
        .collect()
}
