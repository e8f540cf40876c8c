//! tasklist-api configuration: defaults, a TOML file, then `TASKPOOL_TASKLIST__<SECTION>__<KEY>`
//! environment variables; unknown keys are refused (see [`taskpool_service::config`]).

use serde::Deserialize;
pub use taskpool_service::config::ConfigError;
pub use taskpool_service::config::Layered;
use taskpool_service::config::Validate;
use taskpool_service::guarantees::MANUAL_OFFSET_STORE;
pub use taskpool_service::kafka::{KafkaSecurity, Overrides};
use taskpool_service::logging::LogConfig;
use taskpool_service::{ExposeSecret, SecretString};
use taskpool_tasklist::settings::{ActionsConfig, HttpConfig, IdentityConfig, StreamConfig};

pub const ENV_PREFIX: &str = "TASKPOOL_TASKLIST__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mongodb: MongoConfig,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Development sign-in: the service hands out tokens for these users to anyone who can
    /// reach it (for a local try-out of the distributed setup with the demo; never for real
    /// use). Replaces `[identity]`, which must then be left empty.
    #[serde(default)]
    pub dev_sign_in: Option<DevSignInConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub stream: StreamConfig,
    /// Who may do what beyond the tasks' candidates and assignees.
    #[serde(default)]
    pub actions: ActionsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoConfig {
    /// `mongodb://host:port/...`; kept secret: it may hold credentials.
    pub uri: SecretString,
    #[serde(default = "defaults::database")]
    pub database: String,
    /// Write concern of projection writes: `"majority"` (default) or a number of nodes.
    #[serde(default = "defaults::write_concern")]
    pub write_concern: WriteConcern,
    /// Any single MongoDB operation that takes longer fails (and is retried where it can be).
    #[serde(default = "defaults::operation_timeout_ms")]
    pub operation_timeout_ms: u64,
}

/// How many nodes must have a write (journaled) before the projection moves on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteConcern {
    Nodes(u32),
    Named(String),
}

impl<'de> Deserialize<'de> for WriteConcern {
    /// A number of nodes or a name, from a number or from text: the environment gives text.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Nodes(u32),
            Text(String),
        }
        Ok(match Raw::deserialize(deserializer)? {
            Raw::Nodes(nodes) => WriteConcern::Nodes(nodes),
            Raw::Text(text) => match text.parse() {
                Ok(nodes) => WriteConcern::Nodes(nodes),
                Err(_) => WriteConcern::Named(text),
            },
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    #[serde(default = "defaults::topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// Messages applied per MongoDB write.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// How long a batch may wait to fill up.
    #[serde(default = "defaults::batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// TLS and SASL towards the brokers.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka consumer properties (in the environment, `_` stands for `.`).
    #[serde(default)]
    pub consumer: Overrides,
}

/// Users of the development sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSignInConfig {
    /// `name:group+group` entries, e.g. `kermit:approvers+managers,rowlf` (comma-separated in
    /// the environment).
    #[serde(deserialize_with = "taskpool_service::config::list")]
    pub users: Vec<String>,
}

mod defaults {
    pub fn database() -> String {
        "taskpool".into()
    }
    pub fn write_concern() -> super::WriteConcern {
        super::WriteConcern::Named("majority".into())
    }
    pub fn operation_timeout_ms() -> u64 {
        30_000
    }
    pub fn topic_prefix() -> String {
        "taskpool".into()
    }
    pub fn group_id() -> String {
        "tasklist-api".into()
    }
    pub fn batch_size() -> usize {
        500
    }
    pub fn batch_wait_ms() -> u64 {
        20
    }
}

impl Config {
    /// Serving (`run`, `check-config`) needs a way to tell who callers are; the commands that
    /// only read topics and MongoDB (`rebuild`, `status`, `dead-letters`) do not.
    pub fn check_serving(&self) -> Result<(), ConfigError> {
        if self.dev_sign_in.is_some() || self.identity.is_set() {
            return Ok(());
        }
        Err(ConfigError::Invalid(
            "identity: set jwks_url, hs256_secret or rs256_public_key_pem (or trusted_headers = \
             true), or dev_sign_in"
                .into(),
        ))
    }
}

impl Layered for Config {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_string()));
        self.log.check().map_err(ConfigError::Invalid)?;
        self.http.check().map_err(ConfigError::Invalid)?;
        let identity = &self.identity;
        if let Some(dev) = &self.dev_sign_in {
            if identity.is_set() {
                return invalid("dev_sign_in replaces identity: configure one of them, not both");
            }
            if dev.users.is_empty() {
                return invalid("dev_sign_in.users must name at least one user");
            }
        }
        if identity
            .hs256_secret
            .as_ref()
            .is_some_and(|secret| secret.expose_secret().len() < 32)
        {
            return invalid("identity.hs256_secret must be at least 32 bytes");
        }
        self.kafka.security.check().map_err(ConfigError::Invalid)?;
        let consumer = &self.kafka.consumer;
        consumer.check_guarantees("kafka.consumer", MANUAL_OFFSET_STORE)?;
        for origin in &self.http.cors_allowed_origins {
            let valid = origin != "*"
                && origin.parse::<axum::http::HeaderValue>().is_ok()
                && origin.parse::<axum::http::Uri>().is_ok_and(|uri| {
                    uri.scheme().is_some() && uri.host().is_some() && uri.path() == "/"
                });
            if !valid {
                return Err(ConfigError::Invalid(format!(
                    "http.cors_allowed_origins: {origin:?} is not an origin such as https://tasks.example.com (\"*\" is not allowed: list the origins)"
                )));
            }
        }
        if self.kafka.batch_size == 0
            || self.stream.buffer == 0
            || self.stream.resume_events == 0
            || self.stream.max_per_user == 0
        {
            return invalid(
                "kafka.batch_size, stream.buffer, stream.resume_events and stream.max_per_user \
                 must be positive",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
