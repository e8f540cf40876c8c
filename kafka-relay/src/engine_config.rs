//! What the relay does for an engine that does not link the collector (Camunda 7, Operaton,
//! any engine that records through SQL): drain what it recorded (`[capture]`) and carry the
//! tasklist's actions out through its REST API (`[actions]`).

use std::time::Duration;

use serde::Deserialize;
use taskpool_engine_commands::rest::EngineEndpoint;
use taskpool_service::SecretString;
use taskpool_service::guarantees::MANUAL_OFFSET_STORE;
use taskpool_service::kafka::Overrides;

/// Events engines record through SQL (decision 0026), drained into the outbox by the leader.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Drain `taskpool_capture`; off for engines that link the collector.
    pub enabled: bool,
    /// Queued rows per drain transaction.
    pub batch_size: u32,
    /// Polling back-off while the queue is empty: from `poll_min_ms` doubling to `poll_max_ms`.
    pub poll_min_ms: u64,
    pub poll_max_ms: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            enabled: false,
            batch_size: 500,
            poll_min_ms: 2,
            poll_max_ms: 25,
        }
    }
}

impl CaptureConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.batch_size == 0 || self.poll_min_ms == 0 || self.poll_min_ms > self.poll_max_ms {
            return Err("capture.batch_size and capture.poll_min_ms must be positive, capture.poll_min_ms at most capture.poll_max_ms".into());
        }
        Ok(())
    }
}

/// Tasklist actions for a Camunda 7 / Operaton engine, carried out through its REST API
/// (decision 0028). Every relay replica takes commands (one Kafka consumer group).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    pub enabled: bool,
    /// The engine's application name (`capture install --application`): the commands for
    /// its tasks are taken.
    pub application: String,
    /// The REST API's root, e.g. `http://engine:8080/engine-rest`.
    pub engine_url: String,
    /// HTTP basic authentication, when the engine asks for it.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A PEM file of one more trusted certificate authority (for an `https` engine).
    pub ca_location: Option<String>,
    /// Deadline of one REST call.
    pub timeout_ms: u64,
    /// How long an applied command waits for the capture to give the task's new version
    /// (the tasklist's `?wait` then answers once the user's view shows it).
    pub version_wait_ms: u64,
    /// How long decided commands are remembered (a command older than half of it is refused
    /// as expired, so none is applied twice after its record is gone).
    pub retention_hours: u64,
    /// The consumer group; `<topic_prefix>.<application>.commands` when empty.
    pub group_id: String,
    /// librdkafka settings for the command consumer.
    pub consumer: Overrides,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            enabled: false,
            application: String::new(),
            engine_url: String::new(),
            username: None,
            password: None,
            ca_location: None,
            timeout_ms: 10_000,
            version_wait_ms: 5_000,
            retention_hours: 14 * 24,
            group_id: String::new(),
            consumer: Overrides::default(),
        }
    }
}

impl ActionsConfig {
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.application.is_empty() {
            return Err("actions.application must name the engine's application".into());
        }
        if !(self.engine_url.starts_with("http://") || self.engine_url.starts_with("https://")) {
            return Err(
                "actions.engine_url must be the engine's REST API (http:// or https://)".into(),
            );
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("actions.password needs actions.username".into());
        }
        if self.timeout_ms == 0 {
            return Err("actions.timeout_ms must be positive".into());
        }
        if self.retention_hours == 0 {
            // Half of it is how old a command may be: none would be applied.
            return Err("actions.retention_hours must be at least 1".into());
        }
        self.consumer
            .check_guarantees("actions.consumer", MANUAL_OFFSET_STORE)
            .map_err(|refusal| refusal.to_string())?;
        Ok(())
    }

    pub fn endpoint(&self) -> EngineEndpoint {
        EngineEndpoint {
            url: self.engine_url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_location: self.ca_location.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use taskpool_service::ExposeSecret;

    use crate::config::{Config, Layered};

    const MINIMAL: &str =
        "[database]\nurl = \"postgres://h/db\"\n[kafka]\nbootstrap_servers = \"h:1\"\n";

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_sources(MINIMAL, env.collect::<Vec<_>>()).map_err(|e| e.to_string())
    }

    #[test]
    fn actions_come_from_the_environment_with_the_password_kept_secret() {
        let config = load(&[
            ("TASKPOOL_RELAY__ACTIONS__ENABLED", "true"),
            ("TASKPOOL_RELAY__ACTIONS__APPLICATION", "purchases"),
            (
                "TASKPOOL_RELAY__ACTIONS__ENGINE_URL",
                "http://engine:8080/engine-rest",
            ),
            ("TASKPOOL_RELAY__ACTIONS__USERNAME", "taskpool"),
            ("TASKPOOL_RELAY__ACTIONS__PASSWORD", "pw-771"),
        ])
        .unwrap();
        let endpoint = config.actions.endpoint();
        assert_eq!(endpoint.password.unwrap().expose_secret(), "pw-771");
        assert!(!format!("{config:?}").contains("pw-771"));
    }

    #[test]
    fn an_actions_consumer_override_storing_offsets_early_is_refused() {
        let error = load(&[
            ("TASKPOOL_RELAY__ACTIONS__ENABLED", "true"),
            ("TASKPOOL_RELAY__ACTIONS__APPLICATION", "purchases"),
            (
                "TASKPOOL_RELAY__ACTIONS__ENGINE_URL",
                "http://engine/engine-rest",
            ),
            (
                "TASKPOOL_RELAY__ACTIONS__CONSUMER__ENABLE_AUTO_OFFSET_STORE",
                "true",
            ),
        ])
        .unwrap_err();
        assert!(
            error.contains("actions.consumer.enable.auto.offset.store"),
            "{error}"
        );
    }

    #[test]
    fn enabled_actions_need_an_application_and_an_engine() {
        let enabled = ("TASKPOOL_RELAY__ACTIONS__ENABLED", "true");
        let url = (
            "TASKPOOL_RELAY__ACTIONS__ENGINE_URL",
            "http://engine/engine-rest",
        );
        let application = ("TASKPOOL_RELAY__ACTIONS__APPLICATION", "purchases");
        assert!(
            load(&[enabled, url])
                .unwrap_err()
                .contains("actions.application")
        );
        assert!(
            load(&[enabled, application])
                .unwrap_err()
                .contains("actions.engine_url")
        );
        let password = ("TASKPOOL_RELAY__ACTIONS__PASSWORD", "x");
        assert!(
            load(&[enabled, url, application, password])
                .unwrap_err()
                .contains("username")
        );
        assert!(load(&[enabled, url, application]).is_ok());
        assert!(
            load(&[url]).is_ok(),
            "settings of disabled actions are not checked"
        );
    }
}
