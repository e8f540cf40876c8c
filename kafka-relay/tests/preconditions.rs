//! A relay refuses to start where its order would not hold (decision 0024): a standby, positions
//! drawn from a cache, an old horizon function, a floor that cycles, a missing or disabled floor
//! guard. And the horizon function refuses what it cannot be right under.

mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kafka_relay::preconditions::{CheckError, HORIZON_VERSION, Unmet};
use kafka_relay::{Relay, RelayError};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgPool};
use support::*;
use taskpool_testkit::{required_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// What `Relay::connect` says of this world's database: the unmet assumption, or `None` when
/// it starts.
async fn refusal(world: &World, overrides: &[(&str, &str)]) -> Option<Unmet> {
    let config = world.relay_config(overrides);
    match Relay::connect(config, Arc::default()).await {
        Ok(_) => None,
        Err(RelayError::Preconditions(CheckError::Unmet(unmet))) => {
            // The message names what to do about it.
            let message = unmet.to_string();
            assert!(
                message.contains("run ") || message.contains("point "),
                "{message}"
            );
            Some(unmet)
        }
        Err(other) => panic!("unexpected failure: {other:?}"),
    }
}

/// A world whose database a relay has migrated.
async fn migrated_world() -> World {
    let world = World::new().await;
    kafka_relay::relay::migrate(&world.db.pool)
        .await
        .expect("relay migrations");
    world
}

async fn execute(world: &World, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&world.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_a_standby() {
    let world = World::new().await;
    for horizon in ["outbox-writers", "all-transactions"] {
        let url = required_env("DATABASE_STANDBY_URL");
        let refused = refusal(
            &world,
            &[("DATABASE__URL", url.as_str()), ("RELAY__HORIZON", horizon)],
        )
        .await;
        assert_eq!(refused, Some(Unmet::InRecovery), "{horizon}");
    }
}

async fn a_relay_refuses_positions_drawn_from_a_cache(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    execute(
        &world,
        "ALTER TABLE taskpool_outbox ALTER COLUMN position SET CACHE 20",
    )
    .await;
    match refusal(&world, &[]).await {
        Some(Unmet::PositionsCached { cache: 20, .. }) => {}
        other => panic!("expected a refusal of the cache, got {other:?}"),
    }
    execute(
        &world,
        "ALTER TABLE taskpool_outbox ALTER COLUMN position SET CACHE 1",
    )
    .await;
    assert_eq!(refusal(&world, &[]).await, None);
}

with_either_horizon!(a_relay_refuses_positions_drawn_from_a_cache);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_an_outbox_without_its_floor_guard_in_the_writers_mode_only() {
    let world = migrated_world().await;
    let no_migration = [("DATABASE__MIGRATE", "false")];
    for (change, state) in [
        ("DISABLE TRIGGER", "disabled"),
        // Enabled, but skipped by sessions with session_replication_role = replica.
        ("ENABLE TRIGGER", "not enabled ALWAYS"),
    ] {
        execute(
            &world,
            &format!("ALTER TABLE taskpool_outbox {change} taskpool_outbox_floor_guard"),
        )
        .await;
        assert_eq!(
            refusal(&world, &no_migration).await,
            Some(Unmet::FloorGuard { state })
        );
        assert_eq!(
            refusal(
                &world,
                &[
                    ("DATABASE__MIGRATE", "false"),
                    ("RELAY__HORIZON", "all-transactions")
                ]
            )
            .await,
            None,
            "the server-wide horizon needs no guard"
        );
    }
    execute(
        &world,
        "ALTER TABLE taskpool_outbox ENABLE ALWAYS TRIGGER taskpool_outbox_floor_guard",
    )
    .await;
    assert_eq!(refusal(&world, &no_migration).await, None);
    execute(
        &world,
        "DROP TRIGGER taskpool_outbox_floor_guard ON taskpool_outbox",
    )
    .await;
    assert_eq!(
        refusal(&world, &no_migration).await,
        Some(Unmet::FloorGuard { state: "missing" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_a_horizon_function_of_another_version_or_a_cycling_floor() {
    let world = migrated_world().await;
    let no_migration = [("DATABASE__MIGRATE", "false")];
    assert_eq!(refusal(&world, &no_migration).await, None);

    // What a database migrated by a relay of the first horizon looks like.
    execute(&world, "DROP FUNCTION taskpool_outbox_horizon_version()").await;
    assert_eq!(
        refusal(&world, &no_migration).await,
        Some(Unmet::HorizonVersion { found: None })
    );
    execute(
        &world,
        "CREATE FUNCTION taskpool_outbox_horizon_version() RETURNS INTEGER \
         LANGUAGE sql IMMUTABLE AS 'SELECT 1'",
    )
    .await;
    assert_eq!(
        refusal(&world, &no_migration).await,
        Some(Unmet::HorizonVersion { found: Some(1) })
    );
    execute(
        &world,
        &format!(
            "CREATE OR REPLACE FUNCTION taskpool_outbox_horizon_version() RETURNS INTEGER \
             LANGUAGE sql IMMUTABLE AS 'SELECT {HORIZON_VERSION}'"
        ),
    )
    .await;
    assert_eq!(refusal(&world, &no_migration).await, None);

    execute(&world, "ALTER SEQUENCE taskpool_outbox_floor CYCLE").await;
    match refusal(&world, &no_migration).await {
        Some(Unmet::Floor { problem }) => assert!(problem.contains("cycles"), "{problem}"),
        other => panic!("expected a refusal of the floor, got {other:?}"),
    }
}

/// The function itself, called by something else than the relay, or after a start-up check
/// passed: it raises instead of returning a horizon it cannot vouch for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_horizon_function_refuses_snapshot_isolation_and_a_disabled_guard() {
    let world = migrated_world().await;
    let horizon_error = |sql: &'static str| {
        let pool = world.db.pool.clone();
        async move {
            let mut conn = pool.acquire().await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
            let error = sqlx::query_scalar::<_, i64>("SELECT taskpool_outbox_horizon()")
                .fetch_one(&mut *tx)
                .await
                .expect_err("the horizon must refuse");
            error.to_string()
        }
    };
    let message = horizon_error("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await;
    assert!(message.contains("READ COMMITTED"), "{message}");
    let message =
        horizon_error("ALTER TABLE taskpool_outbox DISABLE TRIGGER taskpool_outbox_floor_guard")
            .await;
    assert!(message.contains("floor guard"), "{message}");
}

/// On a standby the function raises, even where it would write nothing (an idle outbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_horizon_function_refuses_a_server_in_recovery() {
    // The standby replicates the second server.
    let world = World::on_second_server().await;
    kafka_relay::relay::migrate(&world.db.pool)
        .await
        .expect("relay migrations");
    let options = PgConnectOptions::from_str(&required_env("DATABASE_STANDBY_URL"))
        .unwrap()
        .options([("search_path", world.db.schema.as_str())]);
    let standby = PgPool::connect_with(options).await.unwrap();
    wait_for("the standby to replay the migrations", DEADLINE, || async {
        sqlx::query_scalar::<_, bool>("SELECT to_regproc('taskpool_outbox_horizon') IS NOT NULL")
            .fetch_one(&standby)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    let error = sqlx::query_scalar::<_, i64>("SELECT taskpool_outbox_horizon()")
        .fetch_one(&standby)
        .await
        .expect_err("a standby must be refused")
        .to_string();
    assert!(error.contains("recovery"), "{error}");
}

/// A role or database whose default isolation is SERIALIZABLE does not change the relay's:
/// it sets READ COMMITTED on its own connections, and publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_reads_in_read_committed_whatever_the_default() {
    let world = World::new().await;
    let url = format!(
        "{}%20-cdefault_transaction_isolation%3Dserializable",
        world.db.url()
    );
    let relay = RunningRelay::start(world.relay_config(&[("DATABASE__URL", url.as_str())])).await;
    let mut reader = world.reader().await;
    world.commit(vec![created("serializable-default")]).await;
    reader
        .read_until("the event", DEADLINE, |r| r.len() == 1)
        .await;
    relay.stop().await;
}

/// The guard disabled while a relay runs: the relay publishes nothing and retries, saying why,
/// until the guard is back; then the event is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stops_publishing_while_the_floor_guard_is_disabled() {
    let world = World::new().await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let mut reader = world.reader().await;
    world.commit(vec![created("before")]).await;
    reader
        .read_until("the first event", DEADLINE, |r| r.len() == 1)
        .await;

    execute(
        &world,
        "ALTER TABLE taskpool_outbox DISABLE TRIGGER taskpool_outbox_floor_guard",
    )
    .await;
    world.commit(vec![created("while-disabled")]).await;
    let retries = relay.metrics.retries.get();
    wait_for("the relay to retry twice", DEADLINE, || async {
        (relay.metrics.retries.get() >= retries + 2).then_some(())
    })
    .await;
    reader.poll_for(Duration::from_millis(200));
    assert_eq!(reader.received.len(), 1, "published without the guard");

    execute(
        &world,
        "ALTER TABLE taskpool_outbox ENABLE ALWAYS TRIGGER taskpool_outbox_floor_guard",
    )
    .await;
    reader
        .read_until("the event committed meanwhile", DEADLINE, |r| r.len() == 2)
        .await;
    relay.stop().await;
}
