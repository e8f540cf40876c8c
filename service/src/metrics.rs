//! Prometheus metrics through one library: each binary registers its counters, gauges and
//! histograms in a registry that also carries the process's own metrics (CPU, memory, open
//! file descriptors), and `/metrics` serves the registry in the text format.

use prometheus::{Encoder, HistogramOpts, Opts, TextEncoder};
pub use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

/// A registry holding the process metrics.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Only unavailable off Linux: then the process metrics are simply missing.
    let _ = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    registry
}

/// Registers `metric`. Names are constants of the program, so a clash is a bug in it.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique within a program");
    metric
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("a valid metric name"),
    )
}

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"),
    )
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("a valid metric name"),
    )
}

pub fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(
        registry,
        Gauge::new(name, help).expect("a valid metric name"),
    )
}

pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        registry,
        Histogram::with_opts(options).expect("a valid metric name"),
    )
}

/// The registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = Vec::new();
    // Encoding into memory fails only for metrics the library itself would have refused.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut text);
    String::from_utf8(text).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_labels_histograms_and_process_metrics_are_rendered() {
        let registry = registry();
        counter(&registry, "t_events_total", "Events.").inc_by(3);
        gauge(&registry, "t_open", "Open.").set(-2);
        counter_vec(&registry, "t_resyncs_total", "Resyncs.", &["reason"])
            .with_label_values(&["slow_client"])
            .inc();
        let latency = histogram(&registry, "t_latency_seconds", "Latency.", &[0.01, 0.1]);
        latency.observe(0.05);
        latency.observe(0.5);
        let text = render(&registry);
        assert!(text.contains("t_events_total 3\n"), "{text}");
        assert!(text.contains("t_open -2\n"), "{text}");
        assert!(
            text.contains("t_resyncs_total{reason=\"slow_client\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_latency_seconds_bucket{le=\"0.01\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_latency_seconds_bucket{le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("t_latency_seconds_count 2\n"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_open_fds"), "{text}");
    }
}
