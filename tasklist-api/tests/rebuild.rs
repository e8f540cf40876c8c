//! `tasklist-api rebuild` as a process against a running service: the switch under load, and
//! an interrupted rebuild.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;
use support::*;
use tasklist_api::mongo::generation::{self, Generation};
use taskpool_schemas::TaskState;
use taskpool_testkit::wait_for;
use tokio::io::{AsyncBufReadExt, BufReader};

const STREAM: &str = "/api/tasks/stream";
const USERS: [(&str, &[&str]); 3] = [
    ("ann", &["red"]),
    ("bob", &["blue"]),
    ("cyd", &["red", "blue"]),
];

/// The `version`-th event of task `n`: who sees it changes with the version, and every
/// seventh version completes it.
fn nth_event(n: u64, version: i64) -> taskpool_schemas::TaskEvent {
    let groups: &[&str] = if (n + version as u64).is_multiple_of(2) {
        &["red"]
    } else {
        &["blue"]
    };
    let assignee = (version % 3 == 0).then_some("ann");
    let state = if version % 7 == 0 {
        TaskState::Completed
    } else {
        TaskState::Active
    };
    task_event(&format!("task-{n}"), version, assignee, groups, state)
}

/// The view's documents of the active generation, as JSON by id.
async fn active_view(database: &mongodb::Database) -> BTreeMap<String, Value> {
    let active = generation::active(database).await.unwrap();
    view_of(database, active).await
}

async fn view_of(database: &mongodb::Database, generation: Generation) -> BTreeMap<String, Value> {
    let mut documents = BTreeMap::new();
    for (kind, collection) in [
        ("task", generation.tasks()),
        ("entry", generation.data_entries()),
    ] {
        let found: Vec<Document> = database
            .collection::<Document>(&collection)
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for document in found {
            let id = document.get_str("_id").unwrap().to_string();
            // Fence documents come and go in the tasks collection; they are not the view.
            if !id.starts_with('~') {
                documents.insert(
                    format!("{kind}/{id}"),
                    Bson::Document(document).into_relaxed_extjson(),
                );
            }
        }
    }
    documents
}

