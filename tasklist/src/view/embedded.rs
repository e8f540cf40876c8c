//! The embedded view: documents in memory, for the single-node mode. It keeps the same
//! contract as tasklist-api's MongoDB view (version-guarded writes, the same query semantics from
//! [`crate::query`], an ordered change feed with fences), so the HTTP API and the stream run on
//! it unchanged. It holds no files: whoever feeds it rebuilds it at start (the single-node mode
//! loads the aggregates' current states, then follows the outbox).
//!
//! A process that runs for months must not keep every task and data entry it ever saw: it
//! holds what is current. A finished task (completed or deleted, which no query shows) is
//! reported on the change feed and then dropped; so is a finished data entry (completed,
//! cancelled or deleted: the engine keeps its record, this view no longer lists it). Only their
//! versions are kept, for the most recent [`FINISHED_REMEMBERED`] of each, so that a duplicate
//! arriving soon after changes nothing. Its feeder delivers each aggregate's versions in order
//! (single-node follows the outbox), so an older version of one finished long ago does not
//! come.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};

use futures::FutureExt;
use futures::future::BoxFuture;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::{broadcast, mpsc};

use super::{Applied, Change, ChangeFeed, ChangeSource, Page, ViewError, ViewStore};
use crate::documents::{DataEntryDocument, TaskDocument};
use crate::metrics::{Metrics, flag};
use crate::query::{TaskQuery, next_cursor};

/// Changes the feed holds for a reader that fell behind; past that, the reader is told
/// [`Change::Gap`] (its streams resync), exactly as when a change stream loses its position.
const FEED_CAPACITY: usize = 16 * 1024;

/// Finished tasks (and finished data entries) whose versions are remembered after they leave:
/// a feeder's batch (single-node reads a thousand outbox rows at once). Its feeders deliver
/// each version once and in order after a consistent start, so this guards against a duplicate
/// in a batch, not a backlog; more would only be memory that fills for hours before it stops
/// growing.
pub const FINISHED_REMEMBERED: usize = 1_000;

/// The versions of documents that have left, the most recent first to stay.
#[derive(Debug, Default)]
struct Departed {
    versions: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl Departed {
    fn version(&self, id: &str) -> Option<i64> {
        self.versions.get(id).copied()
    }

    fn remember(&mut self, id: &str, version: i64) {
        if self.versions.insert(id.to_string(), version).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > FINISHED_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.versions.remove(&oldest);
            }
        }
    }

    fn forget(&mut self, id: &str) {
        if self.versions.remove(id).is_some() {
            self.order.retain(|kept| kept != id);
        }
    }
}

#[derive(Debug, Default)]
struct Documents {
    tasks: HashMap<String, Arc<TaskDocument>>,
    /// Ids of the active tasks each principal may see: the candidates of a query.
    visible_tasks: HashMap<String, HashSet<String>>,
    entries: BTreeMap<String, DataEntryDocument>,
    finished_tasks: Departed,
    finished_entries: Departed,
}

impl Documents {
    fn unindex(&mut self, task: &TaskDocument) {
        for principal in &task.principals {
            if let Some(ids) = self.visible_tasks.get_mut(principal) {
                ids.remove(&task.id);
                if ids.is_empty() {
                    self.visible_tasks.remove(principal);
                }
            }
        }
    }

    fn index(&mut self, task: &TaskDocument) {
        if task.state != crate::documents::ACTIVE {
            return;
        }
        for principal in &task.principals {
            self.visible_tasks
                .entry(principal.clone())
                .or_default()
                .insert(task.id.clone());
        }
    }

    /// The tasks matching `query` and visible to `principals`, in the query's order.
    fn matching(&self, query: &TaskQuery, principals: &[String]) -> Vec<&TaskDocument> {
        let ids: HashSet<&String> = principals
            .iter()
            .filter_map(|principal| self.visible_tasks.get(principal))
            .flatten()
            .collect();
        let mut tasks: Vec<&TaskDocument> = ids
            .into_iter()
            .filter_map(|id| self.tasks.get(id))
            .map(Arc::as_ref)
            .filter(|task| query.filter.matches(task, principals))
            .collect();
        tasks.sort_by(|a, b| query.compare(a, b));
        tasks
    }
}

/// The in-memory view. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EmbeddedView {
    documents: Arc<RwLock<Documents>>,
    feed: broadcast::Sender<Change>,
}

