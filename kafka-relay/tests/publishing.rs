//! The relay against real PostgreSQL and a real Kafka-protocol broker, in process.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_relay::Exit;
use kafka_relay::outbox::{self, Position};
use kafka_relay::retention;
use sqlx::Row;
use support::*;
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::PgStore;
use taskpool_core::domain::task::TaskAttributes;
use taskpool_schemas::{DecodedEvent, Payload};
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);

async fn every_committed_event_reaches_kafka_with_its_key_topic_headers_and_value(
    horizon: Horizon,
) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[])).await;

    world.commit(vec![created("t1"), created("t2")]).await;
    // Rolled back: must never reach Kafka.
    {
        let mut tx = world.db.pool.begin().await.unwrap();
        let mut collector = Collector::new();
        collector.record(assigned("t1", "rolled-back")).unwrap();
        collector.flush::<PgStore>(&mut *tx).await.unwrap();
        tx.rollback().await.unwrap();
    }
    for user in ["kermit", "piggy", "gonzo"] {
        world.commit(vec![assigned("t1", user)]).await;
    }
    world
        .commit(vec![EngineEvent::DataEntryChanged {
            entry_type: "io.shop.Order".into(),
            entry_id: "1".into(),
            content: Box::new(taskpool_core::domain::data_entry::DataEntryContent {
                type_name: "Order".into(),
                application_name: "shop".into(),
                name: "Order 1".into(),
                description: None,
                state: taskpool_schemas::DataEntryState {
                    processing_type: taskpool_schemas::ProcessingType::InProgress,
                    state: "new".into(),
                },
                payload: Payload::default(),
                correlations: vec![],
                authorized_users: Default::default(),
                authorized_groups: Default::default(),
                form_key: None,
            }),
            note: None,
        }])
        .await;

    let topics = [
        world.tasks_topic(),
        format!("{}.data-entries", world.prefix),
    ];
    let mut reader = KafkaReader::new(&world.bootstrap, &topics).await;
    reader
        .read_until("6 events", DEADLINE, |received| received.len() >= 6)
        .await;
    // Give a rolled-back or duplicated event the chance to show up too.
    reader.poll_for(Duration::from_millis(500));
    assert_eq!(reader.received.len(), 6, "exactly the committed events");

    let outbox_rows = sqlx::query(
        "SELECT event_id, aggregate_id, aggregate_version, event_type, payload FROM taskpool_outbox",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    let by_id: BTreeMap<String, _> = outbox_rows
        .iter()
        .map(|row| (row.get::<uuid::Uuid, _>("event_id").to_string(), row))
        .collect();
    for message in &reader.received {
        let row = by_id[&message.headers["event-id"]];
        assert_eq!(message.key, row.get::<String, _>("aggregate_id"));
        assert_eq!(message.payload, row.get::<Vec<u8>, _>("payload"));
        assert_eq!(
            message.headers["event-type"],
            row.get::<String, _>("event_type")
        );
        assert_eq!(message.version(), row.get::<i64, _>("aggregate_version"));
        assert!(message.headers["traceparent"].starts_with("00-"));
        assert!(message.headers["occurred-at"].ends_with('Z'));
        match message.event() {
            DecodedEvent::Task(event) => {
                assert_eq!(message.topic, world.tasks_topic());
                assert_eq!(event.task.id, message.key);
                assert_ne!(event.task.assignee.as_deref(), Some("rolled-back"));
            }
            DecodedEvent::DataEntry(event) => {
                assert_eq!(message.topic, topics[1]);
                assert_eq!(message.key, "io.shop.Order:1");
                assert_eq!(event.data_entry.entry_id, "1");
            }
        }
    }
    let t1_versions: Vec<i64> = reader
        .received
        .iter()
        .filter(|m| m.key == "t1")
        .map(Received::version)
        .collect();
    assert_eq!(t1_versions, [1, 2, 3, 4], "per-key order is version order");
    assert_eq!(relay.stop().await, Exit::Shutdown);
}

