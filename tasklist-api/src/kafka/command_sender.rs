//! The command topic as the way actions go: keyed by task id (so one task's commands stay in
//! order), for the engine application named in the command to take.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use taskpool_schemas::{TaskCommand, Topics, encode};
use taskpool_service::kafka;
use taskpool_tasklist::actions::sink::{CommandSink, SinkError};

use crate::config::KafkaConfig;

/// How long a command may wait for room in the producer's queue (its acknowledgement is
/// bounded by `message.timeout.ms`).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The command topic of the distributed setup.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish()
    }
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, KafkaError> {
        let producer = kafka::client_config(
            &config.bootstrap_servers,
            &config.security,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "0"),
                // The request waits for the broker's acknowledgement at most this long (503
                // after), not librdkafka's default of five minutes.
                ("message.timeout.ms", "10000"),
            ],
            &Default::default(),
        )
        .create()?;
        Ok(KafkaSink {
            producer,
            topic: Topics::new(&config.topic_prefix).commands,
        })
    }
}

impl CommandSink for KafkaSink {
    fn send<'a>(&'a self, command: &'a TaskCommand) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let payload = encode(command)?;
            let command_id = command.command_id.to_string();
            // Engines read the addressee without decoding what is not theirs.
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "application",
                    value: Some(command.application.as_bytes()),
                })
                .insert(Header {
                    key: "command-id",
                    value: Some(command_id.as_bytes()),
                });
            let record = FutureRecord::to(&self.topic)
                .key(&command.task_id)
                .payload(&payload)
                .headers(headers);
            self.producer
                .send(record, SEND_TIMEOUT)
                .await
                .map_err(|(error, _)| SinkError::Broker(Box::new(error)))?;
            Ok(())
        })
    }
}