impl Default for EmbeddedView {
    fn default() -> Self {
        EmbeddedView {
            documents: Arc::default(),
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl EmbeddedView {
    pub fn new() -> EmbeddedView {
        EmbeddedView::default()
    }

    /// Number of task documents held: the active ones (finished ones leave).
    pub fn task_count(&self) -> usize {
        self.read().tasks.len()
    }

    /// Number of data entries held (finished ones leave).
    pub fn data_entry_count(&self) -> usize {
        self.read().entries.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Documents> {
        // A panic while holding the lock leaves consistent maps (every write is one insert),
        // so a poisoned lock is still safe to use.
        self.documents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Documents> {
        self.documents
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_tasks(&self, tasks: &[&TaskDocument]) -> Applied {
        let mut applied = Applied::default();
        let mut documents = self.write();
        for task in tasks {
            let stored = documents.tasks.get(&task.id).cloned();
            let known = stored
                .as_ref()
                .map(|s| s.version)
                .or_else(|| documents.finished_tasks.version(&task.id));
            if known.is_some_and(|version| version >= task.version) {
                applied.stale += 1;
                continue;
            }
            if let Some(stored) = stored {
                documents.unindex(&stored);
            }
            let task = Arc::new((*task).clone());
            if task.state == crate::documents::ACTIVE {
                documents.finished_tasks.forget(&task.id);
                documents.index(&task);
                documents.tasks.insert(task.id.clone(), task.clone());
            } else {
                documents.tasks.remove(&task.id);
                documents.finished_tasks.remember(&task.id, task.version);
            }
            // Sent while the lock is held: the feed's order is the order of the writes, and a
            // snapshot read after this write sees it.
            let _ = self.feed.send(Change::Task(task));
        }
        applied
    }

    fn write_entries(&self, entries: &[&DataEntryDocument]) -> Applied {
        let mut applied = Applied::default();
        let mut documents = self.write();
        for entry in entries {
            let known = match documents.entries.get(&entry.id) {
                Some(stored) => Some(stored.version),
                None => documents.finished_entries.version(&entry.id),
            };
            if known.is_some_and(|version| version >= entry.version) {
                applied.stale += 1;
            } else if finished(entry) {
                documents.entries.remove(&entry.id);
                documents
                    .finished_entries
                    .remember(&entry.id, entry.version);
            } else {
                documents.finished_entries.forget(&entry.id);
                documents.entries.insert(entry.id.clone(), (*entry).clone());
            }
        }
        applied
    }
}

/// Whether a data entry's business is over (it leaves the view).
fn finished(entry: &DataEntryDocument) -> bool {
    entry.deleted || matches!(entry.processing_type.as_str(), "COMPLETED" | "CANCELLED")
}

impl ViewStore for EmbeddedView {
    fn apply_tasks<'a>(
        &'a self,
        tasks: &'a [&'a TaskDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>> {
        futures::future::ready(Ok(self.write_tasks(tasks))).boxed()
    }

    fn apply_data_entries<'a>(
        &'a self,
        entries: &'a [&'a DataEntryDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>> {
        futures::future::ready(Ok(self.write_entries(entries))).boxed()
    }

    fn list_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Page<TaskDocument>, ViewError>> {
        let documents = self.read();
        let limit = query.limit as usize;
        let items: Vec<TaskDocument> = documents
            .matching(query, principals)
            .into_iter()
            .filter(|task| query.is_after_cursor(task))
            .take(limit)
            .cloned()
            .collect();
        let next_cursor = match items.last() {
            Some(last) if items.len() == limit => Some(next_cursor(query.sort, last)),
            _ => None,
        };
        futures::future::ready(Ok(Page { items, next_cursor })).boxed()
    }

    fn all_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TaskDocument>, ViewError>> {
        let documents = self.read();
        let tasks = documents
            .matching(query, principals)
            .into_iter()
            .cloned()
            .collect();
        futures::future::ready(Ok(tasks)).boxed()
    }

    fn visible_task<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<TaskDocument>, ViewError>> {
        let task = self
            .read()
            .tasks
            .get(id)
            .filter(|task| task.visible_to(principals))
            .map(|task| task.as_ref().clone());
        futures::future::ready(Ok(task)).boxed()
    }

    fn list_data_entries<'a>(
        &'a self,
        principals: &'a [String],
        entry_type: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<DataEntryDocument>, ViewError>> {
        let documents = self.read();
        let limit = limit as usize;
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        let items: Vec<DataEntryDocument> = documents
            .entries
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, entry)| entry)
            .filter(|entry| entry.visible_to(principals))
            .filter(|entry| entry_type.is_none_or(|t| entry.entry_type == t))
            .take(limit)
            .cloned()
            .collect();
        let next_cursor = match items.last() {
            Some(last) if items.len() == limit => Some(last.id.clone()),
            _ => None,
        };
        futures::future::ready(Ok(Page { items, next_cursor })).boxed()
    }

    fn visible_data_entry<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<DataEntryDocument>, ViewError>> {
        let entry = self
            .read()
            .entries
            .get(id)
            .filter(|entry| entry.visible_to(principals))
            .cloned();
        futures::future::ready(Ok(entry)).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), ViewError>> {
        futures::future::ready(Ok(())).boxed()
    }
}

impl ChangeSource for EmbeddedView {
    fn open_changes(
        &self,
        changes: mpsc::Sender<Change>,
        metrics: Arc<Metrics>,
        mut shutdown: Shutdown,
    ) -> BoxFuture<'_, Result<ChangeFeed, ViewError>> {
        let mut feed = self.feed.subscribe();
        metrics.change_stream_open.set(flag(true));
        let forward = async move {
            loop {
                let change = tokio::select! {
                    change = feed.recv() => change,
                    _ = shutdown.requested() => return,
                };
                let change = match change {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the stream hub fell behind the view's changes");
                        Change::Gap
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if changes.send(change).await.is_err() {
                    return;
                }
            }
        };
        futures::future::ready(Ok(forward.boxed())).boxed()
    }

    fn write_fence<'a>(&'a self, fence: &'a str) -> BoxFuture<'a, Result<(), ViewError>> {
        // Every write sends its change before it releases the lock, so taking the lock here
        // orders the fence after every change made so far.
        let _documents = self.write();
        let _ = self.feed.send(Change::Fence(fence.to_string()));
        futures::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests;
