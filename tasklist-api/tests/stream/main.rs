//! The live stream against a real broker and a real MongoDB-wire server.

#[path = "../support/mod.rs"]
mod support;

// Many clients and changes: each ends with exactly its tasks, across reconnects.
mod exactness;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::*;
use taskpool_schemas::{Payload, TaskState};

const STREAM: &str = "/api/tasks/stream";

/// Opens a stream and reads its snapshot up to the marker.
async fn connect(address: &str, user: &str, groups: &[&str]) -> (StreamClient, Tasklist) {
    let mut client = StreamClient::open(address, STREAM, &token(user, groups), None).await;
    assert_eq!(client.status, 200);
    let mut tasklist = Tasklist::default();
    loop {
        let event = client.expect("the snapshot and marker", DEADLINE).await;
        if event.name == "marker" {
            assert_eq!(
                event.data["tasks"].as_u64().unwrap() as usize,
                tasklist.tasks.len()
            );
            return (client, tasklist);
        }
        assert_eq!(event.name, "upsert", "only upserts before the marker");
        tasklist.apply(&event);
    }
}

/// Reads events until `done` holds for the client's tasks.
async fn read_until(
    client: &mut StreamClient,
    tasklist: &mut Tasklist,
    what: &str,
    done: impl Fn(&Tasklist) -> bool,
) {
    while !done(tasklist) {
        let event = client.expect(what, DEADLINE).await;
        tasklist.apply(&event);
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_its_tasks_then_the_marker_then_a_new_task_assigned_to_it() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "mine",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "group",
            1,
            None,
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "other",
            1,
            Some("piggy"),
            &["frogs"],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "done",
            1,
            Some("kermit"),
            &[],
            TaskState::Completed,
        ))
        .await;
    for id in ["mine", "group", "other", "done"] {
        world.wait_for_version(id, 1).await;
    }

    let (mut client, mut tasklist) = connect(&service.address, "kermit", &["muppets"]).await;
    assert_eq!(tasklist.ids(), set(&["group", "mine"]));

    world
        .send_task(&task_event(
            "new",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    read_until(&mut client, &mut tasklist, "the new task", |t| {
        t.tasks.contains_key("new")
    })
    .await;
    assert_eq!(tasklist.ids(), set(&["group", "mine", "new"]));
    assert_eq!(tasklist.tasks["new"]["assignee"], "kermit");
    assert!(client.last_id.is_some(), "live events carry ids");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_leaving_the_callers_sight_becomes_a_remove() {
    let world = World::new().await;
    let service = world.start().await;
    for id in ["reassigned", "completed", "deleted"] {
        world
            .send_task(&task_event(id, 1, Some("kermit"), &[], TaskState::Active))
            .await;
    }
    world
        .send_task(&task_event(
            "ungrouped",
            1,
            None,
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("ungrouped", 1).await;
    for id in ["reassigned", "completed", "deleted"] {
        world.wait_for_version(id, 1).await;
    }
    let (mut kermit, mut kermits) = connect(&service.address, "kermit", &["muppets"]).await;
    let (mut piggy, mut piggys) = connect(&service.address, "piggy", &[]).await;
    assert_eq!(kermits.ids().len(), 4);
    assert!(piggys.ids().is_empty());

    world
        .send_task(&task_event(
            "reassigned",
            2,
            Some("piggy"),
            &[],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event("ungrouped", 2, None, &[], TaskState::Active))
        .await;
    world
        .send_task(&task_event(
            "completed",
            2,
            Some("kermit"),
            &[],
            TaskState::Completed,
        ))
        .await;
    world
        .send_task(&task_event(
            "deleted",
            2,
            Some("kermit"),
            &[],
            TaskState::Deleted,
        ))
        .await;

    read_until(&mut kermit, &mut kermits, "four removes", |t| {
        t.tasks.is_empty()
    })
    .await;
    read_until(&mut piggy, &mut piggys, "the reassigned task", |t| {
        t.tasks.contains_key("reassigned")
    })
    .await;
    assert_eq!(piggys.ids(), set(&["reassigned"]));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_all_receive_a_change() {
    const CLIENTS: usize = 1000;
    let world = World::new().await;
    let service = world.start().await;
    let mut waiting = Vec::new();
    for i in 0..CLIENTS {
        let address = service.address.clone();
        let bearer = token(&format!("user-{i}"), &["everyone"]);
        waiting.push(tokio::spawn(async move {
            let mut client = StreamClient::open(&address, STREAM, &bearer, None).await;
            assert_eq!(client.status, 200);
            loop {
                let event = client.expect("the marker", DEADLINE).await;
                if event.name == "marker" {
                    break;
                }
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in waiting {
        clients.push(task.await.unwrap());
    }
    world
        .send_task(&task_event(
            "for-everyone",
            1,
            None,
            &["everyone"],
            TaskState::Active,
        ))
        .await;
    let receiving: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let event = client.expect("the change", DEADLINE).await;
                assert_eq!(event.name, "upsert");
                assert_eq!(event.data["id"], "for-everyone");
            })
        })
        .collect();
    for task in receiving {
        task.await.unwrap();
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_without_delaying_the_others() {
    let world = World::new().await;
    let mut config = world.config();
    config.stream.buffer = 64;
    let service = Service::start(config).await;
    let bearer = token("kermit", &["muppets"]);
    // The slow client: asks for the stream and never reads a byte. Its small receive window
    // keeps the kernel from buffering much for it, so its event buffer fills soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket
        .connect(service.address.parse().unwrap())
        .await
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let request =
            format!("GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\r\n");
        slow.write_all(request.as_bytes()).await.unwrap();
    }
    let (mut fast, mut fast_tasks) = connect(&service.address, "kermit", &["muppets"]).await;
    // Once a first change arrives, the projection consumes: the paced changes stay paced.
    world
        .send_task(&task_event(
            "warm-up",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    read_until(&mut fast, &mut fast_tasks, "the first change", |t| {
        t.tasks.len() == 1
    })
    .await;
    fast_tasks.tasks.clear();

    // Large new tasks, each sent once the fast client has the one before (in lockstep, so that
    // a stall of the machine cannot release them in one burst), fill the slow client's socket
    // buffers and then its event buffer, while the fast client reads along.
    const TASKS: usize = 200;
    let blob = Payload::from_value(serde_json::json!({ "blob": "x".repeat(32 * 1024) })).unwrap();
    for n in 0..TASKS {
        let mut big = task_event(
            &format!("big-{n}"),
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        );
        big.task.payload = blob.clone();
        world.send_task(&big).await;
        read_until(&mut fast, &mut fast_tasks, "the change just sent", |t| {
            t.tasks.len() == n + 1
        })
        .await;
    }
    assert_eq!(
        fast_tasks.resyncs, 0,
        "the reading client was never cut off"
    );
    taskpool_testkit::wait_for("the slow client to be cut off", DEADLINE, || async {
        let slow_clients = service
            .running
            .metrics
            .stream_resyncs
            .with_label_values(&[taskpool_tasklist::metrics::resync::SLOW_CLIENT])
            .get();
        (slow_clients >= 1).then_some(())
    })
    .await;
    drop(slow);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_is_served_on_request() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "mine",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("mine", 1).await;
    let mut stream = tokio::net::TcpStream::connect(&service.address)
        .await
        .unwrap();
    let request = format!(
        "GET {STREAM} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nAccept: application/x-ndjson\r\n\r\n",
        token("kermit", &[])
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut objects = Vec::new();
    let mut content_type = None;
    while objects.len() < 2 {
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        if let Some(value) = line.strip_prefix("content-type: ") {
            content_type = Some(value.trim().to_string());
        }
        if line.starts_with('{') {
            objects.push(serde_json::from_str::<Value>(&line).expect("each line is JSON"));
        }
    }
    assert_eq!(content_type.as_deref(), Some("application/x-ndjson"));
    assert_eq!(objects[0]["event"], "upsert");
    assert_eq!(objects[0]["data"]["id"], "mine");
    assert_eq!(objects[1]["event"], "marker");
    assert!(
        objects[1]["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("-0"))
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_and_the_server_stops() {
    let world = World::new().await;
    let service = world.start().await;
    let (mut client, _) = connect(&service.address, "kermit", &["muppets"]).await;
    let address = service.address.clone();

    let stopped = tokio::spawn(service.stop());
    let ended = tokio::time::timeout(DEADLINE, client.next())
        .await
        .expect("the open stream ends on shutdown");
    assert!(ended.is_none(), "no event after shutdown, got {ended:?}");
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("the server stops once its streams ended")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "the listener is closed"
    );
}
