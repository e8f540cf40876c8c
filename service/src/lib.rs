//! What taskpool's binaries share (`kafka-relay`, `tasklist-api`, single-node `taskpool`).
//!
//! # Layout
//! - [`backoff`]: the exponential back-off with jitter every retry loop uses.
//! - [`config`]: configuration from a TOML file and prefixed environment variables, unknown
//!   keys refused.
//! - [`http_client`]: HTTP(S) requests to the services taskpool calls.
//! - (feature `kafka`) [`kafka`]: how every Kafka client connects (TLS, SASL, overrides) and compresses;
//!   [`guarantees`]: the settings at-least-once and ordering rest on, which no override may
//!   change; [`kafka_context`]: a client context that logs librdkafka's errors and keeps an
//!   authentication failure.
//! - [`metrics`]: Prometheus metrics: one registry with the process's own, one renderer.
//! - [`error_chain`]: an error with all its causes, for logs.
//! - [`logging`]: JSON or pretty logs on stderr; [`otlp`]: event spans exported over OTLP/HTTP.
//! - [`shutdown`]: a shutdown request any task can watch, and the signals that trigger it.
//! - [`startup`]: configuration and runtime, or the exit code explaining why not.

pub mod backoff;
pub mod config;
pub mod error_chain;
#[cfg(feature = "kafka")]
pub mod guarantees;
pub mod http_client;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_context;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod shutdown;
pub mod startup;

/// Secrets in configuration: redacted in `Debug` output, exposed only where they are used.
pub use secrecy::{ExposeSecret, SecretString};
