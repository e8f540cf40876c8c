//! The rebuild's input: which offsets of the projection's topics to read, and a reader that
//! decodes them on a thread of its own and hands them over in chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use taskpool_schemas::{DecodedEvent, Topics, decode};
use tokio::sync::mpsc;

use crate::config::KafkaConfig;
use crate::kafka::projection::header;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// Events handed over at a time.
const CHUNK: usize = 2_000;
/// At most this many events past the ranges' ends are taken (a busy topic never pauses).
const MAX_DRAIN: usize = 10_000;

/// The offsets `start..end` of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl Range {
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where reading begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest retained event.
    Earliest,
    /// The first event at or after this time (milliseconds since the epoch).
    Time(i64),
}

/// A message as the rebuild sees it: an event with the trace context it travelled with, or
/// `None` for one that is not (no value, or undecodable), which the live projection has in its
/// dead letters.
pub type Read = Option<(DecodedEvent, Option<String>)>;

/// A consumer that reads assigned partitions and never commits: it leaves the projection's
/// consumer group alone.
fn consumer(config: &KafkaConfig) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    let group = format!("{}-rebuild", config.group_id);
    taskpool_service::kafka::client_config(
        &config.bootstrap_servers,
        &config.security,
        &[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            // A reader, not a follower: short waits keep the fetches coming.
            ("fetch.wait.max.ms", "10"),
        ],
        &config.consumer,
    )
    .create()
}

/// The ranges from `from` to each partition's end now (blocking).
pub fn plan(config: &KafkaConfig, from: Start) -> Result<Vec<Range>, rdkafka::error::KafkaError> {
    let consumer = consumer(config)?;
    let mut ranges = Vec::new();
    for topic in Topics::new(&config.topic_prefix).all() {
        let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
        for found in metadata.topics() {
            for partition in found.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(found.name(), partition.id(), KAFKA_TIMEOUT)?;
                ranges.push(Range {
                    topic: found.name().to_string(),
                    partition: partition.id(),
                    start: low,
                    end: high,
                });
            }
        }
    }
    if let Start::Time(millis) = from {
        let mut query = TopicPartitionList::new();
        for range in &ranges {
            query.add_partition_offset(&range.topic, range.partition, Offset::Offset(millis))?;
        }
        let found = consumer.offsets_for_times(query, KAFKA_TIMEOUT)?;
        for range in &mut ranges {
            // No event at or after that time: nothing to read in this partition.
            range.start = match found
                .find_partition(&range.topic, range.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => offset.max(range.start),
                _ => range.end,
            };
        }
    }
    Ok(ranges)
}

/// The ranges from where `done` ended to each partition's end now (blocking).
pub fn plan_after(
    config: &KafkaConfig,
    done: &[Range],
) -> Result<Vec<Range>, rdkafka::error::KafkaError> {
    let consumer = consumer(config)?;
    let mut ranges = Vec::new();
    for range in done {
        let (_, high) = consumer.fetch_watermarks(&range.topic, range.partition, KAFKA_TIMEOUT)?;
        ranges.push(Range {
            start: range.end,
            end: high,
            ..range.clone()
        });
    }
    Ok(ranges)
}

/// Reads every range to its end (blocking), sending decoded events in chunks. Stops early,
/// without error, when `stop` is set or the receiver is gone.
pub fn read(
    config: &KafkaConfig,
    ranges: &[Range],
    chunks: mpsc::Sender<Vec<Read>>,
    stop: Arc<AtomicBool>,
) -> Result<(), rdkafka::error::KafkaError> {
    let mut open: Vec<&Range> = ranges.iter().filter(|r| !r.is_empty()).collect();
    if open.is_empty() {
        return Ok(());
    }
    let consumer = consumer(config)?;
    let mut assignment = TopicPartitionList::new();
    for range in &open {
        assignment.add_partition_offset(
            &range.topic,
            range.partition,
            Offset::Offset(range.start),
        )?;
    }
    consumer.assign(&assignment)?;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut drained = 0;
    while !stop.load(Ordering::Relaxed) {
        // Once every range is read, the rest of what the consumer already fetched still comes
        // (a few more events are harmless: writes are version-guarded), then reading ends.
        // Some brokers report a partition's end at its last batch's first record, so the rest
        // of that batch is only read this way.
        let wait = if open.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        let mut idle = false;
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let (topic, partition, offset) =
                    (message.topic(), message.partition(), message.offset());
                let event = message.payload().and_then(|p| decode(p).ok());
                let traceparent = header(&message, "traceparent").map(str::to_string);
                chunk.push(event.map(|event| (event, traceparent)));
                if open.is_empty() {
                    drained += 1;
                }
                open.retain(|r| {
                    !(r.topic == topic && r.partition == partition && offset + 1 >= r.end)
                });
            }
            Some(Err(error)) => return Err(error),
            None if open.is_empty() => break,
            // Idle: the rest of a range may be records that are not messages (transaction
            // markers), so the consumer's position decides.
            None => {
                idle = true;
                let positions = consumer.position()?;
                open.retain(|r| {
                    !matches!(
                        positions.find_partition(&r.topic, r.partition).map(|e| e.offset()),
                        Some(Offset::Offset(next)) if next >= r.end
                    )
                });
            }
        }
        if open.is_empty() && drained >= MAX_DRAIN {
            break;
        }
        // Full chunks go at once; a partial one when reading pauses.
        if chunk.len() >= CHUNK || (!chunk.is_empty() && idle) {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            if chunks.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.blocking_send(chunk);
    }
    Ok(())
}
