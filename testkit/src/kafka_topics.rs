//! Kafka topics of a test's own on the shared broker: a prefix no other test uses, topics
//! created under it, and a reader of one topic from its beginning.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// Partitions of every topic a test creates: more than one, so that per-key order is tested.
pub const PARTITIONS: i32 = 3;

/// A topic prefix no other test uses: `letter` and 12 hex digits.
pub fn unique_prefix(letter: char) -> String {
    format!(
        "{letter}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A client of the broker at `bootstrap` with `properties` (TLS and the like).
pub fn client(bootstrap: &str, properties: &[(&str, String)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    for (key, value) in properties {
        client.set(*key, value);
    }
    client
}

/// Creates `names`, each with [`PARTITIONS`] partitions.
pub async fn create_topics(bootstrap: &str, properties: &[(&str, String)], names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap, properties)
        .create()
        .expect("Kafka admin client");
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("a topic created");
    }
}

/// A consumer of every partition of `topic` from its first message (no group commits).
pub fn reader_from_beginning(
    bootstrap: &str,
    properties: &[(&str, String)],
    topic: &str,
) -> BaseConsumer {
    let consumer: BaseConsumer = client(bootstrap, properties)
        .set("group.id", format!("reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        // Reset, if ever, to the start: the default (the end) would skip what was not read.
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("Kafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&assignment).expect("assigned");
    consumer
}
