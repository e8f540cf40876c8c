//! The MongoDB side: version-guarded bulk upserts for the projection, reads for the API, and
//! the dead-letter collection. (It keeps the [`taskpool_tasklist::view`] contract in
//! [`crate::mongo::view`].)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, RawDocumentBuf, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

use taskpool_service::ExposeSecret;

use crate::config::{MongoConfig, WriteConcern};
use crate::mongo::filter::{self, next_cursor_after};
use crate::mongo::generation::{self, Generation};
use taskpool_tasklist::documents::{DataEntryDocument, TaskDocument};
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::query::TaskQuery;
use taskpool_tasklist::view::{Applied, Page};

pub const DEAD_LETTERS: &str = "dead_letters";

/// Duplicate key: MongoDB's answer when a stored document has the same or a newer version.
const DUPLICATE_KEY: i32 = 11000;

/// Commands stay well below MongoDB's 16 MiB document limit.
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// Splits documents into runs whose encoded size stays under `limit` (a single larger
/// document travels alone, and the server decides).
fn chunks_under(documents: Vec<Document>, limit: usize) -> Vec<Vec<Document>> {
    let mut chunks: Vec<Vec<Document>> = Vec::new();
    let mut size = 0;
    for document in documents {
        let length = bson::to_vec(&document).map_or(0, |bytes| bytes.len());
        match chunks.last_mut() {
            Some(chunk) if size + length <= limit => chunk.push(document),
            _ => {
                chunks.push(vec![document]);
                size = 0;
            }
        }
        size += length;
    }
    chunks
}

/// When the server filled the page (there may be more), the last document it returned,
/// readable or not: the next page starts after it.
fn last_of_full_page(mut raw: Vec<RawDocumentBuf>, limit: usize) -> Option<Document> {
    if raw.len() == limit {
        raw.pop().and_then(|last| last.to_document().ok())
    } else {
        None
    }
}

/// The projection's database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    database: Database,
    write_concern: Bson,
    /// Every operation gives up after this long: a server that stops answering becomes an
    /// error (and a retry), never a hang.
    timeout: std::time::Duration,
    /// Counts stored documents that cannot be read as their type.
    metrics: Arc<Metrics>,
    /// The generation of collections this store reads and writes (see [`generation`]),
    /// shared by its clones, so one switch moves them all.
    generation: Arc<AtomicU64>,
}

impl MongoStore {
    pub async fn connect(
        config: &MongoConfig,
        metrics: Arc<Metrics>,
    ) -> mongodb::error::Result<MongoStore> {
        let mut options = ClientOptions::parse(config.uri.expose_secret()).await?;
        options.app_name = Some("tasklist-api".into());
        let client = Client::with_options(options)?;
        let write_concern = match &config.write_concern {
            WriteConcern::Nodes(nodes) => Bson::Int64(i64::from(*nodes)),
            WriteConcern::Named(name) => Bson::String(name.clone()),
        };
        let database = client.database(&config.database);
        let active = generation::active(&database).await?;
        Ok(MongoStore {
            database,
            write_concern,
            timeout: std::time::Duration::from_millis(config.operation_timeout_ms),
            metrics,
            generation: Arc::new(AtomicU64::new(active.0)),
        })
    }

