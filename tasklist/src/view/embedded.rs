//! The embedded view: documents in memory, for the single-node mode. It keeps the same
//! contract as tasklist-api's MongoDB view (version-guarded writes, the same query semantics from
//! [`crate::query`], an ordered change feed with fences), so the HTTP API and the stream run on
//! it unchanged. It holds no files: whoever feeds it rebuilds it at start (the single-node mode
//! loads the aggregates' current states, then follows the outbox).

use std::collections::{BTreeMap, HashMap, HashSet};
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

#[derive(Debug, Default)]
struct Documents {
    tasks: HashMap<String, Arc<TaskDocument>>,
    /// Ids of the active tasks each principal may see: the candidates of a query.
    visible_tasks: HashMap<String, HashSet<String>>,
    entries: BTreeMap<String, DataEntryDocument>,
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

    /// Number of task documents held (any state).
    pub fn task_count(&self) -> usize {
        self.read().tasks.len()
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
            if stored.as_ref().is_some_and(|s| s.version >= task.version) {
                applied.stale += 1;
                continue;
            }
            if let Some(stored) = stored {
                documents.unindex(&stored);
            }
            let task = Arc::new((*task).clone());
            documents.index(&task);
            documents.tasks.insert(task.id.clone(), task.clone());
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
            match documents.entries.get(&entry.id) {
                Some(stored) if stored.version >= entry.version => applied.stale += 1,
                _ => {
                    documents.entries.insert(entry.id.clone(), (*entry).clone());
                }
            }
        }
        applied
    }
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
