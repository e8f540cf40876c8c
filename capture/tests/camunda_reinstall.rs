//! The capture installed again after an uninstall: what the engine did meanwhile to the tasks
//! taskpool knows is recorded, without refusals.

use serde_json::json;
use taskpool_capture::{camunda, drain_once};
use taskpool_testkit::operaton::{APPLICATION, Flavour, installation};

mod support;
use support::{add_check_tasks, engine_schema, outbox_task_events};

/// Installed again after an uninstall, the capture does not create the tasks taskpool knows
/// again (it would refuse that: a dead letter) but records what changed while it was away.
#[tokio::test]
async fn reinstalling_brings_known_tasks_up_to_date_without_refusals() {
    let db = engine_schema(Flavour::Operaton).await;
    camunda::install(&db.pool, &installation()).await.unwrap();
    // The engine's rows, written as the engine would (no engine runs on this database).
    add_check_tasks(&db.pool, &["known"], &[]).await;
    drain_once(&db.pool, 100).await.unwrap();
    camunda::uninstall(&db.pool).await.unwrap();
    sqlx::query("UPDATE act_ru_task SET assignee_ = 'kermit', priority_ = 80 WHERE id_ = 'known'")
        .execute(&db.pool)
        .await
        .unwrap();

    assert_eq!(
        camunda::install(&db.pool, &installation()).await.unwrap(),
        1
    );
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!(drained.dead_letters, 0, "{drained:?}");
    let events = outbox_task_events(&db.pool, Some(&["known".to_string()])).await;
    let versions: Vec<i64> = events.iter().map(|e| e.1).collect();
    assert!(versions.len() >= 2 && versions[0] == 1, "{versions:?}");
    let event = &events.last().unwrap().2;
    assert_eq!(event.task.assignee.as_deref(), Some("kermit"));
    assert_eq!(event.task.priority, 80);
}

/// Tasks the engine ended while the capture was uninstalled (one completed, one deleted, as its
/// history says): installed again, the capture records their endings, as the engine's commits
/// would have, and one the history no longer knows (cleaned up, or history level none) as
/// completed, as it does a standalone task the history does not know; installing once more
/// records nothing further. Another writer's open task under the same application name, of no
/// process definition of the engine's, is left as it is.
#[tokio::test]
async fn reinstalling_ends_the_tasks_the_engine_ended_meanwhile() {
    let db = engine_schema(Flavour::Operaton).await;
    camunda::install(&db.pool, &installation()).await.unwrap();
    add_check_tasks(
        &db.pool,
        &["done", "gone", "open", "unknown"],
        &["done", "gone", "open"],
    )
    .await;
    sqlx::query("SELECT taskpool_record_task_event('created', 'theirs', $1::text::jsonb)")
        .bind(
            json!({
                "sourceReference": {
                    "processInstanceId": "pi-1", "executionId": "ex-1",
                    "processDefinitionId": "elsewhere:1", "processDefinitionKey": "elsewhere",
                    "processName": "Elsewhere", "applicationName": APPLICATION
                },
                "taskDefinitionKey": "look", "name": "Look"
            })
            .to_string(),
        )
        .execute(&db.pool)
        .await
        .unwrap();
    // A standalone task (no process), of which the history knows nothing either.
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, priority_, create_time_) \
         VALUES ('solo', 1, 'Call', 50, now())",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    drain_once(&db.pool, 100).await.unwrap();
    camunda::uninstall(&db.pool).await.unwrap();
    sqlx::raw_sql(
        "DELETE FROM act_ru_task WHERE id_ IN ('done', 'gone', 'unknown', 'solo'); \
         UPDATE act_hi_taskinst SET end_time_ = now(), delete_reason_ = 'completed' \
         WHERE id_ = 'done'; \
         UPDATE act_hi_taskinst SET end_time_ = now(), delete_reason_ = 'cancelled by an admin' \
         WHERE id_ = 'gone'",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    camunda::install(&db.pool, &installation()).await.unwrap();
    let drained = drain_once(&db.pool, 100).await.unwrap();
    assert_eq!(drained.dead_letters, 0, "{drained:?}");
    camunda::install(&db.pool, &installation()).await.unwrap();
    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 0);
    for (task, ending) in [
        ("done", "TaskCompleted"),
        ("gone", "TaskDeleted"),
        ("unknown", "TaskCompleted"),
        ("solo", "TaskCompleted"),
    ] {
        let events = outbox_task_events(&db.pool, Some(&[task.to_string()])).await;
        let types: Vec<&str> = events.iter().map(|e| e.2.event_type.as_str()).collect();
        assert_eq!(types, ["TaskCreated", ending], "{task}");
    }
    for task in ["open", "theirs"] {
        let events = outbox_task_events(&db.pool, Some(&[task.to_string()])).await;
        assert!(!events.is_empty(), "{task} was created");
        assert!(
            events
                .iter()
                .all(|e| e.2.event_type != "TaskCompleted" && e.2.event_type != "TaskDeleted"),
            "{task} is not ended"
        );
    }
}

