//! Tasklist actions in single-node mode: routed in process to the demo engine, whose own rules
//! decide; with `?wait`, the answer comes once the caller's view shows the result.

use std::time::Duration;
use taskpool_engine_commands::Retention;

use serde_json::json;
use taskpool::{Options, SignIn};
use taskpool_core::SqliteStore;
use taskpool_demo::actions::DemoActions;
use taskpool_demo::{Demo, DemoConfig};
use taskpool_schemas::{TaskAction, Timestamp};
use taskpool_tasklist::actions::keys::request_digest;
use taskpool_tasklist::actions::rules::parse_body;
use taskpool_testkit::http::{StreamClient, get, post_json, request_with_body};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_defer_and_complete_go_to_the_demo_engine_whose_rules_decide() {
    let db = taskpool_testkit::SqliteTestDb::new().await;
    let pool = db.pool.clone();
    let config = DemoConfig {
        seed: Some(5),
        // Every approval goes to the approvers (kermit and piggy).
        manager_threshold: i64::MAX,
        ..DemoConfig::default()
    };
    let mut demo = Demo::<SqliteStore>::prepare(pool.clone(), config.clone())
        .await
        .unwrap();
    let engine = Demo::<SqliteStore>::prepare(pool.clone(), config.clone())
        .await
        .unwrap();
    let (trigger, shutdown) = taskpool_service::shutdown::channel();
    let route = taskpool::actions::route(
        pool.clone(),
        DemoActions::new(engine),
        Retention::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let options = Options {
        sign_in: SignIn::demo_users(&config.users),
        actions: Some(route),
        ..Options::default()
    };
    let node = taskpool::start(pool.clone(), options, listener, shutdown)
        .await
        .expect("the single node starts");
    let (_, task) = demo.submit_request().await.unwrap();
    let tokens = get(&address, "/api/dev/users", None).await.json();
    let token_of = |user: &str| {
        tokens["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (kermit, piggy) = (token_of("kermit"), token_of("piggy"));
    let path = |action: &str| format!("/api/tasks/{task}/{action}?wait=10s");
    let mut stream = StreamClient::open(&address, "/api/tasks/stream", &kermit, None).await;
    taskpool_testkit::wait_for("the task in kermit's view", DEADLINE, || async {
        (get(&address, &format!("/api/tasks/{task}"), Some(&kermit))
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;

    let with_key = |bearer: &str, action: &'static str, key: &'static str, body: &'static str| {
        let (address, path, bearer) = (&address, path(action), format!("Bearer {bearer}"));
        async move {
            let length = body.len().to_string();
            let headers = [
                ("Connection", "close"),
                ("Content-Type", "application/json"),
                ("Content-Length", length.as_str()),
                ("Authorization", bearer.as_str()),
                ("Idempotency-Key", key),
            ];
            request_with_body(address, "POST", &path, &headers, body.as_bytes()).await
        }
    };
    let keyed = |action: &'static str, key: &'static str| {
        let (address, path, bearer) = (&address, path(action), format!("Bearer {kermit}"));
        async move {
            let headers = [
                ("Connection", "close"),
                ("Content-Length", "0"),
                ("Authorization", bearer.as_str()),
                ("Idempotency-Key", key),
            ];
            request_with_body(address, "POST", &path, &headers, b"").await
        }
    };
    let claimed = keyed("claim", "claim-1").await;
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    assert_eq!(claimed.json()["status"], "applied");
    // Retried with its key, the claim is the same command, answered as it was decided (the
    // view, which now shows the task claimed, is not asked again); another action with the
    // key is 422.
    let retried = keyed("claim", "claim-1").await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.json()["commandId"], claimed.json()["commandId"]);
    let reused = keyed("unclaim", "claim-1").await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.json()["error"], "idempotency_key_reused");
    let seen = get(&address, &format!("/api/tasks/{task}"), Some(&kermit))
        .await
        .json();
    assert_eq!(seen["assignee"], "kermit", "read your own write: {seen}");
    assert_eq!(seen["version"], claimed.json()["taskVersion"]);

    // The view already shows it claimed: refused at once, and so is handing it on or
    // deferring it, which only kermit may do now.
    let second = post_json(&address, &path("claim"), Some(&piggy), None).await;
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(second.json()["error"], "conflict");
    for (action, body) in [
        ("assign", r#"{"assignee": "piggy"}"#),
        ("defer", r#"{"followUpDate": "2031-01-01T08:00:00Z"}"#),
    ] {
        let taken = post_json(&address, &path(action), Some(&piggy), Some(body)).await;
        assert_eq!(taken.status, 409, "{action}: {}", taken.body);
        assert_eq!(taken.json()["error"], "conflict");
        assert!(
            taken.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("claimed by kermit")),
            "{action}: {}",
            taken.body
        );
    }

    // A megabyte of assignee is refused before anything is sent: no command reaches the engine.
    let processed = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM taskpool_processed_commands")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = processed().await;
    let huge = serde_json::json!({ "assignee": "p".repeat(1 << 20) }).to_string();
    let refused = post_json(&address, &path("assign"), Some(&kermit), Some(&huge)).await;
    assert_eq!(
        refused.status,
        400,
        "{}",
        &refused.body[..refused.body.len().min(300)]
    );
    assert!(
        refused.body.len() < 500,
        "the answer does not echo the value"
    );
    assert_eq!(processed().await, before);

    // The view allows a deferral; the demo's own rules refuse it.
    let deferred = post_json(
        &address,
        &path("defer"),
        Some(&kermit),
        Some(r#"{"followUpDate": "2031-01-01T08:00:00Z"}"#),
    )
    .await;
    assert_eq!(deferred.status, 409, "{}", deferred.body);
    assert_eq!(deferred.json()["error"], "rejected");
    assert_eq!(
        deferred.json()["message"],
        "the purchasing process keeps no follow-up dates"
    );

    // A key bound to a command that was never handed on (its send failed) does not spare a
    // retry the view's rules: piggy, not the assignee, is refused at once (403), nothing sent.
    let approve = parse_body(TaskAction::Complete, Some(&json!({"approved": true}))).unwrap();
    sqlx::query(
        "INSERT INTO taskpool_idempotency_keys (user_id, key, request, command_id, bound_at, sent) \
         VALUES ('piggy', 'unsent-1', $1, $2, $3, false)",
    )
    .bind(request_digest(&task, &approve))
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(Timestamp::now().millis())
    .execute(&pool)
    .await
    .unwrap();
    let before = processed().await;
    let unsent = with_key(&piggy, "complete", "unsent-1", r#"{"approved": true}"#).await;
    assert_eq!(unsent.status, 403, "{}", unsent.body);
    assert_eq!(processed().await, before);

    // The demo's form takes a decision as true or false: the string "false" is refused with
    // 400 before anything is sent (it once read as an approval), and the refused request does
    // not take its key: the corrected one may use it.
    let mistyped = with_key(
        &kermit,
        "complete",
        "complete-1",
        r#"{"approved": "false"}"#,
    )
    .await;
    assert_eq!(mistyped.status, 400, "{}", mistyped.body);
    assert_eq!(mistyped.json()["message"], "approved must be true or false");
    assert_eq!(processed().await, before);
    let still = get(&address, &format!("/api/tasks/{task}"), Some(&kermit)).await;
    assert_eq!(still.json()["assignee"], "kermit", "nothing was applied");

    // Without a decision the approval is not taken as approved: the demo engine rejects it.
    let undecided = post_json(&address, &path("complete"), Some(&kermit), None).await;
    assert_eq!(undecided.status, 409, "{}", undecided.body);
    assert_eq!(
        undecided.json()["message"],
        "an approval needs approved: true or false"
    );

    let completed = with_key(&kermit, "complete", "complete-1", r#"{"approved": true}"#).await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    let gone = get(&address, &format!("/api/tasks/{task}"), Some(&kermit)).await;
    assert_eq!(gone.status, 404, "the completed task left kermit's list");

    // Kermit's stream told him the engine's rejections and the completion, in that order.
    let mut outcomes = Vec::new();
    while outcomes.last() != Some(&completed.json()["commandId"]) {
        let event = stream.expect("kermit's outcomes", DEADLINE).await;
        if event.name == "outcome" {
            outcomes.push(event.data["commandId"].clone());
        }
    }
    let expected =
        [&deferred, &undecided, &completed].map(|reply| reply.json()["commandId"].clone());
    assert_eq!(outcomes[outcomes.len() - 3..], expected);
    trigger.trigger();
    node.stopped().await;
}