/// A stream client that reconnects (with its last id) whenever its stream ends, keeping the
/// ids of the tasks it holds where the test can see them.
struct Follower {
    held: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

fn follow(address: String, user: &'static str, groups: &'static [&'static str]) -> Follower {
    let held = Arc::new(Mutex::new(BTreeSet::new()));
    let shared = held.clone();
    let task = tokio::spawn(async move {
        let mut tasklist = Tasklist::default();
        let mut last_id: Option<String> = None;
        loop {
            let mut client =
                StreamClient::open(&address, STREAM, &token(user, groups), last_id.as_deref())
                    .await;
            assert_eq!(client.status, 200, "{user}'s stream opens");
            while let Some(event) = client.next().await {
                tasklist.apply(&event);
                *shared.lock().unwrap() = tasklist.ids();
            }
            last_id = client.last_id.clone();
        }
    });
    Follower { held, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_switches_without_a_failed_request_and_equals_the_projection() {
    let world = World::new().await;
    const TASKS: u64 = 60;
    let versions: Arc<Mutex<BTreeMap<u64, i64>>> = Arc::default();
    for n in 0..TASKS {
        for version in 1..=3 {
            world.send_task(&nth_event(n, version)).await;
        }
        versions.lock().unwrap().insert(n, 3);
    }
    let service = world.start().await;
    world
        .wait_for_version(&format!("task-{}", TASKS - 1), 3)
        .await;
    let clients: Vec<_> = USERS
        .iter()
        .map(|(user, groups)| {
            (
                *user,
                *groups,
                follow(service.address.clone(), user, groups),
            )
        })
        .collect();

    // Events keep flowing and requests keep coming while the rebuild runs.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(TASKS * 3));
    let producer = {
        let (stop, sent, versions) = (stop.clone(), sent.clone(), versions.clone());
        let world = world.clone();
        tokio::spawn(async move {
            let mut n = 0;
            // A steady stream of changes, one every 10 ms.
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let version = {
                    let mut versions = versions.lock().unwrap();
                    let version = versions[&n] + 1;
                    versions.insert(n, version);
                    version
                };
                world.send_task(&nth_event(n, version)).await;
                sent.fetch_add(1, Ordering::Relaxed);
                n = (n + 7) % TASKS;
            }
        })
    };
    let requests = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let poller = {
        let (stop, requests, failures) = (stop.clone(), requests.clone(), failures.clone());
        let address = service.address.clone();
        tokio::spawn(async move {
            let bearer = token("cyd", &["red", "blue"]);
            while !stop.load(Ordering::Relaxed) {
                let reply = get(&address, "/api/tasks?limit=200", Some(&bearer)).await;
                requests.fetch_add(1, Ordering::Relaxed);
                if reply.status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", reply.status, reply.body));
                }
            }
        })
    };

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .args(["rebuild", "--switch-grace-secs", "2"])
        // A rebuild serves no one: it needs no identity setting.
        .envs(
            world
                .env()
                .into_iter()
                .filter(|(key, _)| !key.contains("IDENTITY")),
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rebuilt: generation 1 replaces 0"),
        "{stdout}"
    );
    assert!(stderr.contains("switched to generation 1"), "{stderr}");
    // Without a terminal, progress comes as plain lines.
    assert!(
        stderr.contains("rebuild: read: ") && !stderr.contains('\r'),
        "{stderr}"
    );
    let requests_during_rebuild = requests.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();
    poller.await.unwrap();
    assert!(
        requests_during_rebuild > 10,
        "the API was asked during the rebuild"
    );
    assert_eq!(
        *failures.lock().unwrap(),
        Vec::<String>::new(),
        "no request failed"
    );

    let database = world.mongo().await;
    assert_eq!(generation::active(&database).await.unwrap(), Generation(1));
    assert_eq!(
        generation::present(&database).await.unwrap(),
        vec![Generation(1)],
        "the old generation is dropped"
    );

    // The reference: the same topics projected incrementally, from scratch, by another group.
    let mut reference = world.config();
    reference.mongodb.database = format!("{}ref", world.database);
    reference.kafka.group_id = format!("{}ref", world.group);
    let metrics = Arc::new(taskpool_tasklist::metrics::Metrics::default());
    let store =
        tasklist_api::mongo::store::MongoStore::connect(&reference.mongodb, metrics.clone())
            .await
            .unwrap();
    let (trigger, shutdown) = taskpool_service::shutdown::channel();
    let projection = tokio::spawn(tasklist_api::kafka::projection::run(
        reference.kafka.clone(),
        store.clone(),
        metrics.clone(),
        shutdown,
    ));
    let total = sent.load(Ordering::Relaxed);
    wait_for(
        "the reference projection to consume everything",
        DEADLINE,
        || async { (metrics.consumed_events.get() >= total).then_some(()) },
    )
    .await;
    trigger.trigger();
    projection.await.unwrap().unwrap();
    let expected = view_of(store.database(), Generation(0)).await;
    assert_eq!(expected.len() as u64, TASKS);

    // The live service's rebuilt view catches up to exactly the reference.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let view = active_view(&database).await;
        if view == expected {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let differing: Vec<(&String, Option<&Value>, Option<&Value>)> = expected
                .keys()
                .chain(view.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| view.get(*k) != expected.get(*k))
                .map(|k| (k, view.get(k), expected.get(k)))
                .take(2)
                .collect();
            panic!(
                "the rebuilt view ({} documents; {:?} in {:?}) differs from the reference: {differing:#?}",
                view.len(),
                database.list_collection_names().await.unwrap(),
                generation::active(&database).await.unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every client holds exactly the active tasks it may see, as the API lists them.
    for (user, groups, follower) in &clients {
        let bearer = token(user, groups);
        let listed: BTreeSet<String> = get(&service.address, "/api/tasks?limit=200", Some(&bearer))
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        let visible: BTreeSet<String> = expected
            .values()
            .filter(|t| t["state"] == "ACTIVE")
            .filter(|t| {
                t["assignee"] == *user
                    || t["candidateGroups"]
                        .as_array()
                        .is_some_and(|g| g.iter().any(|g| groups.contains(&g.as_str().unwrap())))
            })
            .map(|t| t["_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, visible, "{user}'s list");
        wait_for(
            &format!("{user}'s stream to hold its tasks"),
            DEADLINE,
            || async { (*follower.held.lock().unwrap() == visible).then_some(()) },
        )
        .await;
    }
    for (_, _, follower) in clients {
        follower.task.abort();
    }
    let _ = store.database().drop().await;
    service.stop().await;
}

/// Sends many events at once (the producer batches them).
async fn flood(world: &World, tasks: u64, versions: i64) {
    for version in 1..=versions {
        let sends: Vec<_> = (0..tasks)
            .map(|n| {
                let event = nth_event(n, version);
                async move { world.send_task(&event).await }
            })
            .collect();
        futures::future::join_all(sends).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_leaves_the_live_view_untouched() {
    let world = World::new().await;
    flood(&world, 50, 2).await;
    let service = world.start().await;
    world.wait_for_version("task-49", 2).await;
    service.stop().await;
    // Enough history that reading it takes a while.
    flood(&world, 10_000, 5).await;
    let database = world.mongo().await;
    let before = view_of(&database, Generation(0)).await;
    assert_eq!(before.len(), 50);

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .arg("rebuild")
        .envs(world.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let reading = line.contains("read: ") && line.contains("events to read");
        seen.push(line);
        if reading {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("events to read")),
        "the rebuild started reading: {seen:?}"
    );
    // Ctrl-C, as a person at the terminal would press it.
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line);
    }
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130), "{seen:#?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("interrupted before the switch; the live view is untouched")),
        "{seen:#?}"
    );
    assert!(!seen.iter().any(|l| l.contains("switched")), "{seen:#?}");

    assert_eq!(generation::active(&database).await.unwrap(), Generation(0));
    assert_eq!(
        generation::present(&database).await.unwrap(),
        vec![Generation(0)],
        "the unfinished generation is gone"
    );
    assert_eq!(view_of(&database, Generation(0)).await, before);
    let lock = database
        .collection::<Document>(generation::META)
        .find_one(doc! { "_id": "rebuild" })
        .await
        .unwrap();
    assert_eq!(lock, None, "the rebuild lock is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rebuild_is_refused_while_one_runs_and_a_killed_one_s_lock_expires() {
    let world = World::new().await;
    let database = world.mongo().await;
    generation::lock(&database, "pid 1 (elsewhere)", 60_000)
        .await
        .unwrap();
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_tasklist-api"))
        .arg("rebuild")
        .envs(world.env())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another rebuild is running (pid 1 (elsewhere)"),
        "{stderr}"
    );
    assert_eq!(generation::present(&database).await.unwrap(), vec![]);

    // A lock nobody renewed for longer than the limit is taken over.
    let taken = generation::lock(&database, "pid 2 (here)", 0).await;
    assert!(taken.is_ok(), "{taken:?}");
    generation::unlock(&database, "pid 2 (here)").await.unwrap();
    assert!(generation::lock(&database, "pid 3", 60_000).await.is_ok());
}
