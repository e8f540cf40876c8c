//! The engine's side of tasklist actions (decision 0025).
//!
//! An engine embeds this next to the collector. [`consumer::run`] reads the command topic and
//! takes the commands addressed to its application; [`apply::apply_once`] applies each inside
//! one database transaction with the engine's own changes (its [`apply::CommandHandler`]), the
//! events its collector recorded and a processed-command record, so a redelivered command is
//! applied once; the outcome (applied with the task's new version, or rejected with the
//! engine's reason) goes to the outcome topic, and only then does the offset move on. An
//! undecodable command is kept in `taskpool_command_dead_letters` with the reason.
//!
//! # Layout
//! - [`store`]: the processed-command and dead-letter tables on PostgreSQL or SQLite.
//! - [`apply`]: one command, once, in one transaction.
//! - [`retention`]: how long decisions are kept, and commands too old to apply.
//! - [`consumer`] (feature `kafka`): the Kafka side: commands in, outcomes out.
//! - [`rest`] (feature `kafka`): the same for an engine reached through its REST API (Camunda 7
//!   / Operaton).

pub mod apply;
#[cfg(feature = "kafka")]
pub mod consumer;
#[cfg(feature = "kafka")]
pub mod rest;
pub mod retention;
pub mod store;

pub use apply::{CommandHandler, Refusal, apply_once};
pub use retention::Retention;
pub use store::CommandStore;

/// Why a command could not be decided now (it is tried again; nothing is lost).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("migrating the command tables")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("migrating the outbox tables")]
    Outbox(#[from] taskpool_core::StoreError),
    #[error("recording the command's events")]
    Collector(#[from] taskpool_collector::CollectorError),
    #[error("the engine's handler failed")]
    Handler(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the command is recorded as taken but not decided")]
    Undecided,
}
