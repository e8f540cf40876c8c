//! The outcome topic as where the engines' answers come from. Every instance reads every
//! outcome (it may hold the user's streams, or a request waiting for it), from shortly before
//! the instance started, without a group: an outcome is news only while someone waits.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use taskpool_schemas::{CommandOutcome, Timestamp, Topics, decode_as};
use taskpool_service::backoff::Backoff;
use taskpool_service::kafka;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use taskpool_tasklist::actions::outcomes::{Delivery, OutcomeSource};
use tracing::{info, warn};

use crate::config::KafkaConfig;
use crate::kafka::projection::Origin;
use crate::mongo::store::MongoStore;

/// How far before its start an instance reads outcomes (clocks of different machines differ).
const OUTCOME_CLOCK_MARGIN_MS: i64 = 10_000;

/// The outcome topic; undecodable outcomes go to this store's dead letters.
#[derive(Debug)]
pub struct KafkaOutcomes {
    pub config: KafkaConfig,
    pub store: MongoStore,
}

impl OutcomeSource for KafkaOutcomes {
    fn follow(self: Box<Self>, delivery: Delivery, shutdown: Shutdown) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(error) = run(self.config, self.store, delivery, shutdown).await {
                tracing::error!(
                    error = error_chain(&error),
                    "cannot read outcomes; actions get no answers"
                );
            }
        })
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

/// Keeps an outcome nobody can use in the dead letters, with the reason (`tasklist-api
/// dead-letters` lists them). Nothing waits for it, so a failure to store it is only logged.
async fn dead_letter(store: &MongoStore, message: &rdkafka::message::OwnedMessage, reason: &str) {
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
    store: MongoStore,
    delivery: Delivery,
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
                    Some(Ok(outcome)) => delivery.deliver(&outcome),
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
