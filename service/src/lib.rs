//! What taskpool's server binaries (`kafka-relay`, `tasklist-api`) share.
//!
//! # Layout
//! - [`config`]: configuration from a TOML file and prefixed environment variables, unknown
//!   keys refused.
//! - [`logging`]: JSON or pretty logs on stderr.
//! - [`shutdown`]: a shutdown request any task can watch, and the signals that trigger it.
//! - [`startup`]: configuration and runtime, or the exit code explaining why not.

pub mod config;
pub mod logging;
pub mod shutdown;
pub mod startup;