async fn relay_never_skips_a_transaction_that_commits_late(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;

    world.commit(vec![created("early")]).await;
    reader
        .read_until("the early event", DEADLINE, |r| r.len() == 1)
        .await;

    // The late transaction starts first and writes its events, but commits last.
    let mut late = world.db.pool.begin().await.unwrap();
    let mut collector = Collector::new();
    collector.record(created("late")).unwrap();
    collector.flush::<PgStore>(&mut *late).await.unwrap();

    for i in 0..5 {
        world.commit(vec![created(&format!("after-{i}"))]).await;
    }
    // Let the relay poll a good number of times while the late transaction is open.
    let reads = relay.reads();
    wait_for("20 more outbox reads", DEADLINE, || async {
        (relay.reads() >= reads + 20).then_some(())
    })
    .await;
    late.commit().await.unwrap();

    reader
        .read_until("all 7 events", DEADLINE, |r| r.len() >= 7)
        .await;
    let keys: std::collections::BTreeSet<&str> =
        reader.received.iter().map(|m| m.key.as_str()).collect();
    assert!(
        keys.contains("late"),
        "the late transaction's event was published"
    );
    assert_eq!(keys.len(), 7);
    relay.stop().await;
}

async fn a_message_over_the_size_limit_is_dead_lettered_and_the_rest_is_published(
    horizon: Horizon,
) {
    let world = World::new().await.with_horizon(horizon);
    let relay =
        RunningRelay::start(world.relay_config(&[("KAFKA__MESSAGE_MAX_BYTES", "20000")])).await;

    world.commit(vec![created("before")]).await;
    let mut huge = new_task("huge");
    huge.payload = Payload::from_value(serde_json::json!({ "blob": "x".repeat(50_000) })).unwrap();
    world
        .commit(vec![EngineEvent::TaskCreated {
            task_id: "huge".into(),
            task: huge,
        }])
        .await;
    world
        .commit(vec![created("after"), assigned("before", "kermit")])
        .await;

    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    reader
        .read_until("the events around the huge one", DEADLINE, |r| r.len() >= 3)
        .await;
    let keys: Vec<&str> = reader.received.iter().map(|m| m.key.as_str()).collect();
    assert!(!keys.contains(&"huge"));

    let dead: (String, String, i64) = wait_for("the dead letter", DEADLINE, || async {
        sqlx::query_as(
            "SELECT aggregate_id, reason, aggregate_version FROM taskpool_relay_dead_letters \
             WHERE relay_name = $1",
        )
        .bind(&world.relay_name)
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(dead.0, "huge");
    assert!(
        dead.1.to_lowercase().contains("too large"),
        "reason: {}",
        dead.1
    );
    assert_eq!(dead.2, 1);
    assert_eq!(
        relay
            .metrics
            .dead_letters
            .with_label_values(&[&world.tasks_topic()])
            .get(),
        1
    );
    relay.stop().await;
}

async fn in_halt_mode_a_message_over_the_size_limit_stops_publishing_before_it(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[
        ("KAFKA__MESSAGE_MAX_BYTES", "20000"),
        ("RELAY__ON_PERMANENT_FAILURE", "halt"),
    ]))
    .await;
    world.commit(vec![created("before")]).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    reader
        .read_until("the first event", DEADLINE, |r| r.len() == 1)
        .await;
    // The relay stores its position once the broker acknowledged the send, which can be after
    // a reader got the message: wait until the stored position covers "before".
    let before: i64 =
        sqlx::query_scalar("SELECT position FROM taskpool_outbox WHERE aggregate_id = 'before'")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    let stored = wait_for("the position past the first event", DEADLINE, || async {
        let stored = outbox::load_position(&world.db.pool, &world.relay_name)
            .await
            .unwrap();
        (stored.position >= before).then_some(stored)
    })
    .await;

    let mut huge = new_task("huge");
    huge.payload = Payload::from_value(serde_json::json!({ "blob": "x".repeat(50_000) })).unwrap();
    world
        .commit(vec![EngineEvent::TaskCreated {
            task_id: "huge".into(),
            task: huge,
        }])
        .await;

    wait_for("the relay to halt", DEADLINE, || async {
        (relay.metrics.halted.get() == 1).then_some(())
    })
    .await;
    assert!(matches!(relay.stop().await, Exit::Halted { .. }));
    let after = outbox::load_position(&world.db.pool, &world.relay_name)
        .await
        .unwrap();
    assert_eq!(
        after, stored,
        "the position did not move past the refused event"
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_relay_dead_letters")
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0);
}

