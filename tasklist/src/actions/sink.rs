//! Where an allowed action goes: the engine's way in, which the deployment provides (the
//! command topic in the distributed setup, the engine in the same process in single-node).

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use taskpool_schemas::TaskCommand;

/// Why a command could not be handed on.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot encode the command")]
    Encode(#[from] taskpool_schemas::EncodeError),
    #[error("the broker did not take the command")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the engine could not take the command")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Hands commands on towards the owning engine.
pub trait CommandSink: Send + Sync + fmt::Debug + 'static {
    /// Whether the engine would take the command's values (answered 400 when not), where the
    /// sink can ask it at once; a sink that cannot (a topic) accepts, and the engine rejects.
    fn check(&self, _command: &TaskCommand) -> Result<(), String> {
        Ok(())
    }

    fn send<'a>(&'a self, command: &'a TaskCommand) -> BoxFuture<'a, Result<(), SinkError>>;
}

pub type SharedSink = Arc<dyn CommandSink>;
