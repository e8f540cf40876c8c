//! The handle every stream connection holds: it registers sessions, reports snapshots, and
//! resumes or detaches them, by messages to the registry actor; and starting it all.

use std::sync::Arc;

use taskpool_service::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::registry::{Command, Registry};
use super::{Registration, ResumeRefused, SessionId, sorted};
use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::query::TaskFilter;
use crate::settings::StreamConfig;
use crate::view::{SharedView, ViewError};

/// The hub is gone (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream hub is not running")]
pub struct HubGone;

/// A handle to the hub task.
#[derive(Debug, Clone)]
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
}

impl Hub {
    /// Opens the view's change feed, then starts the hub. Returns once the feed is open, so
    /// that no snapshot is ever read before it.
    ///
    /// Its tasks (change feed, registry, fence writes) are spawned on `tasks`, so whoever
    /// started the hub can wait for them after shutdown.
    pub async fn start(
        view: SharedView,
        config: StreamConfig,
        metrics: Arc<Metrics>,
        tasks: &TaskTracker,
        shutdown: Shutdown,
    ) -> Result<Hub, ViewError> {
        let (changes_tx, changes) = mpsc::channel(1024);
        let feed = view
            .open_changes(changes_tx, metrics.clone(), shutdown.clone())
            .await?;
        tasks.spawn(feed);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (registry, failed_fences) = Registry::new(config, view, metrics, tasks.clone());
        tasks.spawn(registry.run(commands, changes, failed_fences, shutdown));
        Ok(Hub {
            commands: commands_tx,
        })
    }

    /// Starts a session for a caller; it buffers changes until its snapshot is taken.
    pub async fn register(
        &self,
        caller: Caller,
        filter: TaskFilter,
    ) -> Result<Registration, HubGone> {
        let (reply, registration) = oneshot::channel();
        self.commands
            .send(Command::Register {
                caller,
                filter,
                reply,
            })
            .map_err(|_| HubGone)?;
        registration.await.map_err(|_| HubGone)
    }

    /// The snapshot of `session` was read: the ids and versions of the tasks sent.
    pub fn snapshot_taken(&self, session: SessionId, tasks: Vec<(String, i64)>) {
        let _ = self
            .commands
            .send(Command::SnapshotTaken { session, tasks });
    }

    /// Forgets a session whose snapshot could not be read.
    pub fn cancel(&self, session: SessionId) {
        let _ = self.commands.send(Command::Cancel(session));
    }

    /// The connection of a session ended; the session stays resumable for a while.
    pub fn detach(&self, session: SessionId, attachment: u64) {
        let _ = self.commands.send(Command::Detach {
            session,
            attachment,
        });
    }

    /// Sends an action's outcome (JSON) to every stream of `user`.
    pub fn outcome(&self, user: &str, body: Arc<str>) {
        let _ = self.commands.send(Command::Outcome {
            user: user.to_string(),
            body,
        });
    }

    /// Continues a session after event `after`, replaying what the client missed. Only the
    /// same caller with the same groups may resume: anything else starts afresh.
    pub async fn resume(
        &self,
        session: SessionId,
        after: u64,
        caller: &Caller,
    ) -> Result<Registration, ResumeRefused> {
        let (reply, resumed) = oneshot::channel();
        self.commands
            .send(Command::Resume {
                session,
                after,
                principals: sorted(caller.principals()),
                reply,
            })
            .map_err(|_| ResumeRefused)?;
        resumed.await.map_err(|_| ResumeRefused)?
    }
}
