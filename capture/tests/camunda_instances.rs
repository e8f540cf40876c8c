//! A process instance's variables are every one of its tasks' payload, so an engine
//! transaction that changes a variable and another that creates a task of the same instance
//! must not both read past each other at their commits: whichever commits second reads what
//! the first committed (decision 0027). Deterministic in both orders, and a stress run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use taskpool_capture::drain_once;
use taskpool_testkit::{PgTestDb, wait_for};
use tokio::sync::Barrier;

mod support;
use support::{captured_engine, drain_all, outbox_task_events};

const DEADLINE: Duration = Duration::from_secs(30);
/// The stress run's races, one instance each.
const RACES: i64 = 200;

/// An engine with one purchase process instance `p` whose allowed variable `amount` is 100,
/// and its first task `x`, drained.
async fn purchase_instance() -> PgTestDb {
    let db = captured_engine().await;
    sqlx::raw_sql(
        "INSERT INTO act_re_procdef (id_, key_, version_) \
         VALUES ('purchase:1', 'taskpool_purchase', 1); \
         INSERT INTO act_ru_execution (id_, rev_, proc_inst_id_, business_key_, proc_def_id_) \
         VALUES ('p', 1, 'p', 'order-1', 'purchase:1'); \
         INSERT INTO act_ru_variable (id_, rev_, type_, name_, execution_id_, proc_inst_id_, \
         var_scope_, long_) VALUES ('amount', 1, 'long', 'amount', 'p', 'p', 'p', 100);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    create_task(&db.pool, "x").await;
    drain_once(&db.pool, 100).await.unwrap();
    db
}

/// Inserts a task of `instance`, as the engine does.
async fn insert_task(conn: &mut PgConnection, instance: &str, id: &str) {
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, task_def_key_, proc_def_id_, proc_inst_id_, \
         execution_id_, priority_, create_time_) \
         VALUES ($1, 1, 'Buy', 'buy', 'purchase:1', $2, $2, 50, now())",
    )
    .bind(id)
    .bind(instance)
    .execute(conn)
    .await
    .unwrap();
}

async fn create_task(pool: &PgPool, id: &str) {
    insert_task(&mut pool.acquire().await.unwrap(), "p", id).await;
}

/// Sets the amount of the instance whose amount variable has the id `variable`.
async fn set_amount(conn: &mut PgConnection, variable: &str, amount: i64) {
    sqlx::query("UPDATE act_ru_variable SET long_ = $2, rev_ = rev_ + 1 WHERE id_ = $1")
        .bind(variable)
        .bind(amount)
        .execute(conn)
        .await
        .unwrap();
}

/// Fires the transaction's capture triggers now instead of at its commit: what follows until
/// the commit is the window between the triggers and the commit's end.
async fn fire_triggers(conn: &mut PgConnection) {
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
        .execute(conn)
        .await
        .unwrap();
}

/// The payload of `task`'s last event in the outbox.
async fn last_payload(pool: &PgPool, task: &str) -> serde_json::Value {
    let events = outbox_task_events(pool, Some(&[task.to_string()])).await;
    let (_, _, event) = events.last().expect("the task has events");
    serde_json::Value::Object(event.task.payload.0.clone())
}

/// Once the queue is drained, both tasks of the instance show its committed amount, 150.
async fn both_tasks_show_150(pool: &PgPool) {
    drain_all(pool).await;
    for task in ["x", "y"] {
        assert_eq!(
            last_payload(pool, task).await,
            json!({"amount": 150}),
            "{task} shows the instance's committed amount"
        );
    }
}

