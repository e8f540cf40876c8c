//! The `taskpool` binary as a user runs it: the demo writes for a while, the process is killed
//! with SIGKILL, and a new process on the same data shows exactly the committed state: every
//! task the demo's own tables hold as active, with its last fields, to exactly the users who
//! may see it, through `GET /api/tasks` and through a stream's snapshot alike. Twice, so the
//! second run also continues the first one's data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use taskpool_core::SqliteStore;
use taskpool_demo::truth::visible_to;
use taskpool_demo::{DemoConfig, DemoDb, TaskRow};
use taskpool_testkit::http::{StreamClient, get};
use taskpool_testkit::wait_for;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    address: String,
}

/// Starts the binary on `dir` and waits for the line that gives its URL.
async fn start(dir: &Path, demo: bool) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskpool"))
        .env("TASKPOOL__DATA__DIR", dir)
        .env("TASKPOOL__HTTP__LISTEN", "127.0.0.1:0")
        .env("TASKPOOL__DEMO__ENABLED", demo.to_string())
        .env("TASKPOOL__DEMO__RATE", "60")
        .env("TASKPOOL__LOG__FORMAT", "json")
        .env("TASKPOOL__LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the taskpool binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("taskpool printed its URL");
            if line.contains("Open http://") {
                return line;
            }
        }
    })
    .await
    .expect("taskpool starts within the deadline");
    let url = line.split("Open http://").nth(1).unwrap();
    let address = url.split('/').next().unwrap().to_string();
    Node { child, address }
}

async fn demo_tasks(dir: &Path) -> Vec<TaskRow> {
    let pool = taskpool::open_database(&dir.join("taskpool.sqlite"))
        .await
        .unwrap();
    let tasks = SqliteStore::all_tasks(&pool).await.unwrap_or_default();
    pool.close().await;
    tasks
}

/// Checks every demo user's list and stream against the demo's tables.
async fn check(node: &Node, truth: &[TaskRow]) {
    let users = get(&node.address, "/api/dev/users", None).await.json();
    let mut seen_any = false;
    for user in DemoConfig::default().users {
        let token = users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user.name.as_str())
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let expected = visible_to(truth, &user.name, &user.groups);
        seen_any |= !expected.is_empty();
        let listed = get(&node.address, "/api/tasks?limit=500", Some(&token))
            .await
            .json();
        let listed: BTreeMap<String, Value> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
            .collect();
        assert_eq!(
            listed.keys().collect::<BTreeSet<_>>(),
            expected.keys().collect::<BTreeSet<_>>(),
            "{}'s list",
            user.name
        );
        for (id, task) in &listed {
            assert!(
                expected[id].shown_as(task),
                "{id}: {task} against {:?}",
                expected[id]
            );
        }
        let mut stream = StreamClient::open(&node.address, "/api/tasks/stream", &token, None).await;
        let mut streamed = BTreeSet::new();
        loop {
            let event = stream.expect("the snapshot", DEADLINE).await;
            if event.name == "marker" {
                break;
            }
            streamed.insert(event.data["id"].as_str().unwrap().to_string());
        }
        assert_eq!(
            streamed,
            listed.keys().cloned().collect(),
            "{}'s stream",
            user.name
        );
    }
    assert!(seen_any, "the demo made tasks someone sees");
}

#[tokio::test]
async fn after_sigkill_a_restart_shows_exactly_the_committed_tasks() {
    let dir = std::env::temp_dir().join(format!("taskpool-node-{}", uuid_like()));
    let mut made = 0;
    for round in 1..=2 {
        let mut node = start(&dir, true).await;
        // Let the demo commit a good number of steps past the previous round's.
        let target = made + 60;
        made = wait_for("the demo to make tasks", DEADLINE, || async {
            let count = demo_tasks(&dir).await.len();
            (count >= target).then_some(count)
        })
        .await;
        node.child.start_kill().unwrap();
        node.child.wait().await.unwrap();

        let node = start(&dir, false).await;
        let truth = demo_tasks(&dir).await;
        assert!(
            truth.len() >= made,
            "round {round}: committed tasks are still there"
        );
        assert!(
            truth.iter().any(|t| t.state != "ACTIVE"),
            "tasks were completed or deleted"
        );
        check(&node, &truth).await;
        drop(node);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
