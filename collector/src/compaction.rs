//! Compaction: the events of one transaction, folded to the fewest commands that reach the
//! same final state, per aggregate.
//!
//! Rules for a task (each has a named test):
//! 1. Created in this transaction: one `Create` carrying the final state (assignee, attributes
//!    and candidates of the later events folded in).
//! 2. Created and completed or deleted in this transaction: nothing. No one outside the
//!    transaction ever saw the task, so there is nothing to show or take back.
//! 3. Existing task: at most one command per kind, in this order: the last assignment, the
//!    merged attribute changes (latest value per field), the net candidate changes (the last
//!    add or remove of each user or group wins), then completion or deletion.
//! 4. Nothing may follow completion or deletion, and creation must come first.
//!
//! Rules for a data entry: consecutive changes merge into one create-or-update with the last
//! content and all protocol notes; a deletion is kept as such, in order.

use std::collections::BTreeMap;

use taskpool_core::Command;
use taskpool_core::domain::data_entry::{DataEntryCommand, DataEntryContent, ProtocolNote};
use taskpool_core::domain::task::{CandidateChanges, NewTask, TaskAttributes, TaskCommand};

use crate::event::EngineEvent;

/// An impossible order of engine events within one transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("task {0} was completed or deleted earlier in this transaction; nothing may follow")]
    TaskAlreadyEnded(String),
    #[error("task {0} already has events in this transaction; its creation must come first")]
    CreatedAfterOtherEvents(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Principal {
    User,
    Group,
}

#[derive(Debug, Clone, PartialEq)]
enum TaskEnd {
    Completed,
    Deleted { reason: String },
}

/// Everything one transaction did to one task.
#[derive(Debug, Default)]
struct TaskLog {
    created: Option<Box<NewTask>>,
    assignment: Option<Option<String>>,
    attributes: TaskAttributes,
    /// Last operation per candidate: `true` added, `false` removed.
    candidates: BTreeMap<(Principal, String), bool>,
    end: Option<TaskEnd>,
}

impl TaskLog {
    fn is_empty(&self) -> bool {
        self.created.is_none()
            && self.assignment.is_none()
            && self.attributes.is_empty()
            && self.candidates.is_empty()
            && self.end.is_none()
    }

    fn candidate(&mut self, kind: Principal, name: String, added: bool) {
        match &mut self.created {
            Some(task) => {
                let set = match kind {
                    Principal::User => &mut task.candidate_users,
                    Principal::Group => &mut task.candidate_groups,
                };
                if added {
                    set.insert(name);
                } else {
                    set.remove(&name);
                }
            }
            None => {
                self.candidates.insert((kind, name), added);
            }
        }
    }

    fn into_commands(self) -> Vec<TaskCommand> {
        if let Some(task) = self.created {
            return match self.end {
                Some(_) => Vec::new(),
                None => vec![TaskCommand::Create(task)],
            };
        }
        let mut commands = Vec::new();
        match self.assignment {
            Some(Some(assignee)) => commands.push(TaskCommand::Assign { assignee }),
            Some(None) => commands.push(TaskCommand::Unassign),
            None => {}
        }
        if !self.attributes.is_empty() {
            commands.push(TaskCommand::UpdateAttributes(Box::new(self.attributes)));
        }
        let mut changes = CandidateChanges::default();
        for ((kind, name), added) in self.candidates {
            let set = match (kind, added) {
                (Principal::User, true) => &mut changes.add_users,
                (Principal::User, false) => &mut changes.remove_users,
                (Principal::Group, true) => &mut changes.add_groups,
                (Principal::Group, false) => &mut changes.remove_groups,
            };
            set.insert(name);
        }
        if !changes.is_empty() {
            commands.push(TaskCommand::ChangeCandidates(changes));
        }
        match self.end {
            Some(TaskEnd::Completed) => commands.push(TaskCommand::Complete),
            Some(TaskEnd::Deleted { reason }) => commands.push(TaskCommand::Delete { reason }),
            None => {}
        }
        commands
    }
}

#[derive(Debug)]
enum DataEntryStep {
    Changed {
        content: Box<DataEntryContent>,
        notes: Vec<ProtocolNote>,
    },
    Deleted {
        note: Option<ProtocolNote>,
    },
}

/// Folds a transaction's engine events into commands.
#[derive(Debug, Default)]
pub struct Compactor {
    tasks: BTreeMap<String, TaskLog>,
    data_entries: BTreeMap<(String, String), Vec<DataEntryStep>>,
}

impl Compactor {
    /// Notes one event; on error nothing changes.
    pub fn record(&mut self, event: EngineEvent) -> Result<(), RecordError> {
        match event.task_id() {
            Some(task_id) => {
                let task_id = task_id.to_string();
                self.record_task(task_id, event)
            }
            None => {
                self.record_data_entry(event);
                Ok(())
            }
        }
    }

    fn record_data_entry(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::DataEntryChanged {
                entry_type,
                entry_id,
                content,
                note,
            } => {
                let steps = self.data_entries.entry((entry_type, entry_id)).or_default();
                match steps.last_mut() {
                    Some(DataEntryStep::Changed {
                        content: last,
                        notes,
                    }) => {
                        *last = content;
                        notes.extend(note);
                    }
                    _ => steps.push(DataEntryStep::Changed {
                        content,
                        notes: note.into_iter().collect(),
                    }),
                }
            }
            EngineEvent::DataEntryDeleted {
                entry_type,
                entry_id,
                note,
            } => self
                .data_entries
                .entry((entry_type, entry_id))
                .or_default()
                .push(DataEntryStep::Deleted { note }),
            _ => {}
        }
    }

    fn record_task(&mut self, task_id: String, event: EngineEvent) -> Result<(), RecordError> {
        let log = self.tasks.entry(task_id.clone()).or_default();
        if log.end.is_some() {
            return Err(RecordError::TaskAlreadyEnded(task_id));
        }
        match event {
            EngineEvent::TaskCreated { task, .. } => {
                if !log.is_empty() {
                    return Err(RecordError::CreatedAfterOtherEvents(task_id));
                }
                log.created = Some(task);
            }
            EngineEvent::TaskAssigned { assignee, .. } => match &mut log.created {
                Some(task) => task.assignee = assignee,
                None => log.assignment = Some(assignee),
            },
            EngineEvent::TaskAttributesChanged { attributes, .. } => match &mut log.created {
                Some(task) => attributes.apply_to_new(task),
                None => log.attributes.merge(*attributes),
            },
            EngineEvent::CandidateUserAdded { user, .. } => {
                log.candidate(Principal::User, user, true)
            }
            EngineEvent::CandidateUserRemoved { user, .. } => {
                log.candidate(Principal::User, user, false)
            }
            EngineEvent::CandidateGroupAdded { group, .. } => {
                log.candidate(Principal::Group, group, true)
            }
            EngineEvent::CandidateGroupRemoved { group, .. } => {
                log.candidate(Principal::Group, group, false)
            }
            EngineEvent::TaskCompleted { .. } => log.end = Some(TaskEnd::Completed),
            EngineEvent::TaskDeleted { reason, .. } => log.end = Some(TaskEnd::Deleted { reason }),
            _ => {}
        }
        Ok(())
    }

    /// The compacted commands: tasks by id, then data entries by type and id.
    pub fn into_commands(self) -> Vec<Command> {
        let tasks = self.tasks.into_iter().flat_map(|(task_id, log)| {
            log.into_commands()
                .into_iter()
                .map(move |command| Command::task(task_id.clone(), command))
        });
        let data_entries =
            self.data_entries
                .into_iter()
                .flat_map(|((entry_type, entry_id), steps)| {
                    steps.into_iter().map(move |step| {
                        let command = match step {
                            DataEntryStep::Changed { content, notes } => {
                                DataEntryCommand::CreateOrUpdate { content, notes }
                            }
                            DataEntryStep::Deleted { note } => DataEntryCommand::Delete { note },
                        };
                        Command::data_entry(entry_type.clone(), entry_id.clone(), command)
                    })
                });
        tasks.chain(data_entries).collect()
    }
}
