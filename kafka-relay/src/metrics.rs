//! The relay's metrics, registered with the process metrics in one Prometheus registry.

use taskpool_service::metrics::{self, Gauge, IntCounter, IntCounterVec, IntGauge, Registry};

/// Every metric the relay loop updates and `/metrics` shows.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub published_events: IntCounter,
    pub batches: IntCounter,
    pub reads: IntCounter,
    pub retries: IntCounter,
    pub dead_letters: IntCounterVec,
    pub deleted_by_retention: IntCounter,
    /// Events engines recorded through SQL, drained into the outbox.
    pub captured: IntCounter,
    /// Queued events the drain could not turn into outbox events.
    pub capture_dead_letters: IntCounter,
    pub lag_events: IntGauge,
    pub lag_seconds: Gauge,
    pub position: IntGauge,
    /// 1 while this process holds the lease.
    pub leader: IntGauge,
    /// 1 after a permanent failure halted publishing.
    pub halted: IntGauge,
    /// When a batch's position was last stored (or leading began), in Unix seconds.
    pub last_stored: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = metrics::registry();
        let r = &registry;
        Metrics {
            published_events: metrics::counter(
                r,
                "taskpool_relay_published_events_total",
                "Events acknowledged by Kafka.",
            ),
            batches: metrics::counter(
                r,
                "taskpool_relay_batches_total",
                "Batches published and stored.",
            ),
            reads: metrics::counter(
                r,
                "taskpool_relay_outbox_reads_total",
                "Reads of the outbox (each a poll for committed rows).",
            ),
            retries: metrics::counter(
                r,
                "taskpool_relay_retries_total",
                "Restarts after transient failures.",
            ),
            dead_letters: metrics::counter_vec(
                r,
                "taskpool_relay_dead_letters_total",
                "Events moved to the dead-letter table, by topic.",
                &["topic"],
            ),
            deleted_by_retention: metrics::counter(
                r,
                "taskpool_relay_retention_deleted_total",
                "Published outbox rows deleted by retention.",
            ),
            captured: metrics::counter(
                r,
                "taskpool_relay_captured_events_total",
                "Events recorded through SQL and drained into the outbox.",
            ),
            capture_dead_letters: metrics::counter(
                r,
                "taskpool_relay_capture_dead_letters_total",
                "Events recorded through SQL that went to the capture dead letters.",
            ),
            lag_events: metrics::gauge(
                r,
                "taskpool_relay_lag_events",
                "Committed events not yet published.",
            ),
            lag_seconds: metrics::float_gauge(
                r,
                "taskpool_relay_lag_seconds",
                "Age of the oldest event not yet published.",
            ),
            position: metrics::gauge(
                r,
                "taskpool_relay_position",
                "Outbox position of the last stored batch.",
            ),
            leader: metrics::gauge(
                r,
                "taskpool_relay_leader",
                "1 while this process holds the lease and publishes.",
            ),
            halted: metrics::gauge(
                r,
                "taskpool_relay_halted",
                "1 after a permanent failure stopped publishing (on_permanent_failure = halt).",
            ),
            last_stored: metrics::gauge(
                r,
                "taskpool_relay_last_stored_timestamp_seconds",
                "When this process last stored a published batch's position (or began leading).",
            ),
            registry,
        }
    }

    /// Prometheus text exposition of every metric, the process's included.
    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Records that a batch was stored (or leading began) now.
    pub fn progressed(&self) {
        self.last_stored.set(unix_seconds());
    }

    /// Seconds since the last progress.
    pub fn seconds_without_progress(&self) -> i64 {
        unix_seconds() - self.last_stored.get()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_value() {
        let metrics = Metrics::new();
        metrics.published_events.inc_by(7);
        metrics.leader.set(1);
        metrics.lag_seconds.set(1.5);
        metrics
            .dead_letters
            .with_label_values(&["shop.tasks"])
            .inc();
        let text = metrics.render();
        assert!(text.contains("taskpool_relay_published_events_total 7\n"));
        assert!(text.contains("taskpool_relay_leader 1\n"));
        assert!(text.contains("taskpool_relay_lag_seconds 1.5\n"));
        assert!(text.contains("taskpool_relay_dead_letters_total{topic=\"shop.tasks\"} 1\n"));
        assert!(text.contains("# TYPE taskpool_relay_batches_total counter"));
        assert!(text.contains("process_cpu_seconds_total"));
    }
}
