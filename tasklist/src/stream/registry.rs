//! The registry: the one task that owns every session. It fans each change out to the sessions
//! whose callers may see the task or hold it, turns a task leaving a client's sight into
//! `remove`, and cuts off clients that fall behind. It is an actor: connections talk to it
//! through [`super::Hub`], the watcher through its channel, so no lock is ever held.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use taskpool_service::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::fence::Fences;
use super::session::{Phase, Session};
use super::{EventKind, Registration, ResumeRefused, SessionId, StreamEvent, sorted, task_json};
use crate::documents::{TaskDocument, user_principal};
use crate::identity::Caller;
use crate::metrics::{Metrics, resync};
use crate::query::TaskFilter;
use crate::settings::StreamConfig;
use crate::view::{Change, SharedView};

/// What connections ask of the registry, through the [`super::Hub`] handle.
pub(super) enum Command {
    Register {
        caller: Caller,
        filter: TaskFilter,
        reply: oneshot::Sender<Registration>,
    },
    SnapshotTaken {
        session: SessionId,
        tasks: Vec<(String, i64)>,
    },
    Cancel(SessionId),
    Detach {
        session: SessionId,
        attachment: u64,
    },
    Resume {
        session: SessionId,
        after: u64,
        principals: Vec<String>,
        reply: oneshot::Sender<Result<Registration, ResumeRefused>>,
    },
    /// An action's outcome, for every stream of the user who took it.
    Outcome {
        user: String,
        body: Arc<str>,
    },
}

/// Changes a session may buffer while its snapshot is read and fenced.
const MAX_PENDING: usize = 100_000;

pub(super) struct Registry {
    sessions: HashMap<SessionId, Session>,
    by_principal: HashMap<String, HashSet<SessionId>>,
    holders: HashMap<String, HashSet<SessionId>>,
    buffering: HashSet<SessionId>,
    fences: Fences,
    config: StreamConfig,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// A registry without sessions; fence writes run on `tasks`. The receiver reports failed
    /// fence writes and goes to [`Registry::run`].
    pub(super) fn new(
        config: StreamConfig,
        view: SharedView,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
    ) -> (Registry, mpsc::UnboundedReceiver<String>) {
        let (fences, failed_fences) = Fences::new(view, tasks);
        let registry = Registry {
            sessions: HashMap::new(),
            by_principal: HashMap::new(),
            holders: HashMap::new(),
            buffering: HashSet::new(),
            fences,
            config,
            metrics,
        };
        (registry, failed_fences)
    }

