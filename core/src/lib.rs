//! taskpool's core: the task and data-entry aggregates and the transactional outbox.
//!
//! # Layout
//! - [`domain`]: aggregate rules, `decide(state, command) -> event`, pure and synchronous.
//! - [`command`]: commands addressed to aggregates, aggregate keys, rejections.
//! - [`execute`]: runs a batch of commands inside the caller's transaction: lock and load,
//!   decide, then write states and outbox rows in one step (or nothing on rejection).
//! - [`store`]: the storage trait and its PostgreSQL ([`PgStore`]) and SQLite
//!   ([`SqliteStore`]) implementations, with their migrations.
//! - [`trace`]: the W3C trace context that travels with each event.
//!
//! Core never begins, commits or rolls back a transaction: the caller owns it, so the events
//! become visible exactly when the caller's own writes do.

pub mod command;
pub mod domain;
pub mod execute;
pub mod store;
pub mod trace;

pub use command::{AggregateKey, AggregateType, Command, Rejection};
pub use execute::{CommandError, EventContext, RecordedEvent, execute};
pub use store::{PgStore, SqliteStore, Store, StoreError};
pub use trace::TraceParent;
