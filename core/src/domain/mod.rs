//! Aggregate rules: `decide(current state, command) -> event`, pure and synchronous.

pub mod data_entry;
pub mod task;
