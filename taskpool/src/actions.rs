//! Actions in one process: a command is applied by the engine running here, in its own
//! transaction and with the same once-only record as in the distributed setup, and its outcome
//! goes straight to the streams and to a waiting request.

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::SqlitePool;
use taskpool_core::SqliteStore;
use taskpool_engine_commands::retention::{Retention, prune_periodically};
use taskpool_engine_commands::{CommandHandler, CommandStore, EngineError, apply_once};
use taskpool_schemas::{CommandOutcome, TaskCommand};
use taskpool_service::shutdown::Shutdown;
use taskpool_tasklist::actions::keys::SharedKeys;
use taskpool_tasklist::actions::sink::{CommandSink, SharedSink, SinkError};

use crate::keys::SqliteKeys;
use tokio::sync::mpsc;

/// Commands to the in-process engine, and the feed of their outcomes.
pub struct ActionRoute {
    pub sink: SharedSink,
    /// Idempotency-Key bindings, in the same database.
    pub keys: SharedKeys,
    pub outcomes: mpsc::UnboundedReceiver<CommandOutcome>,
}

impl std::fmt::Debug for ActionRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionRoute")
    }
}

/// Routes actions to `handler` on `pool` (creating the command tables if needed); until
/// shutdown, decisions older than `retention` are deleted.
pub async fn route<H>(
    pool: SqlitePool,
    handler: H,
    retention: Retention,
    shutdown: Shutdown,
) -> Result<ActionRoute, EngineError>
where
    H: CommandHandler<SqliteStore> + 'static,
{
    SqliteStore::migrate_all(&pool).await?;
    let keys = SqliteKeys::prepare(pool.clone()).await?;
    tokio::spawn(prune_periodically::<SqliteStore>(
        pool.clone(),
        retention,
        shutdown,
    ));
    let (outcomes, feed) = mpsc::unbounded_channel();
    let sink = InProcessSink {
        pool,
        handler: Arc::new(handler),
        outcomes,
        retention,
    };
    Ok(ActionRoute {
        sink: Arc::new(sink),
        keys: Arc::new(keys),
        outcomes: feed,
    })
}

struct InProcessSink<H> {
    pool: SqlitePool,
    handler: Arc<H>,
    outcomes: mpsc::UnboundedSender<CommandOutcome>,
    retention: Retention,
}

impl<H> std::fmt::Debug for InProcessSink<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessSink")
    }
}

impl<H: CommandHandler<SqliteStore> + 'static> CommandSink for InProcessSink<H> {
    fn check(&self, command: &TaskCommand) -> Result<(), String> {
        self.handler.check(command)
    }

    fn send<'a>(&'a self, command: &'a TaskCommand) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let outcome =
                apply_once::<SqliteStore, H>(&self.pool, &*self.handler, command, self.retention)
                    .await
                    .map_err(|error| SinkError::Engine(Box::new(error)))?;
            // The receiver lives as long as the service; after shutdown nobody listens.
            let _ = self.outcomes.send(outcome);
            Ok(())
        })
    }
}
