//! Tasklist actions for a Camunda 7 / Operaton engine, carried out through its REST API
//! (decision 0028): the engine is not changed, its task changes reach taskpool through the
//! capture (decision 0027).
//!
//! - [`client`]: the REST calls and how their answers are read.
//! - [`effect`]: what a command asks, and whether the engine already shows it (pure).
//! - [`apply`]: one command, once, across restarts and replicas.

pub mod apply;
pub mod client;
pub mod effect;

pub use apply::RestApplier;
pub use client::{EngineApi, EngineEndpoint};
