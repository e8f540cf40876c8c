//! Publishing outbox rows with an idempotent producer (`acks=all`), so librdkafka's own
//! retries never reorder or duplicate a key; key = aggregate id, topic per aggregate type.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use taskpool_service::kafka;
use taskpool_service::kafka_context::ReportingContext;

use crate::config::KafkaConfig;
use crate::outbox::OutboxRow;

pub use taskpool_schemas::Topics;

/// Why a message could not be handed to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// This message can never be published (too large, invalid, unknown aggregate type).
    #[error("{0}")]
    Permanent(String),
    /// Broker unavailable, timeouts, producer failure: retry later, in order.
    #[error("{0}")]
    Transient(KafkaError),
}

/// Sorts a producer error into "never" or "later".
pub fn classify(error: KafkaError) -> PublishError {
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    );
    if permanent {
        PublishError::Permanent(error.to_string())
    } else {
        PublishError::Transient(error)
    }
}

/// The librdkafka settings shared by the relay and the raw-producer baseline of the benchmark.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let message_max_bytes = config.message_max_bytes.to_string();
    kafka::client_config(
        &config.bootstrap_servers,
        &config.security,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // Never give up on a message on our own: a broker outage is waited out, in order.
            ("message.timeout.ms", "0"),
            ("message.max.bytes", &message_max_bytes),
            ("linger.ms", "5"),
            ("compression.type", config.compression.property()),
        ],
        &config.producer,
    )
}

/// Why the relay's topics are not there.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot read Kafka metadata")]
    Metadata(#[source] KafkaError),
    #[error(
        "authentication failed: Kafka refused the relay's credentials ({0}); check \
         kafka.security.sasl_username and sasl_password"
    )]
    Authentication(String),
    #[error("Kafka topics {0} do not exist; create them or set kafka.create_topics = true")]
    Missing(String),
    #[error("cannot create Kafka topics")]
    Admin(#[source] KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// A connected producer for one relay.
pub struct Publisher {
    producer: FutureProducer<ReportingContext>,
    /// The producer's context, to ask why it could not connect.
    context: ReportingContext,
    topics: Topics,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topics", &self.topics)
            .finish()
    }
}

impl Publisher {
    pub fn new(config: &KafkaConfig) -> Result<Publisher, KafkaError> {
        let context = ReportingContext::default();
        Ok(Publisher {
            producer: producer_config(config).create_with_context(context.clone())?,
            context,
            topics: Topics::new(&config.topic_prefix),
        })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Hands one row to the producer; waits while its queue is full. The returned future
    /// resolves when Kafka acknowledged the message or refused it for good.
    pub async fn enqueue(&self, row: &OutboxRow) -> Result<DeliveryFuture, PublishError> {
        self.enqueue_to(row, None).await
    }

    /// As [`Publisher::enqueue`], to `topic` instead of the aggregate type's topic if given.
    pub async fn enqueue_to(
        &self,
        row: &OutboxRow,
        topic: Option<&str>,
    ) -> Result<DeliveryFuture, PublishError> {
        let topic = match topic {
            Some(topic) => topic,
            None => self
                .topics
                .for_aggregate(&row.aggregate_type)
                .ok_or_else(|| {
                    PublishError::Permanent(format!(
                        "unknown aggregate type {:?}",
                        row.aggregate_type
                    ))
                })?,
        };
        let event_id = row.event_id.to_string();
        let version = row.version.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(3 + row.headers.len())
            .insert(Header {
                key: "event-id",
                value: Some(event_id.as_bytes()),
            })
            .insert(Header {
                key: "event-type",
                value: Some(row.event_type.as_bytes()),
            })
            .insert(Header {
                key: "aggregate-version",
                value: Some(version.as_bytes()),
            });
        for (key, value) in &row.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(row.aggregate_id.as_bytes())
            .payload(row.payload.as_slice())
            .headers(headers);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((error, _)) => return Err(classify(error)),
            }
        }
    }

    /// Drops every message not yet acknowledged (when leadership is lost or on restart).
    pub fn abandon_pending(&self) {
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    }

    /// Waits up to `timeout` for queued messages to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }

    /// Creates the relay's topics if missing (`create` true: the tasklist actions' command and
    /// outcome topics too, so a development setup needs no other step) or checks that they
    /// exist.
    pub async fn ensure_topics(&self, config: &KafkaConfig) -> Result<(), TopicError> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
            .map_err(|error| match self.context.authentication_failure() {
                Some(reason) => TopicError::Authentication(reason),
                None => TopicError::Metadata(error),
            })?;
        let mut wanted: Vec<&str> = self.topics.all().to_vec();
        if config.create_topics {
            wanted.extend([self.topics.commands.as_str(), self.topics.outcomes.as_str()]);
        }
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|wanted| !metadata.topics().iter().any(|t| t.name() == *wanted))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !config.create_topics {
            return Err(TopicError::Missing(missing.join(", ")));
        }
        let admin: AdminClient<DefaultClientContext> = kafka::client_config(
            &config.bootstrap_servers,
            &config.security,
            &[],
            &config.producer,
        )
        .create()
        .map_err(TopicError::Admin)?;
        let events = self.topics.all();
        let new_topics: Vec<NewTopic> = missing
            .iter()
            .map(|name| {
                let topic = NewTopic::new(
                    name,
                    config.partitions,
                    TopicReplication::Fixed(config.replication_factor),
                );
                // `tasklist-api rebuild` reads the event topics from their beginning: a
                // broker's default deletion after 7 days would take tasks away from it.
                // Commands and outcomes are read once and keep the broker's default.
                if events.contains(name) {
                    topic.set("retention.ms", "-1")
                } else {
                    topic
                }
            })
            .collect();
        let results = admin
            .create_topics(&new_topics, &AdminOptions::new())
            .await
            .map_err(TopicError::Admin)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(TopicError::Create { topic, code }),
            }
        }
        Ok(())
    }
}
