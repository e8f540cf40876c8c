//! The librdkafka settings taskpool's delivery guarantees rest on. An operator's overrides
//! (`kafka.producer`, `kafka.consumer`) are applied after taskpool's own settings, so one of
//! them could silently switch a guarantee off; such an override is refused at start instead,
//! naming the key and what it would break. Overriding a setting with the value taskpool uses
//! anyway is allowed.

use crate::kafka::Overrides;

/// One setting a guarantee rests on.
#[derive(Debug, Clone, Copy)]
pub struct Guarantee {
    pub key: &'static str,
    /// Taskpool's value, as librdkafka spells it.
    pub value: &'static str,
    /// What an operator would lose by changing it.
    pub why: &'static str,
}

/// A producer whose acknowledged events survive a broker's failure, and whose retries neither
/// duplicate nor reorder the events of one key.
pub const IDEMPOTENT_PRODUCER: &[Guarantee] = &[
    Guarantee {
        key: "enable.idempotence",
        value: "true",
        why: "a retried send could then write an event twice or out of its order per task",
    },
    Guarantee {
        key: "acks",
        value: "all",
        why: "an event acknowledged by the partition leader alone is lost when that leader fails",
    },
];

/// A consumer that stores a message's offset only once the message is applied.
pub const MANUAL_OFFSET_STORE: &[Guarantee] = &[Guarantee {
    key: "enable.auto.offset.store",
    value: "false",
    why: "offsets would then be committed for messages not yet applied, and a crash would \
          skip them",
}];

/// Why an override is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{section}.{key} = \"{value}\" is refused: taskpool sets {key} to \"{required}\" because \
     otherwise {why}; remove the setting"
)]
pub struct GuaranteeOverride {
    pub section: String,
    pub key: String,
    pub value: String,
    pub required: &'static str,
    pub why: &'static str,
}

impl From<GuaranteeOverride> for crate::config::ConfigError {
    fn from(refusal: GuaranteeOverride) -> Self {
        crate::config::ConfigError::Invalid(refusal.to_string())
    }
}

impl Overrides {
    /// Refuses an override in `section` that changes one of `guarantees`.
    pub fn check_guarantees(
        &self,
        section: &str,
        guarantees: &[Guarantee],
    ) -> Result<(), GuaranteeOverride> {
        for (key, value) in &self.0 {
            // Override keys may spell `.` as `_` (environment variable names cannot hold dots).
            let key = key.replace('_', ".");
            let Some(guarantee) = guarantees.iter().find(|g| g.key == key) else {
                continue;
            };
            if normalized(value) != guarantee.value {
                return Err(GuaranteeOverride {
                    section: section.to_string(),
                    key,
                    value: value.clone(),
                    required: guarantee.value,
                    why: guarantee.why,
                });
            }
        }
        Ok(())
    }
}

/// A value as librdkafka reads it: booleans and `acks` have several spellings.
fn normalized(value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    match value.as_str() {
        "1" => "true".to_string(),
        "0" => "false".to_string(),
        "-1" => "all".to_string(),
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> Overrides {
        Overrides(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_changed_guarantee_is_refused_naming_its_key_and_why() {
        for (key, value, named) in [
            ("enable.idempotence", "false", "enable.idempotence"),
            ("enable_idempotence", "0", "enable.idempotence"),
            ("acks", "1", "acks"),
            ("acks", "0", "acks"),
        ] {
            let refusal = overrides(&[("linger.ms", "20"), (key, value)])
                .check_guarantees("kafka.producer", IDEMPOTENT_PRODUCER)
                .unwrap_err();
            assert_eq!(refusal.key, named);
            let message = refusal.to_string();
            assert!(message.starts_with(&format!("kafka.producer.{named} = \"{value}\"")));
            assert!(message.contains(refusal.why), "{message}");
        }
        let refusal = overrides(&[("enable_auto_offset_store", "true")])
            .check_guarantees("kafka.consumer", MANUAL_OFFSET_STORE)
            .unwrap_err();
        assert_eq!(refusal.key, "enable.auto.offset.store");
    }

    #[test]
    fn the_same_value_in_another_spelling_and_other_keys_are_allowed() {
        overrides(&[
            ("acks", "-1"),
            ("enable.idempotence", "TRUE"),
            ("linger_ms", "50"),
            ("compression.type", "zstd"),
        ])
        .check_guarantees("kafka.producer", IDEMPOTENT_PRODUCER)
        .unwrap();
        overrides(&[
            ("enable.auto.offset.store", "0"),
            ("fetch.wait.max.ms", "5"),
        ])
        .check_guarantees("kafka.consumer", MANUAL_OFFSET_STORE)
        .unwrap();
    }
}
