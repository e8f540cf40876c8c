//! The live stream against a real broker and a real MongoDB-wire server.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

/// A deterministic sequence of changes over a few tasks, users and groups.
fn change(step: u64) -> (String, Option<&'static str>, Vec<&'static str>, TaskState) {
    const USERS: [&str; 3] = ["kermit", "piggy", "gonzo"];
    const GROUPS: [&str; 3] = ["muppets", "frogs", "pigs"];
    let mix = step.wrapping_mul(2_654_435_761) >> 7;
    let task = format!("t{}", mix % 8);
    let assignee = (mix % 4 != 3).then(|| USERS[(mix / 4 % 3) as usize]);
    let groups: Vec<&str> = GROUPS
        .iter()
        .enumerate()
        .filter(|(i, _)| (mix >> (8 + i)) & 1 == 1)
        .map(|(_, g)| *g)
        .collect();
    let state = if mix.is_multiple_of(13) {
        TaskState::Completed
    } else {
        TaskState::Active
    };
    (task, assignee, groups, state)
}

/// Which tasks each client should hold after all changes.
fn expected(
    final_states: &BTreeMap<String, (Option<&str>, Vec<&str>, TaskState)>,
    user: &str,
    groups: &[&str],
) -> BTreeSet<String> {
    final_states
        .iter()
        .filter(|(_, (assignee, task_groups, state))| {
            *state == TaskState::Active
                && (*assignee == Some(user) || task_groups.iter().any(|g| groups.contains(g)))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

fn allowed(task: &Value, user: &str, groups: &[&str]) -> bool {
    task["assignee"] == user
        || task["candidateUsers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == user)
        || task["candidateGroups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| groups.iter().any(|mine| g == mine))
}

const CLIENTS: [(&str, &[&str]); 4] = [
    ("kermit", &["muppets"]),
    ("piggy", &["pigs", "muppets"]),
    ("gonzo", &[]),
    ("animal", &["frogs"]),
];

/// A last change concerning every client (gonzo, in none of the groups, gets his own). Tasks
/// spread over partitions, which the projection applies independently: having it does not mean
/// having every change sent before it, so clients read until their tasklist is the final one.
async fn send_last_changes(world: &World) {
    world
        .send_task(&task_event(
            "last",
            1,
            None,
            &["muppets", "frogs", "pigs"],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "last-gonzo",
            1,
            Some("gonzo"),
            &[],
            TaskState::Active,
        ))
        .await;
}

fn last_change_for(user: &str) -> &'static str {
    if user == "gonzo" {
        "last-gonzo"
    } else {
        "last"
    }
}

/// The final tasks the client may see, plus its last change.
fn final_tasklist(
    finals: &BTreeMap<String, (Option<&str>, Vec<&str>, TaskState)>,
    user: &str,
    groups: &[&str],
) -> BTreeSet<String> {
    let mut want = expected(finals, user, groups);
    want.insert(last_change_for(user).to_string());
    want
}

async fn run_changes(
    world: &World,
    steps: std::ops::Range<u64>,
    versions: &mut BTreeMap<String, i64>,
    finals: &mut BTreeMap<String, (Option<&'static str>, Vec<&'static str>, TaskState)>,
) {
    for step in steps {
        let (task, assignee, groups, state) = change(step);
        if finals
            .get(&task)
            .is_some_and(|(_, _, s)| *s != TaskState::Active)
        {
            continue;
        }
        let version = versions.entry(task.clone()).or_insert(0);
        *version += 1;
        world
            .send_task(&task_event(&task, *version, assignee, &groups, state))
            .await;
        finals.insert(task, (assignee, groups, state));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_never_receive_a_task_they_may_not_see_and_end_with_exactly_theirs() {
    let world = World::new().await;
    let service = world.start().await;
    let mut versions = BTreeMap::new();
    let mut finals = BTreeMap::new();
    run_changes(&world, 0..20, &mut versions, &mut finals).await;

    let mut clients = Vec::new();
    for (user, groups) in CLIENTS {
        clients.push((user, groups, connect(&service.address, user, groups).await));
    }
    run_changes(&world, 20..200, &mut versions, &mut finals).await;
    send_last_changes(&world).await;

    for (user, groups, (mut client, mut tasklist)) in clients {
        let want = final_tasklist(&finals, user, groups);
        while tasklist.ids() != want {
            let what = format!("{user}'s final tasklist {want:?}, has {:?}", tasklist.ids());
            let event = client.expect(&what, DEADLINE).await;
            if event.name == "upsert" {
                assert!(
                    allowed(&event.data, user, groups),
                    "{user} received {}",
                    event.data
                );
            }
            tasklist.apply(&event);
        }
        assert_eq!(tasklist.resyncs, 0);
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_committed_while_clients_are_between_snapshot_and_stream_are_not_lost() {
    let world = World::new().await;
    let service = world.start().await;
    let address = service.address.clone();
    // Clients keep connecting while changes flow: some snapshots straddle changes.
    let connecting = tokio::spawn(async move {
        let mut connected = Vec::new();
        for round in 0..12 {
            let (user, groups) = CLIENTS[round % CLIENTS.len()];
            connected.push((user, groups, connect(&address, user, groups).await));
        }
        connected
    });
    let mut versions = BTreeMap::new();
    let mut finals = BTreeMap::new();
    run_changes(&world, 0..300, &mut versions, &mut finals).await;
    let clients = connecting.await.unwrap();
    send_last_changes(&world).await;
    for (user, groups, (mut client, mut tasklist)) in clients {
        let want = final_tasklist(&finals, user, groups);
        let what = format!("{user}'s final tasklist {want:?}");
        read_until(&mut client, &mut tasklist, &what, |t| t.ids() == want).await;
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_with_last_event_id_ends_with_exactly_the_right_tasks() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "keep",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "lose",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("lose", 1).await;
    world.wait_for_version("keep", 1).await;
    let (mut client, mut tasklist) = connect(&service.address, "kermit", &[]).await;
    world
        .send_task(&task_event(
            "seen",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    read_until(&mut client, &mut tasklist, "the seen task", |t| {
        t.tasks.contains_key("seen")
    })
    .await;
    let last_id = client.last_id.clone().expect("an event id");
    drop(client);

    // Missed while disconnected: one gained, one lost, one changed.
    world
        .send_task(&task_event(
            "gained",
            1,
            Some("kermit"),
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "lose",
            2,
            Some("piggy"),
            &[],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "keep",
            2,
            Some("kermit"),
            &["frogs"],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("keep", 2).await;
    world.wait_for_version("lose", 2).await;
    world.wait_for_version("gained", 1).await;

    let mut resumed = StreamClient::open(
        &service.address,
        STREAM,
        &token("kermit", &[]),
        Some(&last_id),
    )
    .await;
    read_until(&mut resumed, &mut tasklist, "the missed changes", |t| {
        t.tasks.contains_key("gained")
            && !t.tasks.contains_key("lose")
            && t.tasks.get("keep").is_some_and(|k| k["version"] == 2)
    })
    .await;
    assert_eq!(tasklist.ids(), set(&["gained", "keep", "seen"]));
    assert_eq!(tasklist.resyncs, 0, "resumed without a gap");

    // The same session with other groups (say, a group was revoked): no resume.
    let other_groups = token("kermit", &["muppets"]);
    let mut changed = StreamClient::open(
        &service.address,
        STREAM,
        &other_groups,
        resumed.last_id.as_deref(),
    )
    .await;
    assert_eq!(changed.expect("resync", DEADLINE).await.name, "resync");

    // An id this server never handed out: resync, then a fresh snapshot.
    let mut stranger = StreamClient::open(
        &service.address,
        STREAM,
        &token("kermit", &[]),
        Some("123-4"),
    )
    .await;
    let first = stranger.expect("resync", DEADLINE).await;
    assert_eq!(first.name, "resync");
    let mut fresh = Tasklist::default();
    read_until(&mut stranger, &mut fresh, "the fresh snapshot", |t| {
        t.tasks.len() == 3
    })
    .await;
    assert_eq!(fresh.ids(), set(&["gained", "keep", "seen"]));
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

    // Large new tasks, at a pace a reading client follows easily, fill the slow client's
    // socket buffers and then its event buffer, while the fast client reads along.
    const TASKS: usize = 200;
    let blob = Payload::from_value(serde_json::json!({ "blob": "x".repeat(32 * 1024) })).unwrap();
    let send = async {
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        for n in 0..TASKS {
            pace.tick().await;
            let mut big = task_event(
                &format!("big-{n}"),
                1,
                Some("kermit"),
                &[],
                TaskState::Active,
            );
            big.task.payload = blob.clone();
            world.send_task(&big).await;
        }
    };
    let read = read_until(&mut fast, &mut fast_tasks, "every change", |t| {
        t.tasks.len() == TASKS
    });
    tokio::join!(send, read);
    assert_eq!(
        fast_tasks.resyncs, 0,
        "the reading client was never cut off"
    );
    taskpool_testkit::wait_for("the slow client to be cut off", DEADLINE, || async {
        let slow_clients = service
            .running
            .metrics
            .stream_resyncs
            .with_label_values(&[tasklist_api::metrics::resync::SLOW_CLIENT])
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
