//! The `kafka-relay` binary under failure: SIGKILL, SIGTERM, two processes (broker outages:
//! `broker_outages.rs`).

mod support;

use std::time::{Duration, Instant};

use support::*;
use taskpool_collector::Collector;
use taskpool_core::PgStore;
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(120);

fn expect_all(reader: &KafkaReader, expected: &std::collections::BTreeSet<String>) -> bool {
    let ids = reader.event_ids();
    expected.iter().all(|id| ids.contains(id))
}

async fn sigkill_at_random_moments_loses_nothing_and_keeps_per_key_order(horizon: Horizon) {
    const EVENTS: usize = 10_000;
    let world = World::new().await.with_horizon(horizon);
    let env = world.relay_env();
    let batch_size: u64 = env[&format!("{}RELAY__BATCH_SIZE", kafka_relay::config::ENV_PREFIX)]
        .parse()
        .unwrap();
    let max_in_flight = kafka_relay::config::RelayConfig::default().max_in_flight_batches as u64;

    let writer = tokio::spawn(stream_events(
        world.db.pool.clone(),
        "task",
        100,
        EVENTS,
        10,
        120,
    ));
    let mut kills = 0u64;
    while !writer.is_finished() {
        let mut relay = RelayProcess::spawn(&env);
        let alive_for = Duration::from_millis(random_between(300, 2000));
        if tokio::time::timeout(alive_for, relay.child.wait())
            .await
            .is_ok()
        {
            panic!("the relay exited by itself:\n{}", relay.log_text());
        }
        relay.signal("KILL");
        relay.child.wait().await.unwrap();
        kills += 1;
    }
    assert_eq!(writer.await.unwrap(), EVENTS);
    assert!(kills >= 3, "only {kills} kills happened");

    let mut last = RelayProcess::spawn(&env);
    let expected = outbox_event_ids(&world.db.pool).await;
    assert_eq!(expected.len(), EVENTS);
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    let give_up = Instant::now() + DEADLINE;
    while !expect_all(&reader, &expected) {
        assert!(Instant::now() < give_up, "not every event arrived");
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(500)));
    }
    last.signal("TERM");
    assert!(last.child.wait().await.unwrap().success());

    assert_first_occurrences_in_version_order(&reader.received);
    let duplicates = reader.received.len() as u64 - expected.len() as u64;
    let bound = kills * max_in_flight * batch_size;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed {kills} kills x {max_in_flight} batches x {batch_size}"
    );
    eprintln!(
        "{kills} kills, {} messages, {duplicates} duplicates",
        reader.received.len()
    );
}

