//! MongoDB's change feed: a change stream on the tasks collection, opened before any snapshot
//! is read, reopened after errors where it left off, and reported as a gap only when the server
//! no longer knows that position.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{self, Document};
use mongodb::change_stream::event::{OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::mongo::generation;
use crate::mongo::store::MongoStore;
use taskpool_service::backoff::Backoff;
use taskpool_service::logging::error_chain;
use taskpool_tasklist::documents::TaskDocument;
use taskpool_tasklist::metrics::{Metrics, flag};
use taskpool_tasklist::view::Change;

/// Fence documents share the tasks collection (so they travel in its change stream) and their
/// ids start with this prefix; they carry no principals, so no query ever returns them.
pub(super) const FENCE_PREFIX: &str = "~fence:";

pub(super) type TaskStream = mongodb::change_stream::ChangeStream<
    mongodb::change_stream::event::ChangeStreamEvent<Document>,
>;

pub(super) async fn open_stream(
    store: &MongoStore,
    resume: Option<ResumeToken>,
) -> mongodb::error::Result<TaskStream> {
    store
        .database()
        .collection::<Document>(&store.tasks_collection())
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .max_await_time(Duration::from_millis(500))
        .resume_after(resume)
        .await
}

/// How often the watcher looks for a switch to a rebuilt generation.
const GENERATION_CHECK: Duration = Duration::from_secs(1);

/// Reads the shared change stream; reopens it after errors, resuming where it was. If the
/// server no longer knows that position, it starts afresh and reports a gap. When a rebuild
/// switched the view to a new generation, the store moves to it and the stream reopens there,
/// reported as a gap: every client resyncs against the new collections.
pub(super) async fn watch(
    store: MongoStore,
    mut stream: TaskStream,
    changes: mpsc::Sender<Change>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    info!(collection = %store.tasks_collection(), "change stream on the tasks collection open");
    let mut generation_check = tokio::time::interval(GENERATION_CHECK);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = generation_check.tick() => {
                if let Some(switched) = switch_if_rebuilt(&store).await {
                    stream = switched;
                    if changes.send(Change::Gap).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = shutdown.requested() => return,
        };
        let error = match next {
            Some(Ok(event)) => {
                if let Some(change) = read_change(event)
                    && changes.send(change).await.is_err()
                {
                    return;
                }
                continue;
            }
            Some(Err(error)) => error.to_string(),
            None => "the change stream ended".to_string(),
        };
        metrics.change_stream_open.set(flag(false));
        warn!(%error, "change stream interrupted; reopening");
        let token = stream.resume_token();
        let mut backoff = Backoff::for_retries();
        stream = loop {
            if shutdown.sleep(backoff.next_pause()).await {
                return;
            }
            match open_stream(&store, token.clone()).await {
                Ok(stream) => break stream,
                Err(error) => {
                    warn!(
                        error = error_chain(&error),
                        "cannot reopen the change stream"
                    );
                    // Only a position the server no longer has makes us start over, and every
                    // client resync; anything else (a failover, a timeout) is tried again.
                    if token.is_some()
                        && resume_point_lost(&error)
                        && let Ok(stream) = open_stream(&store, None).await
                    {
                        if changes.send(Change::Gap).await.is_err() {
                            return;
                        }
                        break stream;
                    }
                }
            }
        };
        metrics.change_stream_open.set(flag(true));
        info!("change stream reopened");
    }
}

/// When the active generation is no longer the store's: moves the store and opens a change
/// stream on the new tasks collection. Errors are left to the next check.
async fn switch_if_rebuilt(store: &MongoStore) -> Option<TaskStream> {
    let active = generation::active(store.database()).await.ok()?;
    if active == store.generation() {
        return None;
    }
    let previous = store.generation();
    store.adopt(active);
    match open_stream(store, None).await {
        Ok(stream) => {
            info!(
                from = previous.0,
                to = active.0,
                "the view switched to a rebuilt generation; every stream client resyncs"
            );
            Some(stream)
        }
        Err(error) => {
            warn!(
                error = error_chain(&error),
                "cannot open the change stream on the rebuilt generation"
            );
            store.adopt(previous);
            None
        }
    }
}

/// MongoDB's answers for a resume token it cannot continue from: `InvalidResumeToken` (260),
/// `ChangeStreamFatalError` (280), `ChangeStreamHistoryLost` (286).
fn resume_point_lost(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => matches!(command.code, 260 | 280 | 286),
        _ => false,
    }
}

fn read_change(
    event: mongodb::change_stream::event::ChangeStreamEvent<Document>,
) -> Option<Change> {
    let document = match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace => {
            event.full_document?
        }
        _ => return None,
    };
    match document.get_str("_id") {
        Ok(id) if id.starts_with(FENCE_PREFIX) => {
            Some(Change::Fence(id[FENCE_PREFIX.len()..].to_string()))
        }
        _ => match bson::from_document::<TaskDocument>(document) {
            Ok(task) => Some(Change::Task(Arc::new(task))),
            Err(error) => {
                warn!(
                    error = error_chain(&error),
                    "a tasks document does not read as a task; ignored"
                );
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{self, doc};
    use mongodb::error::{CommandError, Error, ErrorKind};

    fn command_error(code: i32) -> Error {
        let command: CommandError =
            bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "x" }).unwrap();
        Error::from(ErrorKind::Command(command))
    }

    #[test]
    fn only_a_lost_resume_point_makes_the_stream_start_over() {
        for lost in [260, 280, 286] {
            assert!(super::resume_point_lost(&command_error(lost)), "{lost}");
        }
        // Not primary, interrupted at shutdown, a network error: retry from the same point.
        for transient in [10107, 11600, 91] {
            assert!(
                !super::resume_point_lost(&command_error(transient)),
                "{transient}"
            );
        }
        let network = Error::from(ErrorKind::Io(std::sync::Arc::new(std::io::Error::other(
            "connection reset",
        ))));
        assert!(!super::resume_point_lost(&network));
    }
}
