//! Outcomes coming back from the engines. Every instance reads every outcome (it may hold the
//! user's streams, or a request waiting for it), from the end of the topic, without a group:
//! an outcome is news only while someone waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use taskpool_schemas::{CommandOutcome, OutcomeResult, Timestamp, Topics, decode_as};
use taskpool_service::backoff::Backoff;
use taskpool_service::kafka;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::KafkaConfig;
use crate::projection::Origin;
use crate::store::Store;
use crate::stream::Hub;

/// How far before its start an instance reads outcomes (clocks of different machines differ).
const OUTCOME_CLOCK_MARGIN_MS: i64 = 10_000;

/// Requests waiting for their command's outcome (`?wait`). Several may wait for one command
/// (a retry with the same `Idempotency-Key` while the first still waits).
#[derive(Debug, Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<CommandOutcome>>>>>);

impl Waiters {
    /// Registers before the command is sent, so its outcome cannot slip past. Waiters whose
    /// request went away (client gone, wait over) are dropped here too, so none stay behind.
    pub fn expect(&self, command_id: Uuid) -> oneshot::Receiver<CommandOutcome> {
        let (sender, receiver) = oneshot::channel();
        let mut waiting = self.lock();
        waiting.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        waiting.entry(command_id).or_default().push(sender);
        receiver
    }

    fn complete(&self, outcome: &CommandOutcome) {
        for waiter in self.lock().remove(&outcome.command_id).unwrap_or_default() {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<CommandOutcome>>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An outcome as the user's streams carry it.
pub fn outcome_json(outcome: &CommandOutcome) -> serde_json::Value {
    json!({
        "commandId": outcome.command_id.to_string(),
        "taskId": outcome.task_id,
        "result": outcome.result.as_str(),
        "reason": outcome.reason,
        "taskVersion": outcome.task_version,
    })
}

/// Where outcomes come from: the outcome topic, or the engine in this process.
#[derive(Debug)]
pub enum OutcomeFeed {
    /// The outcome topic; undecodable outcomes go to this store's dead letters.
    Kafka(Box<KafkaConfig>, Store),
    InProcess(mpsc::UnboundedReceiver<CommandOutcome>),
}

/// Delivers outcomes from `feed` until shutdown.
pub async fn follow(feed: OutcomeFeed, hub: Hub, waiters: Waiters, mut shutdown: Shutdown) {
    match feed {
        OutcomeFeed::Kafka(config, store) => {
            if let Err(error) = run(*config, store, hub, waiters, shutdown).await {
                tracing::error!(
                    error = error_chain(&error),
                    "cannot read outcomes; actions get no answers"
                );
            }
        }
        OutcomeFeed::InProcess(mut outcomes) => loop {
            tokio::select! {
                Some(outcome) = outcomes.recv() => deliver(&hub, &waiters, &outcome),
                _ = shutdown.requested() => return,
                else => return,
            }
        },
    }
}

/// Each partition's first offset at or after `since` (its end when there is none).
fn starting_offsets(
    consumer: &StreamConsumer,
    topic: &str,
    since: i64,
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut times = TopicPartitionList::new();
    for found in metadata.topics() {
        for partition in found.partitions() {
            times.add_partition_offset(topic, partition.id(), Offset::Offset(since))?;
        }
    }
    let offsets = consumer.offsets_for_times(times, Duration::from_secs(10))?;
    for element in offsets.elements() {
        element.error()?;
    }
    if offsets.count() == 0 {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(offsets)
}

/// An outcome to the issuing user's streams and to the request waiting for it.
fn deliver(hub: &Hub, waiters: &Waiters, outcome: &CommandOutcome) {
    hub.outcome(&outcome.issued_by, outcome_json(outcome).to_string().into());
    waiters.complete(outcome);
    if outcome.result == OutcomeResult::Rejected {
        info!(command = %outcome.command_id, reason = ?outcome.reason, "an engine rejected an action");
    }
}

/// Keeps an outcome nobody can use in the dead letters, with the reason (`tasklist-api
/// dead-letters` lists them). Nothing waits for it, so a failure to store it is only logged.
async fn dead_letter(store: &Store, message: &rdkafka::message::OwnedMessage, reason: &str) {
    warn!(reason, "outcome dead-lettered");
    let letter = Origin(message).dead_letter(reason);
    if let Err(error) = store.dead_letter(vec![letter]).await {
        warn!(
            error = error_chain(&error),
            "cannot store the outcome's dead letter"
        );
    }
}

/// Reads outcomes until shutdown: each goes to the issuing user's streams and to a waiting
/// request. Returns early only when the consumer cannot be created.
pub async fn run(
    config: KafkaConfig,
    store: Store,
    hub: Hub,
    waiters: Waiters,
    mut shutdown: Shutdown,
) -> Result<(), rdkafka::error::KafkaError> {
    let topic = Topics::new(&config.topic_prefix).outcomes;
    // Outcomes from shortly before this instance started: a request waits only for the outcomes
    // of commands sent since. Not the end of the topic: an outcome produced while the topic was
    // still being created, or before the partitions were assigned, would be missed, and its
    // request would wait in vain. The margin covers clocks that differ between machines.
    let since = Timestamp::now().0 - OUTCOME_CLOCK_MARGIN_MS;
    let consumer: Arc<StreamConsumer> = Arc::new(
        kafka::client_config(
            &config.bootstrap_servers,
            &config.security,
            &[
                // Required by the client; never joined or committed (partitions are assigned).
                ("group.id", &format!("{}-outcomes", config.group_id)),
                ("enable.auto.commit", "false"),
            ],
            &config.consumer,
        )
        .create()?,
    );
    if !kafka::wait_for_topics(&consumer, &[&topic], &mut shutdown).await {
        return Ok(());
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let assignment = loop {
        let asked = consumer.clone();
        let name = topic.clone();
        let found = tokio::task::spawn_blocking(move || starting_offsets(&asked, &name, since))
            .await
            .expect("the offset requests do not panic");
        match found {
            Ok(assignment) => break assignment,
            // A topic just created may not answer yet; its outcomes wait in it meanwhile.
            Err(error) => {
                let what = "cannot find where to read outcomes from";
                if backoff
                    .wait_after_failure(what, &error, &mut shutdown)
                    .await
                {
                    return Ok(());
                }
            }
        }
    };
    consumer.assign(&assignment)?;
    info!(topic = %topic, partitions = assignment.count(), "reading outcomes");
    backoff.reset();
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = shutdown.requested() => return Ok(()),
        };
        match message {
            Ok(message) => {
                backoff.reset();
                match message.payload().map(decode_as::<CommandOutcome>) {
                    Some(Ok(outcome)) => deliver(&hub, &waiters, &outcome),
                    Some(Err(error)) => {
                        let reason = format!("undecodable outcome: {}", error_chain(&error));
                        dead_letter(&store, &message.detach(), &reason).await;
                    }
                    None => dead_letter(&store, &message.detach(), "outcome without a value").await,
                }
            }
            Err(error) => {
                let what = "cannot read outcomes";
                if backoff
                    .wait_after_failure(what, &error, &mut shutdown)
                    .await
                {
                    return Ok(());
                }
            }
        }
    }
}
