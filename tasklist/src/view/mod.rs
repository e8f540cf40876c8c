//! The view: the contract between the tasklist's HTTP API and stream on one side and where the
//! task and data-entry documents live on the other. Two implementations keep it: MongoDB
//! (in tasklist-api, the distributed mode) and an in-process view ([`embedded`], the
//! single-node mode). Query semantics ([`crate::query`]), visibility
//! ([`crate::documents`]) and the stream protocol ([`crate::stream`]) exist once, above it.
//!
//! - [`ViewStore`]: version-guarded writes and the API's reads.
//! - [`ChangeSource`]: one ordered feed of every document change, and fences in that feed
//!   (see [`crate::stream`] for how a snapshot is lined up with it).

pub mod embedded;

use std::sync::Arc;

use futures::future::BoxFuture;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::documents::{DataEntryDocument, TaskDocument};
use crate::metrics::Metrics;
use crate::query::TaskQuery;

pub use embedded::EmbeddedView;

/// The view could not be read or written (unreachable, timed out, refused). Callers retry or
/// answer 503; the cause is for the log.
#[derive(Debug, thiserror::Error)]
#[error("the view store failed")]
pub struct ViewError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl ViewError {
    /// The view failed for this cause.
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> ViewError {
        ViewError(Box::new(cause))
    }
}

/// What a version-guarded write did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// Documents whose stored version was the same or newer: nothing changed.
    pub stale: usize,
    /// Documents the store refused, by their index in the batch, with the reason.
    pub refused: Vec<(usize, String)>,
}

/// One page of a list, and the cursor of the next page when this one is full (there may be
/// more).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// What the change feed reports, in the order the changes were made.
#[derive(Debug, Clone)]
pub enum Change {
    /// A task document was written (any version, any state).
    Task(Arc<TaskDocument>),
    /// A fence written with [`ChangeSource::write_fence`] came through.
    Fence(String),
    /// The feed had to restart without its position: changes may have been missed.
    Gap,
}

/// A running change feed: it sends into the channel it was opened with until shutdown or
/// until the receiver is gone.
pub type ChangeFeed = BoxFuture<'static, ()>;

/// Documents and the API's reads. Every write is version-guarded ("newer version wins"), so
/// duplicates, replays and stale versions change nothing.
pub trait ViewStore: Send + Sync + std::fmt::Debug + 'static {
    /// Writes each task over an older version (or where there is none).
    fn apply_tasks<'a>(
        &'a self,
        tasks: &'a [&'a TaskDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>>;

    /// Writes each data entry over an older version (or where there is none).
    fn apply_data_entries<'a>(
        &'a self,
        entries: &'a [&'a DataEntryDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>>;

    /// A page of the active tasks matching `query` and visible to `principals`, in the query's
    /// order, after its cursor.
    fn list_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Page<TaskDocument>, ViewError>>;

    /// Every task matching the filter and visible to `principals`, in the query's order (a
    /// stream's snapshot).
    fn all_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TaskDocument>, ViewError>>;

    /// One task, if it exists and `principals` may see it.
    fn visible_task<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<TaskDocument>, ViewError>>;

    /// A page of the data entries visible to `principals`, by id, after `after`.
    fn list_data_entries<'a>(
        &'a self,
        principals: &'a [String],
        entry_type: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<DataEntryDocument>, ViewError>>;

    /// One data entry (`<entry type>:<entry id>`), if it exists and `principals` may see it.
    fn visible_data_entry<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<DataEntryDocument>, ViewError>>;

    /// Answers when the store is reachable.
    fn ping(&self) -> BoxFuture<'_, Result<(), ViewError>>;
}

/// The ordered feed of changes to task documents.
pub trait ChangeSource: Send + Sync + std::fmt::Debug + 'static {
    /// Opens the feed; it is open (every later change will be reported) when this returns.
    /// The returned future runs it, sending into `changes`.
    fn open_changes(
        &self,
        changes: mpsc::Sender<Change>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> BoxFuture<'_, Result<ChangeFeed, ViewError>>;

    /// Puts a fence into the feed: it comes through after every change made before this
    /// returned.
    fn write_fence<'a>(&'a self, fence: &'a str) -> BoxFuture<'a, Result<(), ViewError>>;
}

/// A complete view: a store and its change feed.
pub trait View: ViewStore + ChangeSource {}

impl<T: ViewStore + ChangeSource> View for T {}

/// How the API and the stream hold a view.
pub type SharedView = Arc<dyn View>;
