//! Commands addressed to an aggregate, and the keys that identify aggregates in storage.

use std::fmt;

use crate::domain::data_entry::{self, DataEntryCommand, DataEntryRejection};
use crate::domain::task::{TaskCommand, TaskRejection};

/// The kinds of aggregate taskpool stores (and the Kafka topic each goes to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggregateType {
    Task,
    DataEntry,
}

impl AggregateType {
    /// The name stored in the outbox's `aggregate_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateType::Task => "task",
            AggregateType::DataEntry => "data-entry",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "task" => Some(AggregateType::Task),
            "data-entry" => Some(AggregateType::DataEntry),
            _ => None,
        }
    }
}

/// Identifies one aggregate: its type and id (task id, or `<entry type>:<entry id>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateKey {
    pub aggregate_type: AggregateType,
    pub id: String,
}

impl fmt::Display for AggregateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.aggregate_type.as_str(), self.id)
    }
}

/// A command for one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Task {
        task_id: String,
        command: TaskCommand,
    },
    DataEntry {
        entry_type: String,
        entry_id: String,
        command: DataEntryCommand,
    },
}

impl Command {
    pub fn task(task_id: impl Into<String>, command: TaskCommand) -> Self {
        Command::Task {
            task_id: task_id.into(),
            command,
        }
    }

    pub fn data_entry(
        entry_type: impl Into<String>,
        entry_id: impl Into<String>,
        command: DataEntryCommand,
    ) -> Self {
        Command::DataEntry {
            entry_type: entry_type.into(),
            entry_id: entry_id.into(),
            command,
        }
    }

    /// The aggregate this command is addressed to.
    pub fn key(&self) -> AggregateKey {
        match self {
            Command::Task { task_id, .. } => AggregateKey {
                aggregate_type: AggregateType::Task,
                id: task_id.clone(),
            },
            Command::DataEntry {
                entry_type,
                entry_id,
                ..
            } => AggregateKey {
                aggregate_type: AggregateType::DataEntry,
                id: data_entry::aggregate_id(entry_type, entry_id),
            },
        }
    }
}

/// Why a command was refused, by aggregate type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Task(#[from] TaskRejection),
    #[error(transparent)]
    DataEntry(#[from] DataEntryRejection),
}
