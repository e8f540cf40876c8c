//! taskpool for engines that cannot link Rust.
//!
//! An engine records task and data-entry events in its own transaction by calling SQL functions
//! (`taskpool_record_task_event`, `taskpool_record_data_entry_event`, installed by core's
//! migrations), from any language and driver. The calls queue the events in `taskpool_capture`;
//! [`drain`] turns them into outbox events through core's rules (decision 0026).
//!
//! # Layout
//! - [`captured`]: a queued row's JSON fields as the collector's `EngineEvent`.
//! - [`drain`]: the queue into the outbox, one transaction per batch.
//! - [`shaping`]: the Camunda capture's queued task rows shaped into task states, in the drain.
//! - [`snapshots`]: the Camunda capture's queued task states compared, in the drain, with the
//!   last ones ([`changes`]: what changed, as events).
//! - [`camunda`]: triggers on Camunda 7 / Operaton's own tables that record its task changes
//!   through the same functions (decision 0027); [`catch_up`]: what the engine did while
//!   they were away.

pub mod camunda;
pub mod captured;
pub mod catch_up;
pub mod changes;
pub mod drain;
pub mod shaping;
pub mod snapshots;

pub use drain::{DrainError, Drained, drain_once};
