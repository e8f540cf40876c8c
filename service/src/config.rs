//! Layered configuration: defaults (in the typed structs), then a TOML file, then environment
//! variables, which win. A variable names a key by its path after a prefix, sections joined by
//! `__`: with prefix `TASKPOOL_RELAY__`, `TASKPOOL_RELAY__KAFKA__BOOTSTRAP_SERVERS` sets
//! `kafka.bootstrap_servers`. Values are read as TOML booleans or integers when they parse as
//! one, and as strings otherwise. Unknown keys fail deserialization (`deny_unknown_fields`).

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
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
}

/// Loads and validates `T` from an optional file and the process environment.
pub fn load<T: DeserializeOwned + Validate>(
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?,
        None => String::new(),
    };
    from_sources(&text, std::env::vars(), env_prefix)
}

/// Builds and validates `T` from TOML text and `(name, value)` environment pairs.
pub fn from_sources<T: DeserializeOwned + Validate>(
    toml_text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = toml_text
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("configuration file: {e}")))?;
    for (name, value) in env {
        let Some(path) = name.strip_prefix(env_prefix) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        set_path(&mut table, &keys, scalar(&value))
            .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
    }
    let config: T = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

/// An environment value as a TOML scalar when it parses as one, else as a string.
fn scalar(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_string())
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_wins_over_the_file_and_scalars_are_typed() {
        let sample: Sample = from_sources(
            "[section]\nname = \"file\"\ncount = 1",
            env(&[
                ("P__SECTION__COUNT", "7"),
                ("P__SECTION__FLAG", "true"),
                ("OTHER", "x"),
            ]),
            "P__",
        )
        .unwrap();
        assert_eq!(
            (sample.section.name.as_str(), sample.section.count),
            ("file", 7)
        );
        assert!(sample.section.flag);
    }

    #[test]
    fn unknown_keys_from_either_source_are_refused() {
        let file: Result<Sample, _> = from_sources(
            "[section]\nname = \"a\"\ncount = 1\ncuont = 2",
            env(&[]),
            "P__",
        );
        assert!(file.unwrap_err().to_string().contains("cuont"));
        let environment: Result<Sample, _> = from_sources(
            "[section]\nname = \"a\"\ncount = 1",
            env(&[("P__SECTION__NAEM", "b")]),
            "P__",
        );
        assert!(environment.unwrap_err().to_string().contains("naem"));
    }

    #[test]
    fn the_rules_beyond_the_types_are_checked() {
        let error = from_sources::<Sample>("[section]\nname = \"a\"\ncount = 0", env(&[]), "P__")
            .unwrap_err();
        assert!(error.to_string().contains("positive"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(from_sources::<Sample>("[section", env(&[]), "P__").is_err());
        assert!(
            from_sources::<Sample>("section = 1", env(&[("P__SECTION__NAME", "x")]), "P__")
                .is_err()
        );
    }
}
