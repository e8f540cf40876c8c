//! The data-entry aggregate: business objects shown next to tasks, with their audit trail
//! (protocol) and who may see them. Pure: no I/O, the caller passes the time.

use std::collections::BTreeSet;

use taskpool_schemas::{
    DataEntry, DataEntryReference, DataEntryState, Payload, ProtocolEntry, Timestamp,
};

/// The separator between entry type and entry id in a data entry's aggregate id.
pub const ID_SEPARATOR: char = ':';

/// The aggregate id of a data entry (also its Kafka key): `<entry type>:<entry id>`.
/// Entry types may not contain the separator, so the id is unambiguous.
pub fn aggregate_id(entry_type: &str, entry_id: &str) -> String {
    format!("{entry_type}{ID_SEPARATOR}{entry_id}")
}

/// The content of a data entry as its application last described it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataEntryContent {
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
}

/// Who changed the entry and why: becomes a protocol (audit trail) entry with the time and
/// the entry's state after the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolNote {
    pub username: Option<String>,
    pub log_message: Option<String>,
    pub log_details: Option<String>,
}

/// What can be asked of a data entry.
#[derive(Debug, Clone, PartialEq)]
pub enum DataEntryCommand {
    /// Creates the entry, or replaces its content if it exists; re-creates a deleted entry.
    CreateOrUpdate {
        content: Box<DataEntryContent>,
        notes: Vec<ProtocolNote>,
    },
    /// Replaces the content of an existing, not deleted entry.
    Update {
        content: Box<DataEntryContent>,
        notes: Vec<ProtocolNote>,
    },
    /// Marks an existing entry deleted; its content and protocol stay readable.
    Delete { note: Option<ProtocolNote> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataEntryEventType {
    Created,
    Updated,
    Deleted,
}

impl DataEntryEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataEntryEventType::Created => "DataEntryCreated",
            DataEntryEventType::Updated => "DataEntryUpdated",
            DataEntryEventType::Deleted => "DataEntryDeleted",
        }
    }
}

/// Why a data-entry command was refused. Nothing is written when a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataEntryRejection {
    #[error("{0} must not be empty")]
    EmptyField(&'static str),
    #[error("entry type {0:?} must not contain '{ID_SEPARATOR}'")]
    InvalidEntryType(String),
    #[error("data entry {0} does not exist")]
    NotFound(String),
    #[error("data entry {0} is deleted")]
    Deleted(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataEntryChange {
    pub event_type: DataEntryEventType,
    pub data_entry: DataEntry,
}

/// Decides what a command does to a data entry (`None` when it never existed).
/// `Ok(None)` means the command is valid but changes nothing.
pub fn decide(
    current: Option<&DataEntry>,
    entry_type: &str,
    entry_id: &str,
    command: &DataEntryCommand,
    now: Timestamp,
) -> Result<Option<DataEntryChange>, DataEntryRejection> {
    non_empty("entry type", entry_type)?;
    non_empty("entry id", entry_id)?;
    if entry_type.contains(ID_SEPARATOR) {
        return Err(DataEntryRejection::InvalidEntryType(entry_type.to_string()));
    }
    let id = || aggregate_id(entry_type, entry_id);
    let live = current.filter(|entry| !entry.deleted);

    let (event_type, next) = match command {
        DataEntryCommand::CreateOrUpdate { content, notes } => {
            validate(content)?;
            match live {
                Some(entry) => (
                    DataEntryEventType::Updated,
                    with_content(entry.clone(), content, notes, now),
                ),
                None => {
                    // A deleted entry comes back with its audit trail.
                    let protocol = current.map(|e| e.protocol.clone()).unwrap_or_default();
                    let fresh = DataEntry {
                        entry_type: entry_type.to_string(),
                        entry_id: entry_id.to_string(),
                        type_name: String::new(),
                        application_name: String::new(),
                        name: String::new(),
                        description: None,
                        state: content.state.clone(),
                        payload: Payload::default(),
                        correlations: Vec::new(),
                        authorized_users: BTreeSet::new(),
                        authorized_groups: BTreeSet::new(),
                        form_key: None,
                        protocol,
                        deleted: false,
                    };
                    (
                        DataEntryEventType::Created,
                        with_content(fresh, content, notes, now),
                    )
                }
            }
        }
        DataEntryCommand::Update { content, notes } => {
            validate(content)?;
            let entry = existing(current, live, id)?;
            (
                DataEntryEventType::Updated,
                with_content(entry.clone(), content, notes, now),
            )
        }
        DataEntryCommand::Delete { note } => {
            let entry = existing(current, live, id)?;
            let mut next = entry.clone();
            next.deleted = true;
            if let Some(note) = note {
                next.protocol.push(protocol_entry(&next.state, note, now));
            }
            (DataEntryEventType::Deleted, next)
        }
    };
    if current == Some(&next) {
        return Ok(None);
    }
    Ok(Some(DataEntryChange {
        event_type,
        data_entry: next,
    }))
}

fn existing<'a>(
    current: Option<&'a DataEntry>,
    live: Option<&'a DataEntry>,
    id: impl Fn() -> String,
) -> Result<&'a DataEntry, DataEntryRejection> {
    match (current, live) {
        (_, Some(entry)) => Ok(entry),
        (Some(_), None) => Err(DataEntryRejection::Deleted(id())),
        (None, None) => Err(DataEntryRejection::NotFound(id())),
    }
}

fn with_content(
    mut entry: DataEntry,
    content: &DataEntryContent,
    notes: &[ProtocolNote],
    now: Timestamp,
) -> DataEntry {
    entry.type_name.clone_from(&content.type_name);
    entry.application_name.clone_from(&content.application_name);
    entry.name.clone_from(&content.name);
    entry.description.clone_from(&content.description);
    entry.state.clone_from(&content.state);
    entry.payload.clone_from(&content.payload);
    entry.correlations.clone_from(&content.correlations);
    entry.authorized_users.clone_from(&content.authorized_users);
    entry
        .authorized_groups
        .clone_from(&content.authorized_groups);
    entry.form_key.clone_from(&content.form_key);
    for note in notes {
        entry
            .protocol
            .push(protocol_entry(&content.state, note, now));
    }
    entry
}

fn protocol_entry(state: &DataEntryState, note: &ProtocolNote, now: Timestamp) -> ProtocolEntry {
    ProtocolEntry {
        time: now,
        processing_type: state.processing_type,
        state: state.state.clone(),
        username: note.username.clone(),
        log_message: note.log_message.clone(),
        log_details: note.log_details.clone(),
    }
}

fn validate(content: &DataEntryContent) -> Result<(), DataEntryRejection> {
    non_empty("type", &content.type_name)?;
    non_empty("application name", &content.application_name)?;
    non_empty("name", &content.name)?;
    for user in &content.authorized_users {
        non_empty("authorized user", user)?;
    }
    for group in &content.authorized_groups {
        non_empty("authorized group", group)?;
    }
    Ok(())
}

fn non_empty(field: &'static str, value: &str) -> Result<(), DataEntryRejection> {
    if value.trim().is_empty() {
        Err(DataEntryRejection::EmptyField(field))
    } else {
        Ok(())
    }
}
