//! PostgreSQL store (production). A batch that only creates tasks takes one round trip; any
//! other takes two: one to lock and load the aggregates, one statement that writes states and
//! outbox rows together.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Postgres, Row};

use super::{
    ChangedAggregate, NewAggregate, OutboxRecord, Store, StoreError, StoredAggregate, WriteBatch,
    migrations,
};
use crate::command::{AggregateKey, AggregateType};

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PgStore;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        include_str!("../../migrations/postgres/0001_outbox.sql"),
    ),
    (
        2,
        "outbox floor",
        include_str!("../../migrations/postgres/0002_outbox_floor.sql"),
    ),
    (
        3,
        "outbox floor guard",
        include_str!("../../migrations/postgres/0003_outbox_floor_guard.sql"),
    ),
    (
        4,
        "capture through SQL",
        include_str!("../../migrations/postgres/0004_capture.sql"),
    ),
    (
        5,
        "capture queue unchecked",
        include_str!("../../migrations/postgres/0005_capture_unchecked.sql"),
    ),
];

// This transaction's own tracking value (decision 0024): its id, raised to the outbox floor
// read after the id's lock is in the lock table. The subquery (kept apart by OFFSET 0) yields
// pg_current_xact_id(), which assigns the id and inserts its lock, before the outer projection
// reads the floor; pg_sequence_last_value reads it under the sequence's buffer lock. The guard
// trigger (core migration 3) checks the same per row and finds nothing to raise.
macro_rules! own_tracking_value {
    () => {
        "SELECT greatest(s.x, pg_sequence_last_value('taskpool_outbox_floor')::text::xid8) AS x \
         FROM (SELECT pg_current_xact_id() AS x OFFSET 0) s"
    };
}

// `ORDER BY ... FOR UPDATE` locks in sort order: every batch takes its locks in the same
// order, so two batches touching the same aggregates cannot deadlock each other.
const LOCK_AND_LOAD: &str = r#"
SELECT a.aggregate_type, a.aggregate_id, a.version, a.state
FROM taskpool_aggregates a
WHERE (a.aggregate_type, a.aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY a.aggregate_type, a.aggregate_id COLLATE "C"
FOR UPDATE OF a
"#;

// All parts run on one snapshot, so the outbox insert sees each aggregate's previous
// tracking_xid. A plain INSERT for new aggregates: a concurrent creator makes the whole
// statement fail (unique violation) instead of leaving half a batch behind. `me` is this
// transaction's own tracking value.
const SAVE: &str = concat!(
    "WITH me AS (",
    own_tracking_value!(),
    r#"), created AS (
    INSERT INTO taskpool_aggregates (aggregate_type, aggregate_id, version, state, tracking_xid)
    SELECT c.t, c.i, c.v, c.s, me.x
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) AS c(t, i, v, s), me
    RETURNING 1
), changed AS (
    UPDATE taskpool_aggregates a
    SET version = u.v, state = u.s, updated_at = clock_timestamp(),
        tracking_xid = greatest(a.tracking_xid, me.x)
    FROM unnest($5::text[], $6::text[], $7::int8[], $8::int8[], $9::bytea[]) AS u(t, i, expected, v, s), me
    WHERE a.aggregate_type = u.t AND a.aggregate_id = u.i AND a.version = u.expected
    RETURNING 1
), appended AS (
    INSERT INTO taskpool_outbox (tracking_xid, event_id, aggregate_type, aggregate_id,
        aggregate_version, event_type, schema_fingerprint, payload, headers)
    SELECT greatest(me.x, coalesce(a.tracking_xid, '0'::xid8)),
        e.id, e.t, e.i, e.v, e.et, e.fp, e.p, e.h::json
    FROM unnest($10::uuid[], $11::text[], $12::text[], $13::int8[], $14::text[], $15::int8[],
                $16::bytea[], $17::text[]) WITH ORDINALITY AS e(id, t, i, v, et, fp, p, h, n)
    CROSS JOIN me
    LEFT JOIN taskpool_aggregates a ON a.aggregate_type = e.t AND a.aggregate_id = e.i
    ORDER BY e.n
    RETURNING 1
)
SELECT (SELECT count(*) FROM created) AS created,
       (SELECT count(*) FROM changed) AS changed,
       (SELECT count(*) FROM appended) AS appended
"#
);

// The one-round-trip path for brand-new aggregates. Kept this simple on purpose: PostgreSQL
// plans it in microseconds, where a statement with more parts costs more to plan than to run.
// Outbox rows are written only if every aggregate was new; otherwise the caller removes the
// aggregates this statement did create (REMOVE_CREATED) and nothing of the batch remains.
const CREATE_IF_ABSENT: &str = concat!(
    "WITH me AS (",
    own_tracking_value!(),
    r#"), created AS (
    INSERT INTO taskpool_aggregates (aggregate_type, aggregate_id, version, state, tracking_xid)
    SELECT c.t, c.i, c.v, c.s, me.x
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[]) AS c(t, i, v, s), me
    ON CONFLICT DO NOTHING
    RETURNING 1
)
INSERT INTO taskpool_outbox (tracking_xid, event_id, aggregate_type, aggregate_id,
    aggregate_version, event_type, schema_fingerprint, payload, headers)
SELECT me.x, e.id, e.t, e.i, e.v, e.et, e.fp, e.p, e.h::json
FROM unnest($5::uuid[], $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[],
            $11::bytea[], $12::text[]) WITH ORDINALITY AS e(id, t, i, v, et, fp, p, h, n), me
