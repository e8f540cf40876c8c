//! tasklist-api as a process: what its exit status tells a supervisor.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_cannot_run_ends_the_process_with_a_failure_status() {
    let world = World::new().await;
    let prefix = tasklist_api::config::ENV_PREFIX;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .arg("run")
        .envs(world.env())
        .env(format!("{prefix}HTTP__LISTEN"), "127.0.0.1:0")
        .env(format!("{prefix}LOG__LEVEL"), "debug")
        // librdkafka refuses to create a consumer with a property it does not know.
        .env(format!("{prefix}KAFKA__CONSUMER__NO_SUCH_PROPERTY"), "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tasklist-api");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the process ends by itself instead of serving without its projection")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("projection stopped"), "{stderr}");
    assert!(stderr.contains("tasklist-api started"), "{stderr}");
    assert!(
        !stderr.contains(SECRET),
        "the token secret never appears in the log"
    );
}

/// `tasklist-api status` as a probe: the given arguments, this world's settings.
async fn status(world: &World, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .arg("status")
        .args(args)
        .envs(world.env())
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_lag_and_dead_letters_and_exits_4_beyond_a_limit() {
    let world = World::new().await;
    for id in ["a", "b", "c"] {
        world
            .send_task(&task_event(
                id,
                1,
                Some("kermit"),
                &[],
                taskpool_schemas::TaskState::Active,
            ))
            .await;
    }
    world
        .send(
            &format!("{}.tasks", world.prefix),
            "junk",
            b"not avro".to_vec(),
        )
        .await;

    // Nothing projected yet: four messages behind, and a limit of three is exceeded.
    let before = status(&world, &["--json", "--max-lag-events", "3"]).await;
    assert_eq!(
        before.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    assert_eq!(json["lagEvents"], 4);
    assert_eq!(json["group"], world.group.as_str());
    assert!(String::from_utf8_lossy(&before.stderr).contains("4 events not yet projected"));

    // Projected (and the junk dead-lettered, offsets committed): no lag, one dead letter.
    let service = world.start().await;
    world.wait_for_version("c", 1).await;
    taskpool_testkit::wait_for("the projection to commit its offsets", DEADLINE, || async {
        let output = status(&world, &["--json"]).await;
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (json["lagEvents"] == 0 && json["deadLetters"] == 1).then_some(())
    })
    .await;
    let within = status(
        &world,
        &["--max-lag-events", "0", "--max-dead-letters", "1"],
    )
    .await;
    assert_eq!(within.status.code(), Some(0));
    let text = String::from_utf8_lossy(&within.stdout);
    assert!(text.contains("not projected:  0 events"), "{text}");
    assert!(text.contains("dead letters:   1"), "{text}");
    let beyond = status(&world, &["--max-dead-letters", "0"]).await;
    assert_eq!(beyond.status.code(), Some(4));
    service.stop().await;
}

async fn dead_letter_tool(world: &World, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .arg("dead-letters")
        .args(args)
        .envs(world.env())
        .output()
        .await
        .unwrap()
}

fn listed(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_after_the_fix_and_discarded() {
    use mongodb::bson::{Binary, Document, doc, spec::BinarySubtype};
    let world = World::new().await;
    let service = world.start().await;
    world
        .send(
            &format!("{}.tasks", world.prefix),
            "junk",
            b"not avro".to_vec(),
        )
        .await;
    let letters = world.mongo().await.collection::<Document>("dead_letters");
    taskpool_testkit::wait_for("the junk's dead letter", DEADLINE, || async {
        (letters.count_documents(doc! {}).await.unwrap() == 1).then_some(())
    })
    .await;
    // A dead letter whose cause is gone by now: a valid event MongoDB once refused.
    let event = task_event(
        "fixed",
        1,
        Some("kermit"),
        &[],
        taskpool_schemas::TaskState::Active,
    );
    letters
        .insert_one(doc! {
            "topic": format!("{}.tasks", world.prefix), "partition": 0, "offset": 99_i64,
            "key": "fixed",
            "payload": Binary { subtype: BinarySubtype::Generic, bytes: taskpool_schemas::encode(&event).unwrap() },
            "reason": "not applicable: MongoDB error 10334: too large",
            "failedAt": 1_i64,
        })
        .await
        .unwrap();

    let all = listed(&dead_letter_tool(&world, &["list", "--json"]).await);
    assert_eq!(all.len(), 2);
    let by_key = |key: &str| {
        all.iter()
            .find(|letter| letter["key"] == key)
            .unwrap_or_else(|| panic!("a dead letter with key {key}: {all:?}"))
    };
    assert!(
        by_key("junk")["reason"]
            .as_str()
            .unwrap()
            .starts_with("undecodable")
    );
    // Oldest failure first.
    assert_eq!(all[0]["key"], "fixed");
    let junk = by_key("junk")["id"].as_str().unwrap().to_string();
    let fixed = by_key("fixed")["id"].as_str().unwrap().to_string();
    let shown = dead_letter_tool(&world, &["show", &fixed]).await;
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["key"], "fixed");

    // Still undecodable: kept, exit 1. Fixed: applied, removed.
    assert_eq!(
        dead_letter_tool(&world, &["retry", &junk])
            .await
            .status
            .code(),
        Some(1)
    );
    let retried = dead_letter_tool(&world, &["retry", &fixed]).await;
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert_eq!(world.stored_version("fixed").await, Some(1));
    let left = listed(&dead_letter_tool(&world, &["list", "--json"]).await);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], junk.as_str());

    // Discarded: gone, and the log says what it was.
    let discarded = dead_letter_tool(&world, &["discard", &junk]).await;
    assert!(discarded.status.success());
    let log = String::from_utf8_lossy(&discarded.stderr);
    assert!(
        log.contains("dead letter discarded") && log.contains("undecodable"),
        "{log}"
    );
    assert!(listed(&dead_letter_tool(&world, &["list", "--json"]).await).is_empty());
    assert_eq!(
        dead_letter_tool(&world, &["discard", "not-an-id"])
            .await
            .status
            .code(),
        Some(1)
    );
    service.stop().await;
}

/// A shutdown trigger dropped without being pulled stops the service as `trigger()` does:
/// every part ends (the HTTP server and its open streams, the stream hub, the projection, the
/// outcome reader), so nothing keeps running for an owner that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_shutdown_trigger_stops_every_part_of_the_service() {
    let world = World::new().await;
    let service = world.start().await;
    let address = service.address.clone();
    let bearer = token("kermit", &["muppets"]);
    let mut stream = StreamClient::open(&address, "/api/tasks/stream", &bearer, None).await;
    let opened = tokio::time::timeout(DEADLINE, stream.next()).await;
    assert!(
        matches!(opened, Ok(Some(_))),
        "the stream serves its snapshot"
    );
    tokio::time::timeout(DEADLINE, service.stop_by_dropping_the_trigger())
        .await
        .expect("every part of the service ends once its trigger is dropped");
    let ended =
        tokio::time::timeout(DEADLINE, async { while stream.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the open stream ends");
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "nothing listens any more"
    );
}
