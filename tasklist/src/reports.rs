//! What the tasklist tells its operator about its own work: each internal event is logged and
//! counted here, in one place, so that a log line and its metric cannot drift apart. The
//! projection (tasklist-api) and the outbox reader (single-node) report through the same calls.

use std::time::Duration;

use taskpool_service::logging::error_chain;
use tracing::{error, warn};

use crate::fold::Written;
use crate::metrics::Metrics;

impl Metrics {
    /// A batch was written to the view, in `took`.
    pub fn batch_applied(&self, written: &Written, took: Duration) {
        self.applied_documents.inc_by(written.applied as u64);
        self.stale_events.inc_by(written.stale as u64);
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// An event could not be applied and was kept in the dead letters, with the reason.
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_letters.inc();
        warn!(reason, "an event went to the view's dead letters");
    }

    /// A stored document (or aggregate state) could not be read: it is left out.
    pub fn unreadable_document(&self, id: &str, error: &(dyn std::error::Error + 'static)) {
        self.unreadable_documents.inc();
        error!(
            id,
            error = error_chain(error),
            "unreadable document left out"
        );
    }
}
