//! Tasklist actions (claim, unclaim, complete, defer, undefer, assign): checked against the
//! view, then sent to the engine that owns the task (decision 0025).
//!
//! - [`rules`]: what the view allows, and the command an allowed request becomes.
//! - [`sink`]: where commands go (the deployment says: the command topic, or the engine).
//! - [`outcomes`]: the engines' answers, to the user's streams and to waiting requests.
//! - [`keys`]: `Idempotency-Key`s bound to the requests they came with.

pub mod keys;
pub mod outcomes;
pub mod rules;
pub mod sink;

/// Where a deployment's actions go, and where it keeps their idempotency keys.
#[derive(Debug, Clone)]
pub struct ActionTarget {
    pub sink: sink::SharedSink,
    pub keys: keys::SharedKeys,
}
