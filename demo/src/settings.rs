//! The `taskpool-demo` binary's settings: a TOML file and `TASKPOOL_DEMO__<SECTION>__<KEY>`
//! environment variables, which win.

use serde::Deserialize;
use taskpool_service::SecretString;
use taskpool_service::config::{ConfigError, Layered, Validate};
use taskpool_service::kafka::KafkaSecurity;
use taskpool_service::logging::LogConfig;

use crate::config::DemoConfig;

pub const ENV_PREFIX: &str = "TASKPOOL_DEMO__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    #[serde(default)]
    pub demo: DemoConfig,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub log: LogConfig,
    /// Tasklist actions from this Kafka, decided by the demo's rules; none: no actions.
    #[serde(default)]
    pub commands: Option<CommandSettings>,
}

/// Where the demo takes tasklist actions from (and answers them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    pub bootstrap_servers: String,
    /// The prefix of the topics tasklist-api uses.
    #[serde(default = "topic_prefix")]
    pub topic_prefix: String,
    #[serde(default)]
    pub security: KafkaSecurity,
}

fn topic_prefix() -> String {
    "taskpool".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The engine's PostgreSQL database (taskpool's tables go next to the demo's).
    pub url: SecretString,
    #[serde(default = "max_connections")]
    pub max_connections: u32,
}

fn max_connections() -> u32 {
    4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where `/health/live` and `/health/ready` answer.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8090".into(),
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.demo.problem() {
            Some(problem) => Err(ConfigError::Invalid(problem)),
            None => Ok(()),
        }
    }
}

impl Layered for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads_with_the_demo_defaults() {
        let settings =
            Settings::from_sources(include_str!("../demo.example.toml"), Vec::new()).unwrap();
        let defaults = DemoConfig::default();
        assert_eq!(settings.demo.users, defaults.users);
        assert_eq!(settings.demo.rate, defaults.rate);
        assert_eq!(settings.http.listen, HttpSettings::default().listen);
        assert!(settings.commands.is_none(), "no actions unless configured");
    }

    #[test]
    fn the_environment_alone_is_enough_and_the_url_is_a_secret() {
        let env = [
            (
                "TASKPOOL_DEMO__DATABASE__URL",
                "postgres://demo:s3cret@db/demo",
            ),
            ("TASKPOOL_DEMO__DEMO__RATE", "50"),
            ("TASKPOOL_DEMO__HTTP__LISTEN", "0.0.0.0:8090"),
            ("TASKPOOL_DEMO__COMMANDS__BOOTSTRAP_SERVERS", "kafka:9092"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let settings = Settings::from_sources("", env).unwrap();
        assert_eq!(settings.demo.rate, 50.0);
        let commands = settings.commands.as_ref().expect("actions are on");
        assert_eq!(commands.bootstrap_servers, "kafka:9092");
        assert_eq!(commands.topic_prefix, "taskpool");
        assert!(!format!("{settings:?}").contains("s3cret"));
        let unknown = [
            ("TASKPOOL_DEMO__DATABASE__URL", "postgres://db/demo"),
            ("TASKPOOL_DEMO__DEMO__SPEED", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let error = Settings::from_sources("", unknown).unwrap_err().to_string();
        assert!(error.contains("speed"), "{error}");
    }
}
