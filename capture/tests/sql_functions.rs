//! The SQL way in, on real PostgreSQL: what the functions accept and refuse in the caller's
//! transaction, and what the drain makes of it in the outbox.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool, Row};
use taskpool_capture::drain_once;
use taskpool_core::{PgStore, Store};
use taskpool_schemas::{DecodedEvent, decode};
use taskpool_testkit::{PgTestDb, wait_for};

mod support;
use support::kill_a_drain_waiting_on_the_outbox;

const DEADLINE: Duration = Duration::from_secs(30);

async fn database() -> PgTestDb {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.expect("migrate");
    db
}

fn new_task(name: &str) -> Value {
    json!({
        "sourceReference": {
            "processInstanceId": "pi-1", "executionId": "ex-1",
            "processDefinitionId": "order:1", "processDefinitionKey": "order",
            "processName": "Order", "applicationName": "shop"
        },
        "taskDefinitionKey": "approve",
        "name": name,
        "candidateGroups": ["muppets"],
        "dueDate": "2030-01-31T09:00:00Z",
        "payload": {"amount": 12}
    })
}

async fn record_task(
    conn: &mut PgConnection,
    kind: &str,
    task_id: &str,
    fields: Value,
) -> Result<(), String> {
    sqlx::query("SELECT taskpool_record_task_event($1, $2, $3::text::jsonb)")
        .bind(kind)
        .bind(task_id)
        .bind(fields.to_string())
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| {
            e.as_database_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string())
        })
}

/// Every outbox event, in the order the relay reads them, decoded.
async fn outbox(pool: &PgPool) -> Vec<(String, i64, DecodedEvent)> {
    sqlx::query(
        "SELECT aggregate_id, aggregate_version, payload FROM taskpool_outbox \
         ORDER BY tracking_xid, position",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let payload: Vec<u8> = row.get(2);
        (row.get(0), row.get(1), decode(&payload).expect("decodable"))
    })
    .collect()
}

async fn queued(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM taskpool_capture")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn assignee(event: &DecodedEvent) -> Option<String> {
    match event {
        DecodedEvent::Task(e) => e.task.assignee.clone(),
        other => panic!("not a task event: {other:?}"),
    }
}

#[tokio::test]
async fn recorded_events_become_outbox_events_through_core_and_leave_the_queue() {
    let db = database().await;
    let mut tx = db.pool.begin().await.unwrap();
    record_task(&mut tx, "created", "t1", new_task("Approve order 1"))
        .await
        .unwrap();
    record_task(&mut tx, "assigned", "t1", json!({"assignee": "kermit"}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    record_task(
        &mut tx,
        "attributes",
        "t1",
        json!({"priority": 80, "dueDate": null}),
    )
    .await
    .unwrap();
    sqlx::query(
        "SELECT taskpool_record_data_entry_event('changed', 'io.shop.Order', '1', $1::text::jsonb)",
    )
    .bind(
        json!({"type": "Order", "applicationName": "shop", "name": "Order 1",
               "state": {"processingType": "IN_PROGRESS", "state": "new"},
               "authorizedGroups": ["muppets"], "note": {"username": "kermit"}})
        .to_string(),
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.groups), (4, 3));
    assert_eq!(queued(&db.pool).await, 0);
    let events = outbox(&db.pool).await;
    let keys: Vec<(&str, i64)> = events.iter().map(|(k, v, _)| (k.as_str(), *v)).collect();
    // One transaction's created + assigned compact to one TaskCreated, as the collector does.
    assert_eq!(keys, [("t1", 1), ("t1", 2), ("io.shop.Order:1", 1)]);
    let DecodedEvent::Task(created) = &events[0].2 else {
        panic!("{:?}", events[0].2);
    };
    assert_eq!(created.task.assignee.as_deref(), Some("kermit"));
    assert_eq!(created.task.priority, 50, "the engines' default priority");
    assert_eq!(
        created.task.due_date.map(|d| d.to_rfc3339()),
        Some("2030-01-31T09:00:00.000Z".to_string())
    );
    let DecodedEvent::Task(changed) = &events[1].2 else {
        panic!("{:?}", events[1].2);
    };
    assert_eq!((changed.task.priority, changed.task.due_date), (80, None));
    assert!(matches!(events[2].2, DecodedEvent::DataEntry(_)));
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 0);
}