async fn sigterm_mid_stream_exits_zero_and_a_restart_publishes_no_duplicates(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let env = world.relay_env();
    let writer = tokio::spawn(stream_events(
        world.db.pool.clone(),
        "task",
        50,
        3000,
        10,
        150,
    ));
    let mut relay = RelayProcess::spawn(&env);
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    reader
        .read_until("the stream to flow", DEADLINE, |r| r.len() >= 200)
        .await;
    relay.signal("TERM");
    let status = tokio::time::timeout(DEADLINE, relay.child.wait())
        .await
        .expect("the relay exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", relay.log_text());

    writer.await.unwrap();
    let mut restarted = RelayProcess::spawn(&env);
    let expected = outbox_event_ids(&world.db.pool).await;
    let give_up = Instant::now() + DEADLINE;
    while !expect_all(&reader, &expected) {
        assert!(
            Instant::now() < give_up,
            "not every event arrived after the restart"
        );
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(500)));
    }
    tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(500)));
    assert_eq!(
        reader.received.len(),
        expected.len(),
        "each event exactly once: the stored position matched what Kafka acknowledged"
    );
    restarted.signal("TERM");
    assert!(restarted.child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_dashboard_use_is_exposed() {
    let world = World::new().await;
    let relay = RelayProcess::spawn(&world.relay_env());
    let address = relay.http_address().await;
    let wanted = taskpool_testkit::monitoring::referenced_metrics("taskpool_relay_");
    assert!(wanted.len() >= 8, "{wanted:?}");
    // Once it leads, the relay has connected and knows its topics.
    let body = wait_for("the relay to take the lease", DEADLINE, || async {
        let (status, body) = http_get(&address, "/metrics").await?;
        (status == 200 && body.contains("\ntaskpool_relay_leader 1")).then_some(body)
    })
    .await;
    assert_eq!(
        taskpool_testkit::monitoring::missing_from(&body, &wanted),
        Vec::<String>::new(),
        "metrics deploy/ uses that the relay does not expose"
    );
}

async fn leader_gauge(address: &str) -> Option<f64> {
    let (_, body) = http_get(address, "/metrics").await?;
    metric(&body, "taskpool_relay_leader")
}

async fn published(address: &str) -> f64 {
    let (_, body) = http_get(address, "/metrics").await.expect("metrics");
    metric(&body, "taskpool_relay_published_events_total").expect("published metric")
}

async fn two_relays_publish_one_at_a_time_and_the_standby_takes_over_within_10_seconds(
    horizon: Horizon,
) {
    let world = World::new().await.with_horizon(horizon);
    let mut env = world.relay_env();
    // The shipped lease defaults.
    for (key, value) in [
        ("LEASE__TTL_MS", "6000"),
        ("LEASE__RENEW_INTERVAL_MS", "1000"),
        ("LEASE__SAFETY_MARGIN_MS", "1500"),
    ] {
        env.insert(
            format!("{}{key}", kafka_relay::config::ENV_PREFIX),
            value.into(),
        );
    }
    let mut first = RelayProcess::spawn(&env);
    let first_address = first.http_address().await;
    wait_for("the first relay to lead", DEADLINE, || async {
        (leader_gauge(&first_address).await == Some(1.0)).then_some(())
    })
    .await;
    let mut second = RelayProcess::spawn(&env);
    let second_address = second.http_address().await;
    let (status, body) = http_get(&second_address, "/health").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"leader\":false"), "{body}");
    let (status, body) = http_get(&second_address, "/no/such/path").await.unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\":\"not_found\""), "{body}");

    let writer = tokio::spawn(stream_events(
        world.db.pool.clone(),
        "before",
        20,
        600,
        5,
        100,
    ));
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    while !writer.is_finished() {
        let leaders = [
            leader_gauge(&first_address).await,
            leader_gauge(&second_address).await,
        ];
        assert_eq!(leaders, [Some(1.0), Some(0.0)], "exactly one leader");
        assert_eq!(
            published(&second_address).await,
            0.0,
            "the standby publishes nothing"
        );
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(100)));
    }
    writer.await.unwrap();
    assert!(published(&first_address).await > 0.0);

    first.signal("KILL");
    first.child.wait().await.unwrap();
    let killed_at = Instant::now();
    wait_for(
        "the standby to take over",
        Duration::from_secs(10),
        || async { (leader_gauge(&second_address).await == Some(1.0)).then_some(()) },
    )
    .await;
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_secs(10),
        "took over after {takeover:?}"
    );
    eprintln!("standby took over {takeover:?} after the leader was killed");

    stream_events(world.db.pool.clone(), "after", 20, 100, 5, 100).await;
    let expected = outbox_event_ids(&world.db.pool).await;
    let give_up = Instant::now() + DEADLINE;
    while !expect_all(&reader, &expected) {
        assert!(Instant::now() < give_up, "events were lost in the takeover");
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_millis(200)));
    }
    assert_first_occurrences_in_version_order(&reader.received);
    second.signal("TERM");
    assert!(second.child.wait().await.unwrap().success());
}

