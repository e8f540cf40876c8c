//! The relay against the broker's SASL_SSL listener with SCRAM-SHA-512: it publishes with the
//! right password; with a wrong one it stops at start, saying authentication failed, and
//! neither publishes nor touches the outbox.

mod support;

use std::time::Duration;

use support::*;
use taskpool_testkit::required_env;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_over_sasl_ssl_with_scram() {
    let world = World::over_sasl(&required_env("KAFKA_SASL_PASSWORD")).await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    world.commit(vec![created("t1")]).await;
    world.commit(vec![assigned("t1", "kermit")]).await;
    let mut reader = world.reader().await;
    reader
        .read_until("both events", DEADLINE, |r| r.len() == 2)
        .await;
    let versions: Vec<i64> = reader.received.iter().map(Received::version).collect();
    assert_eq!(versions, [1, 2]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_relay_saying_authentication_failed() {
    let world = World::over_sasl("not-the-password").await;
    world.commit(vec![created("waiting")]).await;
    let mut relay = RelayProcess::spawn(&world.relay_env());
    let status = tokio::time::timeout(DEADLINE, relay.child.wait())
        .await
        .expect("the relay gives up within the deadline")
        .expect("the relay's exit status");
    assert!(!status.success(), "{status}");
    let log = relay.log_text();
    assert!(
        log.to_lowercase().contains("authentication failed"),
        "the log says why: {log}"
    );

    // Nothing was published (the right password sees no topic with messages) and the outbox
    // is as the engine left it: the event is still there, no position was stored.
    let right = World::over_sasl(&required_env("KAFKA_SASL_PASSWORD")).await;
    assert!(
        !topic_exists(&right, &world.tasks_topic()).await,
        "the relay created its topic"
    );
    assert_eq!(outbox_event_ids(&world.db.pool).await.len(), 1);
    let positions: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_relay_position")
        .fetch_one(&world.db.pool)
        .await
        .unwrap_or(0);
    assert_eq!(positions, 0, "no position stored");
}
