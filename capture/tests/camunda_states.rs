//! The Camunda capture's queued task states and the drain that compares them (decision 0027),
//! on a database of its own holding the engine's tables, written as the engine writes them: a
//! late commit, two transactions changing one task, a drain killed before its commit, an
//! unchanged task, and the states still queued when the capture is uninstalled.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use taskpool_capture::{camunda, drain_once};
use taskpool_testkit::wait_for;

mod support;
use support::{
    captured_engine, insert_task, kill_a_drain_waiting_on_the_outbox, outbox_task_events,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Every outbox event: `(task, version, event type, assignee, candidate users)`.
async fn outbox(pool: &PgPool) -> Vec<(String, i64, String, Option<String>, Vec<String>)> {
    outbox_task_events(pool, None)
        .await
        .into_iter()
        .map(|(task, version, event)| {
            let users = event.task.candidate_users.into_iter().collect();
            (task, version, event.event_type, event.task.assignee, users)
        })
        .collect()
}

/// The reason of the one row in the capture's dead letters.
async fn dead_letter_reason(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT reason FROM taskpool_capture_dead_letters")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Whether the backend `pid` waits for a lock (on `relation` when given).
async fn waits_for_a_lock(pool: &PgPool, pid: i32, relation: Option<&str>) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted \
         AND ($2::text IS NULL OR relation = $2::regclass))",
    )
    .bind(pid)
    .bind(relation)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// An engine transaction that changed a task first and commits last becomes its events when
/// it commits: a drain meanwhile neither waits for it nor reads past it.
#[tokio::test]
async fn a_late_engine_commit_becomes_its_events_after_it_commits() {
    let db = captured_engine().await;
    let mut late = db.pool.begin().await.unwrap();
    insert_task(&mut late, "late").await;
    let mut early = db.pool.begin().await.unwrap();
    insert_task(&mut early, "early").await;
    early.commit().await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 1);
    late.commit().await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 1);
    let events: Vec<(String, String)> = outbox(&db.pool)
        .await
        .into_iter()
        .map(|e| (e.0, e.2))
        .collect();
    assert_eq!(
        events,
        [
            ("early".to_string(), "TaskCreated".to_string()),
            ("late".to_string(), "TaskCreated".to_string())
        ]
    );
}

/// Two engine transactions change one task (the first assigns it, the second adds a candidate
/// user): the second's state is queued only once the first committed, so it holds both
/// changes, and the drain compares the states in that order. Compared the other way round, or
/// read while the first was still open, the second state would take the assignment back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engine_transactions_changing_one_task_are_compared_in_commit_order() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "t1").await;
    drain_once(&db.pool, 100).await.unwrap();

    let mut first = db.pool.begin().await.unwrap();
    sqlx::query("UPDATE act_ru_task SET assignee_ = 'kermit', rev_ = 2 WHERE id_ = 't1'")
        .execute(&mut *first)
        .await
        .unwrap();
    // The capture's triggers fire now instead of at the commit: the state is queued and the
    // task's recording lock held, as between the triggers and the end of the engine's commit.
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(&mut *first)
        .await
        .unwrap();

    let mut second = PgConnection::connect_with(&db.options).await.unwrap();
    let second_pid = backend_pid(&mut second).await;
    let committing = tokio::spawn(async move {
        let mut tx = second.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO act_ru_identitylink (id_, rev_, user_id_, type_, task_id_) \
             VALUES ('l1', 1, 'gonzo', 'candidate', 't1')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    });
    // Until the second commit waits for the first (or, were it not to wait, has committed).
    wait_for("the second commit to wait or end", DEADLINE, || async {
        (committing.is_finished() || waits_for_a_lock(&db.pool, second_pid, None).await)
            .then_some(())
    })
    .await;
    drain_once(&db.pool, 100).await.unwrap();
    first.commit().await.unwrap();
    committing.await.unwrap();
    drain_once(&db.pool, 100).await.unwrap();

    let events: Vec<(i64, String, Option<String>, Vec<String>)> = outbox(&db.pool)
        .await
        .into_iter()
        .map(|e| (e.1, e.2, e.3, e.4))
        .collect();
    let kermit = Some("kermit".to_string());
    assert_eq!(
        events,
        [
            (1, "TaskCreated".to_string(), None, vec![]),
            (2, "TaskAssigned".to_string(), kermit.clone(), vec![]),
            (
                3,
                "TaskCandidatesChanged".to_string(),
                kermit,
                vec!["gonzo".to_string()]
            ),
        ]
    );
}

