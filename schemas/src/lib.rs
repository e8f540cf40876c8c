//! taskpool's wire format.
//!
//! # Layout
//! - [`types`]: the task and data-entry state and the event records, mapped to Avro with serde.
//! - [`registry`]: every published schema version (`schemas/avro/<family>/v<n>.avsc`) and its
//!   CRC-64-AVRO fingerprint, so a reader can decode anything ever published.
//! - [`canonical`]: Parsing Canonical Form and CRC-64-AVRO fingerprints, per the Avro spec.
//! - [`codec`]: Avro single-object encoding (`0xC3 0x01`, 8-byte fingerprint, body) and decoding
//!   with schema resolution from the writer's version to the current one.
//! - [`compatibility`]: the rule every new schema version must satisfy (it reads all older data).
//! - [`commands`]: tasklist actions to the owning engine and their outcomes.
//! - [`topics`]: the topic each aggregate type's events travel on, and the actions' topics.

pub mod canonical;
pub mod codec;
pub mod commands;
pub mod compatibility;
pub mod registry;
pub mod topics;
pub mod types;

pub use codec::{DecodeError, DecodedEvent, EncodeError, WireEvent, decode, decode_as, encode};
pub use commands::{CommandOutcome, OutcomeResult, TaskAction, TaskCommand};
pub use registry::{SchemaFamily, registry};
pub use topics::Topics;
pub use types::*;
