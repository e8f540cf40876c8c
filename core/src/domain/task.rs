//! The task aggregate: commands an engine (or an API) issues about a user task, the rules
//! they must satisfy, and the event each produces. Pure: no I/O, no clock, no randomness.

use std::collections::BTreeSet;

use taskpool_schemas::{DataEntryReference, Payload, SourceReference, Task, TaskState, Timestamp};

/// Everything needed to create a task; the id travels with the command.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
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
}

impl NewTask {
    /// The task this creates: active, with the given id and these fields.
    pub fn to_active_task(&self, task_id: &str) -> Task {
        Task {
            id: task_id.to_string(),
            source_reference: self.source_reference.clone(),
            task_definition_key: self.task_definition_key.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            form_key: self.form_key.clone(),
            priority: self.priority,
            create_time: self.create_time,
            due_date: self.due_date,
            follow_up_date: self.follow_up_date,
            assignee: self.assignee.clone(),
            owner: self.owner.clone(),
            candidate_users: self.candidate_users.clone(),
            candidate_groups: self.candidate_groups.clone(),
            business_key: self.business_key.clone(),
            payload: self.payload.clone(),
            correlations: self.correlations.clone(),
            state: TaskState::Active,
            delete_reason: None,
        }
    }
}

/// A partial update of a task's attributes: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskAttributes {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub form_key: Option<Option<String>>,
    pub business_key: Option<Option<String>>,
    pub owner: Option<Option<String>>,
    pub due_date: Option<Option<Timestamp>>,
    pub follow_up_date: Option<Option<Timestamp>>,
    pub priority: Option<i32>,
    pub payload: Option<Payload>,
    pub correlations: Option<Vec<DataEntryReference>>,
}

/// Sets each attribute present in the update; `Task` and `NewTask` share the field names.
macro_rules! apply_attributes {
    ($update:expr, $task:expr) => {{
        let (update, task) = ($update, $task);
        if let Some(name) = &update.name {
            task.name.clone_from(name);
        }
        if let Some(description) = &update.description {
            task.description.clone_from(description);
        }
        if let Some(form_key) = &update.form_key {
            task.form_key.clone_from(form_key);
        }
        if let Some(business_key) = &update.business_key {
            task.business_key.clone_from(business_key);
        }
        if let Some(owner) = &update.owner {
            task.owner.clone_from(owner);
        }
        if let Some(due_date) = update.due_date {
            task.due_date = due_date;
        }
        if let Some(follow_up_date) = update.follow_up_date {
            task.follow_up_date = follow_up_date;
        }
        if let Some(priority) = update.priority {
            task.priority = priority;
        }
        if let Some(payload) = &update.payload {
            task.payload.clone_from(payload);
        }
        if let Some(correlations) = &update.correlations {
            task.correlations.clone_from(correlations);
        }
    }};
}

impl TaskAttributes {
    /// Applies the update to a task (no validation).
    pub fn apply_to(&self, task: &mut Task) {
        apply_attributes!(self, task);
    }

    /// Applies the update to a task that is about to be created (no validation).
    pub fn apply_to_new(&self, task: &mut NewTask) {
        apply_attributes!(self, task);
    }

    /// Later updates win field by field.
    pub fn merge(&mut self, later: TaskAttributes) {
        macro_rules! take_later {
            ($($field:ident),*) => { $( if later.$field.is_some() { self.$field = later.$field; } )* };
        }
        take_later!(
            name,
            description,
            form_key,
            business_key,
            owner,
            due_date,
            follow_up_date,
            priority,
            payload,
            correlations
        );
    }

    pub fn is_empty(&self) -> bool {
        *self == TaskAttributes::default()
    }
}

/// Candidate users and groups to add and remove in one step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateChanges {
    pub add_users: BTreeSet<String>,
    pub remove_users: BTreeSet<String>,
    pub add_groups: BTreeSet<String>,
    pub remove_groups: BTreeSet<String>,
}

impl CandidateChanges {
    pub fn is_empty(&self) -> bool {
        self.add_users.is_empty()
            && self.remove_users.is_empty()
            && self.add_groups.is_empty()
            && self.remove_groups.is_empty()
    }
}

/// What can be asked of a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    Create(Box<NewTask>),
    Assign {
        assignee: String,
    },
    Unassign,
    UpdateAttributes(Box<TaskAttributes>),
    ChangeCandidates(CandidateChanges),
    ChangeDeadlines {
        due_date: Option<Timestamp>,
        follow_up_date: Option<Timestamp>,
    },
    ChangePriority {
        priority: i32,
    },
    Complete,
    Delete {
        reason: String,
    },
}

/// The past-tense facts a task command can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEventType {
    Created,
    Assigned,
    Unassigned,
    AttributesUpdated,
    CandidatesChanged,
    DeadlinesChanged,
    PriorityChanged,
    Completed,
    Deleted,
}

impl TaskEventType {
    /// The name on the wire (`eventType` field and Kafka header).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventType::Created => "TaskCreated",
            TaskEventType::Assigned => "TaskAssigned",
            TaskEventType::Unassigned => "TaskUnassigned",
            TaskEventType::AttributesUpdated => "TaskAttributesUpdated",
            TaskEventType::CandidatesChanged => "TaskCandidatesChanged",
            TaskEventType::DeadlinesChanged => "TaskDeadlinesChanged",
            TaskEventType::PriorityChanged => "TaskPriorityChanged",
            TaskEventType::Completed => "TaskCompleted",
            TaskEventType::Deleted => "TaskDeleted",
        }
    }
}