/// The drain dies after it compared a task's state, before its commit (its connection killed
/// while it waits to write the outbox): the last state and the queue are as they were, and the
/// next drain records the change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_killed_after_comparing_loses_and_doubles_nothing() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "k").await;
    drain_once(&db.pool, 100).await.unwrap();
    sqlx::query("UPDATE act_ru_task SET assignee_ = 'kermit', rev_ = 2 WHERE id_ = 'k'")
        .execute(&db.pool)
        .await
        .unwrap();

    kill_a_drain_waiting_on_the_outbox(&db).await;

    let last: Option<String> = sqlx::query_scalar(
        "SELECT captured ->> 'assignee' FROM taskpool_camunda_tasks WHERE task_id = 'k'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        last, None,
        "the last state is the one before the killed drain"
    );
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 1);
    let kinds: Vec<(i64, String)> = outbox(&db.pool)
        .await
        .into_iter()
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskAssigned".to_string())
        ]
    );
}

/// A transaction that touches a task without changing what taskpool shows of it (the engine
/// raising a row's revision) queues its state, and the drain records nothing.
#[tokio::test]
async fn an_unchanged_task_records_nothing() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "same").await;
    drain_once(&db.pool, 100).await.unwrap();
    sqlx::query("UPDATE act_ru_task SET rev_ = 2 WHERE id_ = 'same'")
        .execute(&db.pool)
        .await
        .unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    assert_eq!(outbox(&db.pool).await.len(), 1, "only the creation");
}

/// Uninstalling drains the states still queued (they are compared with the last states, which
/// go with the capture) before it removes the rest: the change reaches the outbox.
#[tokio::test]
async fn uninstalling_first_records_the_states_still_queued() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "u").await;
    drain_once(&db.pool, 100).await.unwrap();
    sqlx::query("UPDATE act_ru_task SET assignee_ = 'piggy', rev_ = 2 WHERE id_ = 'u'")
        .execute(&db.pool)
        .await
        .unwrap();
    camunda::uninstall(&db.pool).await.unwrap();
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_capture")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    let last = outbox(&db.pool).await.pop().unwrap();
    assert_eq!(
        (last.2, last.3),
        ("TaskAssigned".to_string(), Some("piggy".into()))
    );
}

/// The capture removed by hand (its scripts run without the drain in between) while a state
/// was queued: the state goes to the dead letters with the reason, and the queue's events
/// still drain (before, every drain failed on the missing table).
#[tokio::test]
async fn a_state_left_queued_by_a_hand_made_uninstall_is_dead_lettered() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "h").await;
    drain_once(&db.pool, 100).await.unwrap();
    sqlx::query("UPDATE act_ru_task SET assignee_ = 'animal', rev_ = 2 WHERE id_ = 'h'")
        .execute(&db.pool)
        .await
        .unwrap();
    for script in [
        include_str!("../sql/camunda7_detach.sql"),
        include_str!("../sql/camunda7_uninstall.sql"),
    ] {
        sqlx::raw_sql(script).execute(&db.pool).await.unwrap();
    }
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 1));
    let reason = dead_letter_reason(&db.pool).await;
    assert!(reason.contains("last states are gone"), "{reason}");
}

/// A creation core refuses (a candidate user that is only a space) goes to the dead letters and
/// the task's last state stays unknown: once the engine's task is acceptable, its next state is
/// created. Were the refused state kept as the last one, every later change would be refused
/// as a change to a task taskpool does not have.
#[tokio::test]
async fn a_refused_creation_is_created_once_the_task_is_acceptable() {
    let db = captured_engine().await;
    let mut tx = db.pool.begin().await.unwrap();
    insert_task(&mut tx, "r").await;
    sqlx::query(
        "INSERT INTO act_ru_identitylink (id_, rev_, user_id_, type_, task_id_) \
         VALUES ('blank', 1, ' ', 'candidate', 'r')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().dead_letters, 1);
    sqlx::query("DELETE FROM act_ru_identitylink WHERE id_ = 'blank'")
        .execute(&db.pool)
        .await
        .unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    let events: Vec<(String, i64, String)> = outbox(&db.pool)
        .await
        .into_iter()
        .map(|e| (e.0, e.1, e.2))
        .collect();
    assert_eq!(events, [("r".to_string(), 1, "TaskCreated".to_string())]);
}

/// A process definition whose model cannot be read (not XML) gives its tasks no form key; the
/// task is created all the same and the drain goes on.
#[tokio::test]
async fn an_unreadable_model_gives_no_form_key_and_stops_nothing() {
    let db = captured_engine().await;
    sqlx::raw_sql(
        "INSERT INTO act_re_deployment (id_, name_) VALUES ('dep', 'broken'); \
         INSERT INTO act_ge_bytearray (id_, rev_, name_, deployment_id_, bytes_) \
         VALUES ('b1', 1, 'broken.bpmn', 'dep', convert_to('<definitions', 'UTF8')); \
         UPDATE act_re_procdef SET deployment_id_ = 'dep', resource_name_ = 'broken.bpmn' \
         WHERE id_ = 'check:1'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    insert_task(&mut db.pool.acquire().await.unwrap(), "f").await;
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    assert_eq!(outbox(&db.pool).await.len(), 1);
}

/// Uninstalling while an engine transaction that changed an allowed variable is open: the
/// uninstaller holds the task table (its trigger dropped) and waits for the variable table;
/// the engine's commit then reads the task table. Each would wait for the other; the
/// uninstaller gives way and tries again, so both end well (before, PostgreSQL's deadlock
/// check aborted one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_gives_way_to_an_engine_commit_instead_of_deadlocking() {
    let db = captured_engine().await;
    let mut engine = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO act_ru_variable (id_, rev_, type_, name_, long_) \
         VALUES ('v1', 1, 'long', 'amount', 5)",
    )
    .execute(&mut *engine)
    .await
    .unwrap();
    let pool = db.pool.clone();
    let uninstalling = tokio::spawn(async move { camunda::uninstall(&pool).await });
    wait_for(
        "the uninstaller to wait for the variables",
        DEADLINE,
        || async {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted \
             AND relation = 'act_ru_variable'::regclass)",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            waiting.then_some(())
        },
    )
    .await;
    engine.commit().await.expect("the engine's commit");
    uninstalling.await.unwrap().expect("the uninstall");
}

