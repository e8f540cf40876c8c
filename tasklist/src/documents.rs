//! The projection's documents: one per task and per data entry, carrying the aggregate's
//! version and an array of principals (`user:<id>`, `group:<id>`) that decides who sees it.
//!
//! Ids are strings and times are integer milliseconds, so documents read the same from any
//! MongoDB-compatible server and in change events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use taskpool_schemas::{DataEntryEvent, DataEntryReference, SourceReference, TaskEvent, TaskState};

/// The principal a user is known by in `principals`.
pub fn user_principal(user: &str) -> String {
    format!("user:{user}")
}

/// The principal a group is known by in `principals`.
pub fn group_principal(group: &str) -> String {
    format!("group:{group}")
}

/// A task as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDocument {
    #[serde(rename = "_id")]
    pub id: String,
    pub version: i64,
    pub source_reference: SourceReference,
    pub task_definition_key: String,
    pub name: String,
    pub description: Option<String>,
    pub form_key: Option<String>,
    pub priority: i32,
    pub create_time: i64,
    pub due_date: Option<i64>,
    /// `dueDate`, or `i64::MAX` when there is none: a non-null key for sorting and cursors.
    pub due_sort: i64,
    pub follow_up_date: Option<i64>,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub candidate_users: Vec<String>,
    pub candidate_groups: Vec<String>,
    pub business_key: Option<String>,
    pub payload: Map<String, Value>,
    pub correlations: Vec<DataEntryReference>,
    /// `ACTIVE`, `COMPLETED` or `DELETED`.
    pub state: String,
    pub delete_reason: Option<String>,
    /// Who sees the task: its assignee, candidate users and candidate groups.
    pub principals: Vec<String>,
    /// When the change that produced this version happened (milliseconds).
    pub occurred_at: i64,
    /// Name and description, case-folded with [`fold_case`]: what the `q` filter searches,
    /// the same way in MongoDB and in memory. (Documents written before it existed read as
    /// empty and match no search until their next change.)
    #[serde(default)]
    pub search_text: String,
    /// The W3C `traceparent` of the engine transaction that produced this version, so that
    /// delivering it to streams continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

pub const ACTIVE: &str = "ACTIVE";

/// Lower-cases text one character at a time. Search text and stored text are folded alike,
/// so a case-insensitive search is a plain substring test, which MongoDB (a literal regular
/// expression) and the stream's matcher answer identically for any script. (Neither a server's
/// case-insensitive regex nor `str::to_lowercase`, which lower-cases a final sigma by context,
/// would agree with the other everywhere.)
pub fn fold_case(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

impl TaskDocument {
    pub fn from_event(event: &TaskEvent) -> TaskDocument {
        let task = &event.task;
        let mut principals: Vec<String> = task
            .assignee
            .iter()
            .chain(task.candidate_users.iter())
            .map(|user| user_principal(user))
            .chain(task.candidate_groups.iter().map(|g| group_principal(g)))
            .collect();
        principals.sort();
        principals.dedup();
        TaskDocument {
            id: task.id.clone(),
            version: event.version,
            source_reference: task.source_reference.clone(),
            task_definition_key: task.task_definition_key.clone(),
            name: task.name.clone(),
            description: task.description.clone(),
            form_key: task.form_key.clone(),
            priority: task.priority,
            create_time: task.create_time.millis(),
            due_date: task.due_date.map(|t| t.millis()),
            due_sort: task.due_date.map_or(i64::MAX, |t| t.millis()),
            follow_up_date: task.follow_up_date.map(|t| t.millis()),
            assignee: task.assignee.clone(),
            owner: task.owner.clone(),
            candidate_users: task.candidate_users.iter().cloned().collect(),
            candidate_groups: task.candidate_groups.iter().cloned().collect(),
            business_key: task.business_key.clone(),
            payload: task.payload.0.clone(),
            correlations: task.correlations.clone(),
            state: match task.state {
                TaskState::Active => "ACTIVE",
                TaskState::Completed => "COMPLETED",
                TaskState::Deleted => "DELETED",
            }
            .to_string(),
            delete_reason: task.delete_reason.clone(),
            principals,
            occurred_at: event.occurred_at.millis(),
            search_text: format!(
                "{}\n{}",
                fold_case(&task.name),
                fold_case(task.description.as_deref().unwrap_or_default())
            ),
            traceparent: None,
        }
    }

    /// Whether someone with these principals may see the task (active, and one principal
    /// in common).
    pub fn visible_to(&self, principals: &[String]) -> bool {
        self.state == ACTIVE && self.principals.iter().any(|p| principals.contains(p))
    }

    /// The task as API clients see it: `id` instead of `_id`, without internal fields.
    pub fn to_api(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            if let Some(id) = map.remove("_id") {
                map.insert("id".into(), id);
            }
            map.remove("principals");
            map.remove("dueSort");
            map.remove("searchText");
            map.remove("traceparent");
        }
        value
    }
}

