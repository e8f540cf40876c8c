//! `kafka-relay dead-letters` as an operator uses it: events too large for the broker's limit
//! are dead-lettered; `list` shows them with the reason, `show` gives one in full, `retry`
//! with the cause still there keeps it (with the new reason), `retry` after raising the limit
//! publishes it and removes it, `discard` removes another and logs it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use taskpool_collector::EngineEvent;
use taskpool_schemas::Payload;
use taskpool_testkit::wait_for;

const DEADLINE: Duration = Duration::from_secs(60);

async fn tool(env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .arg("dead-letters")
        .args(args)
        .envs(env)
        .output()
        .await
        .unwrap()
}

fn huge(id: &str) -> EngineEvent {
    let mut task = new_task(id);
    task.payload = Payload::from_value(serde_json::json!({ "blob": "x".repeat(50_000) })).unwrap();
    EngineEvent::TaskCreated {
        task_id: id.into(),
        task,
    }
}

async fn dead_letters_are_listed_retried_after_the_fix_and_discarded(horizon: Horizon) {
    let world = World::new().await.with_horizon(horizon);
    let limit = ("KAFKA__MESSAGE_MAX_BYTES", "20000");
    let relay = RunningRelay::start(world.relay_config(&[limit])).await;
    world.commit(vec![huge("first")]).await;
    world.commit(vec![huge("second")]).await;
    world.commit(vec![created("small")]).await;
    wait_for("two dead letters", DEADLINE, || async {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM taskpool_relay_dead_letters")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
        (count == 2).then_some(())
    })
    .await;
    relay.stop().await;

    let mut env = world.relay_env();
    env.insert(
        format!(
            "{}KAFKA__MESSAGE_MAX_BYTES",
            kafka_relay::config::ENV_PREFIX
        ),
        "20000".into(),
    );
    let listed = tool(&env, &["list", "--json"]).await;
    assert!(listed.status.success());
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = letters
        .iter()
        .map(|l| l["aggregateId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["first", "second"]);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("too large")
    );
    let first = letters[0]["position"].as_i64().unwrap().to_string();
    let second = letters[1]["position"].as_i64().unwrap().to_string();
    let shown = tool(&env, &["show", &first]).await;
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["eventType"], "TaskCreated");
    assert!(shown["payloadBytes"].as_i64().unwrap() > 50_000);

    // The cause is still there: refused again, kept, exit status 1.
    let again = tool(&env, &["retry", &first]).await;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        tool(&env, &["list", "--json"])
            .await
            .stdout
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        2
    );

    // Limit raised: published, removed.
    env.insert(
        format!(
            "{}KAFKA__MESSAGE_MAX_BYTES",
            kafka_relay::config::ENV_PREFIX
        ),
        "1000000".into(),
    );
    let retried = tool(&env, &["retry", &first]).await;
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    let mut reader = world.reader().await;
    reader
        .read_until("the retried event", DEADLINE, |r| {
            r.iter().any(|m| m.key == "first")
        })
        .await;

    // Discarded: gone, and the log says what it was.
    let discarded = tool(&env, &["discard", &second]).await;
    assert!(discarded.status.success());
    let log = String::from_utf8_lossy(&discarded.stderr);
    assert!(
        log.contains("dead letter discarded") && log.contains("second"),
        "{log}"
    );
    let left = tool(&env, &["list", "--json"]).await;
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert_eq!(
        tool(&env, &["discard", &second]).await.status.code(),
        Some(1)
    );
}

with_either_horizon!(dead_letters_are_listed_retried_after_the_fix_and_discarded,);