/// A task's state as an older installation queued it (shaped in the engine's commit, kind
/// `camunda-state`) is still compared after an upgrade: the task is created with its fields.
#[tokio::test]
async fn a_state_queued_by_an_older_installation_is_still_compared() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "old").await;
    // The row this installation queued, replaced by the state an older one queued instead.
    sqlx::query(
        "UPDATE taskpool_capture SET kind = 'camunda-state', \
         fields = taskpool_camunda_shape(fields) WHERE aggregate_id = 'old'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    let events = outbox(&db.pool).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].2.as_str()),
        ("old", "TaskCreated")
    );
}

/// A task's rows as an older installation queued them (the task row as a JSON object rather
/// than a row's text) are still shaped after an upgrade.
#[tokio::test]
async fn task_rows_queued_by_an_older_installation_are_still_shaped() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "object").await;
    let replaced = sqlx::query(
        "UPDATE taskpool_capture SET fields = jsonb_set(fields, '{task}', \
         (SELECT to_jsonb(t) FROM act_ru_task t WHERE t.id_ = 'object')) \
         WHERE aggregate_id = 'object' AND jsonb_typeof(fields->'task') = 'string'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(replaced.rows_affected(), 1);
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    let events = outbox_task_events(&db.pool, None).await;
    let created: Vec<(&str, &str)> = events
        .iter()
        .map(|(_, _, e)| (&*e.event_type, &*e.task.name))
        .collect();
    assert_eq!(created, [("TaskCreated", "Check")]);
}

/// Rows the drain cannot shape into a state (here the installation's settings are gone) go to
/// the dead letters with the reason; the task is created once its rows can be shaped.
#[tokio::test]
async fn task_rows_that_cannot_be_shaped_are_dead_lettered() {
    let db = captured_engine().await;
    let settings: (String, String) =
        sqlx::query_as("DELETE FROM taskpool_camunda_settings RETURNING application, time_zone")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    insert_task(&mut db.pool.acquire().await.unwrap(), "unshaped").await;
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 1));
    let reason = dead_letter_reason(&db.pool).await;
    assert!(reason.contains("could not be shaped"), "{reason}");
    assert!(outbox(&db.pool).await.is_empty());

    sqlx::query("INSERT INTO taskpool_camunda_settings (application, time_zone) VALUES ($1, $2)")
        .bind(&settings.0)
        .bind(&settings.1)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE act_ru_task SET priority_ = 60, rev_ = 2 WHERE id_ = 'unshaped'")
        .execute(&db.pool)
        .await
        .unwrap();
    drain_once(&db.pool, 100).await.unwrap();
    let events = outbox(&db.pool).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].2, "TaskCreated");
}

/// Rows whose shaping raises an error (here a create time that is not a time, in the task
/// row's text) go to the dead letters with the reason, and the events queued after them still
/// drain: before, the error failed every drain.
#[tokio::test]
async fn rows_whose_shaping_fails_are_dead_lettered_and_the_rest_drains() {
    let db = captured_engine().await;
    insert_task(&mut db.pool.acquire().await.unwrap(), "poison").await;
    sqlx::query(
        "UPDATE taskpool_capture SET fields = jsonb_set(fields, '{task}', to_jsonb( \
         regexp_replace(fields->>'task', '\"\\d{4}-[^\"]*\"', 'not a time'))) \
         WHERE aggregate_id = 'poison'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    insert_task(&mut db.pool.acquire().await.unwrap(), "after").await;
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (2, 1));
    let events = outbox(&db.pool).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "after");
}
