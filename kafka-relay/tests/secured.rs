//! The relay where the servers demand encryption: PostgreSQL that refuses connections without
//! TLS, and a broker reachable over TLS only, with the producer compressing.

mod support;

use std::time::Duration;

use support::*;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_compressed_over_tls_from_a_postgres_that_requires_tls() {
    let world = World::over_tls().await;
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert!(encrypted, "the engine's connection is encrypted");

    for codec in ["zstd", "gzip"] {
        let relay = RunningRelay::start(world.relay_config(&[("KAFKA__COMPRESSION", codec)])).await;
        let task = format!("t-{codec}");
        world.commit(vec![created(&task)]).await;
        for user in ["kermit", "piggy"] {
            world.commit(vec![assigned(&task, user)]).await;
        }
        let mut reader = world.reader().await;
        reader
            .read_until("3 events of the task", DEADLINE, |received| {
                received.iter().filter(|m| m.key == task).count() >= 3
            })
            .await;
        let versions: Vec<i64> = reader
            .received
            .iter()
            .filter(|m| m.key == task)
            .map(Received::version)
            .collect();
        assert_eq!(versions, [1, 2, 3], "{codec}");
        assert!(matches!(relay.stop().await, kafka_relay::Exit::Shutdown));
    }
}
