//! `relay` and `relay-latency`: the relay against a raw producer, and commit-to-delivery
//! latency, on real PostgreSQL and the broker of `KAFKA_BOOTSTRAP`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kafka_relay::config::{Config, Layered};
use kafka_relay::metrics::Metrics;
use kafka_relay::publisher::{Topics, producer_config};
use kafka_relay::{Relay, shutdown};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row;
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::PgStore;
use taskpool_schemas::Payload;

use crate::held_open::HeldOpen;
use crate::outbox::new_task;
use crate::setup::{BenchResult, Scratch, err};
use crate::stats::Samples;
use crate::topics::{delete_topics, unique_prefix};
use crate::{Options, server_env};

const PARTITIONS: &str = "6";

/// The relay's configuration for a benchmark, with `(SECTION__KEY, value)` overrides.
pub(crate) fn relay_config_with(
    scratch: &Scratch,
    prefix: &str,
    bootstrap: &str,
    overrides: &[(String, String)],
) -> BenchResult<Config> {
    let env = [
        ("DATABASE__URL", scratch.url()),
        ("KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_string()),
        ("KAFKA__TOPIC_PREFIX", prefix.to_string()),
        ("KAFKA__CREATE_TOPICS", "true".into()),
        ("KAFKA__PARTITIONS", PARTITIONS.into()),
        ("RELAY__NAME", prefix.to_string()),
        ("HTTP__LISTEN", "127.0.0.1:0".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into_iter()
    .chain(overrides.iter().cloned())
    .map(kafka_relay::config::Config::env_var);
    Config::from_sources("", env).map_err(|e| e.to_string())
}

/// A task whose encoded event is about 1 KB.
fn kilobyte_task() -> taskpool_core::domain::task::NewTask {
    let mut task = new_task();
    task.payload = Payload::from_value(serde_json::json!({
        "customer": "ACME Corporation",
        "notes": "x".repeat(560),
    }))
    .unwrap_or_default();
    task
}

/// The relay setting of `--horizon`, checked by the relay's own configuration.
fn horizon_override(options: &Options) -> Vec<(String, String)> {
    options
        .text("horizon")
        .map(|horizon| ("RELAY__HORIZON".to_string(), horizon.to_string()))
        .into_iter()
        .collect()
}

pub async fn throughput(options: &Options) -> BenchResult<()> {
    let events = options.number("events", 100_000)?;
    let rounds = options.number("rounds", 3)?.max(1);
    let mut overrides = horizon_override(options);
    for (option, key) in [
        ("batch-size", "RELAY__BATCH_SIZE"),
        ("in-flight", "RELAY__MAX_IN_FLIGHT_BATCHES"),
    ] {
        if let Some(value) = options.text(option) {
            overrides.push((key.to_string(), value.to_string()));
        }
    }
    if let Some(codec) = options.text("compression") {
        overrides.push(("KAFKA__COMPRESSION".to_string(), codec.to_string()));
    }
    // --tls: the broker's SSL listener, for the relay and the raw producer alike.
    let bootstrap = if options.switch("tls")? {
        overrides.push(("KAFKA__SECURITY__PROTOCOL".to_string(), "SSL".to_string()));
        overrides.push((
            "KAFKA__SECURITY__SSL_CA_LOCATION".to_string(),
            server_env("TASKPOOL_TLS_CA")?,
        ));
        server_env("KAFKA_TLS_BOOTSTRAP")?
    } else {
        server_env("KAFKA_BOOTSTRAP")?
    };
    let scratch = Scratch::new(4).await?;
    let outcome = measure_throughput(&scratch, &bootstrap, events, rounds, &overrides).await;
    scratch.drop_schema().await?;
    outcome
}

async fn measure_throughput(
    scratch: &Scratch,
    bootstrap: &str,
    events: u64,
    rounds: u64,
    overrides: &[(String, String)],
) -> BenchResult<()> {
    eprintln!("pre-filling {events} outbox events ...");
    let mut next = 0u64;
    while next < events {
        let mut tx = scratch.pool.begin().await.map_err(err("begin"))?;
        let mut collector = Collector::new();
        for _ in 0..1000.min(events - next) {
            next += 1;
            collector
                .record(EngineEvent::TaskCreated {
                    task_id: format!("task-{next}"),
                    task: Box::new(kilobyte_task()),
                })
                .map_err(|e| e.to_string())?;
        }
        collector
            .flush::<PgStore>(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(err("commit"))?;
    }
    let rows = sqlx::query(
        "SELECT aggregate_id, payload, event_id, event_type, aggregate_version, headers::text AS headers \
         FROM taskpool_outbox ORDER BY position",
    )
    .fetch_all(&scratch.pool)
    .await
    .map_err(err("read outbox"))?;
    let messages: Vec<RawMessage> = rows.iter().map(RawMessage::from_row).collect();
    let average = messages.iter().map(|m| m.payload.len()).sum::<usize>() / messages.len().max(1);

    // Alternate relay and raw producer; each relay round drains the whole outbox again under a
    // new relay name (its own position) to new topics. The medians are compared.
    let mut relay_times = Vec::new();
    let mut raw_times = Vec::new();
    for _ in 0..rounds {
        relay_times.push(time_relay(scratch, bootstrap, events, overrides).await?);
        raw_times.push(time_raw_producer(scratch, bootstrap, &messages, overrides).await?);
    }
    let relay_seconds = median(&mut relay_times);
    let raw_seconds = median(&mut raw_times);
    let relay_rate = events as f64 / relay_seconds;
    let raw_rate = events as f64 / raw_seconds;
    println!(
        "relay benchmark: {events} events of about {average} bytes, {PARTITIONS} partitions, median of {rounds} alternating rounds; {}",
        settings(overrides)
    );
    println!("{:<40} {:>10} {:>12}", "", "seconds", "events/s");
    println!(
        "{:<40} {relay_seconds:>10.2} {relay_rate:>12.0}",
        "relay: outbox -> Kafka, acknowledged"
    );
    println!(
        "{:<40} {raw_seconds:>10.2} {raw_rate:>12.0}",
        "raw rdkafka producer, same settings"
    );
    println!(
        "RESULT relay_events_per_s={relay_rate:.0} raw_producer_events_per_s={raw_rate:.0} relay_vs_raw_ratio={:.3}",
        relay_rate / raw_rate
    );
    Ok(())
}

pub async fn latency(options: &Options) -> BenchResult<()> {
    let rate = options.number("rate", 500)?;
    let seconds = options.number("seconds", 30)?;
    let long_tx = options.switch("long-tx")?;
    let bootstrap = server_env("KAFKA_BOOTSTRAP")?;
    let scratch = Scratch::new(4).await?;
    let overrides = horizon_override(options);
    let outcome = measure_latency(&scratch, &bootstrap, rate, seconds, long_tx, &overrides).await;
    scratch.drop_schema().await?;
    outcome
}

async fn measure_latency(
    scratch: &Scratch,
    bootstrap: &str,
    rate: u64,
    seconds: u64,
    long_tx: bool,
    overrides: &[(String, String)],
) -> BenchResult<()> {
    let prefix = unique_prefix("latency");
    let config = relay_config_with(scratch, &prefix, bootstrap, overrides)?;
    let horizon = config.relay.horizon;
    let metrics = Arc::new(Metrics::default());
    let mut relay = Relay::connect(config, metrics)
        .await
        .map_err(|e| e.to_string())?;
    let (deliveries, mut acknowledged) = tokio::sync::mpsc::unbounded_channel();
    relay.observe_deliveries(deliveries);
    let (trigger, shutdown) = shutdown::channel();
    let running = tokio::spawn(relay.run(shutdown));

    // Warm-up: the relay leads and publishes before measuring.
    commit_task(scratch, "warm-up").await?;
    tokio::time::timeout(Duration::from_secs(60), acknowledged.recv())
        .await
        .map_err(|_| "the warm-up event was not acknowledged within 60 s".to_string())?;

    let held_open = match long_tx {
        true => Some(HeldOpen::open(scratch).await?),
        false => None,
    };
    // The writer: one TaskCreated per transaction, at a steady rate.
    let total = rate * seconds;
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let mut pace = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        pace.tick().await;
        let key = format!("task-{n}");
        commit_task(scratch, &key).await?;
        committed.insert(key, Instant::now());
    }
    // Closed once everything is committed: with the server-wide horizon nothing arrives before.
    if let Some(held_open) = held_open {
        held_open.close().await?;
    }
    let mut arrivals: HashMap<String, Instant> = HashMap::new();
    while (arrivals.len() as u64) < total {
        match tokio::time::timeout(Duration::from_secs(60), acknowledged.recv()).await {
            Ok(Some(delivered)) => {
                arrivals
                    .entry(delivered.aggregate_id)
                    .or_insert(delivered.acknowledged_at);
            }
            _ => return Err("events were not acknowledged within 60 s".into()),
        }
    }
    trigger.trigger();
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    delete_topics(&prefix).await;

    let mut samples = Samples::default();
    for (key, at) in &committed {
        match arrivals.get(key) {
            Some(arrived) => samples.push(arrived.saturating_duration_since(*at)),
            None => return Err(format!("event {key} never arrived")),
        }
    }
    let (p50, p99) = (samples.percentile_ms(50.0), samples.percentile_ms(99.0));
    let held = match long_tx {
        true => ", writing transactions held open all along",
        false => "",
    };
    println!(
        "relay-latency benchmark: {rate} events/s for {seconds} s, one TaskCreated per transaction, horizon {horizon:?}{held}"
    );
    println!(
        "commit -> acknowledged by Kafka: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        samples.percentile_ms(100.0)
    );
    println!("RESULT relay_latency_p50_ms={p50:.1} relay_latency_p99_ms={p99:.1}");
    Ok(())
}

/// Commits one engine transaction recording one TaskCreated.
async fn commit_task(scratch: &Scratch, task_id: &str) -> BenchResult<()> {
    let mut tx = scratch.pool.begin().await.map_err(err("begin"))?;
    let mut collector = Collector::new();
    collector
        .record(EngineEvent::TaskCreated {
            task_id: task_id.to_string(),
            task: Box::new(kilobyte_task()),
        })
        .map_err(|e| e.to_string())?;
    collector
        .flush::<PgStore>(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(err("commit"))
}

/// An outbox row as the raw producer sends it: the same key, value and headers as the relay.
struct RawMessage {
    key: String,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl RawMessage {
    fn from_row(row: &sqlx::postgres::PgRow) -> RawMessage {
        let mut headers = vec![
            (
                "event-id".to_string(),
                row.get::<uuid::Uuid, _>("event_id").to_string(),
            ),
            ("event-type".to_string(), row.get::<String, _>("event_type")),
            (
                "aggregate-version".to_string(),
                row.get::<i64, _>("aggregate_version").to_string(),
            ),
        ];
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.get::<String, _>("headers")).unwrap_or_default();
        headers.extend(
            extra
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))),
        );
        RawMessage {
            key: row.get("aggregate_id"),
            payload: row.get("payload"),
            headers,
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The settings a run overrides, for its heading.
fn settings(overrides: &[(String, String)]) -> String {
    let named: Vec<String> = overrides
        .iter()
        .filter(|(key, _)| !key.ends_with("SSL_CA_LOCATION"))
        .map(|(key, value)| format!("{}={value}", key.to_lowercase().replace("__", ".")))
        .collect();
    if named.is_empty() {
        "default settings".to_string()
    } else {
        named.join(", ")
    }
}

/// Seconds for a fresh relay to drain `events` outbox rows to new topics.
async fn time_relay(
    scratch: &Scratch,
    bootstrap: &str,
    events: u64,
    overrides: &[(String, String)],
) -> BenchResult<f64> {
    let prefix = unique_prefix("relay");
    let config = relay_config_with(scratch, &prefix, bootstrap, overrides)?;
    let metrics = Arc::new(Metrics::default());
    let relay = Relay::connect(config, metrics.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (trigger, shutdown) = shutdown::channel();
    let started = Instant::now();
    let running = tokio::spawn(relay.run(shutdown));
    while metrics.published_events.get() < events {
        if running.is_finished() {
            return Err("the relay stopped early".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    trigger.trigger();
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    delete_topics(&prefix).await;
    Ok(seconds)
}

/// Seconds for a raw producer with the relay's settings to deliver the same messages.
async fn time_raw_producer(
    scratch: &Scratch,
    bootstrap: &str,
    messages: &[RawMessage],
    overrides: &[(String, String)],
) -> BenchResult<f64> {
    let prefix = unique_prefix("raw");
    let config = relay_config_with(scratch, &prefix, bootstrap, overrides)?.kafka;
    let topic = Topics::new(&prefix).tasks;
    kafka_relay::publisher::Publisher::new(&config)
        .map_err(|e| e.to_string())?
        .ensure_topics(&config)
        .await
        .map_err(|e| e.to_string())?;
    let producer: FutureProducer = producer_config(&config)
        .create()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(messages.len());
    for message in messages {
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(&topic)
            .key(message.key.as_bytes())
            .payload(message.payload.as_slice())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for outcome in join_all(deliveries).await {
        if !matches!(outcome, Ok(Ok(_))) {
            return Err("the raw producer failed to deliver".into());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    delete_topics(&prefix).await;
    Ok(seconds)
}
