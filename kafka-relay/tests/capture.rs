//! Events an engine records through SQL (decision 0026), drained by the relay and published:
//! with the relay process killed (SIGKILL) at random moments while the engine records, every
//! recorded event is in the outbox once, reaches Kafka, and each task's versions keep the
//! engine's order.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const DEADLINE: Duration = Duration::from_secs(120);
const TASKS: usize = 20;
const CHANGES: usize = 600;

fn created_fields(task: &str) -> String {
    json!({
        "sourceReference": {
            "processInstanceId": format!("pi-{task}"), "executionId": "ex",
            "processDefinitionId": "order:1", "processDefinitionKey": "order",
            "processName": "Order", "applicationName": "shop"
        },
        "taskDefinitionKey": "approve",
        "name": format!("Approve {task}"),
        "candidateGroups": ["muppets"]
    })
    .to_string()
}

/// An engine that records one change per transaction through SQL: each task created, then
/// reassigned over and over. Returns the assignee each task had last.
async fn record_changes(pool: sqlx::PgPool) -> Vec<String> {
    let mut last = vec![String::new(); TASKS];
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    for change in 0..CHANGES {
        pace.tick().await;
        let slot = change % TASKS;
        let task = format!("task-{slot}");
        let mut tx = pool.begin().await.unwrap();
        if change < TASKS {
            sqlx::query("SELECT taskpool_record_task_event('created', $1, $2::text::jsonb)")
                .bind(&task)
                .bind(created_fields(&task))
                .execute(&mut *tx)
                .await
                .unwrap();
        } else {
            let assignee = format!("user-{change}");
            sqlx::query("SELECT taskpool_record_task_event('assigned', $1, $2::text::jsonb)")
                .bind(&task)
                .bind(json!({ "assignee": assignee }).to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            last[slot] = assignee;
        }
        tx.commit().await.unwrap();
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_survive_a_relay_killed_at_random_moments() {
    let world = World::new().await;
    let mut env = world.relay_env();
    env.insert(
        format!("{}CAPTURE__ENABLED", kafka_relay::config::ENV_PREFIX),
        "true".into(),
    );
    let engine = tokio::spawn(record_changes(world.db.pool.clone()));
    let mut kills = 0;
    while !engine.is_finished() {
        let mut relay = RelayProcess::spawn(&env);
        let alive_for = Duration::from_millis(random_between(200, 1500));
        if tokio::time::timeout(alive_for, relay.child.wait())
            .await
            .is_ok()
        {
            panic!("the relay exited by itself:\n{}", relay.log_text());
        }
        relay.signal("KILL");
        relay.child.wait().await.unwrap();
        kills += 1;
    }
    let last_assignees = engine.await.unwrap();
    assert!(kills >= 2, "only {kills} kills happened");

    let mut relay = RelayProcess::spawn(&env);
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    let give_up = Instant::now() + DEADLINE;
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_capture")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
        let expected = outbox_event_ids(&world.db.pool).await;
        let ids = reader.event_ids();
        if queued == 0 && expected.iter().all(|id| ids.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{queued} queued, not every event arrived"
        );
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(500)));
    }
    relay.signal("TERM");
    assert!(relay.child.wait().await.unwrap().success());

    // One transaction, one event: exactly one outbox row per recorded change.
    assert_eq!(outbox_event_ids(&world.db.pool).await.len(), CHANGES);
    assert_first_occurrences_in_version_order(&reader.received);
    for (slot, assignee) in last_assignees.iter().enumerate() {
        let task = format!("task-{slot}");
        let newest = reader
            .received
            .iter()
            .filter(|m| m.key == task)
            .max_by_key(|m| m.version())
            .expect("the task's events");
        assert_eq!(newest.version(), (CHANGES / TASKS) as i64, "{task}");
        let taskpool_schemas::DecodedEvent::Task(event) = newest.event() else {
            panic!("not a task event");
        };
        assert_eq!(event.task.assignee.as_deref(), Some(assignee.as_str()));
    }
    eprintln!("{kills} kills, {} messages", reader.received.len());
}
