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
