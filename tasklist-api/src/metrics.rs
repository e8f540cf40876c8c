//! tasklist-api metrics in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Upper bounds (milliseconds) of the delivery-latency histogram buckets.
const LATENCY_BUCKETS_MS: [u64; 11] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000];

#[derive(Debug, Default)]
pub struct Metrics {
    pub consumed_events: AtomicU64,
    pub applied_documents: AtomicU64,
    pub stale_events: AtomicU64,
    pub dead_letters: AtomicU64,
    pub write_retries: AtomicU64,
    pub unreadable_documents: AtomicU64,
    pub consumer_lag: AtomicI64,
    pub last_batch_micros: AtomicU64,
    pub mongo_available: AtomicBool,
    pub change_stream_open: AtomicBool,
    pub projection_running: AtomicBool,
    pub open_streams: AtomicI64,
    pub stream_events: AtomicU64,
    pub stream_resyncs: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records how long a change took from its occurrence to a stream client's buffer.
    pub fn observe_delivery(&self, millis: u64) {
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_MS) {
            if millis <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(millis, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "taskpool_tasklist_consumed_events_total",
                "Kafka messages consumed and made durable.",
                load(&self.consumed_events),
            ),
            (
                "taskpool_tasklist_applied_documents_total",
                "Documents written with a newer version.",
                load(&self.applied_documents),
            ),
            (
                "taskpool_tasklist_stale_events_total",
                "Events ignored because the stored version was the same or newer.",
                load(&self.stale_events),
            ),
            (
                "taskpool_tasklist_dead_letters_total",
                "Messages moved to the dead-letter collection.",
                load(&self.dead_letters),
            ),
            (
                "taskpool_tasklist_write_retries_total",
                "MongoDB batch writes retried.",
                load(&self.write_retries),
            ),
            (
                "taskpool_tasklist_unreadable_documents_total",
                "Stored documents that could not be read and were left out of an answer.",
                load(&self.unreadable_documents),
            ),
            (
                "taskpool_tasklist_stream_events_total",
                "Events delivered to stream clients.",
                load(&self.stream_events),
            ),
            (
                "taskpool_tasklist_stream_resyncs_total",
                "Stream clients told to resync.",
                load(&self.stream_resyncs),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let gauges = [
            (
                "taskpool_tasklist_consumer_lag",
                "Messages behind the partitions' ends.",
                self.consumer_lag.load(Ordering::Relaxed),
            ),
            (
                "taskpool_tasklist_open_streams",
                "Connected stream clients.",
                self.open_streams.load(Ordering::Relaxed),
            ),
            (
                "taskpool_tasklist_mongodb_available",
                "1 when the last MongoDB write succeeded.",
                i64::from(self.mongo_available.load(Ordering::Relaxed)),
            ),
            (
                "taskpool_tasklist_change_stream_open",
                "1 while the shared change stream is open.",
                i64::from(self.change_stream_open.load(Ordering::Relaxed)),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let name = "taskpool_tasklist_delivery_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From a change's occurrence to a stream client's buffer.\n# TYPE {name} histogram"
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_MS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                bound as f64 / 1000.0,
                load(bucket)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            load(&self.latency_sum_ms) as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.observe_delivery(3);
        metrics.observe_delivery(40);
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
    }
}
