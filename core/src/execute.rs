//! Executing commands inside the caller's transaction: lock and load the aggregates, decide
//! every command, and only if all are accepted write the new states and outbox rows.

use std::collections::{BTreeMap, BTreeSet};

use taskpool_schemas::{
    DataEntry, DataEntryEvent, DecodedEvent, EncodeError, SchemaFamily, Task, TaskEvent, Timestamp,
    WireEvent, decode, encode, registry,
};
use uuid::Uuid;

use crate::command::{AggregateKey, AggregateType, Command, Rejection};
use crate::domain::task::TaskCommand;
use crate::domain::{data_entry, task};
use crate::store::{
    ChangedAggregate, Connection, NewAggregate, OutboxRecord, Store, StoreError, StoredAggregate,
    WriteBatch,
};
use crate::trace::TraceParent;

/// What the events of one batch have in common.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// When the events occurred (the engine's transaction time).
    pub occurred_at: Timestamp,
    /// Trace context forwarded to the Kafka headers.
    pub traceparent: TraceParent,
}

impl EventContext {
    /// Events occurring now, in a new trace.
    pub fn now() -> Self {
        EventContext {
            occurred_at: Timestamp::now(),
            traceparent: TraceParent::new_root(),
        }
    }
}

/// An event written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub key: AggregateKey,
    pub version: i64,
    pub event_type: &'static str,
}

/// Why a batch of commands was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A command broke a rule. Nothing was written; the transaction is still usable.
    #[error("command {index} for {key} rejected: {rejection}")]
    Rejected {
        index: usize,
        key: AggregateKey,
        rejection: Rejection,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Executes `commands` in order on the caller's connection (inside its transaction).
/// Either every command is accepted and all their events are in the outbox when the caller
/// commits, or nothing is written.
pub async fn execute<S: Store>(
    conn: &mut Connection<S>,
    commands: &[Command],
    context: &EventContext,
) -> Result<Vec<RecordedEvent>, CommandError> {
    if commands.is_empty() {
        return Ok(Vec::new());
    }
    if only_creates_new_tasks(commands) {
        // New tasks need no stored state: decide as if absent and write in one round trip.
        let (batch, recorded) = plan(Vec::new(), commands, context, Uuid::new_v4)?;
        if S::create_if_absent(conn, &batch).await? {
            return Ok(recorded);
        }
        // One of them exists after all: decide again against what is stored.
    }
    let mut keys: Vec<AggregateKey> = commands.iter().map(Command::key).collect();
    keys.sort();
    keys.dedup();
    let loaded = S::lock_and_load(conn, &keys).await?;
    let (batch, recorded) = plan(loaded, commands, context, Uuid::new_v4)?;
    S::save(conn, &batch).await?;
    Ok(recorded)
}

/// Whether every aggregate in the batch starts with a task creation.
fn only_creates_new_tasks(commands: &[Command]) -> bool {
    let mut seen = BTreeSet::new();
    commands.iter().all(|command| {
        let first_for_key = seen.insert(command.key());
        !first_for_key
            || matches!(
                command,
                Command::Task {
                    command: TaskCommand::Create(_),
                    ..
                }
            )
    })
}

#[derive(Debug)]
enum State {
    Task(Box<Task>),
    DataEntry(Box<DataEntry>),
}

struct Tracked {
    stored_version: Option<i64>,
    version: i64,
    state: Option<State>,
    /// Index in the batch's events of this aggregate's latest new event.
    latest_event: Option<usize>,
}

/// Decides all commands against the loaded states (pure, no I/O): the write batch and the
/// events it records, or the first rejection.
pub fn plan(
    loaded: Vec<StoredAggregate>,
    commands: &[Command],
    context: &EventContext,
    mut new_event_id: impl FnMut() -> Uuid,
) -> Result<(WriteBatch, Vec<RecordedEvent>), CommandError> {
    let mut aggregates: BTreeMap<AggregateKey, Tracked> = BTreeMap::new();
    for stored in loaded {
        let state = parse_state(&stored)?;
        aggregates.insert(
            stored.key,
            Tracked {
                stored_version: Some(stored.version),
                version: stored.version,
                state: Some(state),
                latest_event: None,
            },
        );
    }

    let headers = serde_json::json!({
        "traceparent": context.traceparent.as_str(),
        "occurred-at": context.occurred_at.to_rfc3339(),
    })
    .to_string();
    let mut batch = WriteBatch::default();
    let mut recorded = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        let key = command.key();
        let tracked = aggregates.entry(key.clone()).or_insert(Tracked {
            stored_version: None,
            version: 0,
            state: None,
            latest_event: None,
        });
        let rejected = |rejection: Rejection| CommandError::Rejected {
            index,
            key: key.clone(),
            rejection,
        };
        let Some((event_type, new_state)) =
            decide(tracked.state.as_ref(), command, context).map_err(rejected)?
        else {
            continue;
        };
        let version = tracked.version + 1;
        let event_id = new_event_id();
        let (payload, family) = encode_event(&new_state, event_id, event_type, version, context)?;
        tracked.latest_event = Some(batch.events.len());
        batch.events.push(OutboxRecord {
            event_id,
            key: key.clone(),
            version,
            event_type,
            schema_fingerprint: registry().current(family).fingerprint,
            payload,
            headers: headers.clone(),
        });
        recorded.push(RecordedEvent {
            event_id,
            key,
            version,
            event_type,
        });
        tracked.version = version;
        tracked.state = Some(new_state);
    }

    for (key, tracked) in aggregates {
        let Some(latest) = tracked.latest_event else {
            continue;
        };
        // The stored state is the latest event itself: it carries the full state.
        let state = batch.events[latest].payload.clone();
        match tracked.stored_version {
            None => batch.created.push(NewAggregate {
                key,
                version: tracked.version,
                state,
            }),
            Some(expected_version) => batch.changed.push(ChangedAggregate {
                key,
                expected_version,
                version: tracked.version,
                state,
            }),
        }
    }
    Ok((batch, recorded))
}

