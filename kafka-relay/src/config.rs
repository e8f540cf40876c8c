//! Relay configuration: defaults, then a TOML file, then environment variables; unknown keys
//! are refused, so a typo never silently falls back to a default (see
//! [`taskpool_service::config`]). `TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS` sets
//! `kafka.bootstrap_servers`.

use std::time::Duration;

use serde::Deserialize;
use taskpool_service::SecretString;
pub use taskpool_service::config::ConfigError;
pub use taskpool_service::config::Layered;
use taskpool_service::config::Validate;
use taskpool_service::guarantees::IDEMPOTENT_PRODUCER;
pub use taskpool_service::kafka::{Compression, KafkaSecurity, Overrides};
pub use taskpool_service::logging::{LogConfig, LogFormat};

pub use crate::engine_config::{ActionsConfig, CaptureConfig};

/// The prefix of environment variables that configure the relay.
pub const ENV_PREFIX: &str = "TASKPOOL_RELAY__";

/// Everything the relay can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default)]
    pub lease: LeaseConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub capture: CaptureConfig,
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL URL of the database holding the outbox; TLS through its parameters, e.g.
    /// `?sslmode=verify-full&sslrootcert=/etc/taskpool/pg-ca.pem`. Kept secret: it may hold a
    /// password.
    pub url: SecretString,
    /// Connections the relay may open.
    #[serde(default = "defaults::db_connections")]
    pub max_connections: u32,
    /// Create or upgrade taskpool's tables at start-up.
    #[serde(default = "defaults::yes")]
    pub migrate: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topics are `<prefix>.tasks` and `<prefix>.data-entries`.
    #[serde(default = "defaults::topic_prefix")]
    pub topic_prefix: String,
    /// Create missing topics at start-up; when false, a missing topic is an error.
    #[serde(default)]
    pub create_topics: bool,
    #[serde(default = "defaults::partitions")]
    pub partitions: i32,
    #[serde(default = "defaults::replication")]
    pub replication_factor: i32,
    /// Largest message the producer sends (librdkafka `message.max.bytes`); set it to the
    /// broker's limit so oversized events are recognised before they reach the broker.
    #[serde(default = "defaults::message_max_bytes")]
    pub message_max_bytes: u32,
    /// TLS and SASL towards the brokers.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Producer `compression.type`: none, gzip, snappy, lz4 or zstd.
    #[serde(default)]
    pub compression: Compression,
    /// Extra librdkafka producer properties, e.g. `"linger.ms" = "10"` (in the environment,
    /// `..._PRODUCER__LINGER_MS=10`: `_` stands for `.`).
    #[serde(default)]
    pub producer: Overrides,
}

/// What to do with a message Kafka can never accept (too large, invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermanentFailure {
    /// Record it in `taskpool_relay_dead_letters` with the reason, and go on.
    DeadLetter,
    /// Stop publishing and exit with status 3.
    Halt,
}

