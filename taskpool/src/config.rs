//! The `taskpool` binary's settings: a TOML file and `TASKPOOL__<SECTION>__<KEY>` environment
//! variables, which win. Every key has a default: with none set, it runs the demo on
//! `./taskpool-data` and serves `http://127.0.0.1:8080/`.

use std::path::PathBuf;

use serde::Deserialize;
use taskpool_demo::DemoConfig;
use taskpool_service::config::{ConfigError, Layered, Validate};
use taskpool_service::logging::LogConfig;
use taskpool_tasklist::settings::{ActionsConfig, HttpConfig, IdentityConfig, StreamConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub http: HttpConfig,
    pub stream: StreamConfig,
    /// Who may do what beyond the tasks' candidates and assignees.
    pub actions: ActionsConfig,
    /// Bearer-token settings as in `tasklist-api`. Unset: development sign-in for the demo's
    /// users (anyone who can reach the port may act as any of them).
    pub identity: Option<IdentityConfig>,
    pub demo: DemoSection,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Where the SQLite database lives (created if missing).
    pub dir: PathBuf,
    /// How long decided tasklist actions are remembered (an action older than half of it is
    /// refused as expired, so none is applied twice after its record is gone).
    pub command_retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSection {
    /// Run the demo engine in this process.
    pub enabled: bool,
    pub rate: f64,
    pub active_requests: usize,
    pub users: Vec<taskpool_demo::DemoUser>,
    pub manager_threshold: i64,
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: DataConfig::default(),
            http: HttpConfig::default(),
            stream: StreamConfig::default(),
            actions: ActionsConfig::default(),
            identity: None,
            demo: DemoSection::default(),
            // Readable in a terminal; `TASKPOOL__LOG__FORMAT=json` for a log collector.
            log: LogConfig {
                format: taskpool_service::logging::LogFormat::Pretty,
                ..LogConfig::default()
            },
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("taskpool-data"),
            command_retention_hours: 14 * 24,
        }
    }
}

impl Default for DemoSection {
    fn default() -> Self {
        let demo = DemoConfig::default();
        DemoSection {
            enabled: true,
            rate: demo.rate,
            active_requests: demo.active_requests,
            users: demo.users,
            manager_threshold: demo.manager_threshold,
            seed: demo.seed,
        }
    }
}

impl DemoSection {
    pub fn demo_config(&self) -> DemoConfig {
        DemoConfig {
            rate: self.rate,
            active_requests: self.active_requests,
            users: self.users.clone(),
            manager_threshold: self.manager_threshold,
            seed: self.seed,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.check().map_err(ConfigError::Invalid)?;
        self.http.check().map_err(ConfigError::Invalid)?;
        if self.data.command_retention_hours == 0 {
            // Half of it is how old an action may be: none would be applied.
            return Err(ConfigError::Invalid(
                "data.command_retention_hours must be at least 1".into(),
            ));
        }
        if let Some(problem) = self.demo.demo_config().problem() {
            return Err(ConfigError::Invalid(problem));
        }
        Ok(())
    }
}

impl Layered for Config {
    const ENV_PREFIX: &'static str = "TASKPOOL__";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_runs_the_demo_on_the_local_data_directory() {
        let config = Config::from_sources("", Vec::new()).unwrap();
        assert!(config.demo.enabled);
        assert_eq!(config.data.dir, PathBuf::from("taskpool-data"));
        assert!(config.identity.is_none());
        assert_eq!(config.http.listen, "127.0.0.1:8080");
    }

    #[test]
    fn a_retention_of_no_hours_is_refused() {
        let env = [("TASKPOOL__DATA__COMMAND_RETENTION_HOURS", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let error = Config::from_sources("", env).unwrap_err().to_string();
        assert!(error.contains("command_retention_hours"), "{error}");
    }

    #[test]
    fn the_example_configuration_loads_with_the_demo_defaults() {
        let example = include_str!("../taskpool.example.toml");
        let config = Config::from_sources(example, Vec::new()).unwrap();
        let defaults = DemoConfig::default();
        assert_eq!(config.demo.users, defaults.users);
        assert_eq!(config.demo.rate, defaults.rate);
        assert_eq!(config.demo.manager_threshold, defaults.manager_threshold);
        assert_eq!(config.http.listen, Config::default().http.listen);
    }

    #[test]
    fn the_environment_sets_keys_and_bad_values_are_named() {
        let env = [
            ("TASKPOOL__DEMO__RATE", "25.5"),
            ("TASKPOOL__HTTP__LISTEN", "127.0.0.1:0"),
            ("TASKPOOL__DATA__DIR", "/var/lib/taskpool"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::from_sources("", env).unwrap();
        assert_eq!(config.demo.rate, 25.5);
        assert_eq!(config.http.listen, "127.0.0.1:0");
        let bad = [("TASKPOOL__DEMO__RATE".to_string(), "-1".to_string())];
        let error = Config::from_sources("", bad).unwrap_err().to_string();
        assert!(error.contains("demo.rate"), "{error}");
    }
}
