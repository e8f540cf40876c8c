//! Tasklist actions (claim, unclaim, complete, defer, undefer, assign): checked against the
//! view, then sent to the engine that owns the task (decision 0025).
//!
//! - [`rules`]: what the view allows, and the command an allowed request becomes.
//! - [`sink`]: where commands go (the deployment says: the command topic, or the engine).
//! - [`outcomes`]: the engines' answers, to the user's streams and to waiting requests.

pub mod outcomes;
pub mod rules;
pub mod sink;
