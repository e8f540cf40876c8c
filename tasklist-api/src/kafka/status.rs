//! What `tasklist-api status` reports: how far the projection's consumer group is behind the
//! topics (committed offsets against the partitions' ends), and how many messages wait in the
//! dead letters. It reads Kafka and MongoDB directly, so it works whether or not the service runs.

use std::fmt;
use std::time::Duration;

use mongodb::bson::doc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use taskpool_schemas::Topics;

use crate::config::Config;
use crate::kafka::projection::consumer_config;
use crate::mongo::store::{DEAD_LETTERS, MongoStore};
use taskpool_tasklist::metrics::Metrics;

/// How long each Kafka request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    pub end: i64,
    pub lag: i64,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub group: String,
    pub partitions: Vec<PartitionLag>,
    pub dead_letters: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the Kafka status query did not finish")]
    Interrupted(#[from] tokio::task::JoinError),
}

/// Limits for `status` as a monitoring probe.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    pub max_lag_events: Option<i64>,
    pub max_dead_letters: Option<u64>,
}

pub async fn read(config: &Config) -> Result<Status, StatusError> {
    let kafka = config.kafka.clone();
    let partitions = tokio::task::spawn_blocking(move || consumer_lag(&kafka)).await??;
    let store =
        MongoStore::connect(&config.mongodb, std::sync::Arc::new(Metrics::default())).await?;
    let dead_letters = store
        .timed(
            store
                .database()
                .collection::<mongodb::bson::Document>(DEAD_LETTERS)
                .count_documents(doc! {}),
        )
        .await?;
    Ok(Status {
        group: config.kafka.group_id.clone(),
        partitions,
        dead_letters,
    })
}

/// The group's lag per partition of the projection's topics, without joining the group.
fn consumer_lag(
    config: &crate::config::KafkaConfig,
) -> Result<Vec<PartitionLag>, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer = consumer_config(config).create()?;
    let mut list = TopicPartitionList::new();
    for topic in Topics::new(&config.topic_prefix).all() {
        let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                list.add_partition(found.name(), partition.id());
            }
        }
    }
    let committed = consumer.committed_offsets(list, KAFKA_TIMEOUT)?;
    let mut lags = Vec::new();
    for element in committed.elements() {
        let (start, end) =
            consumer.fetch_watermarks(element.topic(), element.partition(), KAFKA_TIMEOUT)?;
        let committed = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        // Without a commit the group starts at the beginning (auto.offset.reset = earliest).
        let from = committed.unwrap_or(start).max(start);
        lags.push(PartitionLag {
            topic: element.topic().to_string(),
            partition: element.partition(),
            committed,
            end,
            lag: (end - from).max(0),
        });
    }
    Ok(lags)
}

impl Status {
    pub fn lag_events(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let partitions: Vec<serde_json::Value> = self
            .partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "topic": p.topic, "partition": p.partition, "committed": p.committed,
                    "end": p.end, "lag": p.lag,
                })
            })
            .collect();
        serde_json::json!({
            "group": self.group,
            "lagEvents": self.lag_events(),
            "partitions": partitions,
            "deadLetters": self.dead_letters,
        })
    }

    /// What exceeds the thresholds, in words (nothing: all within).
    pub fn exceeded(&self, limits: &Thresholds) -> Vec<String> {
        let mut exceeded = Vec::new();
        let lag = self.lag_events();
        if let Some(max) = limits.max_lag_events.filter(|max| lag > *max) {
            exceeded.push(format!("{lag} events not yet projected (at most {max})"));
        }
        if let Some(max) = limits
            .max_dead_letters
            .filter(|max| self.dead_letters > *max)
        {
            exceeded.push(format!(
                "{} dead letters (at most {max})",
                self.dead_letters
            ));
        }
        exceeded
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "consumer group: {}", self.group)?;
        writeln!(f, "not projected:  {} events", self.lag_events())?;
        for p in &self.partitions {
            let committed = p.committed.map_or("none".to_string(), |c| c.to_string());
            writeln!(
                f,
                "  {}[{}]: committed {committed}, end {}, lag {}",
                p.topic, p.partition, p.end, p.lag
            )?;
        }
        write!(f, "dead letters:   {}", self.dead_letters)
    }
}
