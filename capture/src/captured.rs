//! What an engine recorded through SQL (`taskpool_record_task_event`,
//! `taskpool_record_data_entry_event`), turned into the collector's [`EngineEvent`]. The SQL
//! functions checked and normalized the fields (timestamps as epoch milliseconds); anything that
//! still does not fit is an error naming it, and the drainer dead-letters the row.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use taskpool_collector::EngineEvent;
use taskpool_core::domain::data_entry::{DataEntryContent, ProtocolNote};
use taskpool_core::domain::task::{NewTask, TaskAttributes};
use taskpool_schemas::{DataEntryReference, DataEntryState, Payload, SourceReference, Timestamp};

/// A task's priority when the engine gives none (Camunda's and Operaton's default).
pub const DEFAULT_PRIORITY: i32 = 50;

/// The delete reason when the engine gives none.
pub const DEFAULT_DELETE_REASON: &str = "deleted";

/// One queued event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub kind: String,
    pub fields: Value,
    /// When the engine recorded it: a created task's default create time.
    pub recorded_at: Timestamp,
}

impl Captured {
    /// The collector's event for this row, or why there is none.
    pub fn engine_event(&self) -> Result<EngineEvent, String> {
        match self.aggregate_type.as_str() {
            "task" => self.task_event(),
            "data-entry" => self.data_entry_event(),
            other => Err(format!("unknown aggregate type {other:?}")),
        }
    }

    fn task_event(&self) -> Result<EngineEvent, String> {
        let task_id = self.aggregate_id.clone();
        Ok(match self.kind.as_str() {
            "created" => {
                let task = self.fields::<CreatedFields>()?.new_task(self.recorded_at);
                EngineEvent::TaskCreated {
                    task_id,
                    task: Box::new(task),
                }
            }
            "assigned" => EngineEvent::TaskAssigned {
                task_id,
                assignee: self.fields::<AssignedFields>()?.assignee,
            },
            "attributes" => EngineEvent::TaskAttributesChanged {
                task_id,
                attributes: Box::new(self.fields::<AttributeFields>()?.attributes()),
            },
            "candidate-user-added" => EngineEvent::CandidateUserAdded {
                task_id,
                user: self.fields::<UserFields>()?.user,
            },
            "candidate-user-removed" => EngineEvent::CandidateUserRemoved {
                task_id,
                user: self.fields::<UserFields>()?.user,
            },
            "candidate-group-added" => EngineEvent::CandidateGroupAdded {
                task_id,
                group: self.fields::<GroupFields>()?.group,
            },
            "candidate-group-removed" => EngineEvent::CandidateGroupRemoved {
                task_id,
                group: self.fields::<GroupFields>()?.group,
            },
            "completed" => {
                self.fields::<NoFields>()?;
                EngineEvent::TaskCompleted { task_id }
            }
            "deleted" => EngineEvent::TaskDeleted {
                task_id,
                reason: self
                    .fields::<DeletedFields>()?
                    .reason
                    .unwrap_or_else(|| DEFAULT_DELETE_REASON.to_string()),
            },
            other => return Err(format!("unknown task event kind {other:?}")),
        })
    }

    fn data_entry_event(&self) -> Result<EngineEvent, String> {
        let (entry_type, entry_id) = self
            .aggregate_id
            .split_once(taskpool_core::domain::data_entry::ID_SEPARATOR)
            .ok_or_else(|| format!("data entry id {:?} has no entry type", self.aggregate_id))?;
        let (entry_type, entry_id) = (entry_type.to_string(), entry_id.to_string());
        Ok(match self.kind.as_str() {
            "changed" => {
                let fields = self.fields::<DataEntryFields>()?;
                let note = fields.note.clone().map(ProtocolNote::from);
                EngineEvent::DataEntryChanged {
                    entry_type,
                    entry_id,
                    content: Box::new(fields.content()),
                    note,
                }
            }
            "deleted" => EngineEvent::DataEntryDeleted {
                entry_type,
                entry_id,
                note: self.fields::<DeletedEntryFields>()?.note.map(Into::into),
            },
            other => return Err(format!("unknown data-entry event kind {other:?}")),
        })
    }

    fn fields<T: DeserializeOwned>(&self) -> Result<T, String> {
        T::deserialize(&self.fields).map_err(|e| format!("{} {}: {e}", self.kind, self.fields))
    }
}

/// Absent stays `None`; an explicit `null` becomes `Some(None)` (clear the attribute).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreatedFields {
    source_reference: SourceReference,
    task_definition_key: String,
    name: String,
    description: Option<String>,
    form_key: Option<String>,
    priority: Option<i32>,
    create_time: Option<i64>,
    due_date: Option<i64>,
    follow_up_date: Option<i64>,
    assignee: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    candidate_users: BTreeSet<String>,
    #[serde(default)]
    candidate_groups: BTreeSet<String>,
    business_key: Option<String>,
    #[serde(default)]
    payload: Map<String, Value>,
    #[serde(default)]
    correlations: Vec<DataEntryReference>,
}

