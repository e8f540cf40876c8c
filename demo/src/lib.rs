//! A small process engine for trying taskpool out and for loading it: purchase requests go
//! through approval (or revision), ordering and receipt. Each engine transaction writes the
//! demo's own tables and reports its user tasks and the request (a data entry) through
//! taskpool's collector, in the same transaction, on SQLite (single-node) or PostgreSQL.
//!
//! # Layout
//! - [`actions`]: the demo's rules for tasklist actions (claim, complete, ...).
//! - [`config`]: rate, users and groups.
//! - [`process`]: the process itself, free of I/O.
//! - [`db`]: the demo's tables and statements, for both databases.
//! - [`truth`]: the demo's tables as ground truth for what a tasklist must show.
//! - [`settings`] (feature `kafka`): the `taskpool-demo` binary's configuration (PostgreSQL).
//! - [`engine`]: the steps, one transaction each, and the loop that runs them; `lifecycle`:
//!   a request's submission, steps and end inside a step's transaction.

pub mod actions;
pub mod config;
pub mod db;
pub mod engine;
mod events;
mod lifecycle;
pub mod process;
#[cfg(feature = "kafka")]
pub mod settings;
pub mod truth;

pub use config::{DemoConfig, DemoUser};
pub use db::{DemoDb, TaskRow};
pub use engine::{Action, Demo, DemoError, Stepped};