/// Whether the backend `pid` waits for a lock.
async fn waits(pool: &PgPool, pid: i32) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What the second engine transaction does.
enum Second {
    CreateTask(&'static str),
    SetAmount(i64),
}

/// Runs the second transaction on a connection of its own in the background; returns once its
/// commit has ended or waits for a lock, with the task that ends with it.
async fn commit_beside(
    db: &PgTestDb,
    second: Second,
) -> tokio::task::JoinHandle<Result<(), sqlx::Error>> {
    let mut conn = PgConnection::connect_with(&db.options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let committing = tokio::spawn(async move {
        let mut tx = conn.begin().await.unwrap();
        match second {
            Second::CreateTask(id) => insert_task(&mut tx, "p", id).await,
            Second::SetAmount(amount) => set_amount(&mut tx, "amount", amount).await,
        }
        tx.commit().await
    });
    wait_for("the second commit to wait or end", DEADLINE, || async {
        (committing.is_finished() || waits(&db.pool, pid).await).then_some(())
    })
    .await;
    committing
}

/// The variable's change reaches its commit's triggers first and is held there; a task of the
/// same instance is created meanwhile. The task's state must be read only once the variable's
/// change has committed: read earlier, it shows 100, and the variable's commit, which looked
/// for the instance's tasks before the task was committed, queues nothing for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_while_a_variable_change_commits_shows_the_new_value() {
    let db = purchase_instance().await;
    let mut variable = db.pool.begin().await.unwrap();
    set_amount(&mut variable, "amount", 150).await;
    fire_triggers(&mut variable).await;
    let creating = commit_beside(&db, Second::CreateTask("y")).await;
    variable.commit().await.unwrap();
    creating.await.unwrap().unwrap();
    both_tasks_show_150(&db.pool).await;
}

/// The other order: the task's creation reaches its commit's triggers first and is held there
/// (its state read with 100); the variable's change commits meanwhile. It must look for the
/// instance's tasks only once the creation has committed, and so queue the new task's state
/// with 150; looking earlier, it does not see the task, which then keeps 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_changed_while_a_task_creation_commits_reaches_the_new_task() {
    let db = purchase_instance().await;
    let mut creation = db.pool.begin().await.unwrap();
    insert_task(&mut creation, "p", "y").await;
    fire_triggers(&mut creation).await;
    let changing = commit_beside(&db, Second::SetAmount(150)).await;
    creation.commit().await.unwrap();
    changing.await.unwrap().unwrap();
    both_tasks_show_150(&db.pool).await;
}

/// A commit that adds an execution to a running instance (a parallel branch) and changes its
/// variable reaches the instance's existing task: only a new process instance (a new root
/// execution) has no tasks older than the commit, whose variables' events may skip looking.
#[tokio::test]
async fn a_variable_changed_beside_a_new_branch_of_the_instance_reaches_its_task() {
    let db = purchase_instance().await;
    let mut engine = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO act_ru_execution (id_, rev_, proc_inst_id_, parent_id_, proc_def_id_) \
         VALUES ('branch', 1, 'p', 'p', 'purchase:1')",
    )
    .execute(&mut *engine)
    .await
    .unwrap();
    set_amount(&mut engine, "amount", 150).await;
    engine.commit().await.unwrap();
    drain_all(&db.pool).await;
    assert_eq!(last_payload(&db.pool, "x").await, json!({"amount": 150}));
}

/// A variable allowed later (the allow list is folded into the plan of the state's query) is in
/// the payload an engine session queues even when that session planned the query before.
#[tokio::test]
async fn a_variable_allowed_later_reaches_an_engine_session_that_planned_before() {
    let db = purchase_instance().await;
    sqlx::query(
        "INSERT INTO act_ru_variable (id_, rev_, type_, name_, execution_id_, proc_inst_id_, \
         var_scope_, text_) VALUES ('colour', 1, 'string', 'colour', 'p', 'p', 'p', 'red')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut engine = PgConnection::connect_with(&db.options).await.unwrap();
    set_amount(&mut engine, "amount", 150).await;
    sqlx::raw_sql(
        "INSERT INTO taskpool_camunda_variables VALUES ('taskpool_purchase', 'colour'); \
         SELECT taskpool_camunda_watch_variables()",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    set_amount(&mut engine, "amount", 160).await;
    drain_all(&db.pool).await;
    let payload = last_payload(&db.pool, "x").await;
    assert_eq!(payload, json!({"amount": 160, "colour": "red"}));
}

/// An engine commit ends a task of the instance (its candidate link, then its row) and then
/// changes an allowed variable; another commit changed a variable of the same instance
/// meanwhile. The ended task's state must take the instance's lock before the task's, like
/// every other: taking the task's alone, the first holds the task and waits for the instance,
/// the second holds the instance and waits for the task, and PostgreSQL aborts one of the
/// engine's commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_task_and_changing_a_variable_beside_another_variable_change_both_commit() {
    ending_a_task_beside_a_variable_change(true).await
}

/// The same at history level `none`: the link's event, first at the commit, knows no instance
/// and the history none either; the task row's own event knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_at_history_level_none_both_commit() {
    ending_a_task_beside_a_variable_change(false).await
}