#[tokio::test]
async fn a_rolled_back_transaction_leaves_nothing() {
    let db = database().await;
    let mut tx = db.pool.begin().await.unwrap();
    record_task(&mut tx, "created", "t1", new_task("Approve"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(queued(&db.pool).await, 0);
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 0);
    assert!(outbox(&db.pool).await.is_empty());
}

#[tokio::test]
async fn a_bad_call_raises_an_error_that_says_what_is_wrong_and_writes_nothing() {
    let db = database().await;
    let cases = [
        (
            "finished",
            "t1",
            json!({}),
            "unknown task event kind \"finished\"",
        ),
        ("assigned", "", json!({}), "needs a task id"),
        (
            "assigned",
            "t1",
            json!({"asignee": "kermit"}),
            "no field \"asignee\"",
        ),
        (
            "assigned",
            "t1",
            json!({"assignee": 7}),
            "\"assignee\" must be a string",
        ),
        ("attributes", "t1", json!({}), "changes no attribute"),
        (
            "attributes",
            "t1",
            json!({"priority": "high"}),
            "32-bit integer",
        ),
        (
            "attributes",
            "t1",
            json!({"priority": 1.5}),
            "32-bit integer",
        ),
        (
            "attributes",
            "t1",
            json!({"dueDate": "2030-02-30"}),
            "RFC 3339",
        ),
        (
            "attributes",
            "t1",
            json!({"name": null}),
            "\"name\" may not be null",
        ),
        (
            "candidate-group-added",
            "t1",
            json!({}),
            "needs the field \"group\"",
        ),
        (
            "created",
            "t1",
            json!({"name": "x"}),
            "needs the field \"sourceReference\"",
        ),
        (
            "created",
            "t1",
            {
                let mut task = new_task("x");
                task["candidateUsers"] = json!(["kermit", ""]);
                task
            },
            "non-empty strings",
        ),
    ];
    for (kind, id, fields, message) in cases {
        let mut conn = db.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let error = record_task(&mut tx, kind, id, fields.clone())
            .await
            .expect_err(&format!("{kind} {id} {fields} must be refused"));
        assert!(error.starts_with("taskpool: "), "{error}");
        assert!(error.contains(message), "{kind} {fields}: {error}");
        tx.rollback().await.unwrap();
    }
    let data_entry = sqlx::query(
        "SELECT taskpool_record_data_entry_event('changed', 'io:shop', '1', '{}'::jsonb)",
    )
    .execute(&db.pool)
    .await
    .expect_err("an entry type with a colon");
    assert!(
        data_entry.to_string().contains("may not contain \":\""),
        "{data_entry}"
    );
    assert_eq!(queued(&db.pool).await, 0);
}

/// A transaction that records first and commits last is drained when it commits; the drain
/// never waits for it, and never reads past it.
#[tokio::test]
async fn a_late_commit_is_drained_when_it_becomes_visible() {
    let db = database().await;
    let mut late = db.pool.begin().await.unwrap();
    record_task(&mut late, "created", "late", new_task("Late"))
        .await
        .unwrap();
    let mut early = db.pool.begin().await.unwrap();
    record_task(&mut early, "created", "early", new_task("Early"))
        .await
        .unwrap();
    early.commit().await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 1);
    late.commit().await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 1);
    let ids: Vec<String> = outbox(&db.pool).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["early", "late"]);
}