/// While the triggers are away (an uninstall that stopped once they were gone, its drain
/// failed, leaving the last states behind), the engine completes one task and assigns another.
/// `interrupted`: the next install then stops once its triggers are back, before catching up,
/// as when its process is killed there. The install after that records both changes.
async fn changes_while_detached_are_caught_up(interrupted: bool) {
    let db = engine_schema(Flavour::Operaton).await;
    camunda::install(&db.pool, &installation()).await.unwrap();
    add_check_tasks(&db.pool, &["done", "open"], &["done", "open"]).await;
    drain_once(&db.pool, 100).await.unwrap();
    sqlx::raw_sql(include_str!("../sql/camunda7_detach.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "DELETE FROM act_ru_task WHERE id_ = 'done'; \
         UPDATE act_hi_taskinst SET end_time_ = now(), delete_reason_ = 'completed' \
         WHERE id_ = 'done'; \
         UPDATE act_ru_task SET assignee_ = 'kermit', rev_ = 2 WHERE id_ = 'open'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    if interrupted {
        // What the install's first transaction commits, the triggers and the mark.
        sqlx::raw_sql(camunda::INSTALL)
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::raw_sql(
            "SELECT taskpool_camunda_watch_variables(); \
             INSERT INTO taskpool_camunda_catching_up DEFAULT VALUES",
        )
        .execute(&db.pool)
        .await
        .unwrap();
    }

    camunda::install(&db.pool, &installation()).await.unwrap();
    drain_once(&db.pool, 100).await.unwrap();
    let done = outbox_task_events(&db.pool, Some(&["done".to_string()])).await;
    let types: Vec<&str> = done.iter().map(|e| e.2.event_type.as_str()).collect();
    assert_eq!(types, ["TaskCreated", "TaskCompleted"]);
    let open = outbox_task_events(&db.pool, Some(&["open".to_string()])).await;
    let last = &open.last().unwrap().2;
    assert_eq!(
        (last.event_type.as_str(), last.task.assignee.as_deref()),
        ("TaskAssigned", Some("kermit"))
    );
}

#[tokio::test]
async fn changes_made_after_an_unfinished_uninstall_are_recorded_at_the_next_install() {
    changes_while_detached_are_caught_up(false).await;
}

#[tokio::test]
async fn an_install_interrupted_before_catching_up_is_caught_up_by_the_next() {
    changes_while_detached_are_caught_up(true).await;
}

/// An engine whose tables lack a column the capture reads is refused at install, naming it,
/// rather than failing each of the engine's commits that touch a task; nothing is installed.
#[tokio::test]
async fn an_engine_lacking_a_column_the_capture_reads_is_refused_at_install() {
    let db = engine_schema(Flavour::Operaton).await;
    sqlx::query("ALTER TABLE act_ru_task DROP COLUMN follow_up_date_")
        .execute(&db.pool)
        .await
        .unwrap();
    let refused = camunda::install(&db.pool, &installation())
        .await
        .unwrap_err();
    let refusal = format!("{refused:?}");
    assert!(
        refusal.contains("lack the column(s) act_ru_task.follow_up_date_,"),
        "{refusal}"
    );
    // The install's transaction rolled back: not even the tables made before the check stay.
    let left: (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('taskpool_camunda_settings') IS NOT NULL, \
         EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'taskpool_capture_%' \
                 AND tgrelid = 'act_ru_task'::regclass)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(left, (false, false), "nothing installed");
}
