//! The tasklist's settings that every deployment shares: how callers prove who they are, how
//! HTTP is served and how streams are kept. Each deployment reads them within its own
//! configuration (tasklist-api's file and environment, single-node's).

use serde::Deserialize;
use taskpool_service::SecretString;

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
    /// Connections served at once from one remote address (an IPv6 /64 counts as one); more
    /// are answered 429. 0: no such cap. Default: 1,000, or none where identities come from
    /// a proxy's headers (every connection has the proxy's address; let it limit clients).
    pub max_connections_per_address: Option<usize>,
    /// A separate address for `/metrics` and the health endpoints (an admin port reachable
    /// only from inside the cluster); when set, `listen` no longer serves `/metrics`.
    pub admin_listen: Option<String>,
    /// The host names clients reach this service by (`Host`), e.g. `["tasks.example.com"]`, or
    /// comma-separated in the environment; others are answered 421, and state-changing
    /// requests from pages of other origins 403. Empty: any name, except with the development
    /// sign-in, which answers only `localhost`, `127.0.0.1` and `::1` (DNS rebinding).
    #[serde(deserialize_with = "taskpool_service::config::list")]
    pub allowed_hosts: Vec<String>,
    /// A client must send its request's head, and then its body, within this many seconds
    /// each; a slower one is cut off (the head: disconnected; the body: 408).
    pub read_deadline_secs: u64,
    /// How long an action's `Idempotency-Key` names that request: a retry within it is the
    /// same command, the same key with another request is refused (422); after it, the key
    /// starts a new command.
    pub idempotency_key_secs: u64,
    /// Serve the web tasklist at `/` (plain files inside the binary; it signs in with a pasted
    /// bearer token, or with the development sign-in where that is on).
    pub web_tasklist: bool,
}

/// Who may do what beyond the tasks' own candidates and assignees.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// Groups whose members, where they are a task's candidates, may hand it on (`assign`),
    /// defer and undefer it though someone else claimed it, as the assignee may (team leads),
    /// e.g. `["leads"]`, or comma-separated in the environment. Empty: only the assignee. The
    /// engine still decides (the demo engine keeps to the assignee).
    #[serde(deserialize_with = "taskpool_service::config::list")]
    pub hand_over_groups: Vec<String>,
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
    /// Streams one user may hold open at once (tabs, devices); more are answered 429.
    pub max_per_user: usize,
}

mod defaults {
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

impl HttpConfig {
    /// What a deployment's validation refuses of these settings.
    pub fn check(&self) -> Result<(), String> {
        if self.read_deadline_secs == 0 {
            return Err("http.read_deadline_secs must be positive".into());
        }
        if self.idempotency_key_secs == 0 {
            return Err("http.idempotency_key_secs must be positive".into());
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            cors_allowed_origins: Vec::new(),
            max_connections: None,
            max_connections_per_address: None,
            admin_listen: None,
            allowed_hosts: Vec::new(),
            read_deadline_secs: 10,
            idempotency_key_secs: 24 * 3600,
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
            max_per_user: 16,
        }
    }
}
