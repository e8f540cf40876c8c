//! A batch of events folded to the newest document per aggregate, then written to a view in
//! two version-guarded writes. Both feeds of a view use it: the Kafka projection and the
//! single-node outbox reader.

use std::collections::HashMap;

use taskpool_schemas::DecodedEvent;

use crate::documents::{DataEntryDocument, TaskDocument};
use crate::view::{ViewError, ViewStore};

/// The newest document of each aggregate in a batch, with where its event came from (an index
/// the caller chose, such as the message's place in the batch).
#[derive(Debug, Default)]
pub struct Folded {
    tasks: HashMap<String, (TaskDocument, usize)>,
    entries: HashMap<String, (DataEntryDocument, usize)>,
}

/// What writing a batch did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Written {
    /// Documents that changed.
    pub applied: usize,
    /// Documents whose stored version was the same or newer.
    pub stale: usize,
    /// Documents the view refused: the origin of their event, and the reason.
    pub refused: Vec<(usize, String)>,
}

impl Folded {
    pub fn new() -> Folded {
        Folded::default()
    }

    /// How many documents the batch holds.
    pub fn len(&self) -> usize {
        self.tasks.len() + self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.entries.is_empty()
    }

    /// Adds an event; an older version than one already in the batch changes nothing.
    pub fn add(&mut self, event: &DecodedEvent, origin: usize) {
        self.add_traced(event, origin, None);
    }

    /// As [`Folded::add`], keeping the trace context the event travelled with.
    pub fn add_traced(&mut self, event: &DecodedEvent, origin: usize, traceparent: Option<&str>) {
        match event {
            DecodedEvent::Task(event) => {
                let mut document = TaskDocument::from_event(event);
                document.traceparent = traceparent.map(str::to_string);
                let newer = self
                    .tasks
                    .get(&document.id)
                    .is_none_or(|(stored, _)| stored.version < document.version);
                if newer {
                    self.tasks.insert(document.id.clone(), (document, origin));
                }
            }
            DecodedEvent::DataEntry(event) => {
                let document = DataEntryDocument::from_event(event);
                let newer = self
                    .entries
                    .get(&document.id)
                    .is_none_or(|(stored, _)| stored.version < document.version);
                if newer {
                    self.entries.insert(document.id.clone(), (document, origin));
                }
            }
        }
    }

    /// Writes the batch. Durable (as far as the view is) when this returns `Ok`.
    pub async fn write(&self, view: &dyn ViewStore) -> Result<Written, ViewError> {
        let (tasks, task_origins): (Vec<&TaskDocument>, Vec<usize>) =
            self.tasks.values().map(|(d, origin)| (d, *origin)).unzip();
        let (entries, entry_origins): (Vec<&DataEntryDocument>, Vec<usize>) = self
            .entries
            .values()
            .map(|(d, origin)| (d, *origin))
            .unzip();
        let applied_tasks = view.apply_tasks(&tasks).await?;
        let applied_entries = view.apply_data_entries(&entries).await?;
        let mut written = Written {
            stale: applied_tasks.stale + applied_entries.stale,
            ..Written::default()
        };
        for (position, reason) in applied_tasks.refused {
            if let Some(origin) = task_origins.get(position) {
                written.refused.push((*origin, reason));
            }
        }
        for (position, reason) in applied_entries.refused {
            if let Some(origin) = entry_origins.get(position) {
                written.refused.push((*origin, reason));
            }
        }
        written.applied = tasks.len() + entries.len() - written.stale - written.refused.len();
        Ok(written)
    }
}
