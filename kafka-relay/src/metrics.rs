//! The relay's metrics, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Counters and gauges shared by the relay loop and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    pub published_events: AtomicU64,
    pub batches: AtomicU64,
    pub reads: AtomicU64,
    pub retries: AtomicU64,
    pub dead_letters: AtomicU64,
    pub deleted_by_retention: AtomicU64,
    pub lag_events: AtomicI64,
    /// Lag in milliseconds (stored as an integer).
    pub lag_millis: AtomicI64,
    pub position: AtomicI64,
    pub leader: AtomicBool,
    pub halted: AtomicBool,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "taskpool_relay_published_events_total",
                "Events acknowledged by Kafka.",
                &self.published_events,
            ),
            (
                "taskpool_relay_batches_total",
                "Batches published and stored.",
                &self.batches,
            ),
            (
                "taskpool_relay_outbox_reads_total",
                "Reads of the outbox (each a poll for committed rows).",
                &self.reads,
            ),
            (
                "taskpool_relay_retries_total",
                "Restarts after transient failures.",
                &self.retries,
            ),
            (
                "taskpool_relay_dead_letters_total",
                "Events moved to the dead-letter table.",
                &self.dead_letters,
            ),
            (
                "taskpool_relay_retention_deleted_total",
                "Published outbox rows deleted by retention.",
                &self.deleted_by_retention,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let lag_seconds = self.lag_millis.load(Ordering::Relaxed) as f64 / 1000.0;
        let gauges: [(&str, &str, String); 5] = [
            (
                "taskpool_relay_lag_events",
                "Committed events not yet published.",
                self.lag_events.load(Ordering::Relaxed).to_string(),
            ),
            (
                "taskpool_relay_lag_seconds",
                "Age of the oldest event not yet published.",
                lag_seconds.to_string(),
            ),
            (
                "taskpool_relay_position",
                "Outbox position of the last stored batch.",
                self.position.load(Ordering::Relaxed).to_string(),
            ),
            (
                "taskpool_relay_leader",
                "1 while this process holds the lease and publishes.",
                u8::from(self.leader.load(Ordering::Relaxed)).to_string(),
            ),
            (
                "taskpool_relay_halted",
                "1 after a permanent failure stopped publishing (on_permanent_failure = halt).",
                u8::from(self.halted.load(Ordering::Relaxed)).to_string(),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_value() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.published_events, 7);
        metrics.leader.store(true, Ordering::Relaxed);
        metrics.lag_millis.store(1500, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("taskpool_relay_published_events_total 7\n"));
        assert!(text.contains("taskpool_relay_leader 1\n"));
        assert!(text.contains("taskpool_relay_lag_seconds 1.5\n"));
        assert!(text.contains("# TYPE taskpool_relay_dead_letters_total counter"));
    }
}
