//! One client's session: where it is in the snapshot-fence-live sequence, which tasks its
//! client holds (and at which version), and its recent events for resuming.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{Registration, ResumeRefused, SessionId, StreamEvent};
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

impl Session {
    /// Reattaches the session after event `after`, replaying what the client missed, if the
    /// same principals ask, the session was not cut off, and `after` is still remembered.
    pub(super) fn resume(
        &mut self,
        session: SessionId,
        after: u64,
        principals: &[String],
        buffer: usize,
    ) -> Result<Registration, ResumeRefused> {
        let oldest_kept = self.recent.front().map_or(self.next_seq, |e| e.seq);
        if self.principals != principals
            || self.broken
            || after >= self.next_seq
            || after + 1 < oldest_kept
        {
            return Err(ResumeRefused);
        }
        let missed: Vec<StreamEvent> = self
            .recent
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        let (outbound, events) = mpsc::channel(buffer + missed.len());
        for event in missed {
            // Cannot fail: the channel has room for all of them.
            let _ = outbound.try_send(event);
        }
        self.outbound = Some(outbound);
        self.attachment += 1;
        self.detached_since = None;
        Ok(Registration {
            session,
            attachment: self.attachment,
            events,
            overflowed: self.overflowed.clone(),
        })
    }

    /// The changes buffered while the snapshot was read and fenced: the newest version of each
    /// task, oldest change first. The buffer is emptied.
    pub(super) fn take_pending(&mut self) -> Vec<Arc<TaskDocument>> {
        let mut newest: HashMap<&str, &Arc<TaskDocument>> = HashMap::new();
        for task in &self.pending {
            let keep = newest
                .get(task.id.as_str())
                .is_none_or(|kept| kept.version < task.version);
            if keep {
                newest.insert(&task.id, task);
            }
        }
        let mut newest: Vec<Arc<TaskDocument>> = newest.into_values().cloned().collect();
        newest.sort_by_key(|task| task.occurred_at);
        self.pending = Vec::new();
        newest
    }
}
