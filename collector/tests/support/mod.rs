//! One test suite, two stores: each harness gives a fresh database with taskpool's tables, a
//! business table standing in for the engine's own data, and readers for what was written.

use std::collections::BTreeSet;

use sqlx::{Row, Transaction};
use taskpool_collector::{Collector, CollectorError, EngineEvent};
use taskpool_core::domain::data_entry::DataEntryContent;
use taskpool_core::{PgStore, RecordedEvent, SqliteStore, Store};
use taskpool_schemas::{DataEntryState, DecodedEvent, Payload, ProcessingType, decode};
pub use taskpool_testkit::fixtures::new_task;
use taskpool_testkit::{PgTestDb, SqliteTestDb};

/// One outbox row as a reader sees it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub version: i64,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub headers: String,
}

impl OutboxRow {
    pub fn event(&self) -> DecodedEvent {
        decode(&self.payload).expect("outbox payload decodes")
    }

    pub fn task(&self) -> taskpool_schemas::Task {
        match self.event() {
            DecodedEvent::Task(event) => {
                assert_eq!(
                    event.version, self.version,
                    "payload version = column version"
                );
                assert_eq!(event.event_type, self.event_type);
                event.task
            }
            other => panic!("not a task event: {other:?}"),
        }
    }

    pub fn data_entry(&self) -> taskpool_schemas::DataEntry {
        match self.event() {
            DecodedEvent::DataEntry(event) => event.data_entry,
            other => panic!("not a data-entry event: {other:?}"),
        }
    }
}

pub type Tx<H> = Transaction<'static, <<H as Harness>::S as Store>::Db>;

pub trait Harness: Sized {
    type S: Store;
    async fn new() -> Self;
    /// Begins an engine transaction (for SQLite a write transaction, see `SqliteStore`).
    async fn begin(&self) -> Tx<Self>;
    /// The engine's own write in its transaction.
    async fn insert_business_row(tx: &mut Tx<Self>, id: &str);
    async fn business_rows(&self) -> BTreeSet<String>;
    async fn outbox(&self) -> Vec<OutboxRow>;
    /// Records events with a collector inside `tx`.
    async fn flush(
        tx: &mut Tx<Self>,
        events: Vec<EngineEvent>,
    ) -> Result<Vec<RecordedEvent>, CollectorError>;
    async fn migrate_again(&self);
}

const BUSINESS_TABLE: &str = "CREATE TABLE engine_business (id TEXT PRIMARY KEY)";

fn collector(events: Vec<EngineEvent>) -> Result<Collector, CollectorError> {
    let mut collector = Collector::new();
    for event in events {
        collector.record(event)?;
    }
    Ok(collector)
}

pub struct Postgres {
    db: PgTestDb,
}

impl Harness for Postgres {
    type S = PgStore;

    async fn new() -> Self {
        let db = PgTestDb::new().await;
        PgStore::migrate(&db.pool).await.expect("migrate");
        sqlx::query(BUSINESS_TABLE).execute(&db.pool).await.unwrap();
        Postgres { db }
    }

    async fn begin(&self) -> Tx<Self> {
        self.db.pool.begin().await.unwrap()
    }

    async fn insert_business_row(tx: &mut Tx<Self>, id: &str) {
        sqlx::query("INSERT INTO engine_business (id) VALUES ($1)")
            .bind(id)
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    async fn business_rows(&self) -> BTreeSet<String> {
        sqlx::query_scalar("SELECT id FROM engine_business")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    async fn outbox(&self) -> Vec<OutboxRow> {
        let rows = sqlx::query(
            "SELECT position, aggregate_type, aggregate_id, aggregate_version, event_type, payload, \
             headers::text AS headers FROM taskpool_outbox ORDER BY position",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        rows.iter()
            .map(|row| OutboxRow {
                position: row.get("position"),
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                version: row.get("aggregate_version"),
                event_type: row.get("event_type"),
                payload: row.get("payload"),
                headers: row.get("headers"),
            })
            .collect()
    }

    async fn flush(
        tx: &mut Tx<Self>,
        events: Vec<EngineEvent>,
    ) -> Result<Vec<RecordedEvent>, CollectorError> {
        collector(events)?.flush::<PgStore>(&mut **tx).await
    }

    async fn migrate_again(&self) {
        PgStore::migrate(&self.db.pool)
            .await
            .expect("migrate again");
    }
}

pub struct Sqlite {
    db: SqliteTestDb,
}

impl Harness for Sqlite {
    type S = SqliteStore;

    async fn new() -> Self {
        let db = SqliteTestDb::new().await;
        SqliteStore::migrate(&db.pool).await.expect("migrate");
        sqlx::query(BUSINESS_TABLE).execute(&db.pool).await.unwrap();
        Sqlite { db }
    }

    async fn begin(&self) -> Tx<Self> {
        self.db.pool.begin_with("BEGIN IMMEDIATE").await.unwrap()
    }

    async fn insert_business_row(tx: &mut Tx<Self>, id: &str) {
        sqlx::query("INSERT INTO engine_business (id) VALUES (?1)")
            .bind(id)
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    async fn business_rows(&self) -> BTreeSet<String> {
        sqlx::query_scalar("SELECT id FROM engine_business")
            .fetch_all(&self.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    async fn outbox(&self) -> Vec<OutboxRow> {
        let rows = sqlx::query(
            "SELECT position, aggregate_type, aggregate_id, aggregate_version, event_type, payload, \
             headers FROM taskpool_outbox ORDER BY position",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        rows.iter()
            .map(|row| OutboxRow {
                position: row.get("position"),
                aggregate_type: row.get("aggregate_type"),
                aggregate_id: row.get("aggregate_id"),
                version: row.get("aggregate_version"),
                event_type: row.get("event_type"),
                payload: row.get("payload"),
                headers: row.get("headers"),
            })
            .collect()
    }

    async fn flush(
        tx: &mut Tx<Self>,
        events: Vec<EngineEvent>,
    ) -> Result<Vec<RecordedEvent>, CollectorError> {
        collector(events)?.flush::<SqliteStore>(&mut **tx).await
    }

    async fn migrate_again(&self) {
        SqliteStore::migrate(&self.db.pool)
            .await
            .expect("migrate again");
    }
}

/// A valid task as an engine would report it at creation.
pub fn order_content(state: &str) -> Box<DataEntryContent> {
    Box::new(DataEntryContent {
        type_name: "Order".into(),
        application_name: "shop".into(),
        name: "Order 1".into(),
        description: None,
        state: DataEntryState {
            processing_type: ProcessingType::InProgress,
            state: state.into(),
        },
        payload: Payload::default(),
        correlations: vec![],
        authorized_users: ["kermit".to_string()].into(),
        authorized_groups: BTreeSet::new(),
        form_key: None,
    })
}
