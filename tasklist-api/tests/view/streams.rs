//! Streams over either view: tasks that leave a caller's sight are removed, and a client that
//! reconnects resumes after its last event or resyncs.

use super::*;

/// Reads the snapshot up to the marker.
async fn snapshot(client: &mut StreamClient) -> Tasklist {
    let mut tasklist = Tasklist::default();
    loop {
        let event = client.expect("the snapshot", DEADLINE).await;
        if event.name == "marker" {
            return tasklist;
        }
        tasklist.apply(&event);
    }
}

async fn next_change(client: &mut StreamClient) -> SseEvent {
    client.expect("a change", DEADLINE).await
}

pub(crate) async fn removals(view: SharedView) {
    let served = Served::over(view).await;
    served
        .write(&[
            task("a", 1, 50, &["crew"], None),
            task("b", 1, 50, &["crew"], None),
            task("c", 1, 50, &["crew"], None),
        ])
        .await;
    let bearer = token("kermit", &["crew"]);
    let mut client = StreamClient::open(&served.address, "/api/tasks/stream", &bearer, None).await;
    let held = snapshot(&mut client).await;
    assert_eq!(
        held.ids(),
        BTreeSet::from(["a", "b", "c"].map(String::from))
    );

    // Reassigned away from the caller's group, completed, deleted: each a `remove`.
    served
        .write(&[task("a", 2, 50, &["others"], Some("gonzo"))])
        .await;
    served
        .write(&[task_event("b", 2, None, &["crew"], TaskState::Completed)])
        .await;
    served
        .write(&[task_event("c", 2, None, &["crew"], TaskState::Deleted)])
        .await;
    // A new task arrives as an `upsert`; one the caller never saw produces nothing.
    served
        .write(&[task("x", 1, 50, &["strangers"], None)])
        .await;
    served.write(&[task("d", 1, 50, &["crew"], None)]).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = next_change(&mut client).await;
        seen.push((
            event.name.clone(),
            event.data["id"].as_str().unwrap().to_string(),
        ));
    }
    let expected = [
        ("remove", "a"),
        ("remove", "b"),
        ("remove", "c"),
        ("upsert", "d"),
    ]
    .map(|(n, i)| (n.to_string(), i.to_string()));
    assert_eq!(seen, expected);
    // The list agrees with the stream.
    let listed: BTreeSet<String> = ids(&get(&served.address, "/api/tasks", Some(&bearer))
        .await
        .json())
    .into_iter()
    .collect();
    assert_eq!(listed, BTreeSet::from(["d".to_string()]));
    served.stop().await;
}

pub(crate) async fn resume(view: SharedView) {
    let served = Served::over(view).await;
    served.write(&[task("a", 1, 50, &["crew"], None)]).await;
    let bearer = token("kermit", &["crew"]);
    let mut client = StreamClient::open(&served.address, "/api/tasks/stream", &bearer, None).await;
    snapshot(&mut client).await;
    served.write(&[task("b", 1, 50, &["crew"], None)]).await;
    let first = next_change(&mut client).await;
    assert_eq!(first.data["id"], "b");
    let last_id = client.last_id.clone().expect("events carry ids");
    drop(client);

    // Missed while away: delivered on resume, nothing before them again, no snapshot.
    served.write(&[task("c", 1, 50, &["crew"], None)]).await;
    served.write(&[task("a", 2, 50, &["others"], None)]).await;
    let mut resumed = StreamClient::open(
        &served.address,
        "/api/tasks/stream",
        &bearer,
        Some(&last_id),
    )
    .await;
    assert_eq!(resumed.status, 200);
    let c = next_change(&mut resumed).await;
    assert_eq!(
        (c.name.as_str(), c.data["id"].as_str()),
        ("upsert", Some("c"))
    );
    let a = next_change(&mut resumed).await;
    assert_eq!(
        (a.name.as_str(), a.data["id"].as_str()),
        ("remove", Some("a"))
    );

    // An id this server never handed out: resync, then a fresh snapshot.
    let mut stranger =
        StreamClient::open(&served.address, "/api/tasks/stream", &bearer, Some("999-5")).await;
    let first = stranger.expect("resync", DEADLINE).await;
    assert_eq!(first.name, "resync");
    let fresh = snapshot(&mut stranger).await;
    assert_eq!(fresh.ids(), BTreeSet::from(["b", "c"].map(String::from)));
    served.stop().await;
}
