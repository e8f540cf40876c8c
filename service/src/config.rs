//! Layered configuration: defaults (in the typed structs), then a TOML file, then environment
//! variables, which win. A variable names a key by its path after a prefix, sections joined by
//! `__`: with prefix `TASKPOOL_RELAY__`, `TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS` sets
//! `kafka.bootstrap_servers`.
//!
//! Environment values stay text until the target type reads them (config-rs converts on
//! demand), so a group id `"42"`, an all-digit secret `"0012"` or an override `"10"` arrive as
//! written, while numbers, floats and booleans parse where the field wants one. Lists come from
//! the environment as comma-separated text ([`list`]). Errors name the key and where the value
//! came from (the file's path, or "the environment"). Unknown keys are refused
//! (`deny_unknown_fields`), so a typo never falls back to a default silently.

use std::collections::HashMap;
use std::path::Path;

use config::{Environment, File, FileFormat};
use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value does not fit its key; the message names the key
    /// and the source.
    #[error(transparent)]
    Load(#[from] config::ConfigError),
    /// The values fit their types but break a rule between them.
    #[error("{0}")]
    Invalid(String),
}

/// A configuration with rules beyond its types (ranges, required combinations).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A configuration loaded in layers; implementors name their environment prefix and get
/// `load` and `from_sources`.
pub trait Layered: DeserializeOwned + Validate {
    /// The prefix of the environment variables that set keys, e.g. `TASKPOOL_RELAY__`.
    const ENV_PREFIX: &'static str;

    /// From an optional file and the process environment.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        load(file, Self::ENV_PREFIX)
    }

    /// From TOML text and `(name, value)` environment pairs.
    fn from_sources(
        toml_text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        from_sources(toml_text, env, Self::ENV_PREFIX)
    }

    /// A setting as the environment variable that sets it: `SECTION__KEY` under
    /// [`Self::ENV_PREFIX`] (for tests, and for services started with given settings).
    fn env_var<K: std::fmt::Display, V: Into<String>>((key, value): (K, V)) -> (String, String) {
        (format!("{}{key}", Self::ENV_PREFIX), value.into())
    }
}

/// `(name, value)` pairs as owned environment pairs, for [`from_sources`] (tests).
pub fn env_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Loads and validates `T` from an optional file and the process environment.
pub fn load<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    finish(builder.add_source(environment(env_prefix, None)))
}

/// Builds and validates `T` from TOML text and `(name, value)` environment pairs.
pub fn from_sources<T: DeserializeOwned + Validate>(
    toml_text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let pairs: HashMap<String, String> = env.into_iter().collect();
    finish(
        config::Config::builder()
            .add_source(File::from_str(toml_text, FileFormat::Toml))
            .add_source(environment(env_prefix, Some(pairs))),
    )
}

fn environment(prefix: &str, pairs: Option<HashMap<String, String>>) -> Environment {
    Environment::with_prefix(prefix.trim_end_matches('_'))
        .prefix_separator("__")
        .separator("__")
        .source(pairs)
}

fn finish<T: DeserializeOwned + Validate>(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
) -> Result<T, ConfigError> {
    let config: T = builder.build()?.try_deserialize()?;
    config.validate()?;
    Ok(config)
}

