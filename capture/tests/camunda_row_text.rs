//! The task's columns travel from the engine's commit to the drain as a row's text: whatever
//! style the engine's session writes dates in and whatever its texts hold, the task arrives as
//! the engine has it.

use sqlx::{Connection, PgConnection};
use taskpool_capture::drain_once;

mod support;
use support::{captured_engine, outbox_task_events};

#[tokio::test]
async fn a_task_from_a_session_writing_day_first_dates_with_awkward_texts_arrives_intact() {
    let db = captured_engine().await;
    let mut engine = PgConnection::connect_with(&db.options).await.unwrap();
    // 10 March, which this style writes as 10/03/2024 and a month-first reader takes for
    // 3 October.
    sqlx::query("SET DateStyle = 'SQL, DMY'")
        .execute(&mut engine)
        .await
        .unwrap();
    let description = "a,\"b\"\\c (d) NULL\nsecond line";
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, task_def_key_, proc_def_id_, priority_, \
         create_time_, due_date_, description_, owner_) VALUES ('odd', 1, 'NULL', 'check', \
         'check:1', -5, '2024-03-10 09:00:00', '2024-03-10 09:30:00.25', $1, '')",
    )
    .bind(description)
    .execute(&mut engine)
    .await
    .unwrap();

    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!((drained.rows, drained.dead_letters), (1, 0));
    let events = outbox_task_events(&db.pool, None).await;
    let task = &events.first().expect("the task's creation").2.task;
    assert_eq!(task.name, "NULL", "a text NULL is not a null");
    assert_eq!(task.description.as_deref(), Some(description));
    assert_eq!(task.owner, None, "an empty owner is none, as before");
    assert_eq!(task.priority, -5);
    assert_eq!(task.create_time.to_rfc3339(), "2024-03-10T09:00:00.000Z");
    assert_eq!(
        task.due_date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2024-03-10T09:30:00.250Z")
    );
}
