//! Tasks of no process: standalone tasks, made through the engine's task API (`POST
//! /task/create`, `TaskService.newTask`). The engine lists them to their candidates like any
//! other task, so the capture turns their changes into events like any other task's; they carry
//! the process definition key `(standalone)` and are their own process instance.

use std::collections::BTreeSet;

use serde_json::json;
use taskpool_testkit::operaton::*;

mod support;
use support::{events_of, kinds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_tasks_live_their_lives_in_the_outbox_on_operaton() {
    standalone_tasks_live_their_lives_in_the_outbox(Flavour::Operaton).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_tasks_live_their_lives_in_the_outbox_on_camunda_7() {
    standalone_tasks_live_their_lives_in_the_outbox(Flavour::Camunda).await
}

async fn standalone_tasks_live_their_lives_in_the_outbox(flavour: Flavour) {
    let engine = Engine::of(flavour).await;
    let people = People::unique();
    let call = &format!("call-{}", people.buyer);
    let note = &format!("note-{}", people.buyer);
    for (id, name) in [(call, "Call the customer"), (note, "Write a note")] {
        let body = json!({"id": id, "name": name, "priority": 60, "description": "invoice 7"});
        let created = engine.call("POST", "/task/create", Some(body)).await;
        assert_eq!(created.status, 204, "{}", created.body);
    }
    let steps = [
        (
            "POST",
            format!("/task/{call}/identity-links"),
            json!({"groupId": people.approvers, "type": "candidate"}),
        ),
        (
            "POST",
            format!("/task/{call}/claim"),
            json!({"userId": people.reviewer}),
        ),
        ("POST", format!("/task/{call}/complete"), json!({})),
        ("DELETE", format!("/task/{note}"), json!({})),
    ];
    for (method, path, body) in steps {
        let body = (method == "POST").then_some(body);
        let reply = engine.call(method, &path, body).await;
        assert_eq!(reply.status, 204, "{method} {path}: {}", reply.body);
    }

    let events = events_of(&engine, &[call, note]).await;
    // Nothing of theirs refused; and no model to read a form key from, nor one remembered.
    let (dead, remembered): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM taskpool_capture_dead_letters \
                 WHERE aggregate_id IN ($1, $2)), \
                (SELECT count(*) FROM taskpool_camunda_form_keys WHERE task_key IN ($1, $2))",
    )
    .bind(call)
    .bind(note)
    .fetch_one(&engine.pool)
    .await
    .unwrap();
    assert_eq!(dead, 0, "nothing of theirs refused");
    assert_eq!(
        remembered, 0,
        "no form key remembered for a task of no process"
    );
    assert_eq!(
        kinds(&events, call),
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskCandidatesChanged".to_string()),
            (3, "TaskAssigned".to_string()),
            (4, "TaskCompleted".to_string())
        ]
    );
    assert_eq!(
        kinds(&events, note),
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskDeleted".to_string())
        ]
    );
    let created = &events.iter().find(|e| &e.0 == call).unwrap().3;
    assert_eq!(created.name, "Call the customer");
    assert_eq!(created.priority, 60);
    assert_eq!(created.description.as_deref(), Some("invoice 7"));
    let source = &created.source_reference;
    assert_eq!(source.process_definition_key, "(standalone)");
    assert_eq!(source.process_instance_id, *call);
    assert_eq!(source.application_name, APPLICATION);
    let claimed = &events.iter().filter(|e| &e.0 == call).nth(2).unwrap().3;
    assert_eq!(claimed.assignee.as_deref(), Some(people.reviewer.as_str()));
    assert_eq!(
        claimed.candidate_groups,
        BTreeSet::from([people.approvers.clone()])
    );
}
