//! taskpool's topics, as tasklist-api uses them.
//!
//! - [`projection`]: the consumer writing documents from the event topics, version-guarded,
//!   at least once.
//! - [`command_sender`]: the command topic, where allowed actions go.
//! - [`outcome_reader`]: the outcome topic, the engines' answers.
//! - [`status`]: what `tasklist-api status` reports (consumer lag, dead letters).

pub mod command_sender;
pub mod outcome_reader;
pub mod projection;
pub mod status;