WHERE (SELECT count(*) FROM created) = cardinality($1::text[])
ORDER BY e.n
"#
);

// A stored state is the aggregate's latest event, unique by its event id: matching it removes
// exactly the rows CREATE_IF_ABSENT inserted.
const REMOVE_CREATED: &str = r#"
DELETE FROM taskpool_aggregates a
USING unnest($1::text[], $2::text[], $3::bytea[]) AS c(t, i, s)
WHERE a.aggregate_type = c.t AND a.aggregate_id = c.i AND a.state = c.s
"#;

impl Store for PgStore {
    type Db = Postgres;

    async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
        migrations::migrator(MIGRATIONS).run(pool).await?;
        Ok(())
    }

    async fn lock_and_load(
        conn: &mut PgConnection,
        keys: &[AggregateKey],
    ) -> Result<Vec<StoredAggregate>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let types: Vec<&str> = keys.iter().map(|k| k.aggregate_type.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        let rows = sqlx::query(LOCK_AND_LOAD)
            .bind(&types)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter()
            .map(|row| {
                let type_name: String = row.try_get("aggregate_type")?;
                let id: String = row.try_get("aggregate_id")?;
                let key = stored_key(&type_name, id)?;
                Ok(StoredAggregate {
                    key,
                    version: row.try_get("version")?,
                    state: row.try_get("state")?,
                })
            })
            .collect()
    }

    async fn save(conn: &mut PgConnection, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let created = &batch.created;
        let changed = &batch.changed;
        let events = &batch.events;
        let query = bind_created(sqlx::query(SAVE), created);
        let query = bind_changed(query, changed);
        let row = bind_events(query, events)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| conflict_or(e, batch))?;
        if count(&row, "created")? != created.len()
            || count(&row, "changed")? != changed.len()
            || count(&row, "appended")? != events.len()
        {
            // Cannot happen while the rows are locked; if it does, refuse to go on.
            return Err(StoreError::Conflict(batch.keys()));
        }
        Ok(())
    }

    async fn create_if_absent(
        conn: &mut PgConnection,
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        let created = &batch.created;
        let events = &batch.events;
        let appended = bind_events(bind_created(sqlx::query(CREATE_IF_ABSENT), created), events)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if appended == events.len() as u64 {
            return Ok(true);
        }
        // Some aggregate existed: take back the ones this batch created.
        sqlx::query(REMOVE_CREATED)
            .bind(
                created
                    .iter()
                    .map(|a| a.key.aggregate_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                created
                    .iter()
                    .map(|a| a.key.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                created
                    .iter()
                    .map(|a| a.state.as_slice())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
        Ok(false)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds new aggregates as four arrays: types, ids, versions, states.
fn bind_created<'q>(query: PgQuery<'q>, created: &'q [NewAggregate]) -> PgQuery<'q> {
    query
        .bind(
            created
                .iter()
                .map(|a| a.key.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|a| a.key.id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(created.iter().map(|a| a.version).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|a| a.state.as_slice())
                .collect::<Vec<_>>(),
        )
}

/// Binds changed aggregates as five arrays: types, ids, expected versions, versions, states.
fn bind_changed<'q>(query: PgQuery<'q>, changed: &'q [ChangedAggregate]) -> PgQuery<'q> {
    query
        .bind(
            changed
                .iter()
                .map(|a| a.key.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|a| a.key.id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            changed
                .iter()
                .map(|a| a.expected_version)
                .collect::<Vec<_>>(),
        )
        .bind(changed.iter().map(|a| a.version).collect::<Vec<_>>())
        .bind(
            changed
                .iter()
                .map(|a| a.state.as_slice())
                .collect::<Vec<_>>(),
        )
}

/// Binds outbox records as eight arrays, in the column order of the outbox inserts.
fn bind_events<'q>(query: PgQuery<'q>, events: &'q [OutboxRecord]) -> PgQuery<'q> {
    query
        .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.key.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.key.id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.version).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_type).collect::<Vec<_>>())
        .bind(events.iter().map(fingerprint_bits).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.payload.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.headers.as_str())
                .collect::<Vec<_>>(),
        )
}

/// The fingerprint is 64 opaque bits; BIGINT holds them unchanged.
fn fingerprint_bits(event: &OutboxRecord) -> i64 {
    i64::from_ne_bytes(event.schema_fingerprint.to_ne_bytes())
}

fn count(row: &PgRow, column: &str) -> Result<usize, StoreError> {
    let count: i64 = row.try_get(column)?;
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

fn stored_key(type_name: &str, id: String) -> Result<AggregateKey, StoreError> {
    match AggregateType::parse(type_name) {
        Some(aggregate_type) => Ok(AggregateKey { aggregate_type, id }),
        None => Err(StoreError::CorruptState {
            aggregate: format!("{type_name} {id}"),
            reason: "unknown aggregate type".into(),
        }),
    }
}

/// A unique violation while saving means a concurrent transaction created the same aggregate.
fn conflict_or(error: sqlx::Error, batch: &WriteBatch) -> StoreError {
    let unique_violation = error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation());
    if unique_violation {
        StoreError::Conflict(batch.created.iter().map(|a| a.key.clone()).collect())
    } else {
        StoreError::Database(error)
    }
}
