//! Task and data-entry state and their events, as they travel on the wire.
//!
//! Field names follow the Avro schemas (camelCase). Every event carries the aggregate's full
//! state after the change together with its version, so consumers never need the history.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Milliseconds since the Unix epoch (UTC), Avro `timestamp-millis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2023-11-14T22:13:20.000Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400_000);
        let millis_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let seconds = millis_of_day / 1000;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            millis_of_day % 1000
        )
    }
}

/// Gregorian date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A JSON object (task variables, business data). On the wire it is JSON text in an Avro
/// string, so any schema can carry any payload without Avro schema changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload(pub serde_json::Map<String, serde_json::Value>);

impl Payload {
    pub fn new() -> Self {
        Payload::default()
    }

    /// A payload from a JSON value, which must be an object.
    pub fn from_value(value: serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Object(map) => Some(Payload(map)),
            _ => None,
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text)
            .map(Payload)
            .map_err(|e| serde::de::Error::custom(format!("payload is not a JSON object: {e}")))
    }
}

/// Where a task comes from in the process engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReference {
    pub process_instance_id: String,
    pub execution_id: String,
    pub process_definition_id: String,
    pub process_definition_key: String,
    pub process_name: String,
    pub application_name: String,
    pub tenant_id: Option<String>,
}

/// A reference from a task (or data entry) to a data entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEntryReference {
    pub entry_type: String,
    pub entry_id: String,
}

/// Life-cycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Active,
    Completed,
    Deleted,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Active => "active",
            TaskState::Completed => "completed",
            TaskState::Deleted => "deleted",
        })
    }
}

/// A user task with everything a tasklist shows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub source_reference: SourceReference,
    pub task_definition_key: String,
    pub name: String,
    pub description: Option<String>,
    pub form_key: Option<String>,
    pub priority: i32,
    pub create_time: Timestamp,
    pub due_date: Option<Timestamp>,
    pub follow_up_date: Option<Timestamp>,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub candidate_users: BTreeSet<String>,
    pub candidate_groups: BTreeSet<String>,
    pub business_key: Option<String>,
    pub payload: Payload,
    pub correlations: Vec<DataEntryReference>,
    pub state: TaskState,
    pub delete_reason: Option<String>,
}

/// How far the business object behind a data entry has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessingType {
    Preliminary,
    InProgress,
    Completed,
    Cancelled,
    Undefined,
}

impl ProcessingType {
    pub const ALL: [ProcessingType; 5] = [
        ProcessingType::Preliminary,
        ProcessingType::InProgress,
        ProcessingType::Completed,
        ProcessingType::Cancelled,
        ProcessingType::Undefined,
    ];

    /// The wire name (`IN_PROGRESS`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessingType::Preliminary => "PRELIMINARY",
            ProcessingType::InProgress => "IN_PROGRESS",
            ProcessingType::Completed => "COMPLETED",
            ProcessingType::Cancelled => "CANCELLED",
            ProcessingType::Undefined => "UNDEFINED",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Processing type plus the application's own state name ("Approved", "Shipped", ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEntryState {
    pub processing_type: ProcessingType,
    pub state: String,
}

/// One line of a data entry's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolEntry {
    pub time: Timestamp,
    pub processing_type: ProcessingType,
    pub state: String,
    pub username: Option<String>,
    pub log_message: Option<String>,
    pub log_details: Option<String>,
}

/// A business object shown next to tasks, visible to its authorized users and groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEntry {
    pub entry_type: String,
    pub entry_id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub application_name: String,
    pub name: String,
    pub description: Option<String>,
    pub state: DataEntryState,
    pub payload: Payload,
    pub correlations: Vec<DataEntryReference>,
    pub authorized_users: BTreeSet<String>,
    pub authorized_groups: BTreeSet<String>,
    pub form_key: Option<String>,
    pub protocol: Vec<ProtocolEntry>,
    pub deleted: bool,
}

/// A task event: what happened (`event_type`) and the task's full state afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEvent {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: String,
    pub version: i64,
    pub occurred_at: Timestamp,
    pub task: Task,
}

/// A data-entry event: what happened (`event_type`) and the entry's full state afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEntryEvent {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub event_type: String,
    pub version: i64,
    pub occurred_at: Timestamp,
    pub data_entry: DataEntry,
}

/// UUIDs travel as their canonical text form (an Avro `string`), whatever the serializer's
/// human-readable setting.
pub(crate) mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_700_000_000_123).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp(4_102_444_800_000).to_rfc3339(),
            "2100-01-01T00:00:00.000Z"
        );
    }
}
