//! Tasklist actions on the wire: a [`TaskCommand`] goes to the engine that owns the task, a
//! [`CommandOutcome`] comes back (decision 0025). Field names follow the Avro schemas.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::types::{Payload, Timestamp, uuid_text};

/// What a person did to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskAction {
    Claim,
    Unclaim,
    Complete,
    Defer,
    Undefer,
    Assign,
}

impl TaskAction {
    pub const ALL: [TaskAction; 6] = [
        TaskAction::Claim,
        TaskAction::Unclaim,
        TaskAction::Complete,
        TaskAction::Defer,
        TaskAction::Undefer,
        TaskAction::Assign,
    ];

    /// The wire name, also the last segment of the HTTP route.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskAction::Claim => "claim",
            TaskAction::Unclaim => "unclaim",
            TaskAction::Complete => "complete",
            TaskAction::Defer => "defer",
            TaskAction::Undefer => "undefer",
            TaskAction::Assign => "assign",
        }
    }

    pub fn parse(name: &str) -> Option<TaskAction> {
        TaskAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for TaskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// An Avro string, not an enum: a newer tasklist may send actions an older engine does not
// know, and that engine must still decode the command to reject it with a reason.
impl Serialize for TaskAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        TaskAction::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown action {name:?}")))
    }
}

/// An action addressed to the engine application that owns the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCommand {
    #[serde(with = "uuid_text")]
    pub command_id: Uuid,
    pub action: TaskAction,
    pub task_id: String,
    pub application: String,
    pub issued_by: String,
    pub issued_at: Timestamp,
    /// The task's version the user saw, if known.
    pub task_version: Option<i64>,
    /// `assign`: the new assignee.
    pub assignee: Option<String>,
    /// `defer`: until when.
    pub follow_up_date: Option<Timestamp>,
    /// `complete`: the form's values.
    pub variables: Payload,
}

/// Applied or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeResult {
    Applied,
    Rejected,
}

impl OutcomeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::Applied => "applied",
            OutcomeResult::Rejected => "rejected",
        }
    }
}

impl Serialize for OutcomeResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OutcomeResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "applied" => Ok(OutcomeResult::Applied),
            "rejected" => Ok(OutcomeResult::Rejected),
            other => Err(serde::de::Error::custom(format!(
                "unknown outcome result {other:?}"
            ))),
        }
    }
}

/// What the owning engine did with a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandOutcome {
    #[serde(with = "uuid_text")]
    pub command_id: Uuid,
    pub task_id: String,
    pub application: String,
    pub issued_by: String,
    pub result: OutcomeResult,
    /// `rejected`: the engine's reason, for people.
    pub reason: Option<String>,
    /// `applied`: the task's version after the action (none when it changed nothing).
    pub task_version: Option<i64>,
    pub decided_at: Timestamp,
}

impl CommandOutcome {
    /// The outcome of `command`, decided now.
    pub fn of(
        command: &TaskCommand,
        result: OutcomeResult,
        reason: Option<String>,
        task_version: Option<i64>,
    ) -> CommandOutcome {
        CommandOutcome {
            command_id: command.command_id,
            task_id: command.task_id.clone(),
            application: command.application.clone(),
            issued_by: command.issued_by.clone(),
            result,
            reason,
            task_version,
            decided_at: Timestamp::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_from_its_own_name_only() {
        for action in TaskAction::ALL {
            assert_eq!(TaskAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(TaskAction::parse("Claim"), None);
        assert_eq!(TaskAction::parse("delete"), None);
    }

    #[test]
    fn commands_and_outcomes_survive_encode_and_decode() {
        for action in TaskAction::ALL {
            let command = TaskCommand {
                command_id: Uuid::new_v4(),
                action,
                task_id: "t-1".into(),
                application: "app".into(),
                issued_by: "piggy".into(),
                issued_at: Timestamp(1_700_000_000_000),
                task_version: (action == TaskAction::Claim).then_some(4),
                assignee: (action == TaskAction::Assign).then(|| "gonzo".to_string()),
                follow_up_date: (action == TaskAction::Defer).then_some(Timestamp(1)),
                variables: Payload::new(),
            };
            let bytes = crate::encode(&command).unwrap();
            assert_eq!(crate::decode_as::<TaskCommand>(&bytes).unwrap(), command);
            for (result, reason) in [
                (OutcomeResult::Applied, None),
                (OutcomeResult::Rejected, Some("no".to_string())),
            ] {
                let outcome = CommandOutcome::of(&command, result, reason, Some(5));
                let bytes = crate::encode(&outcome).unwrap();
                assert_eq!(crate::decode_as::<CommandOutcome>(&bytes).unwrap(), outcome);
            }
        }
    }
}
