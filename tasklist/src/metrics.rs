//! The tasklist's metrics (tasklist-api's and single-node's), registered with the process
//! metrics in one Prometheus registry. Their names stay as tasklist-api first published them.

use taskpool_service::metrics::{self, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

/// Why a stream client was told to resync (the `reason` label).
pub mod resync {
    /// Its buffer filled up: it read too slowly.
    pub const SLOW_CLIENT: &str = "slow_client";
    /// The shared change stream restarted without its position.
    pub const GAP: &str = "gap";
    /// Too many changes arrived while its snapshot was read.
    pub const SNAPSHOT_OVERRUN: &str = "snapshot_overrun";
    /// Its `Last-Event-ID` could not be resumed.
    pub const RESUME_REFUSED: &str = "resume_refused";
}

/// Every metric of the service.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub consumed_events: IntCounter,
    pub applied_documents: IntCounter,
    pub stale_events: IntCounter,
    pub dead_letters: IntCounter,
    pub write_retries: IntCounter,
    pub unreadable_documents: IntCounter,
    pub consumer_lag: IntGauge,
    pub batch_seconds: Histogram,
    /// 1 when the view's last write succeeded (MongoDB's; single-node's never fails).
    pub view_available: IntGauge,
    /// 1 while the shared change stream is open.
    pub change_stream_open: IntGauge,
    /// 1 while the projection consumes.
    pub projection_running: IntGauge,
    pub open_streams: IntGauge,
    pub stream_events: IntCounter,
    pub stream_resyncs: IntCounterVec,
    pub delivery_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = metrics::registry();
        let r = &registry;
        let counter = |name, help| metrics::counter(r, name, help);
        let gauge = |name, help| metrics::gauge(r, name, help);
        Metrics {
            consumed_events: counter(
                "taskpool_tasklist_consumed_events_total",
                "Events consumed and made durable in the view.",
            ),
            applied_documents: counter(
                "taskpool_tasklist_applied_documents_total",
                "Documents written with a newer version.",
            ),
            stale_events: counter(
                "taskpool_tasklist_stale_events_total",
                "Events ignored because the stored version was the same or newer.",
            ),
            dead_letters: counter(
                "taskpool_tasklist_dead_letters_total",
                "Messages moved to the dead-letter collection.",
            ),
            write_retries: counter(
                "taskpool_tasklist_write_retries_total",
                "Batch writes to the view retried (the write, or the check of the active generation after it).",
            ),
            unreadable_documents: counter(
                "taskpool_tasklist_unreadable_documents_total",
                "Stored documents that could not be read and were left out of an answer.",
            ),
            consumer_lag: gauge(
                "taskpool_tasklist_consumer_lag",
                "Messages behind the partitions' ends.",
            ),
            batch_seconds: metrics::histogram(
                r,
                "taskpool_tasklist_batch_seconds",
                "Time to make one consumed batch durable in the view.",
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
            ),
            view_available: gauge(
                "taskpool_tasklist_mongodb_available",
                "1 when the last write to the view (MongoDB: at start the index creation, then each batch) succeeded.",
            ),
            change_stream_open: gauge(
                "taskpool_tasklist_change_stream_open",
                "1 while the shared change stream is open.",
            ),
            projection_running: gauge(
                "taskpool_tasklist_projection_running",
                "1 while the projection consumes.",
            ),
            open_streams: gauge(
                "taskpool_tasklist_open_streams",
                "Connected stream clients.",
            ),
            stream_events: counter(
                "taskpool_tasklist_stream_events_total",
                "Events delivered to stream clients.",
            ),
            stream_resyncs: metrics::counter_vec(
                r,
                "taskpool_tasklist_stream_resyncs_total",
                "Stream clients told to resync, by reason.",
                &["reason"],
            ),
            delivery_seconds: metrics::histogram(
                r,
                "taskpool_tasklist_delivery_latency_seconds",
                "From a change's occurrence to a stream client's buffer.",
                &[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            registry,
        }
        .with_every_reason()
    }

    /// Every resync reason's count exists from the start, at zero: alerts and rates see the
    /// first one as an increase.
    fn with_every_reason(self) -> Metrics {
        for reason in [
            resync::SLOW_CLIENT,
            resync::GAP,
            resync::SNAPSHOT_OVERRUN,
            resync::RESUME_REFUSED,
        ] {
            self.stream_resyncs.with_label_values(&[reason]);
        }
        self
    }

    /// Records how long a change took from its occurrence to a stream client's buffer.
    pub fn observe_delivery(&self, millis: u64) {
        self.delivery_seconds.observe(millis as f64 / 1000.0);
    }

    /// Counts a stream client told to resync.
    pub fn resynced(&self, reason: &str) {
        self.stream_resyncs.with_label_values(&[reason]).inc();
    }

    /// Prometheus text exposition of every metric, the process's included.
    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A flag as a 0/1 gauge value.
pub fn flag(on: bool) -> i64 {
    i64::from(on)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_histogram_is_cumulative() {
        let metrics = Metrics::new();
        metrics.observe_delivery(3);
        metrics.observe_delivery(40);
        metrics.resynced(resync::SLOW_CLIENT);
        let text = metrics.render();
        assert!(
            text.contains("taskpool_tasklist_delivery_latency_seconds_bucket{le=\"0.001\"} 0\n")
        );
        assert!(
            text.contains("taskpool_tasklist_delivery_latency_seconds_bucket{le=\"0.005\"} 1\n")
        );
        assert!(
            text.contains("taskpool_tasklist_delivery_latency_seconds_bucket{le=\"0.05\"} 2\n")
        );
        assert!(text.contains("taskpool_tasklist_delivery_latency_seconds_count 2\n"));
        assert!(
            text.contains("taskpool_tasklist_stream_resyncs_total{reason=\"slow_client\"} 1\n")
        );
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
