//! What an engine reports during a transaction: the same vocabulary BPM engines' task and
//! identity-link listeners emit, plus data-entry changes.

use taskpool_core::domain::data_entry::{DataEntryContent, ProtocolNote};
use taskpool_core::domain::task::{NewTask, TaskAttributes};

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    TaskCreated {
        task_id: String,
        task: Box<NewTask>,
    },
    /// `None` unassigns.
    TaskAssigned {
        task_id: String,
        assignee: Option<String>,
    },
    /// One or more attributes changed (`None` fields are unchanged).
    TaskAttributesChanged {
        task_id: String,
        attributes: Box<TaskAttributes>,
    },
    CandidateUserAdded {
        task_id: String,
        user: String,
    },
    CandidateUserRemoved {
        task_id: String,
        user: String,
    },
    CandidateGroupAdded {
        task_id: String,
        group: String,
    },
    CandidateGroupRemoved {
        task_id: String,
        group: String,
    },
    TaskCompleted {
        task_id: String,
    },
    TaskDeleted {
        task_id: String,
        reason: String,
    },
    /// The application created or changed a business object.
    DataEntryChanged {
        entry_type: String,
        entry_id: String,
        content: Box<DataEntryContent>,
        note: Option<ProtocolNote>,
    },
    DataEntryDeleted {
        entry_type: String,
        entry_id: String,
        note: Option<ProtocolNote>,
    },
}

impl EngineEvent {
    /// The task the event is about, or `None` for a data-entry event.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            EngineEvent::TaskCreated { task_id, .. }
            | EngineEvent::TaskAssigned { task_id, .. }
            | EngineEvent::TaskAttributesChanged { task_id, .. }
            | EngineEvent::CandidateUserAdded { task_id, .. }
            | EngineEvent::CandidateUserRemoved { task_id, .. }
            | EngineEvent::CandidateGroupAdded { task_id, .. }
            | EngineEvent::CandidateGroupRemoved { task_id, .. }
            | EngineEvent::TaskCompleted { task_id }
            | EngineEvent::TaskDeleted { task_id, .. } => Some(task_id),
            EngineEvent::DataEntryChanged { .. } | EngineEvent::DataEntryDeleted { .. } => None,
        }
    }
}
