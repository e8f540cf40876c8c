//! The projection: a Kafka consumer group over the task and data-entry topics, applying
//! events to MongoDB in batches. Offsets are stored only after the batch is durable in
//! MongoDB (at least once); undecodable or unapplicable messages go to the dead-letter
//! collection with their topic, partition, offset, raw bytes and the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{Binary, Document, doc, spec::BinarySubtype};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Headers, Message, OwnedMessage};
use taskpool_schemas::{Topics, decode};
use taskpool_service::backoff::Backoff;
use taskpool_service::kafka;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tracing::{info, warn};

use crate::config::KafkaConfig;
use crate::mongo::generation;
use crate::mongo::store::MongoStore;
use taskpool_tasklist::fold::Folded;
use taskpool_tasklist::metrics::{Metrics, flag};
use taskpool_tasklist::view::ViewError;

/// The consumer settings: offsets stored by the projection, committed automatically.
pub fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    kafka::client_config(
        &config.bootstrap_servers,
        &config.security,
        &[
            ("group.id", &config.group_id),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // A crashed instance's partitions move to the others after this (measured 6.6 s;
            // 44 s with Kafka's default 45 s); three heartbeats fit in it (decision 0021).
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "2000"),
            ("enable.partition.eof", "false"),
        ],
        &config.consumer,
    )
}