/// A data entry as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataEntryDocument {
    /// `<entry type>:<entry id>`, the aggregate id.
    #[serde(rename = "_id")]
    pub id: String,
    pub version: i64,
    pub entry_type: String,
    pub entry_id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub application_name: String,
    pub name: String,
    pub description: Option<String>,
    pub processing_type: String,
    pub state: String,
    pub payload: Map<String, Value>,
    pub correlations: Vec<DataEntryReference>,
    pub authorized_users: Vec<String>,
    pub authorized_groups: Vec<String>,
    pub form_key: Option<String>,
    pub protocol: Vec<ProtocolLine>,
    pub deleted: bool,
    pub principals: Vec<String>,
    pub occurred_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolLine {
    pub time: i64,
    pub processing_type: String,
    pub state: String,
    pub username: Option<String>,
    pub log_message: Option<String>,
    pub log_details: Option<String>,
}

impl DataEntryDocument {
    /// Whether a caller with `principals` may see the entry (deleted entries are gone).
    pub fn visible_to(&self, principals: &[String]) -> bool {
        !self.deleted && self.principals.iter().any(|p| principals.contains(p))
    }

    pub fn from_event(event: &DataEntryEvent) -> DataEntryDocument {
        let entry = &event.data_entry;
        let mut principals: Vec<String> = entry
            .authorized_users
            .iter()
            .map(|u| user_principal(u))
            .chain(entry.authorized_groups.iter().map(|g| group_principal(g)))
            .collect();
        principals.sort();
        DataEntryDocument {
            id: format!("{}:{}", entry.entry_type, entry.entry_id),
            version: event.version,
            entry_type: entry.entry_type.clone(),
            entry_id: entry.entry_id.clone(),
            type_name: entry.type_name.clone(),
            application_name: entry.application_name.clone(),
            name: entry.name.clone(),
            description: entry.description.clone(),
            processing_type: entry.state.processing_type.as_str().to_string(),
            state: entry.state.state.clone(),
            payload: entry.payload.0.clone(),
            correlations: entry.correlations.clone(),
            authorized_users: entry.authorized_users.iter().cloned().collect(),
            authorized_groups: entry.authorized_groups.iter().cloned().collect(),
            form_key: entry.form_key.clone(),
            protocol: entry
                .protocol
                .iter()
                .map(|p| ProtocolLine {
                    time: p.time.millis(),
                    processing_type: p.processing_type.as_str().to_string(),
                    state: p.state.clone(),
                    username: p.username.clone(),
                    log_message: p.log_message.clone(),
                    log_details: p.log_details.clone(),
                })
                .collect(),
            deleted: entry.deleted,
            principals,
            occurred_at: event.occurred_at.millis(),
        }
    }

    pub fn to_api(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            if let Some(id) = map.remove("_id") {
                map.insert("id".into(), id);
            }
            map.remove("principals");
        }
        value
    }
}
