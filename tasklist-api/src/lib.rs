//! tasklist-api: projects taskpool's Kafka topics into MongoDB and serves each user's tasks,
//! followed by a live stream of the changes that concern them.
//!
//! # Layout
//! - [`actions`]: tasklist actions, checked against the view before they go to the engine.
//! - [`config`]: typed configuration from file and environment.
//! - [`documents`]: the stored task and data-entry documents and who sees them.
//! - [`view`]: the contract between the API and where documents live (a view store and its
//!   change feed), kept by MongoDB ([`store`]) and by the in-memory [`view::EmbeddedView`].
//! - [`fold`]: a batch of events folded to the newest document per aggregate, then written.
//! - [`projection`]: the Kafka consumer writing documents, version-guarded, at least once.
//! - [`store`]: MongoDB reads and writes; [`generation`]: which generation of its collections
//!   is live, and the switch a [`rebuild`] makes.
//! - [`query`]: filters, sort and cursors, for MongoDB and in memory alike.
//! - [`identity`]: bearer tokens (and, when enabled, trusted gateway headers).
//! - [`stream`]: the shared change stream and its fan-out to stream clients.
//! - [`http`]: the axum routes and the connection loop; [`openapi`]: their description.
//! - [`metrics`]: Prometheus metrics. [`service`]: starting it all and wiring it together.
//! - [`status`]: what `tasklist-api status` reports (consumer lag, dead letters);
//!   [`dead_letters`]: listing, retrying and discarding the projection's dead letters;
//!   [`rebuild`]: the projection built again from the topics, switched to without downtime.

pub mod actions;
pub mod config;
pub mod dead_letters;
pub mod documents;
pub mod fold;
pub mod generation;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod projection;
pub mod query;
pub mod rebuild;
pub mod service;
pub mod status;
pub mod store;
pub mod stream;
pub mod view;