async fn status_prints_what_is_published_what_is_left_and_the_leader(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let env = world.relay_env();
    let mut relay = RelayProcess::spawn(&env);
    world.commit(vec![created("a"), created("b")]).await;
    wait_for("the events to be published", DEADLINE, || async {
        let position = kafka_relay::outbox::load_position(&world.db.pool, &world.relay_name)
            .await
            .ok()?;
        (position.position >= 2).then_some(())
    })
    .await;
    let status = || async {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
            .arg("status")
            .envs(&env)
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let text = status().await;
    assert!(
        text.contains("published:   through outbox row 2 "),
        "{text}"
    );
    assert!(text.contains("to publish:  nothing"), "{text}");
    assert!(text.contains("newest row:  2"), "{text}");
    assert!(text.contains("leader:      "), "{text}");
    assert!(!text.contains("leader:      none"), "{text}");
    relay.signal("TERM");
    assert!(relay.child.wait().await.unwrap().success());

    world.commit(vec![created("c")]).await;
    let text = status().await;
    assert!(text.contains("to publish:  1 committed events"), "{text}");
    assert!(text.contains("newest row:  3"), "{text}");
    assert!(text.contains("dead letters: 0"), "{text}");

    // For scripts and probes: JSON, and exit 4 when a limit is exceeded.
    let probe = |limits: &'static [&'static str]| {
        let env = env.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
                .args(["status", "--json"])
                .args(limits)
                .envs(&env)
                .output()
                .await
                .unwrap()
        }
    };
    let within = probe(&["--max-lag-events", "1", "--max-dead-letters", "0"]).await;
    assert_eq!(within.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&within.stdout).unwrap();
    assert_eq!(json["lagEvents"], 1);
    assert_eq!(json["newestRow"], 3);
    assert_eq!(json["deadLetters"], 0);
    assert_eq!(json["relay"], world.relay_name.as_str());
    let beyond = probe(&["--max-lag-events", "0"]).await;
    assert_eq!(beyond.status.code(), Some(4));
    let said = String::from_utf8_lossy(&beyond.stderr);
    assert!(said.contains("1 events to publish (at most 0)"), "{said}");

    // An open transaction that wrote to the outbox: what the relay waits for, named.
    let mut open = world.db.pool.begin().await.unwrap();
    let mut collector = Collector::new();
    collector.record(created("open")).unwrap();
    collector.flush::<PgStore>(&mut *open).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *open)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&probe(&[]).await.stdout).unwrap();
    assert_eq!(json["horizon"], horizon_setting(horizon), "{json}");
    let oldest = &json["oldestOpenTransaction"];
    assert!(oldest["openSeconds"].as_f64().is_some(), "{json}");
    match horizon {
        Horizon::OutboxWriters => assert_eq!(oldest["pid"], pid, "{json}"),
        // The server's oldest may be another test's transaction; one is open at least.
        Horizon::AllTransactions => assert!(oldest["pid"].as_i64().is_some(), "{json}"),
    }
    let text = status().await;
    assert!(text.contains("waits for:   "), "{text}");
    open.rollback().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&probe(&[]).await.stdout).unwrap();
    if horizon == Horizon::OutboxWriters {
        assert_eq!(
            json["oldestOpenTransaction"],
            serde_json::Value::Null,
            "{json}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_configuration_key_exits_with_status_2() {
    let world = World::new().await;
    let mut env = world.relay_env();
    env.insert(
        format!("{}RELAY__BATCHSIZE", kafka_relay::config::ENV_PREFIX),
        "5".into(),
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .arg("run")
        .envs(&env)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("batchsize"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_never_appears_in_the_log() {
    const PASSWORD: &str = "Pw-0042-never-logged";
    let world = World::new().await;
    let mut env = world.relay_env();
    let prefix = kafka_relay::config::ENV_PREFIX;
    let url = env[&format!("{prefix}DATABASE__URL")].clone();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    // The test server trusts local connections: the password is sent only if asked for, and
    // must not show up anywhere in the log, debug level included.
    env.insert(
        format!("{prefix}DATABASE__URL"),
        format!("{scheme}://{user}:{PASSWORD}@{host}"),
    );
    env.insert(format!("{prefix}LOG__LEVEL"), "debug".into());
    let mut relay = RelayProcess::spawn(&env);
    let mut reader = KafkaReader::new(&world.bootstrap, &[world.tasks_topic()]).await;
    world.commit(vec![created("secret-test")]).await;
    reader
        .read_until("the event", DEADLINE, |r| !r.is_empty())
        .await;
    relay.signal("TERM");
    assert!(relay.child.wait().await.unwrap().success());
    let log = relay.log_text();
    assert!(log.contains("relay started"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

/// A halted relay stays up, so that its halted gauge and `/health` can be seen (the alert
/// `TaskpoolRelayHalted` needs a scrape); stopped, it exits with status 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_relay_stays_up_and_says_so_until_it_is_stopped() {
    let world = World::new().await;
    let mut env = world.relay_env();
    let prefix = kafka_relay::config::ENV_PREFIX;
    env.insert(format!("{prefix}KAFKA__MESSAGE_MAX_BYTES"), "20000".into());
    env.insert(
        format!("{prefix}RELAY__ON_PERMANENT_FAILURE"),
        "halt".into(),
    );
    let mut relay = RelayProcess::spawn(&env);
    let address = relay.http_address().await;
    let mut huge = new_task("huge");
    huge.payload =
        taskpool_schemas::Payload::from_value(serde_json::json!({ "blob": "x".repeat(50_000) }))
            .unwrap();
    world
        .commit(vec![taskpool_collector::EngineEvent::TaskCreated {
            task_id: "huge".into(),
            task: huge,
        }])
        .await;
    wait_for("the halted gauge at 1 on /metrics", DEADLINE, || async {
        let (_, body) = http_get(&address, "/metrics").await?;
        (metric(&body, "taskpool_relay_halted") == Some(1.0)).then_some(())
    })
    .await;
    let (status, body) = http_get(&address, "/health").await.expect("health");
    assert_eq!(status, 503);
    assert!(body.contains("halted"), "{body}");
    relay.signal("TERM");
    assert_eq!(relay.child.wait().await.unwrap().code(), Some(3));
}

with_either_horizon!(
    sigkill_at_random_moments_loses_nothing_and_keeps_per_key_order,
    sigterm_mid_stream_exits_zero_and_a_restart_publishes_no_duplicates,
    two_relays_publish_one_at_a_time_and_the_standby_takes_over_within_10_seconds,
    status_prints_what_is_published_what_is_left_and_the_leader,
);
