//! Outcomes coming back from the engines, to the issuing user's streams and to the request
//! waiting for each (`?wait`). Where they come from is the deployment's: the outcome topic in
//! the distributed setup, the engine in the same process in single-node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;
use taskpool_schemas::{CommandOutcome, OutcomeResult};
use taskpool_service::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};
use tracing::info;
use uuid::Uuid;

use crate::stream::Hub;

/// Requests waiting for their command's outcome (`?wait`). Several may wait for one command
/// (a retry with the same `Idempotency-Key` while the first still waits).
#[derive(Debug, Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<Uuid, Vec<oneshot::Sender<CommandOutcome>>>>>);

impl Waiters {
    /// Registers before the command is sent, so its outcome cannot slip past. Waiters whose
    /// request went away (client gone, wait over) are dropped here too, so none stay behind.
    pub fn expect(&self, command_id: Uuid) -> oneshot::Receiver<CommandOutcome> {
        let (sender, receiver) = oneshot::channel();
        let mut waiting = self.lock();
        waiting.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        waiting.entry(command_id).or_default().push(sender);
        receiver
    }

    fn complete(&self, outcome: &CommandOutcome) {
        for waiter in self.lock().remove(&outcome.command_id).unwrap_or_default() {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<CommandOutcome>>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An outcome as the user's streams carry it.
pub fn outcome_json(outcome: &CommandOutcome) -> serde_json::Value {
    json!({
        "commandId": outcome.command_id.to_string(),
        "taskId": outcome.task_id,
        "result": outcome.result.as_str(),
        "reason": outcome.reason,
        "taskVersion": outcome.task_version,
    })
}

/// Where the outcomes go: the issuing user's streams and the waiting request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) hub: Hub,
    pub(crate) waiters: Waiters,
}

impl Delivery {
    /// An outcome to the issuing user's streams and to the request waiting for it.
    pub fn deliver(&self, outcome: &CommandOutcome) {
        self.hub
            .outcome(&outcome.issued_by, outcome_json(outcome).to_string().into());
        self.waiters.complete(outcome);
        if outcome.result == OutcomeResult::Rejected {
            info!(command = %outcome.command_id, reason = ?outcome.reason, "an engine rejected an action");
        }
    }
}

/// Where outcomes come from: it delivers each one until shutdown.
pub trait OutcomeSource: Send + std::fmt::Debug + 'static {
    fn follow(self: Box<Self>, delivery: Delivery, shutdown: Shutdown) -> BoxFuture<'static, ()>;
}

/// The outcomes of an engine in the same process.
impl OutcomeSource for mpsc::UnboundedReceiver<CommandOutcome> {
    fn follow(
        mut self: Box<Self>,
        delivery: Delivery,
        mut shutdown: Shutdown,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    Some(outcome) = self.recv() => delivery.deliver(&outcome),
                    _ = shutdown.requested() => return,
                    else => return,
                }
            }
        })
    }
}
