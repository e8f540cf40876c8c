//! The stream hub: one shared change stream on the tasks collection, fanned out in memory to
//! every connected stream client ("session").
//!
//! A session starts buffering every change before its snapshot is read. After the snapshot, a
//! fence document is written into the tasks collection; when the change stream delivers the
//! fence, every change committed before the snapshot has been delivered too. The session then
//! takes, for each task in its buffer, the newest buffered version (at least as new as the
//! snapshot's), and from then on applies changes as they come. Per session the hub knows which
//! tasks the client holds (and at which version), so a change that takes a task out of the
//! client's sight becomes a `remove` for exactly the clients that hold it.
//!
//! Each session's events go through a bounded channel; a client that falls that far behind is
//! cut off with `resync` and never slows the others. Sessions outlive their connection for a
//! while, remembering their recent events, so a client can resume with `Last-Event-ID`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mongodb::bson::{self, Document};
use mongodb::change_stream::event::{OperationType, ResumeToken};
use mongodb::options::FullDocumentType;
use taskpool_service::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::config::StreamConfig;
use crate::documents::TaskDocument;
use crate::identity::Caller;
use crate::metrics::Metrics;
use crate::query::TaskFilter;
use crate::store::{FENCE_PREFIX, Store, TASKS};

pub type SessionId = u64;

/// What a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Upsert,
    Remove,
}

/// One event of a session: `body` is the task (upsert) or `{"id": ...}` (remove) as JSON.
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

/// The hub is gone (shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream hub is not running")]
pub struct HubGone;

enum Command {
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
}

/// What the change-stream watcher reports.
enum Change {
    Task(Arc<TaskDocument>),
    Fence(String),
    /// The stream had to restart without its resume token: changes may have been missed.
    Gap,
}

/// A handle to the hub task.
#[derive(Debug, Clone)]
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
}

