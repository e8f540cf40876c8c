//! Live task streams: the view's one change feed (a MongoDB change stream, or the embedded
//! view's), fanned out in memory to every connected stream client ("session").
//!
//! A session starts buffering every change before its snapshot is read. After the snapshot, a
//! fence is written into the change feed; when the feed delivers the fence, every change
//! committed before the snapshot has been delivered too. The session then
//! takes, for each task in its buffer, the newest buffered version (at least as new as the
//! snapshot's), and from then on applies changes as they come. Per session the hub knows which
//! tasks the client holds (and at which version), so a change that takes a task out of the
//! client's sight becomes a `remove` for exactly the clients that hold it.
//!
//! Each session's events go through a bounded channel; a client that falls that far behind is
//! cut off with `resync` and never slows the others. Sessions outlive their connection for a
//! while, remembering their recent events, so a client can resume with `Last-Event-ID`.
//!
//! # Layout
//! - [`hub`]: the handle connections use (register, resume, detach) and start-up.
//! - `registry`: the fan-out actor: sessions, who may see what, delivery and resync.
//! - `session`: one client's session: its phase, the tasks it holds, its recent events.
//! - `fence`: lining up a session's snapshot with the change feed.

mod fence;
pub mod hub;
mod registry;
mod session;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc;

use crate::documents::TaskDocument;
pub use hub::{Hub, HubGone};

pub type SessionId = u64;

/// What a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Upsert,
    Remove,
    /// What the engine did with one of the user's actions.
    Outcome,
}

/// One event of a session: `body` is the task (upsert), `{"id": ...}` (remove) or the
/// outcome, as JSON.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub seq: u64,
    pub kind: EventKind,
    pub body: Arc<str>,
}

/// A connection's handle on its session.
#[derive(Debug)]
pub struct Registration {
    pub session: SessionId,
    pub attachment: u64,
    pub events: mpsc::Receiver<StreamEvent>,
    /// Set when the client fell too far behind: it must be told to resync.
    pub overflowed: Arc<AtomicBool>,
}

/// Why a resume was refused: the client must resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream cannot be resumed from that event")]
pub struct ResumeRefused;

/// The API view of a task, serialized once and shared by every client that receives it.
pub fn task_json(task: &TaskDocument) -> Arc<str> {
    task.to_api().to_string().into()
}

/// Principals in one order, without repeats: a resume must present the same.
fn sorted(mut principals: Vec<String>) -> Vec<String> {
    principals.sort();
    principals.dedup();
    principals
}