    /// Serves connections and changes until shutdown, then ends every stream.
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut changes: mpsc::Receiver<Change>,
        mut failed_fences: mpsc::UnboundedReceiver<String>,
        mut shutdown: Shutdown,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(command) = commands.recv() => self.command(command),
                Some(change) = changes.recv() => self.change(change),
                Some(fence) = failed_fences.recv() => self.fences.retry(fence),
                _ = sweep.tick() => self.sweep(),
                _ = shutdown.requested() => break,
                else => break,
            }
        }
        // Ends every stream: closing the channels lets the connections finish.
        self.sessions.clear();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Register {
                caller,
                filter,
                reply,
            } => {
                let session = loop {
                    let id = uuid::Uuid::new_v4().as_u64_pair().0 >> 1;
                    if !self.sessions.contains_key(&id) {
                        break id;
                    }
                };
                let (outbound, events) = mpsc::channel(self.config.buffer);
                let overflowed = Arc::new(AtomicBool::new(false));
                let principals = sorted(caller.principals());
                for principal in &principals {
                    self.by_principal
                        .entry(principal.clone())
                        .or_default()
                        .insert(session);
                }
                self.sessions.insert(
                    session,
                    Session {
                        principals,
                        filter,
                        phase: Phase::Snapshot,
                        pending: Vec::new(),
                        visible: HashMap::new(),
                        next_seq: 1,
                        recent: VecDeque::new(),
                        outbound: Some(outbound),
                        attachment: 1,
                        overflowed: overflowed.clone(),
                        broken: false,
                        detached_since: None,
                    },
                );
                self.buffering.insert(session);
                let registration = Registration {
                    session,
                    attachment: 1,
                    events,
                    overflowed,
                };
                if reply.send(registration).is_err() {
                    // The client went away while waiting: nobody will ever read this session.
                    self.remove(session);
                }
            }
            Command::SnapshotTaken { session, tasks } => {
                let Some(state) = self.sessions.get_mut(&session) else {
                    return;
                };
                for (id, version) in tasks {
                    self.holders.entry(id.clone()).or_default().insert(session);
                    state.visible.insert(id, version);
                }
                state.phase = Phase::AwaitingFence;
                self.fences.enqueue(session);
            }
            Command::Cancel(session) => self.remove(session),
            Command::Detach {
                session,
                attachment,
            } => {
                if let Some(state) = self.sessions.get_mut(&session)
                    && state.attachment == attachment
                {
                    state.outbound = None;
                    state.detached_since = Some(Instant::now());
                }
            }
            Command::Outcome { user, body } => {
                let of_user = self.by_principal.get(&user_principal(&user));
                let sessions: Vec<SessionId> = of_user.into_iter().flatten().copied().collect();
                for session in sessions {
                    self.emit(session, EventKind::Outcome, body.clone());
                }
            }
            Command::Resume {
                session,
                after,
                principals,
                reply,
            } => {
                let resumed = self.resume(session, after, &principals);
                if let Err(Ok(lost)) = reply.send(resumed) {
                    // The client went away while resuming: detached again.
                    if let Some(state) = self.sessions.get_mut(&lost.session)
                        && state.attachment == lost.attachment
                    {
                        state.outbound = None;
                        state.detached_since = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn resume(
        &mut self,
        session: SessionId,
        after: u64,
        principals: &[String],
    ) -> Result<Registration, ResumeRefused> {
        let buffer = self.config.buffer;
        let state = self.sessions.get_mut(&session).ok_or(ResumeRefused)?;
        state.resume(session, after, principals, buffer)
    }

    fn change(&mut self, change: Change) {
        match change {
            Change::Task(task) => {
                let _span = task.traceparent.as_deref().map(|traceparent| {
                    taskpool_service::event_span!(
                        "deliver to streams",
                        Some(traceparent),
                        aggregate_id = %task.id,
                        version = task.version,
                    )
                    .entered()
                });
                for session in &self.buffering {
                    if let Some(state) = self.sessions.get_mut(session) {
                        state.pending.push(task.clone());
                    }
                }
                let mut candidates: HashSet<SessionId> = HashSet::new();
                for principal in &task.principals {
                    if let Some(sessions) = self.by_principal.get(principal) {
                        candidates.extend(sessions);
                    }
                }
                if let Some(sessions) = self.holders.get(&task.id) {
                    candidates.extend(sessions);
                }
                let mut body = None;
                for session in candidates {
                    if self
                        .sessions
                        .get(&session)
                        .is_some_and(|s| s.phase == Phase::Live)
                    {
                        self.deliver(session, &task, &mut body);
                    }
                }
            }
            Change::Fence(fence) => {
                for session in self.fences.arrived(&fence) {
                    self.go_live(session);
                }
            }
            Change::Gap => {
                warn!(
                    "the change stream restarted without its position; every stream client resyncs"
                );
                let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
                for session in sessions {
                    self.cut_off(session, resync::GAP);
                }
            }
        }
    }

    /// Applies the buffered changes (newest version per task) and turns the session live.
    fn go_live(&mut self, session: SessionId) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let newest = state.take_pending();
        state.phase = Phase::Live;
        self.buffering.remove(&session);
        for task in newest {
            self.deliver(session, &task, &mut None);
        }
    }

    /// Tells one live session about a changed task, if it concerns the client. `body` caches
    /// the task's JSON across the sessions of one change: it is serialized once.
    fn deliver(
        &mut self,
        session: SessionId,
        task: &Arc<TaskDocument>,
        body: &mut Option<Arc<str>>,
    ) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let known = state.visible.get(&task.id).copied();
        if known.is_some_and(|version| version >= task.version) {
            return;
        }
        let kind = if state.filter.matches(task, &state.principals) {
            state.visible.insert(task.id.clone(), task.version);
            self.holders
                .entry(task.id.clone())
                .or_default()
                .insert(session);
            EventKind::Upsert
        } else if known.is_some() {
            state.visible.remove(&task.id);
            if let Some(holders) = self.holders.get_mut(&task.id) {
                holders.remove(&session);
                if holders.is_empty() {
                    self.holders.remove(&task.id);
                }
            }
            EventKind::Remove
        } else {
            return;
        };
        let body: Arc<str> = if kind == EventKind::Upsert {
            body.get_or_insert_with(|| task_json(task)).clone()
        } else {
            serde_json::json!({ "id": task.id }).to_string().into()
        };
        let latency = taskpool_schemas::Timestamp::now().millis() - task.occurred_at;
        self.metrics
            .observe_delivery(u64::try_from(latency).unwrap_or(0));
        self.emit(session, kind, body);
    }

    fn emit(&mut self, session: SessionId, kind: EventKind, body: Arc<str>) {
        let resume_events = self.config.resume_events;
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let event = StreamEvent {
            seq: state.next_seq,
            kind,
            body,
        };
        state.next_seq += 1;
        state.recent.push_back(event.clone());
        if state.recent.len() > resume_events {
            state.recent.pop_front();
        }
        let Some(outbound) = &state.outbound else {
            return;
        };
        match outbound.try_send(event) {
            Ok(()) => self.metrics.stream_events.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => self.cut_off(session, resync::SLOW_CLIENT),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                state.outbound = None;
                state.detached_since = Some(Instant::now());
            }
        }
    }

    /// Ends a session's stream with `resync`: it fell behind, or changes may be missing.
    fn cut_off(&mut self, session: SessionId, reason: &'static str) {
        if let Some(state) = self.sessions.get_mut(&session) {
            state.overflowed.store(true, Ordering::Relaxed);
            state.outbound = None;
            state.broken = true;
            state.detached_since.get_or_insert_with(Instant::now);
            self.metrics.resynced(reason);
        }
    }

    /// Drops sessions that can no longer be resumed, cuts off sessions whose buffer of changes
    /// grew past any reasonable snapshot, and replaces a fence that never arrived.
    fn sweep(&mut self) {
        self.fences.replace_overdue();
        let overfull: Vec<SessionId> = self
            .buffering
            .iter()
            .filter(|s| {
                self.sessions
                    .get(s)
                    .is_some_and(|s| s.pending.len() > MAX_PENDING)
            })
            .copied()
            .collect();
        for session in overfull {
            self.cut_off(session, resync::SNAPSHOT_OVERRUN);
            self.buffering.remove(&session);
            if let Some(state) = self.sessions.get_mut(&session) {
                state.pending = Vec::new();
            }
        }
        let window = Duration::from_secs(self.config.resume_window_secs);
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.detached_since
                    .is_some_and(|since| s.broken || since.elapsed() >= window)
            })
            .map(|(id, _)| *id)
            .collect();
        for session in expired {
            self.remove(session);
        }
        self.count_open();
    }

    fn remove(&mut self, session: SessionId) {
        let Some(state) = self.sessions.remove(&session) else {
            return;
        };
        for principal in &state.principals {
            if let Some(sessions) = self.by_principal.get_mut(principal) {
                sessions.remove(&session);
                if sessions.is_empty() {
                    self.by_principal.remove(principal);
                }
            }
        }
        for id in state.visible.keys() {
            if let Some(holders) = self.holders.get_mut(id) {
                holders.remove(&session);
                if holders.is_empty() {
                    self.holders.remove(id);
                }
            }
        }
        self.buffering.remove(&session);
        self.fences.forget(session);
    }

    /// Refreshes the open-streams gauge (once a second, from `sweep`).
    fn count_open(&self) {
        let open = self
            .sessions
            .values()
            .filter(|s| s.outbound.is_some())
            .count();
        self.metrics
            .open_streams
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }
}
