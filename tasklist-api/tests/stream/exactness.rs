//! Clients among many changes: none receives a task it may not see, each ends with exactly
//! its tasks, also across the gap between snapshot and stream and after a resume.

use super::*;

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