/// Which open transactions hold back publishing (decision 0024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Horizon {
    /// Only transactions that write to the outbox. Needs the floor, its guard on the outbox
    /// (outbox migration 3) and `taskpool_outbox_horizon()` version 2 (relay migration 3): the
    /// relay checks them at start and refuses to start without them.
    OutboxWriters,
    /// Every transaction of the database server (the oldest running one), as before the floor
    /// existed: needs nothing of the writers, but any long transaction of the server holds
    /// every event back.
    AllTransactions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Name of this relay's position and lease; relays with different names publish the same
    /// outbox independently (to different clusters, say).
    pub name: String,
    /// Outbox rows read per batch.
    pub batch_size: u32,
    /// Batches handed to the producer before the oldest must be acknowledged.
    pub max_in_flight_batches: usize,
    /// Polling back-off when the outbox is idle: from `poll_min_ms` doubling to `poll_max_ms`.
    pub poll_min_ms: u64,
    pub poll_max_ms: u64,
    /// Back-off after a failure, doubling up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Share of each back-off pause that is random (0 to 1), so relays do not retry in step.
    pub retry_jitter: f64,
    pub on_permanent_failure: PermanentFailure,
    /// Which open transactions a committed outbox row waits for before it is published.
    pub horizon: Horizon,
    /// How often lag metrics are refreshed.
    pub lag_interval_ms: u64,
    /// `/health` answers 503 ("stalled") when this process leads, has events to publish, and
    /// stored no batch for longer than this.
    pub stalled_after_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// How long a lease lasts without renewal; a standby takes over after at most this plus
    /// `renew_interval_ms`.
    pub ttl_ms: u64,
    pub renew_interval_ms: u64,
    /// The leader stops publishing when less than this remains of its lease and it could not
    /// renew, so it is silent before anyone else can take over.
    pub safety_margin_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Published rows older than this are deleted; 0 keeps them forever.
    pub max_age_secs: u64,
    pub interval_secs: u64,
    /// Rows deleted per statement.
    pub batch_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/metrics` and `/health`.
    pub listen: String,
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn db_connections() -> u32 {
        4
    }
    pub fn topic_prefix() -> String {
        "taskpool".into()
    }
    pub fn partitions() -> i32 {
        6
    }
    pub fn replication() -> i32 {
        1
    }
    pub fn message_max_bytes() -> u32 {
        1_000_000
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            name: "default".into(),
            batch_size: 1000,
            max_in_flight_batches: 4,
            poll_min_ms: 2,
            poll_max_ms: 25,
            retry_min_ms: 100,
            retry_max_ms: 10_000,
            retry_jitter: 0.2,
            on_permanent_failure: PermanentFailure::DeadLetter,
            horizon: Horizon::OutboxWriters,
            lag_interval_ms: 2000,
            stalled_after_secs: 60,
        }
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl_ms: 6000,
            renew_interval_ms: 1000,
            safety_margin_ms: 1500,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_secs: 7 * 24 * 3600,
            interval_secs: 60,
            batch_size: 5000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl LeaseConfig {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
}

impl Layered for Config {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        self.log.check().map_err(ConfigError::Invalid)?;
        if self.relay.batch_size == 0 || self.relay.max_in_flight_batches == 0 {
            return invalid("relay.batch_size and relay.max_in_flight_batches must be positive");
        }
        if !(0.0..=1.0).contains(&self.relay.retry_jitter) {
            return invalid("relay.retry_jitter must be from 0 to 1");
        }
        if self.relay.poll_min_ms == 0 || self.relay.poll_min_ms > self.relay.poll_max_ms {
            return invalid("relay.poll_min_ms must be positive and at most relay.poll_max_ms");
        }
        let producer = &self.kafka.producer;
        producer.check_guarantees("kafka.producer", IDEMPOTENT_PRODUCER)?;
        self.capture.check().map_err(ConfigError::Invalid)?;
        self.actions.check().map_err(ConfigError::Invalid)?;
        if self.lease.renew_interval_ms == 0
            || self.lease.safety_margin_ms + self.lease.renew_interval_ms >= self.lease.ttl_ms
        {
            return invalid(
                "lease.ttl_ms must exceed lease.renew_interval_ms + lease.safety_margin_ms",
            );
        }
        self.kafka.security.check().map_err(ConfigError::Invalid)?;
        if self.kafka.topic_prefix.is_empty() || self.relay.name.is_empty() {
            return invalid("kafka.topic_prefix and relay.name must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskpool_service::ExposeSecret;
    use taskpool_service::config::env_pairs;

    const MINIMAL: &str = r#"
        [database]
        url = "postgres://localhost/db"
        [kafka]
        bootstrap_servers = "localhost:9092"
    "#;

    #[test]
    fn the_example_configuration_loads() {
        let config =
            Config::from_sources(include_str!("../relay.example.toml"), env_pairs(&[])).unwrap();
        assert_eq!(config.kafka.topic_prefix, "taskpool");
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let config = Config::from_sources(MINIMAL, env_pairs(&[])).unwrap();
        assert_eq!(config.kafka.topic_prefix, "taskpool");
        assert_eq!(config.relay.name, "default");
        assert_eq!(
            config.relay.on_permanent_failure,
            PermanentFailure::DeadLetter
        );
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn environment_variables_override_the_file() {
        let config = Config::from_sources(
            MINIMAL,
            env_pairs(&[
                ("TASKPOOL_RELAY__KAFKA__TOPIC_PREFIX", "shop"),
                ("TASKPOOL_RELAY__RELAY__BATCH_SIZE", "50"),
                ("TASKPOOL_RELAY__RELAY__ON_PERMANENT_FAILURE", "halt"),
                ("TASKPOOL_RELAY__KAFKA__CREATE_TOPICS", "true"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.kafka.topic_prefix, "shop");
        assert_eq!(config.relay.batch_size, 50);
        assert_eq!(config.relay.on_permanent_failure, PermanentFailure::Halt);
        assert!(config.kafka.create_topics);
    }

    #[test]
    fn the_whole_configuration_can_come_from_the_environment() {
        let config = Config::from_sources(
            "",
            env_pairs(&[
                ("TASKPOOL_RELAY__DATABASE__URL", "postgres://h/db"),
                ("TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS", "h:1"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.url.expose_secret(), "postgres://h/db");
    }

    #[test]
    fn the_environment_alone_sets_digit_secrets_overrides_and_compression() {
        let config = Config::from_sources(
            "",
            env_pairs(&[
                ("TASKPOOL_RELAY__DATABASE__URL", "postgres://u:0042@h/db"),
                ("TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS", "h:1"),
                ("TASKPOOL_RELAY__KAFKA__COMPRESSION", "zstd"),
                ("TASKPOOL_RELAY__KAFKA__PRODUCER__LINGER_MS", "10"),
                ("TASKPOOL_RELAY__KAFKA__SECURITY__PROTOCOL", "SSL"),
                (
                    "TASKPOOL_RELAY__KAFKA__SECURITY__SSL_CA_LOCATION",
                    "/ca.pem",
                ),
                (
                    "TASKPOOL_RELAY__KAFKA__SECURITY__SSL_KEY_PASSWORD",
                    "0975310",
                ),
                ("TASKPOOL_RELAY__RELAY__NAME", "42"),
                ("TASKPOOL_RELAY__RELAY__RETRY_JITTER", "0.35"),
            ]),
        )
        .unwrap();
        assert_eq!(config.relay.name, "42");
        assert_eq!(config.relay.retry_jitter, 0.35);
        let producer = crate::publisher::producer_config(&config.kafka);
        assert_eq!(producer.get("linger.ms"), Some("10"));
        assert_eq!(producer.get("compression.type"), Some("zstd"));
        assert_eq!(producer.get("security.protocol"), Some("ssl"));
        assert_eq!(producer.get("ssl.key.password"), Some("0975310"));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("u:0042") && !debug.contains("0975310"),
            "{debug}"
        );
    }

    #[test]
    fn a_bad_environment_value_names_its_key_and_source() {
        let error = Config::from_sources(
            MINIMAL,
            env_pairs(&[("TASKPOOL_RELAY__RELAY__BATCH_SIZE", "lots")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("relay.batch_size"), "{error}");
        assert!(error.contains("the environment"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused_in_the_file_and_the_environment() {
        let error = Config::from_sources(
            &format!("{MINIMAL}\n[relay]\nbatchsize = 3\n"),
            env_pairs(&[]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("batchsize"), "{error}");
        let error = Config::from_sources(
            MINIMAL,
            env_pairs(&[("TASKPOOL_RELAY__RELAY__BACH_SIZE", "3")]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("bach_size"), "{error}");
    }

    #[test]
    fn missing_required_settings_and_bad_values_are_refused() {
        assert!(
            Config::from_sources("[kafka]\nbootstrap_servers = \"h:1\"", env_pairs(&[])).is_err()
        );
        assert!(
            Config::from_sources(
                MINIMAL,
                env_pairs(&[("TASKPOOL_RELAY__RELAY__BATCH_SIZE", "0")])
            )
            .is_err()
        );
        assert!(
            Config::from_sources(
                MINIMAL,
                env_pairs(&[("TASKPOOL_RELAY__LEASE__TTL_MS", "1000")])
            )
            .is_err()
        );
        assert!(Config::from_sources("not toml [", env_pairs(&[])).is_err());
    }

    #[test]
    fn producer_overrides_that_break_a_guarantee_are_refused_naming_the_key() {
        for (key, value, named) in [
            (
                "ENABLE_IDEMPOTENCE",
                "false",
                "kafka.producer.enable.idempotence",
            ),
            ("ACKS", "1", "kafka.producer.acks"),
        ] {
            let variable = format!("TASKPOOL_RELAY__KAFKA__PRODUCER__{key}");
            let error =
                Config::from_sources(MINIMAL, env_pairs(&[(&variable, value)])).unwrap_err();
            assert!(error.to_string().contains(named), "{error}");
        }
        let same = env_pairs(&[("TASKPOOL_RELAY__KAFKA__PRODUCER__ACKS", "-1")]);
        assert!(Config::from_sources(MINIMAL, same).is_ok());
    }
}
