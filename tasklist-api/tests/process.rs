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
