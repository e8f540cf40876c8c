//! MongoDB keeps the view contract: the [`MongoStore`]'s collections are the documents, a change
//! stream on the tasks collection is the change feed, and a fence is a short-lived document in
//! that collection.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use mongodb::bson::{Document, doc};
use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;

use super::changes::{self, FENCE_PREFIX};
use crate::mongo::store::MongoStore;
use taskpool_tasklist::documents::{DataEntryDocument, TaskDocument};
use taskpool_tasklist::metrics::{Metrics, flag};
use taskpool_tasklist::query::TaskQuery;
use taskpool_tasklist::view::{
    Applied, Change, ChangeFeed, ChangeSource, Page, ViewError, ViewStore,
};

impl ViewStore for MongoStore {
    fn apply_tasks<'a>(
        &'a self,
        tasks: &'a [&'a TaskDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>> {
        async move {
            let rows: Vec<(String, i64, &TaskDocument)> = tasks
                .iter()
                .map(|task| (task.id.clone(), task.version, *task))
                .collect();
            self.upsert_versioned(&self.tasks_collection(), &rows)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn apply_data_entries<'a>(
        &'a self,
        entries: &'a [&'a DataEntryDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>> {
        async move {
            let rows: Vec<(String, i64, &DataEntryDocument)> = entries
                .iter()
                .map(|entry| (entry.id.clone(), entry.version, *entry))
                .collect();
            self.upsert_versioned(&self.data_entries_collection(), &rows)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn list_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Page<TaskDocument>, ViewError>> {
        async move {
            MongoStore::list_tasks(self, query, principals)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn all_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TaskDocument>, ViewError>> {
        async move {
            MongoStore::all_tasks(self, query, principals)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn visible_task<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<TaskDocument>, ViewError>> {
        async move {
            MongoStore::visible_task(self, id, principals)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn list_data_entries<'a>(
        &'a self,
        principals: &'a [String],
        entry_type: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<DataEntryDocument>, ViewError>> {
        async move {
            MongoStore::list_data_entries(self, principals, entry_type, after, limit)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn visible_data_entry<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<DataEntryDocument>, ViewError>> {
        async move {
            MongoStore::visible_data_entry(self, id, principals)
                .await
                .map_err(ViewError::new)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), ViewError>> {
        async move { MongoStore::ping(self).await.map_err(ViewError::new) }.boxed()
    }
}

impl ChangeSource for MongoStore {
    fn open_changes(
        &self,
        changes: mpsc::Sender<Change>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> BoxFuture<'_, Result<ChangeFeed, ViewError>> {
        async move {
            let stream = changes::open_stream(self, None)
                .await
                .map_err(ViewError::new)?;
            metrics.change_stream_open.set(flag(true));
            let feed = changes::watch(self.clone(), stream, changes, metrics, shutdown);
            Ok(feed.boxed())
        }
        .boxed()
    }

    /// Inserts a fence document and removes it again: its insert event marks the point in the
    /// change stream.
    fn write_fence<'a>(&'a self, fence: &'a str) -> BoxFuture<'a, Result<(), ViewError>> {
        async move {
            let id = format!("{FENCE_PREFIX}{fence}");
            let fences = self
                .database()
                .collection::<Document>(&self.tasks_collection());
            self.timed(fences.insert_one(doc! { "_id": &id, "fence": true }))
                .await
                .map_err(ViewError::new)?;
            self.timed(fences.delete_one(doc! { "_id": &id }))
                .await
                .map_err(ViewError::new)?;
            Ok(())
        }
        .boxed()
    }
}
