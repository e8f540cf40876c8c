//! Reading back what the relay published: a reader of whole topics without a consumer group,
//! and the checks tests make of what it read.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use taskpool_schemas::{DecodedEvent, decode};
use taskpool_testkit::wait_for;

use super::World;

/// A message as read back from Kafka.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    /// When the relay produced it (the producer's create time), in ms since the epoch.
    pub produced_at_ms: Option<i64>,
}

impl Received {
    pub fn event(&self) -> DecodedEvent {
        decode(&self.payload).expect("Avro value decodes")
    }

    pub fn version(&self) -> i64 {
        self.headers["aggregate-version"].parse().unwrap()
    }
}

/// Reads topics from the beginning, all partitions, without a consumer group.
pub struct KafkaReader {
    consumer: BaseConsumer,
    pub received: Vec<Received>,
}

impl KafkaReader {
    pub async fn new(bootstrap: &str, topics: &[String]) -> KafkaReader {
        KafkaReader::with_properties(bootstrap, &[], topics).await
    }

    pub async fn with_properties(
        bootstrap: &str,
        properties: &[(&str, String)],
        topics: &[String],
    ) -> KafkaReader {
        let mut client = ClientConfig::new();
        for (key, value) in properties {
            client.set(*key, value);
        }
        let consumer: BaseConsumer = client
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // A reader of whole topics: if librdkafka ever has to reset its position (an offset
            // it cannot validate after a broker came back), back to the start, never to the end
            // (the default, which would skip what it had not read yet).
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("Kafka consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            let partitions = wait_for("topic metadata", Duration::from_secs(60), || async {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .ok()?;
                let count = metadata.topics().first()?.partitions().len();
                (count > 0).then_some(count)
            })
            .await;
            for partition in 0..partitions {
                assignment
                    .add_partition_offset(
                        topic,
                        i32::try_from(partition).unwrap(),
                        Offset::Beginning,
                    )
                    .unwrap();
            }
        }
        consumer.assign(&assignment).expect("assign partitions");
        KafkaReader {
            consumer,
            received: Vec::new(),
        }
    }

    /// Reads whatever arrives within `window`.
    pub fn poll_for(&mut self, window: Duration) {
        let end = std::time::Instant::now() + window;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(message)) => {
                    let headers = message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    self.received.push(Received {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: String::from_utf8_lossy(message.key().unwrap_or_default())
                            .into_owned(),
                        headers,
                        payload: message.payload().unwrap_or_default().to_vec(),
                        produced_at_ms: message.timestamp().to_millis(),
                    });
                }
                // Connections lost while a test freezes or restarts its broker: librdkafka
                // reports them and reconnects on its own.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure,
                ))) => {}
                Some(Err(error)) => panic!("Kafka read failed: {error}"),
                None => {}
            }
        }
    }

    /// Reads until `done` holds for what was received, or panics after `deadline`.
    pub async fn read_until(
        &mut self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let give_up = std::time::Instant::now() + deadline;
        loop {
            if done(&self.received) {
                return;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "timed out after {deadline:?} waiting for {what}; received {} messages",
                self.received.len()
            );
            tokio::task::block_in_place(|| self.poll_for(Duration::from_millis(200)));
        }
    }

    /// Distinct event ids received.
    pub fn event_ids(&self) -> std::collections::BTreeSet<String> {
        self.received
            .iter()
            .map(|r| r.headers["event-id"].clone())
            .collect()
    }
}

/// Checks per-key order: for each key, the first occurrences of versions are ascending.
pub fn assert_first_occurrences_in_version_order(received: &[Received]) {
    let mut seen: BTreeMap<(String, i64), ()> = BTreeMap::new();
    let mut last_first: BTreeMap<String, i64> = BTreeMap::new();
    for message in received {
        let version = message.version();
        if seen.insert((message.key.clone(), version), ()).is_some() {
            continue;
        }
        if let Some(previous) = last_first.insert(message.key.clone(), version) {
            assert!(
                version > previous,
                "key {}: version {version} first arrived after version {previous}",
                message.key
            );
        }
    }
}

/// Whether the broker knows `topic`, asked with the world's client properties.
pub async fn topic_exists(world: &World, topic: &str) -> bool {
    let mut client = ClientConfig::new();
    for (key, value) in &world.kafka_properties {
        client.set(*key, value);
    }
    let consumer: BaseConsumer = client
        .set("bootstrap.servers", &world.bootstrap)
        .create()
        .expect("Kafka client");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(30))
            .expect("topic metadata");
        metadata
            .topics()
            .first()
            .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
    })
    .await
    .expect("metadata task")
}

/// The topic of tasklist actions of `world`'s prefix.
pub fn commands_topic(world: &World) -> String {
    format!("{}.task-commands", world.prefix)
}

/// Each topic's `retention.ms` as the broker describes it.
pub async fn topic_retention(world: &World, topics: &[String]) -> Vec<Option<String>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let mut client = ClientConfig::new();
    for (key, value) in &world.kafka_properties {
        client.set(*key, value);
    }
    let admin: AdminClient<DefaultClientContext> = client
        .set("bootstrap.servers", &world.bootstrap)
        .create()
        .expect("Kafka admin client");
    let specifiers: Vec<ResourceSpecifier> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let described = admin
        .describe_configs(&specifiers, &AdminOptions::new())
        .await
        .expect("describe topic configs");
    described
        .into_iter()
        .map(|resource| {
            let resource = resource.expect("a topic's configuration");
            resource
                .get("retention.ms")
                .and_then(|entry| entry.value.clone())
        })
        .collect()
}