async fn ending_a_task_beside_a_variable_change(with_history: bool) {
    let db = purchase_instance().await;
    let history = if with_history {
        "INSERT INTO act_hi_taskinst (id_, task_def_key_, proc_inst_id_, start_time_) \
         VALUES ('x', 'buy', 'p', now());"
    } else {
        ""
    };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "{history} INSERT INTO act_ru_variable (id_, rev_, type_, name_, execution_id_, \
         proc_inst_id_, var_scope_, text_) VALUES ('item', 1, 'string', 'item', 'p', 'p', 'p', \
         'chair'); INSERT INTO act_ru_identitylink (id_, rev_, group_id_, type_, task_id_) \
         VALUES ('lx', 1, 'buyers', 'candidate', 'x')"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    drain_all(&db.pool).await;
    let mut ending = db.pool.begin().await.unwrap();
    sqlx::raw_sql(
        "DELETE FROM act_ru_identitylink WHERE id_ = 'lx'; DELETE FROM act_ru_task WHERE id_ = 'x'; \
         UPDATE act_hi_taskinst SET end_time_ = now(), delete_reason_ = 'completed' \
         WHERE id_ = 'x'",
    )
    .execute(&mut *ending)
    .await
    .unwrap();
    fire_triggers(&mut ending).await;
    let changing = commit_beside(&db, Second::SetAmount(150)).await;
    sqlx::query("UPDATE act_ru_variable SET text_ = 'table', rev_ = 2 WHERE id_ = 'item'")
        .execute(&mut *ending)
        .await
        .unwrap();
    ending.commit().await.expect("the ending commit");
    changing.await.unwrap().expect("the variable's commit");
    drain_all(&db.pool).await;
    let events = outbox_task_events(&db.pool, Some(&["x".to_string()])).await;
    assert_eq!(events.last().unwrap().2.event_type, "TaskCompleted");
}

/// Races in lockstep: for each of many instances (amount 100), one connection sets the amount
/// to 200 while another creates the instance's task, both with their triggers fired a round
/// trip before their commits (the window above), a drain running beside them. Every task's
/// last event shows 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_variable_changes_and_task_creations_end_with_the_engine_amount() {
    let db = purchase_instance().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO act_ru_execution (id_, rev_, proc_inst_id_, proc_def_id_) \
         SELECT 'p' || n, 1, 'p' || n, 'purchase:1' FROM generate_series(1, {RACES}) n; \
         INSERT INTO act_ru_variable (id_, rev_, type_, name_, execution_id_, proc_inst_id_, \
         var_scope_, long_) SELECT 'a' || n, 1, 'long', 'amount', 'p' || n, 'p' || n, 'p' || n, 100 \
         FROM generate_series(1, {RACES}) n"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let start = Arc::new(Barrier::new(2));
    let race = |creates: bool| {
        let (pool, start) = (db.pool.clone(), start.clone());
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            for n in 1..=RACES {
                start.wait().await;
                let mut tx = conn.begin().await.unwrap();
                if creates {
                    insert_task(&mut tx, &format!("p{n}"), &format!("t{n}")).await;
                } else {
                    set_amount(&mut tx, &format!("a{n}"), 200).await;
                }
                fire_triggers(&mut tx).await;
                tx.commit().await.unwrap();
            }
        })
    };
    let racers = [race(true), race(false)];
    while !racers.iter().all(|r| r.is_finished()) {
        drain_once(&db.pool, 50).await.unwrap();
    }
    for racer in racers {
        racer.await.unwrap();
    }
    drain_all(&db.pool).await;

    let mut stale = Vec::new();
    for n in 1..=RACES {
        let task = format!("t{n}");
        if last_payload(&db.pool, &task).await != json!({"amount": 200}) {
            stale.push(task);
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {RACES} tasks kept amount 100: {stale:?}",
        stale.len()
    );
}
