//! The distributed pipeline end to end, with a figure per stage: the demo engine commits on
//! PostgreSQL at a steady rate of events per second; the relay publishes to the broker;
//! `tasklist-api` consumes into MongoDB and streams to a client per demo user. A separate
//! consumer of the topic marks when each event can be fetched, and a probe measures the
//! MongoDB-wire server's change stream alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kafka_relay::Relay;
use kafka_relay::metrics::Metrics as RelayMetrics;
use mongodb::bson::{Document, doc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use taskpool_core::PgStore;
use taskpool_demo::{Demo, DemoConfig};
use taskpool_schemas::{DecodedEvent, decode};
use taskpool_service::shutdown;
use tokio::sync::mpsc;

use crate::receipts::{Arrivals, Driven, Version, drive, open_clients};
use crate::relay::relay_config_with;
use crate::setup::{BenchResult, Scratch};
use crate::stats::Samples;
use crate::tasklist_service;
use crate::topics::{delete_topics, unique_prefix};
use crate::{Options, server_env};

pub async fn run(options: &Options) -> BenchResult<()> {
    let rate = options.number("rate", 200)?;
    let seconds = options.number("seconds", 20)?;
    let bootstrap = server_env("KAFKA_BOOTSTRAP")?;
    let mongo_uri = server_env("MONGODB_URI")?;
    let scratch = Scratch::new(8).await?;
    let prefix = unique_prefix("e2e");
    let outcome = measure(
        &scratch, &bootstrap, &mongo_uri, &prefix, options, rate, seconds,
    )
    .await;
    delete_topics(&prefix).await;
    scratch.drop_schema().await?;
    let change_stream = probe_change_stream(&mongo_uri).await?;
    let (stages, events_per_s) = outcome?;
    println!(
        "end to end: demo on PostgreSQL -> relay -> broker -> tasklist-api on MongoDB -> streams"
    );
    println!("{:<34} {:>9} {:>9}", "stage", "p50 ms", "p99 ms");
    for (name, samples) in &stages {
        println!(
            "{name:<34} {:>9.1} {:>9.1}",
            samples.percentile_ms(50.0),
            samples.percentile_ms(99.0)
        );
    }
    println!(
        "{:<34} {:>9.1} {:>9.1}",
        "(probe) MongoDB write -> change stream",
        change_stream.percentile_ms(50.0),
        change_stream.percentile_ms(99.0)
    );
    let total = &stages.last().ok_or("no stages")?.1;
    println!(
        "RESULT e2e_events_per_s={events_per_s:.0} e2e_p50_ms={:.1} e2e_p99_ms={:.1}",
        total.percentile_ms(50.0),
        total.percentile_ms(99.0)
    );
    Ok(())
}

type Stages = Vec<(&'static str, Samples)>;

async fn measure(
    scratch: &Scratch,
    bootstrap: &str,
    mongo_uri: &str,
    prefix: &str,
    options: &Options,
    rate: u64,
    seconds: u64,
) -> BenchResult<(Stages, f64)> {
    let users = DemoConfig::default().dev_sign_in_users();
    let mut overrides = vec![("RELAY__BATCH_SIZE".to_string(), "500".to_string())];
    if let Some(poll) = options.text("relay-poll-max-ms") {
        overrides.push(("RELAY__POLL_MAX_MS".into(), poll.into()));
    }
    let relay_config = relay_config_with(scratch, prefix, bootstrap, &overrides)?;
    let mut relay = Relay::connect(relay_config, Arc::new(RelayMetrics::default()))
        .await
        .map_err(|e| format!("relay: {e}"))?;
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    relay.observe_deliveries(acks_tx);
    let (trigger, stop) = shutdown::channel();
    let relay_task = tokio::spawn(relay.run(stop.clone()));

    let mut env = tasklist_service::settings(mongo_uri, bootstrap, prefix, &users);
    for (name, key) in [
        ("batch-wait-ms", "KAFKA__BATCH_WAIT_MS"),
        ("fetch-wait-ms", "KAFKA__CONSUMER__FETCH_WAIT_MAX_MS"),
    ] {
        if let Some(value) = options.text(name) {
            env.push((key.to_string(), value.to_string()));
        }
    }
    let (address, tasklist) = tasklist_service::start(env, stop.clone()).await?;

    // A consumer of its own: when each event can first be fetched from the broker.
    let (fetched_tx, mut fetched) = mpsc::unbounded_channel::<(Version, Instant)>();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{prefix}-probe"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Asks the broker again every 5 ms: the moment an event becomes fetchable, not the
        // moment a waiting fetch is answered.
        .set("fetch.wait.max.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .subscribe(&[&format!("{prefix}.tasks")])
        .map_err(|e| e.to_string())?;
    let probe = tokio::spawn(async move {
        loop {
            let Ok(message) = consumer.recv().await else {
                continue;
            };
            let at = Instant::now();
            if let Some(Ok(DecodedEvent::Task(event))) = message.payload().map(decode)
                && fetched_tx
                    .send(((event.task.id, event.version), at))
                    .is_err()
            {
                return;
            }
        }
    });

    let mut demo = Demo::<PgStore>::prepare(
        scratch.pool.clone(),
        DemoConfig {
            seed: Some(rate),
            active_requests: 200,
            ..DemoConfig::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let (clients, mut received) = open_clients(&address).await;

    // Warm-up: until a change made it all the way, and to the probe consumer (consumers
    // joined, topics known).
    let warm = Instant::now();
    let (mut to_clients, mut to_probe) = (false, false);
    loop {
        demo.step().await.map_err(|e| e.to_string())?;
        let wait = Duration::from_millis(500);
        to_clients |= tokio::time::timeout(wait, received.recv()).await.is_ok();
        to_probe |= tokio::time::timeout(wait, fetched.recv()).await.is_ok();
        if to_clients && to_probe {
            break;
        }
        if warm.elapsed() > Duration::from_secs(60) {
            return Err("nothing reached a stream client within 60 s".into());
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while received.try_recv().is_ok() {}
    while acks.try_recv().is_ok() {}
    while fetched.try_recv().is_ok() {}

    let Driven {
        committed,
        events_per_s,
        ..
    } = drive(&mut demo, rate, seconds).await?;
    let arrivals = Arrivals::collect(&mut received, &committed, Duration::from_secs(10)).await;
    let mut acked: HashMap<Version, Instant> = HashMap::new();
    while let Ok(delivered) = acks.try_recv() {
        acked.insert(
            (delivered.aggregate_id, delivered.version),
            delivered.acknowledged_at,
        );
    }
    let mut fetched_at: HashMap<Version, Instant> = HashMap::new();
    while let Ok((version, at)) = fetched.try_recv() {
        fetched_at.entry(version).or_insert(at);
    }

    let mut stages: Stages = vec![
        ("commit -> relay acknowledged", Samples::default()),
        ("acknowledged -> fetchable", Samples::default()),
        ("fetchable -> stream client", Samples::default()),
        ("commit -> stream client (total)", Samples::default()),
    ];
    for (version, commit) in &committed {
        let (Some(ack), Some(fetch), Some(client)) = (
            acked.get(version),
            fetched_at.get(version),
            arrivals.first(version),
        ) else {
            continue;
        };
        stages[0].1.push(ack.saturating_duration_since(*commit));
        stages[1].1.push(fetch.saturating_duration_since(*ack));
        stages[2].1.push(client.saturating_duration_since(*fetch));
        stages[3].1.push(client.saturating_duration_since(*commit));
    }
    trigger.trigger();
    probe.abort();
    for client in clients {
        client.abort();
    }
    let _ = relay_task.await;
    tasklist.stopped().await;
    Ok((stages, events_per_s))
}

/// The MongoDB-wire server alone: single inserts, and when a change stream (as tasklist-api
/// opens it) delivers each.
async fn probe_change_stream(uri: &str) -> BenchResult<Samples> {
    let client = mongodb::Client::with_uri_str(uri)
        .await
        .map_err(|e| e.to_string())?;
    let collection = client
        .database(&format!("probe{}", std::process::id()))
        .collection::<Document>("changes");
    let mut stream = collection
        .watch()
        .full_document(mongodb::options::FullDocumentType::UpdateLookup)
        .max_await_time(Duration::from_millis(500))
        .await
        .map_err(|e| e.to_string())?;
    let mut samples = Samples::default();
    for n in 0..40 {
        let sent = Instant::now();
        collection
            .insert_one(doc! { "n": n })
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(_))) => samples.push(sent.elapsed()),
            _ => return Err("the change stream did not deliver an insert within 5 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = collection.drop().await;
    Ok(samples)
}
