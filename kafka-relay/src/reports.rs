//! What the relay tells its operator about its own work: each internal event is logged and
//! counted here, in one place, so that a log line and its metric cannot drift apart.

use std::time::Duration;

use taskpool_service::logging::error_chain;
use tracing::{error, warn};

use crate::metrics::Metrics;
use crate::outbox::OutboxRow;

impl Metrics {
    /// An event that can never be published went to the dead-letter table.
    pub fn dead_lettered(&self, row: &OutboxRow, topic: &str, reason: &str) {
        self.dead_letters.with_label_values(&[topic]).inc();
        error!(position = row.at.position, event_id = %row.event_id, %reason, "event moved to the dead-letter table");
    }

    /// A batch was acknowledged and its position stored.
    pub fn batch_published(&self, events: u64, position: i64) {
        self.published_events.inc_by(events);
        self.batches.inc();
        self.position.set(position);
        self.progressed();
    }

    /// Publishing stopped on a failure it cannot get past (`on_permanent_failure = halt`).
    pub fn publishing_halted(&self, reason: &str) {
        self.halted.set(1);
        error!(%reason, "halted: a message can never be published (on_permanent_failure = halt); publishing stopped until the relay is restarted");
    }

    /// Publishing was interrupted; it starts over from the stored position after `pause`.
    pub fn publishing_interrupted(
        &self,
        error: &(dyn std::error::Error + 'static),
        pause: Duration,
    ) {
        self.retries.inc();
        warn!(
            error = error_chain(error),
            retry_in_ms = pause.as_millis() as u64,
            "publishing interrupted; retrying from the stored position"
        );
    }

    /// Events engines recorded through SQL were drained into the outbox; `dead` of them went
    /// to the capture's dead letters instead.
    pub fn capture_drained(&self, rows: u64, dead: u64) {
        self.captured.inc_by(rows - dead);
        self.capture_dead_letters.inc_by(dead);
        if dead > 0 {
            warn!(
                rows = dead,
                "queued events went to taskpool_capture_dead_letters"
            );
        }
    }

    /// Retention deleted published rows older than its age.
    pub fn retention_deleted(&self, rows: u64) {
        self.deleted_by_retention.inc_by(rows);
    }
}