/// Deserializes a list from a sequence (files) or from comma-separated text (the
/// environment); blank items are dropped. Use with `#[serde(deserialize_with = ...)]`.
pub fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        Text(String),
    }
    Ok(match serde::Deserialize::deserialize(deserializer)? {
        OneOrMany::Many(items) => items,
        OneOrMany::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::{ExposeSecret, SecretString};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        section: Section,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.section.count == 0 {
                return Err(ConfigError::Invalid("count must be positive".into()));
            }
            Ok(())
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        name: String,
        count: u32,
        #[serde(default)]
        flag: bool,
        #[serde(default)]
        ratio: f64,
        #[serde(default, deserialize_with = "list")]
        items: Vec<String>,
        #[serde(default)]
        secret: Option<SecretString>,
        #[serde(default)]
        overrides: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn environment_wins_over_the_file_and_the_target_type_decides_the_parsing() {
        let sample: Sample = from_sources(
            "[section]\nname = \"file\"\ncount = 1",
            env_pairs(&[
                ("P__SECTION__NAME", "0042"),
                ("P__SECTION__COUNT", "7"),
                ("P__SECTION__FLAG", "true"),
                ("P__SECTION__RATIO", "0.25"),
                ("P__SECTION__ITEMS", "a, b,,c"),
                ("P__SECTION__SECRET", "000123"),
                ("P__SECTION__OVERRIDES__LINGER_MS", "10"),
                ("OTHER", "x"),
            ]),
            "P__",
        )
        .unwrap();
        let section = &sample.section;
        assert_eq!((section.name.as_str(), section.count), ("0042", 7));
        assert!(section.flag);
        assert_eq!(section.ratio, 0.25);
        assert_eq!(section.items, ["a", "b", "c"]);
        assert_eq!(
            section.secret.as_ref().map(|s| s.expose_secret()),
            Some("000123")
        );
        assert_eq!(
            section.overrides.get("linger_ms").map(String::as_str),
            Some("10")
        );
    }

    #[test]
    fn a_file_list_and_a_file_number_for_a_text_field_are_read() {
        let sample: Sample = from_sources(
            "[section]\nname = 12\ncount = 1\nitems = [\"x\", \"y\"]",
            env_pairs(&[]),
            "P__",
        )
        .unwrap();
        assert_eq!(sample.section.name, "12");
        assert_eq!(sample.section.items, ["x", "y"]);
    }

    #[test]
    fn a_bad_value_names_its_key_and_its_source() {
        let error = from_sources::<Sample>(
            "[section]\nname = \"a\"\ncount = 1",
            env_pairs(&[("P__SECTION__COUNT", "many")]),
            "P__",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("section.count"), "{error}");
        assert!(error.contains("the environment"), "{error}");

        let dir = std::env::temp_dir().join(format!("taskpool-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[section]\nname = \"a\"\ncount = \"lots\"").unwrap();
        let error = load::<Sample>(Some(&path), "TASKPOOL_CONFIG_TEST_UNUSED__")
            .unwrap_err()
            .to_string();
        assert!(error.contains("section.count"), "{error}");
        assert!(error.contains("bad.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let sample: Sample = from_sources(
            "[section]\nname = \"a\"\ncount = 1",
            env_pairs(&[("P__SECTION__SECRET", "hunter2-secret")]),
            "P__",
        )
        .unwrap();
        let debug = format!("{sample:?}");
        assert!(!debug.contains("hunter2-secret"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }

    #[test]
    fn unknown_keys_from_either_source_are_refused() {
        let file: Result<Sample, _> = from_sources(
            "[section]\nname = \"a\"\ncount = 1\ncuont = 2",
            env_pairs(&[]),
            "P__",
        );
        assert!(file.unwrap_err().to_string().contains("cuont"));
        let environment: Result<Sample, _> = from_sources(
            "[section]\nname = \"a\"\ncount = 1",
            env_pairs(&[("P__SECTION__NAEM", "b")]),
            "P__",
        );
        assert!(environment.unwrap_err().to_string().contains("naem"));
    }

    #[test]
    fn the_rules_beyond_the_types_are_checked() {
        let error =
            from_sources::<Sample>("[section]\nname = \"a\"\ncount = 0", env_pairs(&[]), "P__")
                .unwrap_err();
        assert!(error.to_string().contains("positive"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(from_sources::<Sample>("[section", env_pairs(&[]), "P__").is_err());
        assert!(
            from_sources::<Sample>(
                "section = 1",
                env_pairs(&[("P__SECTION__NAME", "x")]),
                "P__"
            )
            .is_err()
        );
    }
}