    /// The generation this store uses now.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
    }

    /// Moves this store and its clones to another generation.
    pub fn adopt(&self, generation: Generation) {
        self.generation.store(generation.0, Ordering::SeqCst);
    }

    /// A store on the same database fixed to `generation`, independent of this one's switches
    /// (a rebuild writes the generation it builds).
    pub fn at(&self, generation: Generation) -> MongoStore {
        MongoStore {
            generation: Arc::new(AtomicU64::new(generation.0)),
            ..self.clone()
        }
    }

    /// The current generation's tasks collection.
    pub fn tasks_collection(&self) -> String {
        self.generation().tasks()
    }

    /// The current generation's data-entries collection.
    pub fn data_entries_collection(&self) -> String {
        self.generation().data_entries()
    }

    /// The documents that read as `T`. One that does not (written by another version, or
    /// damaged) is logged and counted and left out, so it never fails a whole answer.
    fn readable<T: serde::de::DeserializeOwned>(
        &self,
        collection: &str,
        raw: &[RawDocumentBuf],
    ) -> Vec<T> {
        raw.iter()
            .filter_map(|document| match bson::from_slice(document.as_bytes()) {
                Ok(value) => Some(value),
                Err(error) => {
                    let id = document.get_str("_id").unwrap_or_default();
                    self.metrics
                        .unreadable_document(&format!("{collection}/{id}"), &error);
                    None
                }
            })
            .collect()
    }

    fn raw(&self, collection: &str) -> Collection<RawDocumentBuf> {
        self.database.collection(collection)
    }

    /// Runs one MongoDB operation, giving up after the configured operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        operation: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> mongodb::error::Result<T> {
        match tokio::time::timeout(self.timeout, operation.into_future()).await {
            Ok(result) => result,
            Err(_) => Err(mongodb::error::Error::custom(format!(
                "MongoDB did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    pub fn tasks(&self) -> Collection<TaskDocument> {
        self.database.collection(&self.tasks_collection())
    }

    fn data_entries(&self) -> Collection<DataEntryDocument> {
        self.database.collection(&self.data_entries_collection())
    }

    /// Creates the indexes the queries need (idempotent).
    pub async fn ensure_indexes(&self) -> mongodb::error::Result<()> {
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        self.tasks()
            .create_indexes([
                index(
                    doc! { "principals": 1, "state": 1, "priority": -1 },
                    "visible_by_priority",
                ),
                index(
                    doc! { "principals": 1, "state": 1, "dueSort": 1 },
                    "visible_by_due",
                ),
                index(
                    doc! { "principals": 1, "state": 1, "createTime": 1 },
                    "visible_by_creation",
                ),
                index(doc! { "businessKey": 1 }, "business_key"),
            ])
            .await?;
        self.data_entries()
            .create_indexes([index(doc! { "principals": 1, "deleted": 1 }, "visible")])
            .await?;
        Ok(())
    }

    /// Answers when the server is reachable.
    pub async fn ping(&self) -> mongodb::error::Result<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .map(|_| ())
    }

    /// Upserts documents, each only over an older version ("newer version wins"): duplicates,
    /// replays and stale versions change nothing. Durable when this returns `Ok`.
    pub async fn upsert_versioned<T: serde::Serialize>(
        &self,
        collection: &str,
        documents: &[(String, i64, &T)],
    ) -> mongodb::error::Result<Applied> {
        let mut updates = Vec::with_capacity(documents.len());
        for (id, version, document) in documents {
            let mut set = bson::to_document(document)?;
            set.remove("_id");
            updates.push(doc! {
                "q": { "_id": id, "version": { "$lt": version } },
                "u": { "$set": set },
                "upsert": true,
            });
        }
        let mut applied = Applied::default();
        let mut offset = 0;
        for chunk in chunks_under(updates, MAX_COMMAND_BYTES) {
            let count = chunk.len();
            let reply = self
                .timed(self.database.run_command(doc! {
                    "update": collection,
                    "updates": chunk,
                    "ordered": false,
                    "writeConcern": { "w": self.write_concern.clone(), "j": true },
                }))
                .await?;
            if let Ok(error) = reply.get_document("writeConcernError") {
                return Err(mongodb::error::Error::custom(format!(
                    "write concern not satisfied: {error}"
                )));
            }
            if let Ok(errors) = reply.get_array("writeErrors") {
                for error in errors.iter().filter_map(Bson::as_document) {
                    let code = error.get_i32("code").unwrap_or_default();
                    let index = error
                        .get_i32("index")
                        .ok()
                        .and_then(|i| usize::try_from(i).ok())
                        .unwrap_or_default();
                    if code == DUPLICATE_KEY {
                        applied.stale += 1;
                    } else {
                        let message = error.get_str("errmsg").unwrap_or("refused").to_string();
                        applied
                            .refused
                            .push((offset + index, format!("MongoDB error {code}: {message}")));
                    }
                }
            }
            offset += count;
        }
        Ok(applied)
    }

    pub async fn dead_letter(&self, letters: Vec<Document>) -> mongodb::error::Result<()> {
        for chunk in chunks_under(letters, MAX_COMMAND_BYTES) {
            self.timed(self.database.run_command(doc! {
                "insert": DEAD_LETTERS,
                "documents": chunk,
                "ordered": true,
                "writeConcern": { "w": self.write_concern.clone(), "j": true },
            }))
            .await?;
        }
        Ok(())
    }

    /// A page of the tasks visible to `principals`.
    pub async fn list_tasks(
        &self,
        query: &TaskQuery,
        principals: &[String],
    ) -> mongodb::error::Result<Page<TaskDocument>> {
        let tasks = self.tasks_collection();
        let raw: Vec<RawDocumentBuf> = self
            .timed(async {
                self.raw(&tasks)
                    .find(filter::page_filter(query, principals))
                    .sort(filter::sort(query))
                    .limit(i64::from(query.limit))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let items = self.readable(&tasks, &raw);
        let next_cursor = last_of_full_page(raw, query.limit as usize)
            .and_then(|last| next_cursor_after(query.sort, &last));
        Ok(Page { items, next_cursor })
    }

    /// Every task matching the filter and visible to `principals` (a stream's snapshot).
    pub async fn all_tasks(
        &self,
        query: &TaskQuery,
        principals: &[String],
    ) -> mongodb::error::Result<Vec<TaskDocument>> {
        let tasks = self.tasks_collection();
        let raw: Vec<RawDocumentBuf> = self
            .timed(async {
                self.raw(&tasks)
                    .find(filter::task_filter(&query.filter, principals))
                    .sort(filter::sort(query))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(self.readable(&tasks, &raw))
    }

    /// One task, if it exists and `principals` may see it.
    pub async fn visible_task(
        &self,
        id: &str,
        principals: &[String],
    ) -> mongodb::error::Result<Option<TaskDocument>> {
        let tasks = self.tasks_collection();
        let raw = self
            .timed(self.raw(&tasks).find_one(doc! { "_id": id }))
            .await?;
        let task: Option<TaskDocument> = self.readable(&tasks, raw.as_slice()).pop();
        Ok(task.filter(|t| t.visible_to(principals)))
    }

    pub async fn list_data_entries(
        &self,
        principals: &[String],
        entry_type: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> mongodb::error::Result<Page<DataEntryDocument>> {
        let mut filter = doc! { "principals": { "$in": principals }, "deleted": false };
        if let Some(entry_type) = entry_type {
            filter.insert("entryType", entry_type);
        }
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after });
        }
        let entries = self.data_entries_collection();
        let raw: Vec<RawDocumentBuf> = self
            .timed(async {
                self.raw(&entries)
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(i64::from(limit))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let items = self.readable(&entries, &raw);
        let next_cursor = last_of_full_page(raw, limit as usize)
            .and_then(|last| last.get_str("_id").ok().map(str::to_string));
        Ok(Page { items, next_cursor })
    }

    pub async fn visible_data_entry(
        &self,
        id: &str,
        principals: &[String],
    ) -> mongodb::error::Result<Option<DataEntryDocument>> {
        let entries = self.data_entries_collection();
        let raw = self
            .timed(self.raw(&entries).find_one(doc! { "_id": id }))
            .await?;
        let entry: Option<DataEntryDocument> = self.readable(&entries, raw.as_slice()).pop();
        Ok(entry.filter(|e| e.visible_to(principals)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_split_below_the_size_limit_keeping_order() {
        let documents: Vec<Document> = (0..10)
            .map(|i| doc! { "i": i, "blob": "x".repeat(100) })
            .collect();
        let one = bson::to_vec(&documents[0]).unwrap().len();
        let chunks = chunks_under(documents, one * 3);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        let order: Vec<i32> = chunks
            .iter()
            .flatten()
            .map(|d| d.get_i32("i").unwrap())
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert!(chunks_under(Vec::new(), 10).is_empty());
    }
}
