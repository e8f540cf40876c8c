//! Lining up a session's snapshot with the change feed. After a session's snapshot is read, a
//! fence is written into the view's change feed; when the feed delivers it, every change made
//! before the snapshot has been delivered too, so the session can go live without a gap. One
//! fence serves every session queued meanwhile.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::SessionId;
use crate::view::SharedView;

/// How long a fence may take to come back through the change stream before another is written.
const PATIENCE: Duration = Duration::from_secs(10);

/// Pause before a failed fence write is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The fence on its way and the sessions waiting for the next one.
pub(super) struct Fences {
    queue: Vec<SessionId>,
    in_flight: Option<(String, Vec<SessionId>)>,
    issued_at: Instant,
    view: SharedView,
    failures: mpsc::UnboundedSender<String>,
    tasks: TaskTracker,
}

impl Fences {
    /// Fence writes run on `tasks`; a failed one is reported on the returned channel, to be
    /// handed back to [`Fences::retry`].
    pub(super) fn new(
        view: SharedView,
        tasks: TaskTracker,
    ) -> (Fences, mpsc::UnboundedReceiver<String>) {
        let (failures, failed) = mpsc::unbounded_channel();
        let fences = Fences {
            queue: Vec::new(),
            in_flight: None,
            issued_at: Instant::now(),
            view,
            failures,
            tasks,
        };
        (fences, failed)
    }

    /// A session's snapshot is read: it goes live with the next fence.
    pub(super) fn enqueue(&mut self, session: SessionId) {
        self.queue.push(session);
        self.issue();
    }

    /// A fence came through the change stream: the sessions it releases (none if it is not
    /// the one on its way).
    pub(super) fn arrived(&mut self, fence: &str) -> Vec<SessionId> {
        let released = match &self.in_flight {
            Some((id, _)) if id == fence => self.in_flight.take(),
            _ => None,
        };
        let Some((_, sessions)) = released else {
            return Vec::new();
        };
        self.issue();
        sessions
    }

    /// Writes a failed fence again, if it is still the one on its way.
    pub(super) fn retry(&mut self, fence: String) {
        if self.in_flight.as_ref().is_some_and(|(id, _)| *id == fence) {
            self.write(fence);
        }
    }

    /// Replaces a fence that did not come back in time (its change event was lost).
    pub(super) fn replace_overdue(&mut self) {
        if self.in_flight.is_some() && self.issued_at.elapsed() >= PATIENCE {
            if let Some((_, waiting)) = self.in_flight.take() {
                warn!("a stream fence did not arrive; writing another");
                self.queue.extend(waiting);
            }
            self.issue();
        }
    }

    /// A session that went away no longer waits.
    pub(super) fn forget(&mut self, session: SessionId) {
        self.queue.retain(|s| *s != session);
    }

    fn issue(&mut self) {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return;
        }
        let fence = uuid::Uuid::new_v4().simple().to_string();
        self.in_flight = Some((fence.clone(), std::mem::take(&mut self.queue)));
        self.issued_at = Instant::now();
        self.write(fence);
    }

    fn write(&self, fence: String) {
        let view = self.view.clone();
        let failures = self.failures.clone();
        self.tasks.spawn(async move {
            if let Err(error) = view.write_fence(&fence).await {
                let error = taskpool_service::logging::error_chain(&error);
                warn!(error, "cannot write a stream fence; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                let _ = failures.send(fence);
            }
        });
    }
}
