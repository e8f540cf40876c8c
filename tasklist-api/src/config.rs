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

/// How callers prove who they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Secret for HS256-signed bearer tokens.
    pub hs256_secret: Option<SecretString>,
    /// PEM public key for RS256-signed bearer tokens.
    pub rs256_public_key_pem: Option<String>,
    /// URL of the identity provider's key set (JWKS), e.g. Keycloak's
    /// `https://sso.example.com/realms/<realm>/protocol/openid-connect/certs`; tokens name
    /// their key with `kid`, and rotated keys are fetched when first seen.
    pub jwks_url: Option<String>,
    /// PEM file of a certificate authority to trust for `jwks_url`, besides the system's.
    pub jwks_ca_location: Option<String>,
    /// The key set is fetched again when it is older than this.
    #[serde(default = "defaults::jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
    /// Fetches of the key set are at least this far apart (unknown `kid`s do not flood the
    /// provider).
    #[serde(default = "defaults::jwks_min_refresh_ms")]
    pub jwks_min_refresh_ms: u64,
    /// Clock skew allowed when checking `exp` and `nbf`.
    #[serde(default = "defaults::leeway_secs")]
    pub leeway_secs: u64,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
    /// Claim holding the user id.
    #[serde(default = "defaults::user_claim")]
    pub user_claim: String,
    /// Claim holding the list of groups.
    #[serde(default = "defaults::groups_claim")]
    pub groups_claim: String,
    /// Trust `X-Taskpool-User` and `X-Taskpool-Groups` headers set by a gateway. Only for
    /// deployments where clients cannot reach this service except through that gateway.
    #[serde(default)]
    pub trusted_headers: bool,
}

impl IdentityConfig {
    /// Whether any way of proving who a caller is is configured.
    pub fn is_set(&self) -> bool {
        self.hs256_secret.is_some()
            || self.rs256_public_key_pem.is_some()
            || self.jwks_url.is_some()
            || self.trusted_headers
    }

    /// HS256 tokens signed with `secret`, every other setting at its default.
    pub fn hs256(secret: SecretString) -> IdentityConfig {
        IdentityConfig {
            hs256_secret: Some(secret),
            rs256_public_key_pem: None,
            jwks_url: None,
            jwks_ca_location: None,
            jwks_refresh_secs: defaults::jwks_refresh_secs(),
            jwks_min_refresh_ms: defaults::jwks_min_refresh_ms(),
            leeway_secs: defaults::leeway_secs(),
            issuer: None,
            audience: None,
            user_claim: defaults::user_claim(),
            groups_claim: defaults::groups_claim(),
            trusted_headers: false,
        }
    }
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Origins of browser tasklists served from elsewhere that may call the API (CORS), e.g.
    /// `["https://tasks.example.com"]`, or comma-separated in the environment. Empty: none.
    #[serde(deserialize_with = "taskpool_service::config::list")]
    pub cors_allowed_origins: Vec<String>,
    /// Connections served at once; more are answered 503. Default: the process's
    /// file-descriptor limit less 512.
    pub max_connections: Option<usize>,
    /// A separate address for `/metrics` and the health endpoints (an admin port reachable
    /// only from inside the cluster); when set, `listen` no longer serves `/metrics`.
    pub admin_listen: Option<String>,
    /// Serve the web tasklist at `/` (plain files inside the binary; it signs in with a pasted
    /// bearer token, or with the development sign-in where that is on).
    pub web_tasklist: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Events buffered per stream connection (bursts of changes included); a client that
    /// falls this far behind gets `resync` and is disconnected. Unused slots cost nothing.
    pub buffer: usize,
    /// Seconds between heartbeats on idle streams.
    pub heartbeat_secs: u64,
    /// How long a disconnected stream can be resumed with `Last-Event-ID`.
    pub resume_window_secs: u64,
    /// Events remembered per stream for resuming.
    pub resume_events: usize,
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
    pub fn jwks_refresh_secs() -> u64 {
        300
    }
    pub fn jwks_min_refresh_ms() -> u64 {
        10_000
    }
    pub fn leeway_secs() -> u64 {
        30
    }
    pub fn user_claim() -> String {
        "sub".into()
    }
    pub fn groups_claim() -> String {
        "groups".into()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            cors_allowed_origins: Vec::new(),
            max_connections: None,
            admin_listen: None,
            web_tasklist: true,
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            buffer: 1024,
            heartbeat_secs: 15,
            resume_window_secs: 120,
            resume_events: 256,
        }
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
        if self.kafka.batch_size == 0 || self.stream.buffer == 0 || self.stream.resume_events == 0 {
            return invalid(
                "kafka.batch_size, stream.buffer and stream.resume_events must be positive",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
