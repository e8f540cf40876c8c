//! The engine-facing API of taskpool.
//!
//! While a process engine runs a transaction, it reports what happened to user tasks and data
//! entries to a [`Collector`]. Just before commit, [`Collector::flush`] compacts those reports
//! to one intent per aggregate and records the resulting events in the outbox, in the engine's
//! own transaction: roll back, and nothing happened.
//!
//! # Layout
//! - [`event`]: the engine's vocabulary ([`EngineEvent`]).
//! - [`compaction`]: per-aggregate folding of a transaction's events into core commands.
//! - [`Collector`]: the per-transaction accumulator tying both to `taskpool-core`.
//!
//! # Example
//! ```no_run
//! use taskpool_collector::{Collector, EngineEvent};
//! use taskpool_core::{PgStore, Store};
//!
//! # async fn run(
//! #     pool: sqlx::PgPool,
//! #     new_task: taskpool_core::domain::task::NewTask,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // Once at start-up: create taskpool's tables next to the engine's own.
//! PgStore::migrate(&pool).await?;
//!
//! // In the engine's transaction:
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE engine_execution SET state = 'waiting' WHERE id = 1")
//!     .execute(&mut *tx)
//!     .await?;
//!
//! let mut collector = Collector::new();
//! collector.record(EngineEvent::TaskCreated { task_id: "t1".into(), task: Box::new(new_task) })?;
//! collector.record(EngineEvent::TaskAssigned { task_id: "t1".into(), assignee: Some("kermit".into()) })?;
//!
//! // Before commit: one TaskCreated (assigned to kermit) goes to the outbox, in `tx`.
//! let recorded = collector.flush::<PgStore>(&mut *tx).await?;
//! assert_eq!(recorded.len(), 1);
//! tx.commit().await?;
//! # Ok(())
//! # }
//! ```

pub mod compaction;
pub mod event;

use taskpool_core::store::Connection;
use taskpool_core::{CommandError, EventContext, RecordedEvent, Store, TraceParent};
use taskpool_schemas::Timestamp;

pub use compaction::{Compactor, RecordError};
pub use event::EngineEvent;

/// Why a transaction's events could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The engine reported events in an impossible order.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Core refused a command or storage failed. On a rejection nothing was written.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Gathers one engine transaction's events; flush it before the transaction commits.
#[derive(Debug, Default)]
pub struct Collector {
    compactor: Compactor,
    traceparent: Option<TraceParent>,
    occurred_at: Option<Timestamp>,
}

impl Collector {
    pub fn new() -> Self {
        Collector::default()
    }

    /// Continues the caller's trace: the events carry this W3C `traceparent`. Without one,
    /// each flush starts a new trace.
    pub fn with_traceparent(mut self, traceparent: TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Uses the engine's transaction time for the events instead of the time of the flush.
    pub fn with_occurred_at(mut self, occurred_at: Timestamp) -> Self {
        self.occurred_at = Some(occurred_at);
        self
    }

    /// Notes one engine event. Fails only for an impossible order (an event after the task
    /// ended, or a creation after other events); the collector is unchanged then.
    pub fn record(&mut self, event: EngineEvent) -> Result<(), RecordError> {
        self.compactor.record(event)
    }

    /// Compacts the recorded events and writes their domain events to the outbox on `conn`,
    /// which must belong to the caller's transaction. Call it right before commit. On error,
    /// roll the transaction back.
    pub async fn flush<S: Store>(
        self,
        conn: &mut Connection<S>,
    ) -> Result<Vec<RecordedEvent>, CollectorError> {
        let commands = self.compactor.into_commands();
        let context = EventContext {
            occurred_at: self.occurred_at.unwrap_or_else(Timestamp::now),
            traceparent: self.traceparent.unwrap_or_else(TraceParent::new_root),
        };
        Ok(taskpool_core::execute::<S>(conn, &commands, &context).await?)
    }
}
