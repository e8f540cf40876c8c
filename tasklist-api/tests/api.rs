//! The HTTP API over a real socket: identity, visibility, filters, errors, operations.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use support::*;
use taskpool_schemas::{
    DataEntry, DataEntryEvent, DataEntryState, Payload, ProcessingType, TaskState, Timestamp,
};
use taskpool_testkit::wait_for;

async fn seeded() -> (World, Service) {
    let world = World::new().await;
    let service = world.start().await;
    let mut urgent = task_event("urgent", 1, Some("kermit"), &[], TaskState::Active);
    urgent.task.priority = 90;
    urgent.task.due_date = Some(Timestamp(2_000));
    urgent.task.description = Some("Ship the ORDER today".into());
    world.send_task(&urgent).await;
    let mut normal = task_event("normal", 1, None, &["muppets"], TaskState::Active);
    normal.task.priority = 50;
    normal.task.due_date = Some(Timestamp(5_000));
    world.send_task(&normal).await;
    let mut low = task_event("low", 1, Some("kermit"), &[], TaskState::Active);
    low.task.priority = 10;
    low.task.source_reference.process_definition_key = "invoice".into();
    world.send_task(&low).await;
    let piggys = task_event("piggys", 1, Some("piggy"), &[], TaskState::Active);
    world.send_task(&piggys).await;
    world.send_data_entry(&order(1, "Submitted")).await;
    for id in ["urgent", "normal", "low", "piggys"] {
        world.wait_for_version(id, 1).await;
    }
    // The data entry travels on a topic of its own: it may arrive after the tasks.
    let kermit = token("kermit", &["muppets"]);
    taskpool_testkit::wait_for("the data entry", DEADLINE, || async {
        let entries = get(&service.address, "/api/data-entries", Some(&kermit)).await;
        (entries.json()["items"] != serde_json::json!([])).then_some(())
    })
    .await;
    (world, service)
}