fn encode_event(
    state: &State,
    event_id: Uuid,
    event_type: &'static str,
    version: i64,
    context: &EventContext,
) -> Result<(Vec<u8>, SchemaFamily), EncodeError> {
    Ok(match state {
        State::Task(task) => (
            encode(&TaskEvent {
                event_id,
                event_type: event_type.to_string(),
                version,
                occurred_at: context.occurred_at,
                task: (**task).clone(),
            })?,
            TaskEvent::FAMILY,
        ),
        State::DataEntry(entry) => (
            encode(&DataEntryEvent {
                event_id,
                event_type: event_type.to_string(),
                version,
                occurred_at: context.occurred_at,
                data_entry: (**entry).clone(),
            })?,
            DataEntryEvent::FAMILY,
        ),
    })
}

fn decide(
    current: Option<&State>,
    command: &Command,
    context: &EventContext,
) -> Result<Option<(&'static str, State)>, Rejection> {
    match command {
        Command::Task { task_id, command } => {
            let current = match current {
                Some(State::Task(task)) => Some(&**task),
                _ => None,
            };
            let change = task::decide(current, task_id, command)?;
            Ok(change.map(|c| (c.event_type.as_str(), State::Task(Box::new(c.task)))))
        }
        Command::DataEntry {
            entry_type,
            entry_id,
            command,
        } => {
            let current = match current {
                Some(State::DataEntry(entry)) => Some(&**entry),
                _ => None,
            };
            let change =
                data_entry::decide(current, entry_type, entry_id, command, context.occurred_at)?;
            Ok(change.map(|c| {
                (
                    c.event_type.as_str(),
                    State::DataEntry(Box::new(c.data_entry)),
                )
            }))
        }
    }
}

/// Reads the state out of the stored latest event, whichever schema version wrote it.
fn parse_state(stored: &StoredAggregate) -> Result<State, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptState {
        aggregate: stored.key.to_string(),
        reason,
    };
    match (stored.key.aggregate_type, decode(&stored.state)) {
        (AggregateType::Task, Ok(DecodedEvent::Task(event))) => {
            Ok(State::Task(Box::new(event.task)))
        }
        (AggregateType::DataEntry, Ok(DecodedEvent::DataEntry(event))) => {
            Ok(State::DataEntry(Box::new(event.data_entry)))
        }
        (_, Ok(_)) => Err(corrupt("stored event is of another aggregate type".into())),
        (_, Err(error)) => Err(corrupt(error.to_string())),
    }
}

#[cfg(test)]
mod tests;
