//! An Idempotency-Key names the request it first came with, for `http.idempotency_key_secs`.

use super::*;
use taskpool_testkit::http::request_with_body;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_names_its_request_until_it_expires_and_another_request_with_it_is_422() {
    let world = World::new().await;
    let mut config = world.config();
    config.http.idempotency_key_secs = 10;
    let service = Service::start(config).await;
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
    let assign = |to: &'static str| {
        let bearer = bearer.clone();
        async move {
            let body = format!(r#"{{"assignee": "{to}"}}"#);
            let length = body.len().to_string();
            request_with_body(
                address,
                "POST",
                "/api/tasks/keyed/assign",
                &[
                    ("Connection", "close"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", &length),
                    ("Authorization", &bearer),
                    ("Idempotency-Key", "hand-over-1"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    let first = assign("gonzo").await;
    let again = assign("gonzo").await;
    let other = assign("fozzie").await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(again.status, 202, "{}", again.body);
    let id = first.json()["commandId"].as_str().unwrap().to_string();
    assert_eq!(again.json()["commandId"], id.as_str(), "the same command");
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.json()["error"], "idempotency_key_reused");

    // Once the binding has expired, the key starts a new command (with its new request).
    let renewed = taskpool_testkit::wait_for(
        "the key's binding to expire",
        Duration::from_secs(30),
        || async {
            let reply = assign("fozzie").await;
            (reply.status == 202).then_some(reply)
        },
    )
    .await;
    assert_ne!(renewed.json()["commandId"], id.as_str(), "a new command");
    service.stop().await;
}
