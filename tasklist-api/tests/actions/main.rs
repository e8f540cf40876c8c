//! Tasklist actions over HTTP against a real MongoDB-wire server and broker: refused at once
//! when the view shows they cannot succeed (nothing sent), otherwise sent to the command topic.

#[path = "../support/mod.rs"]
mod support;

// The command topic read as the owning engine reads it, and an engine standing in.
mod engine_side;
use engine_side::*;
// Idempotency-Key bindings and their expiry.
mod keys;

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use support::*;
use taskpool_schemas::{TaskAction, TaskCommand, TaskState, Topics, decode_as};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_actions_send_nothing_and_an_allowed_one_reaches_the_command_topic() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "open",
            4,
            None,
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world
        .send_task(&task_event(
            "mine",
            1,
            Some("piggy"),
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("open", 4).await;
    world.wait_for_version("mine", 1).await;
    let address = &service.address;
    let kermit = token("kermit", &["muppets"]);
    let animal = token("animal", &["band"]);
    let reader = command_reader(&world);

    // Refused, all on task "open" (one partition, so the accepted command comes after them).
    for (path, who, body, status, error) in [
        ("/api/tasks/open/complete", &kermit, None, 403, "forbidden"),
        ("/api/tasks/open/unclaim", &kermit, None, 409, "conflict"),
        ("/api/tasks/open/defer", &kermit, None, 400, "bad_request"),
        (
            "/api/tasks/open/assign",
            &kermit,
            Some(r#"{"assignee": ""}"#),
            400,
            "bad_request",
        ),
        (
            "/api/tasks/open/complete",
            &kermit,
            Some("not json"),
            400,
            "bad_request",
        ),
        ("/api/tasks/open/claim", &animal, None, 404, "not_found"),
        ("/api/tasks/open/explode", &kermit, None, 404, "not_found"),
        ("/api/tasks/gone/claim", &kermit, None, 404, "not_found"),
    ] {
        let reply = post_json(address, path, Some(who), body).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        let json = reply.json();
        assert_eq!(json["error"], error, "{path}: {json}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let claimed = post_json(address, "/api/tasks/mine/claim", Some(&kermit), None).await;
    assert_eq!(claimed.status, 409, "{}", claimed.body);
    assert!(
        claimed.json()["message"]
            .as_str()
            .unwrap()
            .contains("piggy")
    );
    let anonymous = post_json(address, "/api/tasks/open/claim", None, None).await;
    assert_eq!(anonymous.status, 401);

    let accepted = post_json(address, "/api/tasks/open/claim", Some(&kermit), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let body = accepted.json();
    assert_eq!(body["status"], "pending");
    let id = body["commandId"].as_str().unwrap().to_string();

    let commands = tokio::task::block_in_place(|| commands_until(&reader, &id));
    assert_eq!(
        commands.len(),
        1,
        "nothing sent for refused actions: {commands:?}"
    );
    let (command, application) = &commands[0];
    assert_eq!(command.action, TaskAction::Claim);
    assert_eq!(command.task_id, "open");
    assert_eq!(command.issued_by, "kermit");
    assert_eq!(command.application, "shop");
    assert_eq!(application, "shop", "the addressee is a header too");
    assert_eq!(command.task_version, Some(4));

    // Complete carries the form's values.
    let completed = post_json(
        address,
        "/api/tasks/mine/complete",
        Some(&token("piggy", &[])),
        Some(r#"{"approved": true, "comment": "fine"}"#),
    )
    .await;
    assert_eq!(completed.status, 202, "{}", completed.body);
    let id = completed.json()["commandId"].as_str().unwrap().to_string();
    let commands = tokio::task::block_in_place(|| commands_until(&reader, &id));
    let (complete, _) = commands.last().unwrap();
    assert_eq!(complete.action, TaskAction::Complete);
    assert_eq!(complete.variables.0["comment"], "fine");
    service.stop().await;
}

/// Opens a stream and reads it up to its snapshot's marker.
async fn stream_of(address: &str, user: &str) -> StreamClient {
    let mut client = StreamClient::open(
        address,
        "/api/tasks/stream",
        &token(user, &["muppets"]),
        None,
    )
    .await;
    while client.expect("the marker", DEADLINE).await.name != "marker" {}
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_at_once_one_wins_both_hear_and_wait_answers_after_the_view_shows_it() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "race",
            1,
            None,
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("race", 1).await;
    let address = service.address.clone();
    let mut kermit_stream = stream_of(&address, "kermit").await;
    let mut piggy_stream = stream_of(&address, "piggy").await;

    let engine_world = world.clone();
    let reader = command_reader(&world);
    let engine = tokio::task::spawn_blocking(move || answer_claims(&engine_world, reader, 2));
    let claim = |user: &'static str| {
        let address = address.clone();
        async move {
            let bearer = token(user, &["muppets"]);
            let reply = post_json(
                &address,
                "/api/tasks/race/claim?wait=20s",
                Some(&bearer),
                None,
            )
            .await;
            // Read right after the answer: an applied claim must be there already.
            let seen = get(&address, "/api/tasks/race", Some(&bearer)).await;
            (user, reply, seen)
        }
    };
    let (first, second) = tokio::join!(claim("kermit"), claim("piggy"));
    engine.await.unwrap();

    let (winner, loser) = if first.1.status == 200 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(winner.1.status, 200, "{}", winner.1.body);
    assert_eq!(winner.1.json()["status"], "applied");
    assert_eq!(winner.1.json()["taskVersion"], 2);
    let seen = winner.2.json();
    assert_eq!(seen["version"], 2, "read your own write: {seen}");
    assert_eq!(seen["assignee"], winner.0);
    assert_eq!(loser.1.status, 409, "{}", loser.1.body);
    let refused = loser.1.json();
    assert_eq!(refused["error"], "rejected");
    assert_eq!(
        refused["message"],
        format!("already claimed by {}", winner.0)
    );

    // Each hears their own outcome, and both see the winner as assignee.
    for (user, stream) in [("kermit", &mut kermit_stream), ("piggy", &mut piggy_stream)] {
        let reply = if winner.0 == user {
            &winner.1
        } else {
            &loser.1
        };
        let command_id = reply.json()["commandId"].clone();
        // The outcome and the new version, in whichever order they come.
        let (mut outcome, mut upsert) = (None, None);
        while outcome.is_none() || upsert.is_none() {
            let event = stream
                .expect("the outcome and the claimed task", DEADLINE)
                .await;
            match event.name.as_str() {
                "outcome" => outcome = Some(event),
                "upsert" if event.data["version"] == 2 => upsert = Some(event),
                _ => {}
            }
        }
        let (outcome, upsert) = (outcome.unwrap(), upsert.unwrap());
        assert_eq!(
            outcome.data["commandId"], command_id,
            "{user}: {:?}",
            outcome.data
        );
        let expected = if winner.0 == user {
            "applied"
        } else {
            "rejected"
        };
        assert_eq!(outcome.data["result"], expected);
        assert_eq!(upsert.data["assignee"], winner.0, "{user}");
    }

    // The view shows it claimed: the other candidate may neither hand it on nor defer it.
    let other = token(loser.0, &["muppets"]);
    for (action, body) in [
        ("assign", r#"{"assignee": "gonzo"}"#),
        ("defer", r#"{"followUpDate": "2031-01-01T08:00:00Z"}"#),
    ] {
        let path = format!("/api/tasks/race/{action}");
        let refused = post_json(&address, &path, Some(&other), Some(body)).await;
        assert_eq!(refused.status, 409, "{action}: {}", refused.body);
        assert_eq!(refused.json()["error"], "conflict", "{action}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_repeated_with_its_idempotency_key_is_the_same_command() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "keyed",
            1,
            None,
            &["muppets"],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("keyed", 1).await;
    let address = &service.address;
    let bearer = format!("Bearer {}", token("kermit", &["muppets"]));
    let claim = |key: &'static str| {
        let bearer = bearer.clone();
        async move {
            request_with(
                address,
                "POST",
                "/api/tasks/keyed/claim",
                &[
                    ("Connection", "close"),
                    ("Content-Length", "0"),
                    ("Authorization", &bearer),
                    ("Idempotency-Key", key),
                ],
            )
            .await
        }
    };
    let first = claim("attempt-1").await;
    let again = claim("attempt-1").await;
    let other = claim("attempt-2").await;
    for reply in [&first, &again, &other] {
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let id = first.json()["commandId"].as_str().unwrap().to_string();
    assert_eq!(again.json()["commandId"], id.as_str(), "the same command");
    assert_ne!(
        other.json()["commandId"],
        id.as_str(),
        "another key, another command"
    );
    let bad = claim("not visible\u{7f}").await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // Both deliveries carry the same id: the engine applies it once.
    let reader = command_reader(&world);
    let other_id = other.json()["commandId"].as_str().unwrap().to_string();
    let commands = tokio::task::block_in_place(|| commands_until(&reader, &other_id));
    let ids: Vec<String> = commands
        .iter()
        .map(|(c, _)| c.command_id.to_string())
        .collect();
    assert_eq!(ids, [id.clone(), id, other_id]);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_outcome_lands_in_the_dead_letters() {
    let world = World::new().await;
    let service = world.start().await;
    let outcomes = Topics::new(&world.prefix).outcomes;
    let dead = world
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("dead_letters");
    // Sent until one is caught (the first may precede the service's start by more than the
    // margin it reads back).
    let letter = taskpool_testkit::wait_for("the dead letter", DEADLINE, || async {
        world
            .send(&outcomes, "broken", b"not an outcome".to_vec())
            .await;
        for _ in 0..20 {
            if let Some(letter) = dead.find_one(mongodb::bson::doc! {}).await.unwrap() {
                return Some(letter);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    })
    .await;
    assert_eq!(letter.get_str("topic").unwrap(), outcomes);
    assert_eq!(
        letter.get_binary_generic("payload").unwrap().as_slice(),
        b"not an outcome"
    );
    assert!(
        letter
            .get_str("reason")
            .unwrap()
            .contains("undecodable outcome")
    );
    service.stop().await;
}

/// An outcome already on the topic when the reader starts (sent while the service was starting,
/// before its reader found where to read) still reaches it: the reader starts shortly before the
/// service's start, not at the end of the topic, where such an outcome was lost and the request
/// waiting for it answered `pending` after its whole wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_sent_before_the_reader_is_assigned_is_read() {
    let world = World::new().await;
    let outcomes = Topics::new(&world.prefix).outcomes;
    world
        .send(&outcomes, "early", b"an early outcome".to_vec())
        .await;
    let service = world.start().await;
    let dead = world
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("dead_letters");
    let letter = taskpool_testkit::wait_for("the early outcome", DEADLINE, || async {
        dead.find_one(mongodb::bson::doc! {}).await.unwrap()
    })
    .await;
    assert_eq!(
        letter.get_binary_generic("payload").unwrap().as_slice(),
        b"an early outcome"
    );
    service.stop().await;
}
