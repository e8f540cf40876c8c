//! The Kafka side of an engine's commands: read the command topic, take what is addressed to
//! this application, apply it once, send the outcome, then let the offset move on. Commands
//! for an engine that is down wait in Kafka; a failure is retried, never skipped.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaConfRes;
use sqlx::Pool;
use taskpool_schemas::{CommandOutcome, TaskCommand, Topics, decode_as, encode};
use taskpool_service::backoff::Backoff;
use taskpool_service::guarantees::{IDEMPOTENT_PRODUCER, MANUAL_OFFSET_STORE};
use taskpool_service::kafka::{self, KafkaSecurity, Overrides};
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tracing::{info, warn};

use crate::EngineError;
use crate::apply::{CommandHandler, apply_once};
use crate::retention::{Retention, prune_periodically};
use crate::store::{CommandStore, DeadLetter};

/// Where the commands come from and the outcomes go.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub bootstrap_servers: String,
    pub security: KafkaSecurity,
    pub topic_prefix: String,
    /// This engine's application name: the tasks' `sourceReference.applicationName`.
    pub application: String,
    /// The consumer group: one per application and topic prefix (every replica of an engine
    /// shares it).
    pub group_id: String,
    pub consumer: Overrides,
    pub producer: Overrides,
    /// How long decisions are kept (and how old a command may be to be applied).
    pub retention: Retention,
}

impl ConsumerConfig {
    /// Plain-text brokers, group `<prefix>.<application>.commands`, no overrides.
    pub fn new(bootstrap_servers: &str, topic_prefix: &str, application: &str) -> ConsumerConfig {
        ConsumerConfig {
            bootstrap_servers: bootstrap_servers.to_string(),
            security: KafkaSecurity::default(),
            topic_prefix: topic_prefix.to_string(),
            application: application.to_string(),
            group_id: format!("{topic_prefix}.{application}.commands"),
            consumer: Overrides::default(),
            producer: Overrides::default(),
            retention: Retention::default(),
        }
    }
}

impl ConsumerConfig {
    /// Refuses overrides that would switch off what at-least-once rests on: offsets stored
    /// only once a command is decided, outcomes sent idempotently to all replicas.
    fn check_guarantees(&self) -> Result<(), KafkaError> {
        let sections = [
            ("consumer", &self.consumer, MANUAL_OFFSET_STORE),
            ("producer", &self.producer, IDEMPOTENT_PRODUCER),
        ];
        for (section, overrides, guarantees) in sections {
            overrides
                .check_guarantees(section, guarantees)
                .map_err(|refusal| {
                    KafkaError::ClientConfig(
                        RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                        refusal.to_string(),
                        refusal.key,
                        refusal.value,
                    )
                })?;
        }
        Ok(())
    }
}

/// How a command is decided, once whatever happens: in the engine's own transaction
/// ([`InTransaction`]) or through its REST API ([`crate::rest::RestApplier`]).
pub trait Applier: Send + Sync {
    /// The command's outcome, deciding it unless it was decided before. An error leaves it
    /// undecided; it is tried again.
    fn apply<'a>(
        &'a self,
        command: &'a TaskCommand,
    ) -> impl Future<Output = Result<CommandOutcome, EngineError>> + Send + 'a;
}

/// Applies commands with the engine's handler inside one transaction ([`apply_once`]).
pub struct InTransaction<S: CommandStore, H> {
    pool: Pool<S::Db>,
    handler: H,
    retention: Retention,
}

impl<S: CommandStore, H> std::fmt::Debug for InTransaction<S, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InTransaction")
    }
}

impl<S: CommandStore, H: CommandHandler<S>> Applier for InTransaction<S, H> {
    async fn apply(&self, command: &TaskCommand) -> Result<CommandOutcome, EngineError> {
        apply_once::<S, H>(&self.pool, &self.handler, command, self.retention).await
    }
}

/// Consumes commands until shutdown, applying them with `handler` in the engine's
/// transaction. Returns early only when a Kafka client cannot be created.
pub async fn run<S, H>(
    config: ConsumerConfig,
    pool: Pool<S::Db>,
    handler: H,
    shutdown: Shutdown,
) -> Result<(), KafkaError>
where
    S: CommandStore,
    H: CommandHandler<S>,
{
    let applier = InTransaction::<S, H> {
        pool: pool.clone(),
        handler,
        retention: config.retention,
    };
    run_with::<S, _>(config, pool, applier, shutdown).await
}

/// Consumes commands until shutdown, deciding them with `applier`; undecodable ones are kept
/// in `pool`'s dead letters. Meanwhile deletes what is past the retention. Returns early only
/// when a Kafka client cannot be created.
pub async fn run_with<S, A>(
    config: ConsumerConfig,
    pool: Pool<S::Db>,
    applier: A,
    shutdown: Shutdown,
) -> Result<(), KafkaError>
where
    S: CommandStore,
    A: Applier,
{
    // Pruning ends at shutdown; consuming ends by itself then, once its command is answered.
    let pruning = prune_periodically::<S>(pool.clone(), config.retention, shutdown.clone());
    let pruning = async move {
        pruning.await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        consumed = consume::<S, A>(config, pool, applier, shutdown) => consumed,
        () = pruning => Ok(()),
    }
}