/// Why a task command was refused. Nothing is written when a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskRejection {
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    #[error("task {0} already exists")]
    AlreadyExists(String),
    #[error("task {0} does not exist")]
    NotFound(String),
    #[error("task {id} is {state}; only active tasks can change")]
    NotActive { id: String, state: TaskState },
    #[error("candidate {0} is both added and removed in the same command")]
    ContradictoryCandidates(String),
}

/// The result of an accepted command: which fact and the task's state afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    pub event_type: TaskEventType,
    pub task: Task,
}

/// Decides what a command does to a task (`None` when it does not exist yet).
/// `Ok(None)` means the command is valid but changes nothing (e.g. assigning the current
/// assignee again), so no event is recorded.
pub fn decide(
    current: Option<&Task>,
    task_id: &str,
    command: &TaskCommand,
) -> Result<Option<TaskChange>, TaskRejection> {
    non_empty("task id", task_id)?;
    let Some(current) = current else {
        return match command {
            TaskCommand::Create(new) => create(task_id, new).map(Some),
            _ => Err(TaskRejection::NotFound(task_id.to_string())),
        };
    };

    let mut next = current.clone();
    let event_type = match command {
        TaskCommand::Create(_) => return Err(TaskRejection::AlreadyExists(task_id.to_string())),
        _ if current.state != TaskState::Active => {
            return Err(TaskRejection::NotActive {
                id: task_id.to_string(),
                state: current.state,
            });
        }
        TaskCommand::Assign { assignee } => {
            non_empty("assignee", assignee)?;
            next.assignee = Some(assignee.clone());
            TaskEventType::Assigned
        }
        TaskCommand::Unassign => {
            next.assignee = None;
            TaskEventType::Unassigned
        }
        TaskCommand::UpdateAttributes(attributes) => {
            if let Some(name) = &attributes.name {
                non_empty("name", name)?;
            }
            attributes.apply_to(&mut next);
            TaskEventType::AttributesUpdated
        }
        TaskCommand::ChangeCandidates(changes) => {
            validate_candidates(changes)?;
            apply_candidates(&mut next, changes);
            TaskEventType::CandidatesChanged
        }
        TaskCommand::ChangeDeadlines {
            due_date,
            follow_up_date,
        } => {
            next.due_date = *due_date;
            next.follow_up_date = *follow_up_date;
            TaskEventType::DeadlinesChanged
        }
        TaskCommand::ChangePriority { priority } => {
            next.priority = *priority;
            TaskEventType::PriorityChanged
        }
        TaskCommand::Complete => {
            next.state = TaskState::Completed;
            TaskEventType::Completed
        }
        TaskCommand::Delete { reason } => {
            non_empty("delete reason", reason)?;
            next.state = TaskState::Deleted;
            next.delete_reason = Some(reason.clone());
            TaskEventType::Deleted
        }
    };
    Ok((next != *current).then_some(TaskChange {
        event_type,
        task: next,
    }))
}

fn create(task_id: &str, new: &NewTask) -> Result<TaskChange, TaskRejection> {
    non_empty("name", &new.name)?;
    non_empty("task definition key", &new.task_definition_key)?;
    non_empty(
        "process instance id",
        &new.source_reference.process_instance_id,
    )?;
    non_empty(
        "process definition key",
        &new.source_reference.process_definition_key,
    )?;
    non_empty("application name", &new.source_reference.application_name)?;
    if let Some(assignee) = &new.assignee {
        non_empty("assignee", assignee)?;
    }
    principals_non_empty(&new.candidate_users, "candidate user")?;
    principals_non_empty(&new.candidate_groups, "candidate group")?;
    let task = new.to_active_task(task_id);
    Ok(TaskChange {
        event_type: TaskEventType::Created,
        task,
    })
}

fn validate_candidates(changes: &CandidateChanges) -> Result<(), TaskRejection> {
    principals_non_empty(&changes.add_users, "candidate user")?;
    principals_non_empty(&changes.remove_users, "candidate user")?;
    principals_non_empty(&changes.add_groups, "candidate group")?;
    principals_non_empty(&changes.remove_groups, "candidate group")?;
    if let Some(user) = changes.add_users.intersection(&changes.remove_users).next() {
        return Err(TaskRejection::ContradictoryCandidates(format!(
            "user {user}"
        )));
    }
    if let Some(group) = changes
        .add_groups
        .intersection(&changes.remove_groups)
        .next()
    {
        return Err(TaskRejection::ContradictoryCandidates(format!(
            "group {group}"
        )));
    }
    Ok(())
}

fn apply_candidates(task: &mut Task, changes: &CandidateChanges) {
    task.candidate_users
        .extend(changes.add_users.iter().cloned());
    task.candidate_users
        .retain(|user| !changes.remove_users.contains(user));
    task.candidate_groups
        .extend(changes.add_groups.iter().cloned());
    task.candidate_groups
        .retain(|group| !changes.remove_groups.contains(group));
}

fn non_empty(field: &'static str, value: &str) -> Result<(), TaskRejection> {
    if value.trim().is_empty() {
        Err(TaskRejection::EmptyField(field))
    } else {
        Ok(())
    }
}

fn principals_non_empty(
    principals: &BTreeSet<String>,
    field: &'static str,
) -> Result<(), TaskRejection> {
    principals
        .iter()
        .try_for_each(|principal| non_empty(field, principal))
}
