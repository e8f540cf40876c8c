//! tasklist-api: projects taskpool's Kafka topics into MongoDB and serves the tasklist (the
//! `taskpool-tasklist` library) over it.
//!
//! # Layout
//! - [`config`]: typed configuration from file and environment.
//! - [`mongo`]: the view kept in MongoDB: documents, the change stream, generations of the
//!   collections and the [`mongo::rebuild`] that switches between them, dead letters.
//! - [`kafka`]: the projection from the event topics, the command topic actions go to, the
//!   outcome topic their answers come from, and `status` (consumer lag, dead letters).
//! - [`server`]: starting it all and wiring it together.

pub mod config;
pub mod kafka;
pub mod mongo;
pub mod server;