async fn consume<S, A>(
    config: ConsumerConfig,
    pool: Pool<S::Db>,
    applier: A,
    mut shutdown: Shutdown,
) -> Result<(), KafkaError>
where
    S: CommandStore,
    A: Applier,
{
    config.check_guarantees()?;
    let topics = Topics::new(&config.topic_prefix);
    let consumer: Arc<StreamConsumer> = Arc::new(
        kafka::client_config(
            &config.bootstrap_servers,
            &config.security,
            &[
                ("group.id", &config.group_id),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // A crashed replica's partitions move to the others after this (decision 0021).
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "2000"),
            ],
            &config.consumer,
        )
        .create()?,
    );
    let producer: FutureProducer = kafka::client_config(
        &config.bootstrap_servers,
        &config.security,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "1"),
        ],
        &config.producer,
    )
    .create()?;
    if !kafka::wait_for_topics(&consumer, &[&topics.commands], &mut shutdown).await {
        return Ok(());
    }
    consumer.subscribe(&[&topics.commands])?;
    info!(topic = %topics.commands, application = %config.application, "taking commands");
    let mut backoff = Backoff::for_retries();
    loop {
        let message = tokio::select! {
            message = consumer.recv() => message,
            _ = shutdown.requested() => break,
        };
        let message = match message {
            Ok(message) => {
                backoff.reset();
                message
            }
            Err(error) => {
                let what = "cannot consume commands";
                if backoff
                    .wait_after_failure(what, &error, &mut shutdown)
                    .await
                {
                    break;
                }
                continue;
            }
        };
        let step = Step::<S, A> {
            pool: &pool,
            applier: &applier,
            producer: &producer,
            outcomes: &topics.outcomes,
            application: &config.application,
        };
        if !step.take(&message, &mut shutdown).await {
            break;
        }
        if let Err(error) = consumer.store_offset_from_message(&message) {
            // The partition moved to another replica: it takes the command again from the last
            // commit and finds it decided.
            warn!(error = error_chain(&error), "offset not stored");
        }
    }
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    Ok(())
}

/// What one message needs.
struct Step<'a, S: CommandStore, A> {
    pool: &'a Pool<S::Db>,
    applier: &'a A,
    producer: &'a FutureProducer,
    outcomes: &'a str,
    application: &'a str,
}

impl<S: CommandStore, A: Applier> Step<'_, S, A> {
    /// Decides and answers one message. False when shutdown came first (the offset must not
    /// move then).
    async fn take(&self, message: &BorrowedMessage<'_>, shutdown: &mut Shutdown) -> bool {
        let command = match message.payload().map(decode_as::<TaskCommand>) {
            Some(Ok(command)) => command,
            Some(Err(error)) => {
                return self.dead_letter(message, error.to_string(), shutdown).await;
            }
            None => return self.dead_letter(message, "no value".into(), shutdown).await,
        };
        if command.application != self.application {
            return true;
        }
        let mut backoff = Backoff::for_retries();
        let outcome = loop {
            match self.applier.apply(&command).await {
                Ok(outcome) => break outcome,
                Err(error) => {
                    let what = format!("cannot apply command {}", command.command_id);
                    if backoff.wait_after_failure(&what, &error, shutdown).await {
                        return false;
                    }
                }
            }
        };
        self.answer(&outcome, shutdown).await
    }

    /// Sends the outcome until the broker has it. False on shutdown.
    async fn answer(&self, outcome: &CommandOutcome, shutdown: &mut Shutdown) -> bool {
        let payload = match encode(outcome) {
            Ok(payload) => payload,
            Err(error) => {
                // Our own record failed to encode: a bug, not data; the user waits in vain.
                warn!(error = %error_chain(&error), "cannot encode an outcome");
                return true;
            }
        };
        let key = outcome.command_id.to_string();
        let mut backoff = Backoff::for_retries();
        loop {
            let record = FutureRecord::to(self.outcomes).key(&key).payload(&payload);
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return true,
                Err((error, _)) => {
                    let what = "cannot send an outcome";
                    if backoff.wait_after_failure(what, &error, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: String,
        shutdown: &mut Shutdown,
    ) -> bool {
        warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), reason = %reason, "undecodable command dead-lettered");
        let letter = DeadLetter {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: message.payload(),
            reason,
        };
        let mut backoff = Backoff::for_retries();
        loop {
            match S::dead_letter(self.pool, &letter).await {
                Ok(()) => return true,
                Err(error) => {
                    let what = "cannot store a dead letter";
                    if backoff.wait_after_failure(what, &error, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_that_switch_a_guarantee_off_are_refused_naming_the_key() {
        let mut config = ConsumerConfig::new("k:9092", "taskpool", "purchases");
        config.check_guarantees().unwrap();
        config
            .producer
            .0
            .insert("acks".to_string(), "1".to_string());
        let error = config.check_guarantees().unwrap_err().to_string();
        assert!(error.contains("producer.acks"), "{error}");
        config.producer = Overrides::default();
        config
            .consumer
            .0
            .insert("enable.auto.offset.store".to_string(), "true".to_string());
        let error = config.check_guarantees().unwrap_err().to_string();
        assert!(
            error.contains("consumer.enable.auto.offset.store"),
            "{error}"
        );
    }
}
