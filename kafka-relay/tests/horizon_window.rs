//! The schedules the outbox writers' horizon must survive (decision 0024), held by a debugger
//! at the instruction where they would go wrong, and writers that know nothing of the floor.
//!
//! PostgreSQL publishes a new transaction id in the running-transactions list before it puts
//! that id's lock in the lock table (`AssignTransactionId`: `GetNewTransactionId`, then
//! `XactLockTableInsert`). A writer stopped between the two already holds its lock on the
//! outbox, yet no lock of its id is to be seen.

mod support;

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use support::*;
use taskpool_collector::Collector;
use taskpool_core::PgStore;
use taskpool_testkit::debugger::Breakpoint;
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);

/// How a writer built on taskpool-core before the floor wrote a new task (core migration 1):
/// its rows sort at its own transaction id, never at the floor.
const WRITE_LIKE_CORE_1: &str = r#"
WITH created AS (
    INSERT INTO taskpool_aggregates (aggregate_type, aggregate_id, version, state, tracking_xid)
    VALUES ('task', $1, 1, '\x00', pg_current_xact_id())
    RETURNING 1
)
INSERT INTO taskpool_outbox (tracking_xid, event_id, aggregate_type, aggregate_id,
    aggregate_version, event_type, schema_fingerprint, payload)
SELECT pg_current_xact_id(), gen_random_uuid(), 'task', $1, 1, 'TaskCreated', 0, '\x00'
FROM created
"#;

/// How taskpool-core wrote a new task with the first floor (core migration 2): the floor is
/// read from the scanned sequence row before pg_current_xact_id() runs, so before its id's
/// lock exists.
const WRITE_LIKE_CORE_2: &str = r#"
WITH me AS (
    SELECT greatest(pg_current_xact_id(), f.last_value::text::xid8) AS x
    FROM taskpool_outbox_floor f
), created AS (
    INSERT INTO taskpool_aggregates (aggregate_type, aggregate_id, version, state, tracking_xid)
    SELECT 'task', $1, 1, '\x00', me.x FROM me
    RETURNING 1
)
INSERT INTO taskpool_outbox (tracking_xid, event_id, aggregate_type, aggregate_id,
    aggregate_version, event_type, schema_fingerprint, payload)
SELECT me.x, gen_random_uuid(), 'task', $1, 1, 'TaskCreated', 0, '\x00'
FROM me, created
"#;

/// How the held writer writes its event.
#[derive(Debug, Clone, Copy)]
enum Writer {
    /// Through the collector and this taskpool-core.
    Collector,
    /// With the statement of taskpool-core before this fix.
    Core2,
}

/// The full transaction id of the backend `pid`, once it has one.
async fn transaction_id_of(world: &World, pid: i32) -> i64 {
    wait_for("the held backend's transaction id", DEADLINE, || async {
        sqlx::query_scalar(
            "SELECT x::text::int8 FROM pg_stat_activity a, \
             pg_snapshot_xip(pg_current_snapshot()) x \
             WHERE a.pid = $1 AND x::text::int8 % 4294967296 = a.backend_xid::text::int8",
        )
        .bind(pid)
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_held_between_its_transaction_id_and_its_id_lock_is_published() {
    a_writer_held_in_the_window_is_published(Writer::Collector).await;
}

/// The guard in the database raises what the older statement wrote (it read a floor older than
/// its id's lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_writer_held_in_the_same_window_is_published() {
    a_writer_held_in_the_window_is_published(Writer::Core2).await;
}

async fn a_writer_held_in_the_window_is_published(writer: Writer) {
    // On the second server: the held transaction holds back the server-wide horizon, which other
    // tests' relays may wait for.
    let world = World::on_second_server()
        .await
        .with_horizon(Horizon::OutboxWriters);
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    world.commit(vec![created("warm-up")]).await;
    reader
        .read_until("the warm-up event", DEADLINE, |r| r.len() == 1)
        .await;

    let mut held = PgConnection::connect_with(&world.db.options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut held)
        .await
        .unwrap();
    let mut breakpoint =
        Breakpoint::set(u32::try_from(pid).unwrap(), "XactLockTableInsert", DEADLINE);
    // A transaction whose first write is the outbox statement: it gets its id in there, after
    // the statement took its lock on the outbox.
    let writer = tokio::spawn(async move {
        let mut tx = held.begin().await.unwrap();
        match writer {
            Writer::Collector => {
                let mut collector = Collector::new();
                collector.record(created("held")).unwrap();
                collector.flush::<PgStore>(&mut *tx).await.unwrap();
            }
            Writer::Core2 => {
                sqlx::query(WRITE_LIKE_CORE_2)
                    .bind("held")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
    });
    breakpoint.wait_until_reached(DEADLINE);
    let held_xid = transaction_id_of(&world, pid).await;

    // Writers with later ids commit, and the relay publishes them: past the held id.
    for i in 0..3 {
        world.commit(vec![created(&format!("after-{i}"))]).await;
    }
    reader
        .read_until("the events committed meanwhile", DEADLINE, |r| r.len() == 4)
        .await;
    wait_for(
        "the relay's stored position to pass the held writer's id",
        DEADLINE,
        || async { (world.stored_tracking_xid().await > held_xid).then_some(()) },
    )
    .await;

    breakpoint.release();
    writer.await.expect("the held writer commits");
    reader
        .read_until("the held writer's event", DEADLINE, |r| {
            r.iter().any(|m| m.key == "held")
        })
        .await;
    assert_eq!(reader.event_ids().len(), 5, "{:?}", reader.event_ids());
    relay.stop().await;
}

/// A writer of an older taskpool-core that never reads the floor, in a transaction that got its
/// id long before it writes to the outbox: what a rolling upgrade that updates the relay first
/// runs into. The database raises its row to the floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_never_reads_the_floor_is_published() {
    let world = World::on_second_server()
        .await
        .with_horizon(Horizon::OutboxWriters);
    sqlx::query("CREATE TABLE engine_history (id INT)")
        .execute(&world.db.pool)
        .await
        .unwrap();
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;

    let mut old = world.db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO engine_history VALUES (1)")
        .execute(&mut *old)
        .await
        .unwrap();
    let old_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::int8")
        .fetch_one(&mut *old)
        .await
        .unwrap();
    for i in 0..3 {
        world.commit(vec![created(&format!("meanwhile-{i}"))]).await;
    }
    reader
        .read_until("the events committed meanwhile", DEADLINE, |r| r.len() == 3)
        .await;
    wait_for(
        "the relay's stored position to pass the old writer's id",
        DEADLINE,
        || async { (world.stored_tracking_xid().await > old_xid).then_some(()) },
    )
    .await;

    sqlx::query(WRITE_LIKE_CORE_1)
        .bind("old-writer")
        .execute(&mut *old)
        .await
        .unwrap();
    old.commit().await.unwrap();
    reader
        .read_until("the old writer's event", DEADLINE, |r| {
            r.iter().any(|m| m.key == "old-writer")
        })
        .await;
    assert_eq!(reader.event_ids().len(), 4, "{:?}", reader.event_ids());
    relay.stop().await;
}
