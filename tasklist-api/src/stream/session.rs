//! One client's session: where it is in the snapshot-fence-live sequence, which tasks its
//! client holds (and at which version), and its recent events for resuming.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::mpsc;

use super::StreamEvent;
use crate::documents::TaskDocument;
use crate::query::TaskFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Snapshot,
    AwaitingFence,
    Live,
}

pub(super) struct Session {
    /// The caller's principals, sorted: a resume must present the same.
    pub(super) principals: Vec<String>,
    pub(super) filter: TaskFilter,
    pub(super) phase: Phase,
    /// Changes seen while the snapshot was being read and fenced.
    pub(super) pending: Vec<Arc<TaskDocument>>,
    /// Tasks the client holds, with their versions.
    pub(super) visible: HashMap<String, i64>,
    pub(super) next_seq: u64,
    pub(super) recent: VecDeque<StreamEvent>,
    pub(super) outbound: Option<mpsc::Sender<StreamEvent>>,
    pub(super) attachment: u64,
    pub(super) overflowed: Arc<AtomicBool>,
    /// Cut off (too slow, or the change stream had a gap): cannot be resumed.
    pub(super) broken: bool,
    pub(super) detached_since: Option<Instant>,
}