impl Hub {
    /// Opens the shared change stream, then starts the hub. Returns once the stream is open,
    /// so that no snapshot is ever read before it.
    pub async fn start(
        store: Store,
        config: StreamConfig,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Result<Hub, mongodb::error::Error> {
        let (changes_tx, changes) = mpsc::channel(1024);
        let stream = open_stream(&store, None).await?;
        metrics.change_stream_open.store(true, Ordering::Relaxed);
        tokio::spawn(watch(
            store.clone(),
            stream,
            changes_tx,
            metrics.clone(),
            shutdown.clone(),
        ));
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (fenced_tx, fenced) = mpsc::unbounded_channel();
        let state = State {
            sessions: HashMap::new(),
            by_principal: HashMap::new(),
            holders: HashMap::new(),
            buffering: HashSet::new(),
            fence_queue: Vec::new(),
            fence_in_flight: None,
            fence_issued_at: Instant::now(),
            config,
            store,
            metrics,
            fence_failures: fenced_tx,
        };
        tokio::spawn(state.run(commands, changes, fenced, shutdown));
        Ok(Hub {
            commands: commands_tx,
        })
    }

    /// Starts a session for a caller; it buffers changes until its snapshot is taken.
    pub async fn register(
        &self,
        caller: Caller,
        filter: TaskFilter,
    ) -> Result<Registration, HubGone> {
        let (reply, registration) = oneshot::channel();
        self.commands
            .send(Command::Register {
                caller,
                filter,
                reply,
            })
            .map_err(|_| HubGone)?;
        registration.await.map_err(|_| HubGone)
    }

    /// The snapshot of `session` was read: the ids and versions of the tasks sent.
    pub fn snapshot_taken(&self, session: SessionId, tasks: Vec<(String, i64)>) {
        let _ = self
            .commands
            .send(Command::SnapshotTaken { session, tasks });
    }

    /// Forgets a session whose snapshot could not be read.
    pub fn cancel(&self, session: SessionId) {
        let _ = self.commands.send(Command::Cancel(session));
    }

    /// The connection of a session ended; the session stays resumable for a while.
    pub fn detach(&self, session: SessionId, attachment: u64) {
        let _ = self.commands.send(Command::Detach {
            session,
            attachment,
        });
    }

    /// Continues a session after event `after`, replaying what the client missed. Only the
    /// same caller with the same groups may resume: anything else starts afresh.
    pub async fn resume(
        &self,
        session: SessionId,
        after: u64,
        caller: &Caller,
    ) -> Result<Registration, ResumeRefused> {
        let (reply, resumed) = oneshot::channel();
        self.commands
            .send(Command::Resume {
                session,
                after,
                principals: sorted(caller.principals()),
                reply,
            })
            .map_err(|_| ResumeRefused)?;
        resumed.await.map_err(|_| ResumeRefused)?
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Snapshot,
    AwaitingFence,
    Live,
}

struct Session {
    /// The caller's principals, sorted: a resume must present the same.
    principals: Vec<String>,
    filter: TaskFilter,
    phase: Phase,
    /// Changes seen while the snapshot was being read and fenced.
    pending: Vec<Arc<TaskDocument>>,
    /// Tasks the client holds, with their versions.
    visible: HashMap<String, i64>,
    next_seq: u64,
    recent: VecDeque<StreamEvent>,
    outbound: Option<mpsc::Sender<StreamEvent>>,
    attachment: u64,
    overflowed: Arc<AtomicBool>,
    /// Cut off (too slow, or the change stream had a gap): cannot be resumed.
    broken: bool,
    detached_since: Option<Instant>,
}

struct State {
    sessions: HashMap<SessionId, Session>,
    by_principal: HashMap<String, HashSet<SessionId>>,
    holders: HashMap<String, HashSet<SessionId>>,
    buffering: HashSet<SessionId>,
    fence_queue: Vec<SessionId>,
    fence_in_flight: Option<(String, Vec<SessionId>)>,
    fence_issued_at: Instant,
    config: StreamConfig,
    store: Store,
    metrics: Arc<Metrics>,
    fence_failures: mpsc::UnboundedSender<String>,
}

impl State {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut changes: mpsc::Receiver<Change>,
        mut fence_failures: mpsc::UnboundedReceiver<String>,
        mut shutdown: Shutdown,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(command) = commands.recv() => self.command(command),
                Some(change) = changes.recv() => self.change(change),
                Some(fence) = fence_failures.recv() => self.retry_fence(fence),
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
                self.fence_queue.push(session);
                self.issue_fence();
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
        let oldest_kept = state.recent.front().map_or(state.next_seq, |e| e.seq);
        if state.principals != principals
            || state.broken
            || after >= state.next_seq
            || after + 1 < oldest_kept
        {
            return Err(ResumeRefused);
        }
        let missed: Vec<StreamEvent> = state
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
        state.outbound = Some(outbound);
        state.attachment += 1;
        state.detached_since = None;
        let registration = Registration {
            session,
            attachment: state.attachment,
            events,
            overflowed: state.overflowed.clone(),
        };
        Ok(registration)
    }

    fn change(&mut self, change: Change) {
        match change {
            Change::Task(task) => {
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
                let released = match &self.fence_in_flight {
                    Some((id, _)) if *id == fence => self.fence_in_flight.take(),
                    _ => None,
                };
                if let Some((_, sessions)) = released {
                    for session in sessions {
                        self.go_live(session);
                    }
                    self.issue_fence();
                }
            }
            Change::Gap => {
                warn!(
                    "the change stream restarted without its position; every stream client resyncs"
                );
                let sessions: Vec<SessionId> = self.sessions.keys().copied().collect();
                for session in sessions {
                    self.cut_off(session);
                }
            }
        }
    }

    /// Applies the buffered changes (newest version per task) and turns the session live.
    fn go_live(&mut self, session: SessionId) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let mut newest: HashMap<&str, &Arc<TaskDocument>> = HashMap::new();
        for task in &state.pending {
            let keep = newest
                .get(task.id.as_str())
                .is_none_or(|kept| kept.version < task.version);
            if keep {
                newest.insert(&task.id, task);
            }
        }
        let mut newest: Vec<Arc<TaskDocument>> = newest.into_values().cloned().collect();
        newest.sort_by_key(|task| task.occurred_at);
        state.pending = Vec::new();
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
        let body: Arc<str> = match kind {
            EventKind::Upsert => body.get_or_insert_with(|| task_json(task)).clone(),
            EventKind::Remove => serde_json::json!({ "id": task.id }).to_string().into(),
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
            Ok(()) => Metrics::add(&self.metrics.stream_events, 1),
            Err(mpsc::error::TrySendError::Full(_)) => self.cut_off(session),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                state.outbound = None;
                state.detached_since = Some(Instant::now());
            }
        }
    }

    /// Ends a session's stream with `resync`: it fell behind, or changes may be missing.
    fn cut_off(&mut self, session: SessionId) {
        if let Some(state) = self.sessions.get_mut(&session) {
            state.overflowed.store(true, Ordering::Relaxed);
            state.outbound = None;
            state.broken = true;
            state.detached_since.get_or_insert_with(Instant::now);
            Metrics::add(&self.metrics.stream_resyncs, 1);
        }
    }

    fn issue_fence(&mut self) {
        if self.fence_in_flight.is_some() || self.fence_queue.is_empty() {
            return;
        }
        let fence = format!("{FENCE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        self.fence_in_flight = Some((fence.clone(), std::mem::take(&mut self.fence_queue)));
        self.fence_issued_at = Instant::now();
        self.spawn_fence_write(fence);
    }

    fn spawn_fence_write(&self, fence: String) {
        let store = self.store.clone();
        let failures = self.fence_failures.clone();
        tokio::spawn(async move {
            if let Err(error) = store.write_fence(&fence).await {
                warn!(error = %error, "cannot write a stream fence; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = failures.send(fence);
            }
        });
    }

    fn retry_fence(&mut self, fence: String) {
        if self
            .fence_in_flight
            .as_ref()
            .is_some_and(|(id, _)| *id == fence)
        {
            self.spawn_fence_write(fence);
        }
    }

    /// Drops sessions that can no longer be resumed, cuts off sessions whose buffer of changes
    /// grew past any reasonable snapshot, and replaces a fence that never arrived.
    fn sweep(&mut self) {
        if self.fence_in_flight.is_some() && self.fence_issued_at.elapsed() >= FENCE_PATIENCE {
            if let Some((_, waiting)) = self.fence_in_flight.take() {
                warn!("a stream fence did not arrive; writing another");
                self.fence_queue.extend(waiting);
            }
            self.issue_fence();
        }
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
            self.cut_off(session);
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
        self.fence_queue.retain(|s| *s != session);
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
            .store(i64::try_from(open).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

/// How long a fence may take to come back through the change stream before another is written.
const FENCE_PATIENCE: Duration = Duration::from_secs(10);

/// Changes a session may buffer while its snapshot is read and fenced.
const MAX_PENDING: usize = 100_000;

fn sorted(mut principals: Vec<String>) -> Vec<String> {
    principals.sort();
    principals.dedup();
    principals
}

/// The API view of a task, serialized once and shared by every client that receives it.
pub fn task_json(task: &TaskDocument) -> Arc<str> {
    task.to_api().to_string().into()
}

type TaskStream = mongodb::change_stream::ChangeStream<
    mongodb::change_stream::event::ChangeStreamEvent<Document>,
>;

async fn open_stream(
    store: &Store,
    resume: Option<ResumeToken>,
) -> mongodb::error::Result<TaskStream> {
    store
        .database()
        .collection::<Document>(TASKS)
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .max_await_time(Duration::from_millis(500))
        .resume_after(resume)
        .await
}

/// Reads the shared change stream; reopens it after errors, resuming where it was. If the
/// server no longer knows that position, it starts afresh and reports a gap.
async fn watch(
    store: Store,
    mut stream: TaskStream,
    changes: mpsc::Sender<Change>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    info!("change stream on the tasks collection open");
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = shutdown.requested() => return,
        };
        let error = match next {
            Some(Ok(event)) => {
                if let Some(change) = read_change(event)
                    && changes.send(change).await.is_err()
                {
                    return;
                }
                continue;
            }
            Some(Err(error)) => error.to_string(),
            None => "the change stream ended".to_string(),
        };
        metrics.change_stream_open.store(false, Ordering::Relaxed);
        warn!(%error, "change stream interrupted; reopening");
        let token = stream.resume_token();
        let mut backoff = crate::projection::retry_backoff();
        stream = loop {
            if shutdown.sleep(backoff.next_pause()).await {
                return;
            }
            match open_stream(&store, token.clone()).await {
                Ok(stream) => break stream,
                Err(error) => {
                    warn!(error = %error, "cannot reopen the change stream");
                    // Reachable, yet the position is refused: start over, clients resync.
                    if token.is_some()
                        && store.ping().await.is_ok()
                        && let Ok(stream) = open_stream(&store, None).await
                    {
                        if changes.send(Change::Gap).await.is_err() {
                            return;
                        }
                        break stream;
                    }
                }
            }
        };
        metrics.change_stream_open.store(true, Ordering::Relaxed);
        info!("change stream reopened");
    }
}

fn read_change(
    event: mongodb::change_stream::event::ChangeStreamEvent<Document>,
) -> Option<Change> {
    let document = match event.operation_type {
        OperationType::Insert | OperationType::Update | OperationType::Replace => {
            event.full_document?
        }
        _ => return None,
    };
    match document.get_str("_id") {
        Ok(id) if id.starts_with(FENCE_PREFIX) => Some(Change::Fence(id.to_string())),
        _ => match bson::from_document::<TaskDocument>(document) {
            Ok(task) => Some(Change::Task(Arc::new(task))),
            Err(error) => {
                warn!(error = %error, "a tasks document does not read as a task; ignored");
                None
            }
        },
    }
}
