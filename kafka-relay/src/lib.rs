//! kafka-relay: publishes committed taskpool outbox rows to Kafka, at least once, in order per
//! aggregate, with one active process per outbox.
//!
//! # Layout
//! - [`config`]: typed configuration from file and environment.
//! - [`outbox`]: gap-safe reading of the outbox; the relay's position and dead-letter tables.
//! - [`publisher`]: the idempotent producer, topics, error classification.
//! - [`lease`]: the leader lease and its fencing.
//! - [`preconditions`]: what the order rests on (a primary, positions in order, the horizon's
//!   version, the floor and its guard), checked at start.
//! - [`relay`]: start-up and the leadership loop: publish while holding the lease.
//! - [`pipeline`]: batches in flight until Kafka acknowledged them; storing the position.
//! - [`retention`]: deleting old published rows.
//! - [`capture`]: draining events engines recorded through SQL into the outbox.
//! - [`actions`]: the tasklist's commands carried out through an engine's REST API.
//! - [`engine_config`]: the settings of both.
//! - [`metrics`], [`http`]: Prometheus metrics, `/metrics` and `/health`.
//! - [`status`]: what `kafka-relay status` reports, and the lag metrics.

pub mod actions;
pub mod capture;
pub mod config;
pub mod dead_letters;
pub mod engine_config;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod preconditions;
pub mod publisher;
pub mod relay;
pub mod reports;
pub mod republish;
pub mod retention;
pub mod status;

pub use config::Config;
pub use pipeline::Delivered;
pub use relay::{Exit, Relay, RelayError};
pub use taskpool_service::shutdown;