/// A refused event (a task created twice) keeps that task's rows of its transaction in the
/// dead letters with the reason; the same transaction's other task reaches the outbox.
#[tokio::test]
async fn a_refused_event_dead_letters_only_its_own_task() {
    let db = database().await;
    let mut tx = db.pool.begin().await.unwrap();
    record_task(&mut tx, "created", "twice", new_task("Twice"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drain_once(&db.pool, 100).await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    record_task(&mut tx, "created", "twice", new_task("Twice again"))
        .await
        .unwrap();
    record_task(&mut tx, "created", "fine", new_task("Fine"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!(
        (drained.rows, drained.groups, drained.dead_letters),
        (2, 1, 1)
    );
    let ids: Vec<String> = outbox(&db.pool).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["twice", "fine"]);
    let (task, reason): (String, String) =
        sqlx::query_as("SELECT aggregate_id, reason FROM taskpool_capture_dead_letters")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(task, "twice");
    assert!(reason.contains("already exists"), "{reason}");
}

/// A queued row of an aggregate type the drain does not know (the queue has no CHECK on it:
/// core migration 5), written past the functions, is dead-lettered with the reason, and what
/// was queued after it still reaches the outbox.
#[tokio::test]
async fn a_queued_row_of_an_unknown_aggregate_type_is_dead_lettered() {
    let db = database().await;
    sqlx::query(
        "INSERT INTO taskpool_capture (aggregate_type, aggregate_id, kind, fields) \
         VALUES ('invoice', 'i1', 'created', '{}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    record_task(&mut conn, "created", "after", new_task("After"))
        .await
        .unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (2, 1));
    let reason: String = sqlx::query_scalar("SELECT reason FROM taskpool_capture_dead_letters")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(reason.contains("unknown aggregate type"), "{reason}");
    let ids: Vec<String> = outbox(&db.pool).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["after"]);
}

/// Two transactions change the same task: the second waits in the function until the first
/// ended, so the queue, and then the events, follow their commit order, even when a drain runs
/// between the two commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transactions_changing_one_task_produce_events_in_commit_order() {
    let db = database().await;
    let mut setup = db.pool.acquire().await.unwrap();
    record_task(&mut setup, "created", "t1", new_task("Approve"))
        .await
        .unwrap();
    drop(setup);
    let mut first = db.pool.begin().await.unwrap();
    record_task(&mut first, "assigned", "t1", json!({"assignee": "kermit"}))
        .await
        .unwrap();

    let mut second = PgConnection::connect_with(&db.options).await.unwrap();
    let second_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut second)
        .await
        .unwrap();
    let recording = tokio::spawn(async move {
        let mut tx = second.begin().await.unwrap();
        record_task(&mut tx, "assigned", "t1", json!({"assignee": "piggy"}))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    });
    wait_for(
        "the second recorder to wait for the first",
        DEADLINE,
        || async {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
            )
            .bind(second_pid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            waiting.then_some(())
        },
    )
    .await;
    drain_once(&db.pool, 100).await.unwrap();
    first.commit().await.unwrap();
    recording.await.unwrap();
    drain_once(&db.pool, 100).await.unwrap();

    let events = outbox(&db.pool).await;
    let assignees: Vec<(i64, Option<String>)> =
        events.iter().map(|(_, v, e)| (*v, assignee(e))).collect();
    assert_eq!(
        assignees,
        [
            (1, None),
            (2, Some("kermit".to_string())),
            (3, Some("piggy".to_string()))
        ],
        "the last committed assignment is the task's last event"
    );
}

/// The drain's transaction ends without a commit after it read the queue and wrote part of the
/// outbox (its connection killed, as when the draining process dies): nothing of it stays, and
/// the next drain writes every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_killed_before_its_commit_loses_and_doubles_nothing() {
    let db = database().await;
    for id in ["a", "b", "c"] {
        let mut conn = db.pool.acquire().await.unwrap();
        record_task(&mut conn, "created", id, new_task(id))
            .await
            .unwrap();
    }
    kill_a_drain_waiting_on_the_outbox(&db).await;

    assert_eq!(queued(&db.pool).await, 3, "the queue is as it was");
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 3);
    let ids: Vec<String> = outbox(&db.pool).await.into_iter().map(|e| e.0).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}