impl CreatedFields {
    fn new_task(self, recorded_at: Timestamp) -> NewTask {
        NewTask {
            source_reference: self.source_reference,
            task_definition_key: self.task_definition_key,
            name: self.name,
            description: self.description,
            form_key: self.form_key,
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            create_time: self.create_time.map_or(recorded_at, Timestamp),
            due_date: self.due_date.map(Timestamp),
            follow_up_date: self.follow_up_date.map(Timestamp),
            assignee: self.assignee,
            owner: self.owner,
            candidate_users: self.candidate_users,
            candidate_groups: self.candidate_groups,
            business_key: self.business_key,
            payload: Payload(self.payload),
            correlations: self.correlations,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignedFields {
    assignee: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AttributeFields {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    form_key: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    business_key: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    due_date: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    follow_up_date: Option<Option<i64>>,
    priority: Option<i32>,
    payload: Option<Map<String, Value>>,
    correlations: Option<Vec<DataEntryReference>>,
}

impl AttributeFields {
    fn attributes(self) -> TaskAttributes {
        TaskAttributes {
            name: self.name,
            description: self.description,
            form_key: self.form_key,
            business_key: self.business_key,
            owner: self.owner,
            due_date: self.due_date.map(|d| d.map(Timestamp)),
            follow_up_date: self.follow_up_date.map(|d| d.map(Timestamp)),
            priority: self.priority,
            payload: self.payload.map(Payload),
            correlations: self.correlations,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFields {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFields {
    group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletedFields {
    reason: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NoteFields {
    username: Option<String>,
    log_message: Option<String>,
    log_details: Option<String>,
}

impl From<NoteFields> for ProtocolNote {
    fn from(note: NoteFields) -> ProtocolNote {
        ProtocolNote {
            username: note.username,
            log_message: note.log_message,
            log_details: note.log_details,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataEntryFields {
    #[serde(rename = "type")]
    type_name: String,
    application_name: String,
    name: String,
    description: Option<String>,
    state: DataEntryState,
    #[serde(default)]
    payload: Map<String, Value>,
    #[serde(default)]
    correlations: Vec<DataEntryReference>,
    #[serde(default)]
    authorized_users: BTreeSet<String>,
    #[serde(default)]
    authorized_groups: BTreeSet<String>,
    form_key: Option<String>,
    note: Option<NoteFields>,
}

impl DataEntryFields {
    fn content(self) -> DataEntryContent {
        DataEntryContent {
            type_name: self.type_name,
            application_name: self.application_name,
            name: self.name,
            description: self.description,
            state: self.state,
            payload: Payload(self.payload),
            correlations: self.correlations,
            authorized_users: self.authorized_users,
            authorized_groups: self.authorized_groups,
            form_key: self.form_key,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeletedEntryFields {
    note: Option<NoteFields>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(aggregate_type: &str, id: &str, kind: &str, fields: Value) -> Captured {
        Captured {
            aggregate_type: aggregate_type.into(),
            aggregate_id: id.into(),
            kind: kind.into(),
            fields,
            recorded_at: Timestamp(1_000),
        }
    }

    #[test]
    fn attributes_tell_an_absent_field_from_a_cleared_one() {
        let event = captured(
            "task",
            "t1",
            "attributes",
            serde_json::json!({"dueDate": null, "priority": 7}),
        )
        .engine_event()
        .unwrap();
        let EngineEvent::TaskAttributesChanged { attributes, .. } = event else {
            panic!("{event:?}");
        };
        assert_eq!(attributes.due_date, Some(None));
        assert_eq!(attributes.follow_up_date, None);
        assert_eq!(attributes.priority, Some(7));
    }

    #[test]
    fn a_created_task_takes_the_defaults_of_the_engines() {
        let fields = serde_json::json!({
            "sourceReference": {"processInstanceId": "p", "executionId": "e",
                "processDefinitionId": "d:1", "processDefinitionKey": "d", "processName": "D",
                "applicationName": "app"},
            "taskDefinitionKey": "approve", "name": "Approve"});
        let event = captured("task", "t1", "created", fields)
            .engine_event()
            .unwrap();
        let EngineEvent::TaskCreated { task, .. } = event else {
            panic!("{event:?}");
        };
        assert_eq!(task.priority, DEFAULT_PRIORITY);
        assert_eq!(task.create_time, Timestamp(1_000));
    }

    #[test]
    fn what_does_not_fit_is_an_error_naming_it() {
        let error = captured("task", "t1", "assigned", serde_json::json!({"assignee": 5}))
            .engine_event()
            .unwrap_err();
        assert!(error.contains("assigned"), "{error}");
        let error = captured(
            "data-entry",
            "no-separator",
            "deleted",
            serde_json::json!({}),
        )
        .engine_event()
        .unwrap_err();
        assert!(error.contains("no entry type"), "{error}");
    }
}
