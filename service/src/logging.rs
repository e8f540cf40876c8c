//! Logs on stderr, as JSON lines or human-readable text.

// Where the binaries have always found it.
pub use crate::error_chain::error_chain;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::otlp::OtlpLayer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The `[log]` section every binary has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `kafka_relay=debug,info`.
    pub level: String,
    /// Export the spans that continue events' traces to this OTLP/HTTP endpoint, e.g.
    /// `http://otel-collector:4318`. Off when unset.
    pub otlp_endpoint: Option<String>,
}

impl LogConfig {
    /// Refuses an OTLP endpoint that cannot be used.
    pub fn check(&self) -> Result<(), String> {
        match &self.otlp_endpoint {
            Some(url) => crate::otlp::Endpoint::parse(url).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

/// Installs the global subscriber (once per process): logs on stderr and, when configured,
/// span export under the process's name.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (json, pretty) = match config.format {
        LogFormat::Json => (Some(fmt::layer().json().with_writer(std::io::stderr)), None),
        LogFormat::Pretty => (None, Some(fmt::layer().with_writer(std::io::stderr))),
    };
    let service = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "taskpool".into());
    let mut export_error = None;
    let export = config.otlp_endpoint.as_deref().and_then(|url| {
        crate::otlp::Endpoint::parse(url)
            .map_err(|e| e.to_string())
            .and_then(|endpoint| OtlpLayer::start(endpoint, &service).map_err(|e| e.to_string()))
            .map_err(|error| export_error = Some(error))
            .ok()
    });
    let exporting = export.is_some();
    tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(pretty)
        .with(export)
        .init();
    match (export_error, exporting) {
        (Some(error), _) => tracing::error!(%error, "trace export is off"),
        (None, true) => {
            tracing::info!(endpoint = ?config.otlp_endpoint, service, "exporting event traces over OTLP")
        }
        (None, false) => {}
    }
}