async fn retention_deletes_only_published_rows_older_than_the_age(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    world.commit(vec![created("a"), created("b")]).await;
    world.commit(vec![created("c")]).await;
    let published = wait_for("3 published events", DEADLINE, || async {
        let position = outbox::load_position(&world.db.pool, &world.relay_name)
            .await
            .unwrap();
        (position.position >= 3).then_some(position)
    })
    .await;
    relay.stop().await;
    // Committed after the relay stopped: not published yet.
    world.commit(vec![created("d"), created("e")]).await;

    let pool = &world.db.pool;
    assert_eq!(
        retention::delete_batch(pool, Duration::from_secs(3600), 100)
            .await
            .unwrap(),
        0,
        "young rows stay"
    );
    assert_eq!(
        retention::delete_batch(pool, Duration::ZERO, 2)
            .await
            .unwrap(),
        2,
        "bounded batch"
    );
    assert_eq!(
        retention::delete_batch(pool, Duration::ZERO, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        retention::delete_batch(pool, Duration::ZERO, 100)
            .await
            .unwrap(),
        0
    );
    let left: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM taskpool_outbox ORDER BY position")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(left, ["d", "e"], "unpublished rows are never deleted");
    let _ = published;
}

async fn the_relay_applies_retention_while_it_leads(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[
        ("RETENTION__MAX_AGE_SECS", "1"),
        ("RETENTION__INTERVAL_SECS", "1"),
    ]))
    .await;
    world.commit(vec![created("a"), created("b")]).await;
    wait_for("published rows to be deleted", DEADLINE, || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_outbox")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
        // The counter goes up once the delete's reply came back, just after its commit.
        (left == 0 && relay.metrics.deleted_by_retention.get() >= 2).then_some(())
    })
    .await;
    assert_eq!(relay.metrics.deleted_by_retention.get(), 2);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_clear_error_unless_topic_creation_is_on() {
    let world = World::new().await;
    let config = world.relay_config(&[("KAFKA__CREATE_TOPICS", "false")]);
    let error = kafka_relay::Relay::connect(config, Default::default())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&world.tasks_topic()), "{text}");
    assert!(text.contains("create_topics"), "{text}");
}

/// A trigger that goes away (its owner panicked or returned) stops the relay like a call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_shutdown_trigger_stops_the_relay() {
    let world = World::new().await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    world.commit(vec![created("leading")]).await;
    reader
        .read_until("the event", DEADLINE, |r| !r.is_empty())
        .await;
    let exit = relay.drop_trigger().await;
    assert!(matches!(exit, Some(Exit::Shutdown)), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_event_topics_keep_their_events_and_command_topics_the_default() {
    let world = World::new().await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let retention = topic_retention(&world, &[world.tasks_topic(), commands_topic(&world)]).await;
    assert_eq!(retention[0].as_deref(), Some("-1"), "the events' topic");
    assert_ne!(retention[1].as_deref(), Some("-1"), "the commands' topic");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_migrations_the_writers_horizon_is_a_clear_error_at_start() {
    // The world ran the outbox's migrations only, not the relay's.
    let world = World::new().await;
    let config = world.relay_config(&[("DATABASE__MIGRATE", "false")]);
    let error = kafka_relay::Relay::connect(config, Default::default())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("relay.horizon"), "{text}");
    assert!(text.contains("database.migrate = true"), "{text}");
    // The server-wide horizon needs nothing more.
    let config = world.relay_config(&[
        ("DATABASE__MIGRATE", "false"),
        ("RELAY__HORIZON", "all-transactions"),
    ]);
    assert!(
        kafka_relay::Relay::connect(config, Default::default())
            .await
            .is_ok()
    );
}

async fn events_of_an_existing_task_keep_their_order_across_batches(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let relay = RunningRelay::start(world.relay_config(&[("RELAY__BATCH_SIZE", "7")])).await;
    world.commit(vec![created("t")]).await;
    for i in 0..60 {
        world
            .commit(vec![EngineEvent::TaskAttributesChanged {
                task_id: "t".into(),
                attributes: Box::new(TaskAttributes {
                    priority: Some(i),
                    ..TaskAttributes::default()
                }),
            }])
            .await;
    }
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    reader
        .read_until("61 events", DEADLINE, |r| r.len() >= 61)
        .await;
    let versions: Vec<i64> = reader.received.iter().map(Received::version).collect();
    assert_eq!(versions, (1..=61).collect::<Vec<_>>());
    relay.stop().await;
    let _ = Position::default();
}

with_either_horizon!(
    every_committed_event_reaches_kafka_with_its_key_topic_headers_and_value,
    relay_never_skips_a_transaction_that_commits_late,
    a_message_over_the_size_limit_is_dead_lettered_and_the_rest_is_published,
    in_halt_mode_a_message_over_the_size_limit_stops_publishing_before_it,
    retention_deletes_only_published_rows_older_than_the_age,
    the_relay_applies_retention_while_it_leads,
    events_of_an_existing_task_keep_their_order_across_batches,
);
