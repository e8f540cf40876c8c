//! The tasklist benchmarks' world: unique topics and databases on the servers of
//! `KAFKA_BOOTSTRAP` and `MONGODB_URI`, task events produced to them, the service's settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tasklist_api::config::{Config, Layered};
use tasklist_api::mongo::store::MongoStore;
use taskpool_schemas::{TaskEvent, TaskState, encode};
use taskpool_service::shutdown;
use taskpool_tasklist::metrics::Metrics;
use taskpool_testkit::fixtures;

use crate::server_env;
use crate::setup::BenchResult;

pub(crate) const PARTITIONS: i32 = 6;

pub(crate) fn unique(name: &str) -> String {
    format!(
        "bench{name}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Task `id`'s event at `version`, offered to `groups`.
pub(crate) fn task_event(id: &str, version: i64, groups: &[&str]) -> TaskEvent {
    fixtures::task_event(id, version, None, groups, TaskState::Active)
}

pub(crate) fn config(database: &str, prefix: &str, trusted_headers: bool) -> BenchResult<Config> {
    let mut env = vec![
        ("MONGODB__URI", server_env("MONGODB_URI")?),
        ("MONGODB__DATABASE", database.to_string()),
        ("KAFKA__BOOTSTRAP_SERVERS", server_env("KAFKA_BOOTSTRAP")?),
        ("KAFKA__TOPIC_PREFIX", prefix.to_string()),
        ("KAFKA__GROUP_ID", format!("{prefix}-group")),
        ("HTTP__LISTEN", "127.0.0.1:0".to_string()),
        ("LOG__LEVEL", "warn".to_string()),
        // Thousands of clients from a few loopback addresses: no per-address cap.
        ("HTTP__MAX_CONNECTIONS_PER_ADDRESS", "0".to_string()),
    ];
    if trusted_headers {
        env.push(("IDENTITY__TRUSTED_HEADERS", "true".into()));
    } else {
        env.push((
            "IDENTITY__HS256_SECRET",
            "benchmark-secret-benchmark-secret-x".into(),
        ));
    }
    Config::from_sources(
        "",
        env.into_iter().map(tasklist_api::config::Config::env_var),
    )
    .map_err(|e| e.to_string())
}

pub(crate) async fn create_topics(prefix: &str) -> BenchResult<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", server_env("KAFKA_BOOTSTRAP")?)
        .create()
        .map_err(|e| e.to_string())?;
    let topics = [format!("{prefix}.tasks"), format!("{prefix}.data-entries")];
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub(crate) async fn drop_database(store: &MongoStore) {
    let _ = store.database().drop().await;
}

/// Sends task events to the prefix's tasks topic, keyed by task, and waits for every
/// acknowledgement.
pub(crate) async fn produce(prefix: &str, events: &[TaskEvent]) -> BenchResult<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", server_env("KAFKA_BOOTSTRAP")?)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let topic = format!("{prefix}.tasks");
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let bytes = encode(event).map_err(|e| e.to_string())?;
        let mut record = FutureRecord::to(&topic).key(&event.task.id).payload(&bytes);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_, returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for result in futures::future::join_all(pending).await {
        if !matches!(result, Ok(Ok(_))) {
            return Err("producing the events failed".into());
        }
    }
    Ok(())
}

/// The projection from the first offset into a fresh database, until it consumed `events`:
/// events per second from its first durable batch (the group's join is not part of it) to the
/// last, and how many events that first batch held.
pub(crate) async fn project(prefix: &str, events: u64) -> BenchResult<(f64, u64)> {
    let settings = config(&unique("incremental"), prefix, false)?;
    let metrics = Arc::new(Metrics::default());
    let store = MongoStore::connect(&settings.mongodb, metrics.clone())
        .await
        .map_err(|e| e.to_string())?;
    store.ensure_indexes().await.map_err(|e| e.to_string())?;
    let (trigger, stop) = shutdown::channel();
    let running = tokio::spawn(tasklist_api::kafka::projection::run(
        settings.kafka.clone(),
        store.clone(),
        metrics.clone(),
        stop,
    ));
    while metrics.consumed_events.get() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let first_batch = metrics.consumed_events.get();
    while metrics.consumed_events.get() < events {
        if running.is_finished() {
            return Err("the projection stopped early".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (events - first_batch) as f64 / started.elapsed().as_secs_f64();
    trigger.trigger();
    let _ = running.await;
    drop_database(&store).await;
    Ok((rate, first_batch))
}
