//! MongoDB keeps the view contract: the [`Store`]'s collections are the documents, a change
//! stream on the tasks collection is the change feed, and a fence is a short-lived document in
//! that collection.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use mongodb::bson::{Document, doc};
use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;

use super::mongo_changes::{self, FENCE_PREFIX};
use super::{Applied, Change, ChangeFeed, ChangeSource, Page, ViewError, ViewStore};
use crate::documents::{DataEntryDocument, TaskDocument};
use crate::metrics::{Metrics, flag};
use crate::query::TaskQuery;
use crate::store::Store;

impl ViewStore for Store {
    fn apply_tasks<'a>(
        &'a self,
        tasks: &'a [&'a TaskDocument],
    ) -> BoxFuture<'a, Result<Applied, ViewError>> {
        async move {
            let rows: Vec<(String, i64, &TaskDocument)> = tasks
                .iter()
                .map(|task| (task.id.clone(), task.version, *task))
                .collect();
            Ok(self
                .upsert_versioned(&self.tasks_collection(), &rows)
                .await?)
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
            Ok(self
                .upsert_versioned(&self.data_entries_collection(), &rows)
                .await?)
        }
        .boxed()
    }

    fn list_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Page<TaskDocument>, ViewError>> {
        async move { Ok(Store::list_tasks(self, query, principals).await?) }.boxed()
    }

    fn all_tasks<'a>(
        &'a self,
        query: &'a TaskQuery,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<TaskDocument>, ViewError>> {
        async move { Ok(Store::all_tasks(self, query, principals).await?) }.boxed()
    }

    fn visible_task<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<TaskDocument>, ViewError>> {
        async move { Ok(Store::visible_task(self, id, principals).await?) }.boxed()
    }

    fn list_data_entries<'a>(
        &'a self,
        principals: &'a [String],
        entry_type: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<DataEntryDocument>, ViewError>> {
        async move {
            Ok(Store::list_data_entries(self, principals, entry_type, after, limit).await?)
        }
        .boxed()
    }

    fn visible_data_entry<'a>(
        &'a self,
        id: &'a str,
        principals: &'a [String],
    ) -> BoxFuture<'a, Result<Option<DataEntryDocument>, ViewError>> {
        async move { Ok(Store::visible_data_entry(self, id, principals).await?) }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), ViewError>> {
        async move { Ok(Store::ping(self).await?) }.boxed()
    }
}

impl ChangeSource for Store {
    fn open_changes(
        &self,
        changes: mpsc::Sender<Change>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> BoxFuture<'_, Result<ChangeFeed, ViewError>> {
        async move {
            let stream = mongo_changes::open_stream(self, None).await?;
            metrics.change_stream_open.set(flag(true));
            let feed = mongo_changes::watch(self.clone(), stream, changes, metrics, shutdown);
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
                .await?;
            self.timed(fences.delete_one(doc! { "_id": &id })).await?;
            Ok(())
        }
        .boxed()
    }
}
