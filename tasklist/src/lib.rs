//! The tasklist, whatever holds its documents: each user's tasks followed by a live stream of
//! the changes that concern them, over HTTP, and the tasklist actions. No MongoDB and no Kafka
//! here: tasklist-api keeps it over MongoDB fed from the topics, single-node over the embedded
//! view fed in process.
//!
//! # Layout
//! - [`documents`]: the task and data-entry documents and who sees them.
//! - [`view`]: the contract between the API and where documents live (a view store and its
//!   change feed), and the in-memory [`view::EmbeddedView`].
//! - [`fold`]: a batch of events folded to the newest document per aggregate, then written.
//! - [`query`]: filters, sort and cursors, matched in memory.
//! - [`identity`]: bearer tokens (and, when enabled, trusted gateway headers).
//! - [`stream`]: the shared change stream and its fan-out to stream clients.
//! - [`actions`]: tasklist actions, checked against the view before they go to the engine.
//! - [`http`]: the axum routes and the connection loop; [`openapi`]: their description.
//! - [`serve`]: the API started over a view; [`settings`]: what configures it.
//! - [`metrics`]: Prometheus metrics; [`reports`]: internal events, logged and counted.

pub mod actions;
pub mod documents;
pub mod fold;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod reports;
pub mod serve;
pub mod settings;
pub mod stream;
pub mod view;
