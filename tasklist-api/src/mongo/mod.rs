//! The view kept in MongoDB.
//!
//! - [`store`]: reads and writes; [`view`]: the store as the tasklist's view; [`changes`]: its
//!   change stream as the view's change feed; [`filter`]: queries as MongoDB filters.
//! - [`generation`]: which generation of the collections is live, and the switch a
//!   [`rebuild`] makes (a new generation filled from the topics again, read by its own
//!   consumer, `rebuild::source`).
//! - [`dead_letters`]: listing, retrying and discarding the projection's dead letters.
//! - [`keys`]: actions' `Idempotency-Key` bindings.

pub mod changes;
pub mod dead_letters;
pub mod filter;
pub mod generation;
pub mod keys;
pub mod rebuild;
pub mod store;
pub mod view;
