//! `kafka-relay republish` as an operator uses it: after everything was published, selecting by
//! aggregate, by position range and by time sends exactly the selected events again (and
//! `--dry-run` only counts them); with no selection it refuses to run.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);

async fn republish(env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .arg("republish")
        .args(args)
        .envs(env)
        .output()
        .await
        .unwrap()
}

/// The keys received from the `from`-th message on, sorted (partitions interleave).
fn keys(reader: &KafkaReader, from: usize) -> Vec<String> {
    let mut keys: Vec<String> = reader.received[from..]
        .iter()
        .map(|m| m.key.clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_selected_events_are_sent_again() {
    let world = World::new().await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    world.commit(vec![created("a")]).await; // position 1
    world.commit(vec![created("b")]).await; // 2
    world.commit(vec![created("c")]).await; // 3
    world.commit(vec![assigned("a", "kermit")]).await; // 4
    let mut reader = world.reader().await;
    reader
        .read_until("the first publication", DEADLINE, |r| r.len() >= 4)
        .await;
    relay.stop().await;
    assert_eq!(keys(&reader, 0), ["a", "a", "b", "c"]);
    let env = world.relay_env();

    // A dry run counts and sends nothing.
    let dry = republish(&env, &["--aggregate", "a", "--dry-run"]).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout).trim(),
        "would republish 2 events"
    );

    // By aggregate: a's two events, in order.
    let sent = republish(&env, &["--aggregate", "a"]).await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "republished 2 events"
    );
    reader
        .read_until("a's events again", DEADLINE, |r| r.len() >= 6)
        .await;
    assert_eq!(keys(&reader, 4), ["a", "a"]);
    let versions: Vec<i64> = reader.received[4..].iter().map(|m| m.version()).collect();
    assert_eq!(versions, [1, 2], "an aggregate's events keep their order");

    // By position range: 2 and 3.
    assert!(
        republish(&env, &["--from-position", "2", "--to-position", "3"])
            .await
            .status
            .success()
    );
    reader
        .read_until("positions 2 and 3", DEADLINE, |r| r.len() >= 8)
        .await;
    assert_eq!(keys(&reader, 6), ["b", "c"]);

    // By time: everything written at or after position 3's time.
    let since: String = wait_for("position 3's time", DEADLINE, || async {
        sqlx::query_scalar(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM taskpool_outbox WHERE position = 3",
        )
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert!(republish(&env, &["--since", &since]).await.status.success());
    reader
        .read_until("positions 3 and 4", DEADLINE, |r| r.len() >= 10)
        .await;
    assert_eq!(keys(&reader, 8), ["a", "c"]);

    // Nothing more was sent than selected.
    reader.poll_for(Duration::from_secs(1));
    assert_eq!(reader.received.len(), 10);

    // No selection: refused as a usage error, nothing sent.
    assert_eq!(republish(&env, &[]).await.status.code(), Some(2));
    reader.poll_for(Duration::from_millis(500));
    assert_eq!(reader.received.len(), 10);
}
