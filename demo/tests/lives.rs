//! The demo on real databases (SQLite and PostgreSQL): its process instances live through
//! every kind of step, and after each committed step taskpool's state of every task and
//! request agrees with the demo's own tables, written in the same transactions.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use taskpool_core::{PgStore, SqliteStore};
use taskpool_demo::{Action, Demo, DemoConfig, DemoDb, TaskRow};
use taskpool_schemas::{DecodedEvent, TaskState, decode};
use taskpool_testkit::{PgTestDb, SqliteTestDb};

fn config() -> DemoConfig {
    DemoConfig {
        seed: Some(7),
        active_requests: 6,
        ..DemoConfig::default()
    }
}

/// Runs `steps` steps and returns the actions taken.
async fn run<S: DemoDb>(demo: &mut Demo<S>, steps: usize) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for _ in 0..steps {
        let stepped = demo.step().await.expect("a demo step commits");
        assert!(
            !stepped.events.is_empty(),
            "every step records events: {:?}",
            stepped.action
        );
        actions.insert(format!("{:?}", stepped.action));
    }
    actions
}

/// taskpool's stored aggregate states (the latest event of each), on either database.
async fn stored_states<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Vec<Vec<u8>>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    Vec<u8>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    sqlx::query("SELECT state FROM taskpool_aggregates")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// taskpool's current task states, decoded from its aggregate table.
fn tasks_from(states: Vec<Vec<u8>>) -> BTreeMap<String, taskpool_schemas::Task> {
    states
        .iter()
        .filter_map(|bytes| match decode(bytes).expect("stored states decode") {
            DecodedEvent::Task(event) => Some((event.task.id.clone(), event.task)),
            DecodedEvent::DataEntry(_) => None,
        })
        .collect()
}

fn agree(rows: &[TaskRow], states: &BTreeMap<String, taskpool_schemas::Task>) {
    assert_eq!(rows.len(), states.len(), "one aggregate per demo task");
    for row in rows {
        let task = &states[&row.id];
        let state = match task.state {
            TaskState::Active => "ACTIVE",
            TaskState::Completed => "COMPLETED",
            TaskState::Deleted => "DELETED",
        };
        assert_eq!(row.state, state, "{}", row.id);
        assert_eq!(row.assignee, task.assignee, "{}", row.id);
        assert_eq!(row.priority, i64::from(task.priority), "{}", row.id);
        assert_eq!(row.due_date, task.due_date.map(|d| d.0), "{}", row.id);
        assert_eq!(row.name, task.name, "{}", row.id);
        let groups: BTreeSet<String> = row.candidate_group.iter().cloned().collect();
        assert_eq!(groups, task.candidate_groups, "{}", row.id);
        let users: BTreeSet<String> = row.candidate_user.iter().cloned().collect();
        assert_eq!(users, task.candidate_users, "{}", row.id);
    }
}

const EVERY_ACTION: [Action; 7] = [
    Action::Submit,
    Action::Claim,
    Action::Update,
    Action::Reassign,
    Action::Unclaim,
    Action::Complete,
    Action::Withdraw,
];

#[tokio::test]
async fn on_sqlite_tasks_live_every_kind_of_step_and_taskpool_agrees() {
    let db = SqliteTestDb::new().await;
    let mut demo = Demo::<SqliteStore>::prepare(db.pool.clone(), config())
        .await
        .unwrap();
    let actions = run(&mut demo, 400).await;
    let every: BTreeSet<String> = EVERY_ACTION.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(actions, every);
    let rows = SqliteStore::all_tasks(&db.pool).await.unwrap();
    agree(&rows, &tasks_from(stored_states(&db.pool).await));
    // The process went on: later steps followed completed ones.
    assert!(rows.iter().any(|r| r.step == "order" || r.step == "revise"));
}

#[tokio::test]
async fn on_postgresql_tasks_live_every_kind_of_step_and_taskpool_agrees() {
    let db = PgTestDb::new().await;
    let mut demo = Demo::<PgStore>::prepare(db.pool.clone(), config())
        .await
        .unwrap();
    let actions = run(&mut demo, 400).await;
    assert!(actions.len() >= 6, "{actions:?}");
    let rows = PgStore::all_tasks(&db.pool).await.unwrap();
    agree(&rows, &tasks_from(stored_states(&db.pool).await));
}

#[tokio::test]
async fn a_demo_started_again_continues_with_the_same_tables() {
    let db = SqliteTestDb::new().await;
    let mut first = Demo::<SqliteStore>::prepare(db.pool.clone(), config())
        .await
        .unwrap();
    run(&mut first, 50).await;
    let before = SqliteStore::all_tasks(&db.pool).await.unwrap().len();
    let mut second = Demo::<SqliteStore>::prepare(db.pool.clone(), config())
        .await
        .unwrap();
    run(&mut second, 50).await;
    let after = SqliteStore::all_tasks(&db.pool).await.unwrap();
    assert!(after.len() > before);
    agree(&after, &tasks_from(stored_states(&db.pool).await));
}

#[tokio::test]
async fn running_requests_stay_at_the_configured_number() {
    let db = SqliteTestDb::new().await;
    let config = config();
    let wanted = config.active_requests;
    let mut demo = Demo::<SqliteStore>::prepare(db.pool.clone(), config)
        .await
        .unwrap();
    // Long enough for steps that find no task for their action to have piled up requests.
    run(&mut demo, 1500).await;
    let rows = SqliteStore::all_tasks(&db.pool).await.unwrap();
    let running: BTreeSet<&str> = rows
        .iter()
        .filter(|row| row.state == "ACTIVE")
        .map(|row| row.request_id.as_str())
        .collect();
    assert!(
        running.len() <= wanted,
        "{} requests running, {wanted} configured",
        running.len()
    );
    // Requests did finish meanwhile: the demo did not stand still.
    assert!(rows.iter().filter(|row| row.state != "ACTIVE").count() > 100);
}
