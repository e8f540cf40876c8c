//! Storage of aggregate state and the outbox, behind one small trait with a PostgreSQL and an
//! SQLite implementation. Every function works on a connection the caller got from its own
//! transaction (`&mut *tx`): the store never begins, commits or rolls back.

use std::future::Future;

use sqlx::{Database, Pool};
use uuid::Uuid;

use crate::command::AggregateKey;

pub mod migrations;
pub mod postgres;
pub mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The current state of an aggregate as stored, read under a lock held until the caller's
/// transaction ends.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAggregate {
    pub key: AggregateKey,
    pub version: i64,
    /// The aggregate's latest event (Avro single-object encoded): it carries the full state.
    pub state: Vec<u8>,
}

/// A new aggregate to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAggregate {
    pub key: AggregateKey,
    pub version: i64,
    /// The aggregate's latest event, as in [`StoredAggregate::state`].
    pub state: Vec<u8>,
}

/// A changed aggregate: written only if it is still at `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangedAggregate {
    pub key: AggregateKey,
    pub expected_version: i64,
    pub version: i64,
    pub state: Vec<u8>,
}

/// One outbox row: an encoded event and what the relay needs to publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub event_id: Uuid,
    pub key: AggregateKey,
    pub version: i64,
    pub event_type: &'static str,
    pub schema_fingerprint: u64,
    /// The Avro single-object encoded event.
    pub payload: Vec<u8>,
    /// Extra message headers as a JSON object of strings (`traceparent`, `occurred-at`).
    pub headers: String,
}

/// Everything one batch of commands writes, applied in one go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub created: Vec<NewAggregate>,
    pub changed: Vec<ChangedAggregate>,
    /// In the order they happened; per aggregate, in version order.
    pub events: Vec<OutboxRecord>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.created.is_empty() && self.changed.is_empty()
    }
}

/// Storage failures, typed for the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another transaction created or changed the aggregate concurrently (for instance two
    /// engines creating the same task). The transaction must be rolled back; retrying it will
    /// see the other transaction's result.
    #[error("{} written by a concurrent transaction; roll back and retry", list(.0))]
    Conflict(Vec<AggregateKey>),
    /// Stored state that cannot be read back (written by something else than taskpool).
    #[error("stored state of {aggregate} is unreadable: {reason}")]
    CorruptState { aggregate: String, reason: String },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

fn list(keys: &[AggregateKey]) -> String {
    let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
    match names.len() {
        1 => format!("{} was", names[0]),
        _ => format!("one of {} was", names.join(", ")),
    }
}

impl WriteBatch {
    /// The aggregates this batch writes.
    pub fn keys(&self) -> Vec<AggregateKey> {
        let created = self.created.iter().map(|a| a.key.clone());
        created
            .chain(self.changed.iter().map(|a| a.key.clone()))
            .collect()
    }
}

/// The connection type of a store's database.
pub type Connection<S> = <<S as Store>::Db as Database>::Connection;

/// Aggregate state and outbox storage for one database kind.
pub trait Store: Send + Sync + 'static {
    type Db: Database;

    /// Creates or upgrades taskpool's tables (idempotent, safe to run from several processes).
    /// Migrations are recorded in `taskpool_migrations`, apart from the application's own.
    fn migrate(pool: &Pool<Self::Db>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads the given aggregates and locks them until the caller's transaction ends, so
    /// concurrent transactions on the same aggregate serialize. Keys are locked in a fixed
    /// order to avoid deadlocks between batches. Missing aggregates are simply absent.
    fn lock_and_load<'c>(
        conn: &'c mut Connection<Self>,
        keys: &'c [AggregateKey],
    ) -> impl Future<Output = Result<Vec<StoredAggregate>, StoreError>> + Send + 'c;

    /// Writes new and changed aggregates and appends the events to the outbox, atomically:
    /// on error nothing of the batch is visible and the caller must roll back.
    fn save<'c>(
        conn: &'c mut Connection<Self>,
        batch: &'c WriteBatch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'c;

    /// Writes a batch of only new aggregates, without reading first, if none of them exists
    /// yet: `Ok(true)`. If one already exists (or a concurrent creator commits it first),
    /// writes nothing and returns `Ok(false)`.
    fn create_if_absent<'c>(
        conn: &'c mut Connection<Self>,
        batch: &'c WriteBatch,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'c;
}