/// Order 1 of the shop at `version`, in `state`, authorized for kermit.
fn order(version: i64, state: &str) -> DataEntryEvent {
    DataEntryEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: if version == 1 {
            "DataEntryCreated"
        } else {
            "DataEntryUpdated"
        }
        .into(),
        version,
        occurred_at: Timestamp::now(),
        data_entry: DataEntry {
            entry_type: "io.shop.Order".into(),
            entry_id: "1".into(),
            type_name: "Order".into(),
            application_name: "shop".into(),
            name: "Order 1".into(),
            description: None,
            state: DataEntryState {
                processing_type: ProcessingType::InProgress,
                state: state.into(),
            },
            payload: Payload::default(),
            correlations: vec![],
            authorized_users: ["kermit".to_string()].into(),
            authorized_groups: Default::default(),
            form_key: None,
            protocol: vec![],
            deleted: false,
        },
    }
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_only_the_callers_tasks_with_filters_sort_and_pages() {
    let (_world, service) = seeded().await;
    let kermit = token("kermit", &["muppets"]);
    let address = service.address.clone();
    let at = |path: &str| {
        let path = path.to_string();
        let (address, kermit) = (address.clone(), kermit.clone());
        async move { get(&address, &path, Some(&kermit)).await }
    };

    let all = at("/api/tasks").await;
    assert_eq!(all.status, 200);
    assert_eq!(all.headers["content-type"], "application/json");
    assert_eq!(
        ids(&all),
        ["urgent", "normal", "low"],
        "by priority, highest first"
    );
    assert!(
        all.json()["items"][0].get("principals").is_none(),
        "internals stay inside"
    );

    assert_eq!(
        ids(&at("/api/tasks?sort=priority").await),
        ["low", "normal", "urgent"]
    );
    assert_eq!(
        ids(&at("/api/tasks?priorityMin=40&priorityMax=60").await),
        ["normal"]
    );
    assert_eq!(
        ids(&at("/api/tasks?dueBefore=1970-01-01T00:00:03Z").await),
        ["urgent"]
    );
    assert_eq!(ids(&at("/api/tasks?dueAfter=3000").await), ["normal"]);
    assert_eq!(ids(&at("/api/tasks?q=order").await), ["urgent"]);
    assert_eq!(
        ids(&at("/api/tasks?processDefinitionKey=invoice").await),
        ["low"]
    );
    assert_eq!(
        ids(&at("/api/tasks?businessKey=bk-normal").await),
        ["normal"]
    );

    let first = at("/api/tasks?limit=2").await;
    assert_eq!(ids(&first), ["urgent", "normal"]);
    let cursor = first.json()["nextCursor"].as_str().unwrap().to_string();
    let second = at(&format!("/api/tasks?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second), ["low"]);
    assert!(second.json()["nextCursor"].is_null());

    let one = at("/api/tasks/urgent").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["id"], "urgent");
    let entries = at("/api/data-entries").await;
    assert_eq!(ids(&entries), ["io.shop.Order:1"]);
    assert_eq!(
        at("/api/data-entries/io.shop.Order/1").await.json()["name"],
        "Order 1"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_entry_updated_twice_reads_with_its_last_state_through_both_routes() {
    let world = World::new().await;
    let service = world.start().await;
    for (version, state) in [(1, "Submitted"), (2, "Approved"), (3, "Shipped")] {
        world.send_data_entry(&order(version, state)).await;
    }
    let kermit = token("kermit", &[]);
    let list = wait_for("the third version listed", DEADLINE, || async {
        let reply = get(&service.address, "/api/data-entries", Some(&kermit)).await;
        (reply.status != 200 || reply.json()["items"][0]["state"] == "Shipped").then_some(reply)
    })
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
    let one = get(
        &service.address,
        "/api/data-entries/io.shop.Order/1",
        Some(&kermit),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["state"], "Shipped");
    assert_eq!(one.json()["version"], 3);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_document_is_left_out_and_counted_not_a_failed_answer() {
    let (world, service) = seeded().await;
    let kermit = token("kermit", &[]);
    world
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("data_entries")
        .insert_one(mongodb::bson::doc! {
            "_id": "io.shop.Order:0", "principals": ["user:kermit"], "deleted": false,
            "name": 42,
        })
        .await
        .unwrap();
    let list = get(&service.address, "/api/data-entries", Some(&kermit)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let items = list.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["entryId"], "1");
    // A page that holds only the unreadable document still leads on to the next one.
    let first = get(&service.address, "/api/data-entries?limit=1", Some(&kermit)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["items"].as_array().unwrap().len(), 0);
    let cursor = first.json()["nextCursor"].as_str().unwrap().to_string();
    let second = get(
        &service.address,
        &format!("/api/data-entries?limit=1&cursor={cursor}"),
        Some(&kermit),
    )
    .await;
    assert_eq!(second.json()["items"][0]["entryId"], "1", "{}", second.body);
    let broken = get(
        &service.address,
        "/api/data-entries/io.shop.Order/0",
        Some(&kermit),
    )
    .await;
    assert_eq!(broken.status, 404, "{}", broken.body);
    let metrics = get(&service.address, "/metrics", None).await;
    assert!(
        metrics
            .body
            .contains("taskpool_tasklist_unreadable_documents_total 3"),
        "{}",
        metrics.body
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_visibility_errors_are_json_with_the_right_status() {
    let (_world, service) = seeded().await;
    let address = &service.address;

    let none = get(address, "/api/tasks", None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(none.json()["error"], "unauthorized");

    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({ "sub": "kermit", "exp": 4_102_444_800u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx"),
    )
    .unwrap();
    let bad = get(address, "/api/tasks", Some(&forged)).await;
    assert_eq!(bad.status, 401);
    assert_eq!(get(address, STREAM_PATH, Some(&forged)).await.status, 401);

    let kermit = token("kermit", &[]);
    let other = get(address, "/api/tasks/piggys", Some(&kermit)).await;
    assert_eq!(other.status, 404, "another user's task is not found");
    assert_eq!(other.json()["error"], "not_found");
    assert_eq!(
        get(
            address,
            "/api/data-entries/io.shop.Order/1",
            Some(&token("piggy", &[]))
        )
        .await
        .status,
        404
    );

    for bad_query in [
        "/api/tasks?priorityMin=high",
        "/api/tasks?sort=colour",
        "/api/tasks?limit=0",
        "/api/tasks?cursor=zz",
        "/api/tasks?dueBefore=yesterday",
        "/api/tasks?q=a&q=b",
        "/api/tasks?unknown=1",
        "/api/tasks/stream?limit=5",
        "/api/data-entries?limit=x",
    ] {
        let reply = get(address, bad_query, Some(&kermit)).await;
        assert_eq!(reply.status, 400, "{bad_query}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = get(address, "/no/such/route", Some(&kermit)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    for (method, path) in [("POST", "/api/tasks"), ("DELETE", "/api/tasks/mine")] {
        let refused = request(address, method, path, Some(&kermit)).await;
        assert_eq!(refused.status, 405, "{method} {path}: {}", refused.body);
        assert_eq!(refused.json()["error"], "method_not_allowed");
        assert!(
            refused.headers["allow"].contains("GET"),
            "{:?}",
            refused.headers
        );
    }
    service.stop().await;
}

const STREAM_PATH: &str = "/api/tasks/stream";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi_are_served() {
    let world = World::new().await;
    let service = world.start().await;
    let address = &service.address;
    assert_eq!(get(address, "/health/live", None).await.status, 200);
    let ready = taskpool_testkit::wait_for("readiness", DEADLINE, || async {
        let ready = get(address, "/health/ready", None).await;
        (ready.status == 200).then_some(ready)
    })
    .await;
    assert_eq!(ready.json()["view"], true);
    assert_eq!(ready.json()["changeStream"], true);
    assert_eq!(ready.json()["projection"], true);
    let metrics = get(address, "/metrics", None).await;
    // Idle (nothing consumed yet), MongoDB is known to be available: the start wrote to it.
    let available = metrics
        .body
        .lines()
        .any(|l| l == "taskpool_tasklist_mongodb_available 1");
    assert!(available, "{}", metrics.body);
    // Every metric the alert rules and the dashboard in deploy/ use is there.
    let wanted = taskpool_testkit::monitoring::referenced_metrics("taskpool_tasklist_");
    assert!(wanted.len() >= 10, "{wanted:?}");
    assert_eq!(
        taskpool_testkit::monitoring::missing_from(&metrics.body, &wanted),
        Vec::<String>::new(),
        "metrics deploy/ uses that tasklist-api does not expose"
    );
    let openapi = get(address, "/openapi.json", None).await.json();
    assert_eq!(openapi["openapi"], "3.0.3");
    for route in taskpool_tasklist::http::ROUTES {
        assert!(openapi["paths"].get(route).is_some(), "{route}");
    }
    service.stop().await;
}

fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("%".to_string()),
        Just("%00".to_string()),
        Just("%FF%FE".to_string()),
        Just("&".to_string()),
        Just("=".to_string()),
        Just("+".to_string()),
        Just("[".to_string()),
        Just("{\"$ne\":1}".to_string()),
        Just("$where".to_string()),
        Just(".*".to_string()),
        Just("-".to_string()),
        Just("9".repeat(40)),
        Just("\\".to_string()),
        "[a-zA-Z]{1,12}".prop_map(|s| s),
        Just("priorityMin".to_string()),
        Just("sort".to_string()),
        Just("cursor".to_string()),
        Just("dueBefore".to_string()),
        Just("limit".to_string()),
    ];
    proptest::collection::vec(pieces, 0..12).prop_map(|parts| parts.concat())
}

#[test]
fn nothing_panics_on_hostile_query_strings() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_world, service) = runtime.block_on(async {
        let world = World::new().await;
        let service = world.start().await;
        (world, service)
    });
    let bearer = token("kermit", &["muppets"]);
    let mut config = ProptestConfig::with_cases(64);
    config.failure_persistence = None;
    proptest!(config, |(query in hostile_text(), path in prop_oneof![Just("/api/tasks"), Just("/api/data-entries")])| {
        // Characters HTTP allows in a query stay raw (so '%', '&', '=' and '+' stay hostile);
        // the rest is percent-encoded, as any client must.
        let encoded: String = query
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let reply = runtime.block_on(get(&service.address, &format!("{path}?{encoded}"), Some(&bearer)));
        prop_assert!(reply.status == 200 || reply.status == 400, "{} for {encoded}: {}", reply.status, reply.body);
        let body: serde_json::Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|_| panic!("not JSON ({}) for {path}?{encoded}: {:?}", reply.status, reply.body));
        prop_assert!(body.is_object());
        let _: HashMap<String, serde_json::Value> = serde_json::from_value(body).unwrap();
    });
    runtime.block_on(service.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_answered_503_and_served_again_once_others_close() {
    let world = World::new().await;
    let mut config = world.config();
    config.http.max_connections = Some(2);
    let service = Service::start(config).await;
    let kermit = token("kermit", &[]);
    let first = StreamClient::open(&service.address, "/api/tasks/stream", &kermit, None).await;
    let second = StreamClient::open(&service.address, "/api/tasks/stream", &kermit, None).await;
    assert_eq!((first.status, second.status), (200, 200));

    // Beyond the cap: 503 at once (only a liveness probe still hears 200; tested in the library).
    let refused = get(&service.address, "/openapi.json", None).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"], "unavailable");
    assert!(refused.headers.contains_key("retry-after"));

    drop(first);
    let served = wait_for("a connection slot to free up", DEADLINE, || async {
        let reply = get(&service.address, "/openapi.json", None).await;
        (reply.status == 200).then_some(reply)
    })
    .await;
    assert!(served.json()["paths"].is_object(), "{}", served.body);
    drop(second);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_the_admin_port_when_it_is_configured() {
    let world = World::new().await;
    let mut config = world.config();
    config.http.admin_listen = Some("127.0.0.1:0".into());
    let service = Service::start(config).await;
    let admin = service
        .running
        .admin_address
        .expect("the admin port is bound")
        .to_string();
    assert_eq!(get(&service.address, "/metrics", None).await.status, 404);
    let metrics = get(&admin, "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("taskpool_tasklist_open_streams"));
    assert!(metrics.body.contains("process_open_fds"));
    assert_eq!(get(&admin, "/health/live", None).await.status, 200);
    assert_eq!(get(&admin, "/api/tasks", None).await.status, 404);
    service.stop().await;
}
