//! What an open transaction may hold back and what it must not (decision 0024): with the
//! outbox writers' horizon, transactions that never touch the outbox delay nothing, and one that
//! writes its first event long after it began is still published.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};
use support::*;
use taskpool_collector::Collector;
use taskpool_core::PgStore;
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);
/// How long the other transactions stay open while events are committed.
const HELD_OPEN: Duration = Duration::from_secs(30);
/// The longest an event may take from its commit to Kafka meanwhile: far below HELD_OPEN, with
/// room for a stall of a loaded machine.
const MAX_DELAY_MS: i64 = 5000;

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

async fn a_transaction_that_writes_its_first_event_late_is_not_skipped(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    sqlx::query("CREATE TABLE engine_history (id INT)")
        .execute(&world.db.pool)
        .await
        .unwrap();
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;

    // An engine transaction that changes its own tables first: it has an id, no outbox row yet.
    let mut slow = world.db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO engine_history VALUES (1)")
        .execute(&mut *slow)
        .await
        .unwrap();
    let slow_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::int8")
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    for i in 0..3 {
        world.commit(vec![created(&format!("meanwhile-{i}"))]).await;
    }
    match horizon {
        // Published while the slow transaction is open, and the relay's position moves past it.
        Horizon::OutboxWriters => {
            reader
                .read_until("the events committed meanwhile", DEADLINE, |r| r.len() == 3)
                .await;
            wait_for(
                "the stored position to pass the slow transaction",
                DEADLINE,
                || async { (world.stored_tracking_xid().await > slow_xid).then_some(()) },
            )
            .await;
        }
        // The server's oldest transaction holds everything back: let the relay poll a while.
        Horizon::AllTransactions => {
            let reads = relay.reads();
            wait_for("20 more outbox reads", DEADLINE, || async {
                (relay.reads() >= reads + 20).then_some(())
            })
            .await;
        }
    }

    let mut collector = Collector::new();
    collector.record(created("late-writer")).unwrap();
    collector.flush::<PgStore>(&mut *slow).await.unwrap();
    slow.commit().await.unwrap();

    reader
        .read_until("the late writer's event", DEADLINE, |r| {
            r.iter().any(|m| m.key == "late-writer")
        })
        .await;
    assert_eq!(reader.event_ids().len(), 4, "{:?}", reader.event_ids());
    relay.stop().await;
}

with_either_horizon!(a_transaction_that_writes_its_first_event_late_is_not_skipped);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_held_open_in_another_database_or_on_other_tables_delay_nothing() {
    // On a server of its own: the transactions held open here would hold back the other tests'
    // relays that wait for every transaction of the server.
    let world = World::on_second_server()
        .await
        .with_horizon(Horizon::OutboxWriters);
    sqlx::query("CREATE TABLE engine_history (id INT)")
        .execute(&world.db.pool)
        .await
        .unwrap();
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    world.commit(vec![created("warm-up")]).await;
    reader
        .read_until("the warm-up event", DEADLINE, |r| r.len() == 1)
        .await;

    // A writing transaction in another database of the same server ...
    let mut elsewhere = PgConnection::connect_with(&world.db.options.clone().database("postgres"))
        .await
        .expect("connect to the database postgres");
    let mut other_database = elsewhere.begin().await.unwrap();
    sqlx::query("CREATE TEMP TABLE held_open (id INT)")
        .execute(&mut *other_database)
        .await
        .unwrap();
    let other_xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::int8")
        .fetch_one(&mut *other_database)
        .await
        .unwrap();
    // ... and one in the engine's database, on a table of the engine's own.
    let mut engine = world.db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO engine_history VALUES (1)")
        .execute(&mut *engine)
        .await
        .unwrap();
    // They do hold back the server-wide horizon (what the relay waited for before).
    let server_xmin: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert!(server_xmin <= other_xid, "{server_xmin} > {other_xid}");

    let started = tokio::time::Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(250));
    let mut committed_at = std::collections::BTreeMap::new();
    while started.elapsed() < HELD_OPEN {
        pace.tick().await;
        let id = format!("during-{}", committed_at.len());
        world.commit(vec![created(&id)]).await;
        committed_at.insert(id, now_ms());
    }
    let expected = committed_at.len() + 1;
    reader
        .read_until("every event committed meanwhile", DEADLINE, |r| {
            r.len() >= expected
        })
        .await;
    let mut delays: Vec<(i64, &str)> = reader
        .received
        .iter()
        .filter_map(|m| {
            let committed = committed_at.get(&m.key)?;
            Some((m.produced_at_ms? - committed, m.key.as_str()))
        })
        .collect();
    assert_eq!(delays.len(), committed_at.len(), "one message per event");
    delays.sort();
    let (worst, key) = delays[delays.len() - 1];
    assert!(
        worst <= MAX_DELAY_MS,
        "{key} reached Kafka {worst} ms after its commit (median {} ms)",
        delays[delays.len() / 2].0
    );

    // Both were open all along; the engine's transaction now writes an event and commits.
    let mut collector = Collector::new();
    collector.record(created("engine-late")).unwrap();
    collector.flush::<PgStore>(&mut *engine).await.unwrap();
    engine.commit().await.unwrap();
    other_database.rollback().await.unwrap();
    reader
        .read_until("the long transaction's event", DEADLINE, |r| {
            r.iter().any(|m| m.key == "engine-late")
        })
        .await;
    relay.stop().await;
}