/// Runs the projection until shutdown. Returns only on shutdown or a consumer failure.
pub async fn run(
    config: KafkaConfig,
    store: MongoStore,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) -> Result<(), rdkafka::error::KafkaError> {
    let consumer: Arc<StreamConsumer> = Arc::new(consumer_config(&config).create()?);
    let topics = Topics::new(&config.topic_prefix);
    let names = topics.all();
    if !kafka::wait_for_topics(&consumer, &names, &mut shutdown).await {
        return Ok(());
    }
    consumer.subscribe(&names)?;
    info!(topics = ?names, group = %config.group_id, "projection consuming");
    let lag = tokio::spawn(watch_lag(
        consumer.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let wait = Duration::from_millis(config.batch_wait_ms);
    metrics.projection_running.set(flag(true));
    let mut backoff = Backoff::for_retries();
    loop {
        let batch = tokio::select! {
            batch = next_batch(&consumer, config.batch_size, wait) => batch,
            _ = shutdown.requested() => break,
        };
        let batch = match batch {
            Ok(batch) => {
                backoff.reset();
                batch
            }
            Err(error) => {
                // Broker unreachable, topic not there yet, a rebalance: wait and go on.
                if backoff
                    .wait_after_failure("cannot consume", &error, &mut shutdown)
                    .await
                {
                    break;
                }
                continue;
            }
        };
        tracing::debug!(
            messages = batch.len(),
            first = ?batch.first().map(|m| (m.partition(), m.offset(), String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())),
            "applying a batch"
        );
        if !apply_to_active(&store, &batch, &metrics, &mut shutdown).await {
            break;
        }
        // Durable: now the offsets may move past these messages.
        let mut last: HashMap<(&str, i32), i64> = HashMap::new();
        for message in &batch {
            last.insert((message.topic(), message.partition()), message.offset());
        }
        for ((topic, partition), offset) in last {
            if let Err(error) = consumer.store_offset(topic, partition, offset) {
                // The partition moved to another member (rebalance): it re-reads from the last
                // commit, so these messages are applied again there, never lost.
                warn!(
                    error = error_chain(&error),
                    topic, partition, "offset not stored"
                );
            }
        }
        metrics.consumed_events.inc_by(batch.len() as u64);
    }
    // The loop ends only on shutdown, which also ends the lag watcher.
    let _ = lag.await;
    metrics.projection_running.set(flag(false));
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last automatic commit: nothing to do.
        Err(error) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(error) => {
            warn!(
                error = error_chain(&error),
                "could not commit offsets at shutdown; the last batch will be applied again"
            );
        }
    }
    Ok(())
}

/// Waits for a first message, then takes what else arrives within `wait`, up to `size`. An
/// error after the first message ends the batch early (the error comes back on the next call).
async fn next_batch(
    consumer: &StreamConsumer,
    size: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, rdkafka::error::KafkaError> {
    let first = consumer.recv().await?.detach();
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(batch)
}

/// Applies a batch to the generation the store uses, then makes sure it is still the active
/// one: a rebuild may have switched generations while the batch was written, and the batch is
/// then written again to the new one before its offsets move on (decision 0022). False when
/// shutdown came first.
async fn apply_to_active(
    store: &MongoStore,
    batch: &[OwnedMessage],
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> bool {
    let mut target = store.generation();
    loop {
        if !apply_until_durable(&store.at(target), batch, metrics, shutdown).await {
            return false;
        }
        let mut backoff = Backoff::for_retries();
        let active = loop {
            match store.timed(generation::active(store.database())).await {
                Ok(active) => {
                    metrics.view_available.set(flag(true));
                    break active;
                }
                Err(error) => {
                    // Counted as a write retry: the batch is not done until this read
                    // succeeds, and an outage caught here must show as one.
                    metrics.view_available.set(flag(false));
                    metrics.write_retries.inc();
                    let what = "cannot read the active generation";
                    if backoff.wait_after_failure(what, &error, shutdown).await {
                        return false;
                    }
                }
            }
        };
        if active == target {
            return true;
        }
        info!(
            from = target.0,
            to = active.0,
            "the view switched generations during this batch; writing it to the new one"
        );
        target = active;
    }
}

/// Applies a batch, retrying while MongoDB is unavailable. False when shutdown came first
/// (nothing of the batch may be acknowledged then).
async fn apply_until_durable(
    store: &MongoStore,
    batch: &[OwnedMessage],
    metrics: &Metrics,
    shutdown: &mut Shutdown,
) -> bool {
    let mut backoff = Backoff::for_retries();
    loop {
        match apply(store, batch, metrics).await {
            Ok(()) => {
                metrics.view_available.set(flag(true));
                return true;
            }
            Err(error) => {
                metrics.view_available.set(flag(false));
                metrics.write_retries.inc();
                let what = "MongoDB write failed; the consumer waits";
                if backoff.wait_after_failure(what, &error, shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Where a message came from, for dead letters.
pub(crate) struct Origin<'a>(pub(crate) &'a OwnedMessage);

impl Origin<'_> {
    pub(crate) fn dead_letter(&self, reason: &str) -> Document {
        let message = self.0;
        doc! {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "payload": Binary { subtype: BinarySubtype::Generic, bytes: message.payload().unwrap_or_default().to_vec() },
            "reason": reason,
            "failedAt": taskpool_schemas::Timestamp::now().millis(),
        }
    }
}

/// A message header's text value.
pub(crate) fn header<'a, M: Message>(message: &'a M, key: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// A span per event, continuing the trace its engine transaction started; open until the batch
/// is durable.
fn event_spans(batch: &[OwnedMessage]) -> Vec<tracing::Span> {
    batch
        .iter()
        .filter_map(|message| {
            let traceparent = header(message, "traceparent")?;
            Some(taskpool_service::event_span!(
                "apply event",
                Some(traceparent),
                event_id = header(message, "event-id"),
                aggregate_id = %String::from_utf8_lossy(message.key().unwrap_or_default()),
                version = header(message, "aggregate-version"),
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
            ))
        })
        .collect()
}

async fn apply(
    store: &MongoStore,
    batch: &[OwnedMessage],
    metrics: &Metrics,
) -> Result<(), ViewError> {
    let started = Instant::now();
    let _spans = event_spans(batch);
    let mut folded = Folded::new();
    let mut dead = Vec::new();
    for (index, message) in batch.iter().enumerate() {
        let Some(payload) = message.payload() else {
            dead.push(Origin(message).dead_letter("message has no value"));
            continue;
        };
        match decode(payload) {
            Ok(event) => folded.add_traced(&event, index, header(message, "traceparent")),
            Err(error) => dead.push(
                Origin(message).dead_letter(&format!("undecodable: {}", error_chain(&error))),
            ),
        }
    }
    let written = folded.write(store).await?;
    for (index, reason) in &written.refused {
        dead.push(Origin(&batch[*index]).dead_letter(&format!("not applicable: {reason}")));
    }
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|letter| letter.get_str("reason").ok().map(str::to_string))
        .collect();
    store.dead_letter(dead).await.map_err(ViewError::new)?;
    for reason in &reasons {
        metrics.dead_lettered(reason);
    }
    metrics.batch_applied(&written, started.elapsed());
    Ok(())
}

/// Refreshes the consumer lag (high watermark minus position, over assigned partitions).
async fn watch_lag(consumer: Arc<StreamConsumer>, metrics: Arc<Metrics>, mut shutdown: Shutdown) {
    loop {
        let measured = {
            let consumer = consumer.clone();
            tokio::task::spawn_blocking(move || -> Option<i64> {
                let positions = consumer.position().ok()?;
                let mut lag = 0;
                for element in positions.elements() {
                    let (_, high) = consumer
                        .fetch_watermarks(
                            element.topic(),
                            element.partition(),
                            Duration::from_secs(2),
                        )
                        .ok()?;
                    let position = element.offset().to_raw().filter(|p| *p >= 0).unwrap_or(0);
                    lag += (high - position).max(0);
                }
                Some(lag)
            })
            .await
        };
        if let Ok(Some(lag)) = measured {
            metrics.consumer_lag.set(lag);
        }
        if shutdown.sleep(Duration::from_secs(5)).await {
            return;
        }
    }
}
