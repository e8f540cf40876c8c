//! The distributed pipeline end to end, on real servers: the demo engine on PostgreSQL, the
//! `kafka-relay` binary, the broker, `tasklist-api` (in process) on the MongoDB-wire server,
//! and a stream client per demo user, opened before the demo starts. Afterwards every user's
//! stream-derived tasks, field by field, equal what the demo's own tables say they must see,
//! and equal `GET /api/tasks`. The second variant kills the relay with SIGKILL at random
//! moments and starts it again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tasklist_api::config::{Config as TasklistConfig, Layered as _};
use taskpool_core::PgStore;
use taskpool_demo::truth::visible_to;
use taskpool_demo::{Demo, DemoConfig, DemoDb, TaskRow};
use taskpool_service::shutdown;
use taskpool_testkit::http::{StreamClient, Tasklist, get};
use taskpool_testkit::{required_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(90);

fn demo_config() -> DemoConfig {
    DemoConfig {
        seed: Some(5),
        active_requests: 15,
        ..DemoConfig::default()
    }
}

/// `tasklist-api` in this process, on its own MongoDB database and consumer group, with the
/// development sign-in for the demo users.
async fn start_tasklist(
    world: &World,
) -> (
    String,
    shutdown::ShutdownTrigger,
    tasklist_api::server::Running,
) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let users = demo_config().dev_sign_in_users();
    let env = [
        ("MONGODB__URI", required_env("MONGODB_URI")),
        ("MONGODB__DATABASE", format!("e2e{}", &id[..12])),
        ("KAFKA__BOOTSTRAP_SERVERS", world.bootstrap.clone()),
        ("KAFKA__TOPIC_PREFIX", world.prefix.clone()),
        ("KAFKA__GROUP_ID", format!("e2e{}", &id[..12])),
        ("DEV_SIGN_IN__USERS", users),
        ("STREAM__HEARTBEAT_SECS", "1".into()),
    ]
    .map(tasklist_api::config::Config::env_var);
    let config = TasklistConfig::from_sources("", env).expect("tasklist configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (trigger, stop) = shutdown::channel();
    let running = tasklist_api::server::start(config, listener, stop)
        .await
        .expect("tasklist-api starts");
    (address, trigger, running)
}

async fn create_topics(world: &World) {
    let data_entries = format!("{}.data-entries", world.prefix);
    let names = [world.tasks_topic(), data_entries];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    taskpool_testkit::kafka_topics::create_topics(&world.bootstrap, &[], &names).await;
}

/// A user's stream, read in the background into a tasklist; reopened if the server ends it
/// (after a `resync`, which clears the list before the fresh snapshot).
fn follow(address: String, token: String) -> Arc<Mutex<Tasklist>> {
    let tasklist = Arc::new(Mutex::new(Tasklist::default()));
    let shared = tasklist.clone();
    tokio::spawn(async move {
        loop {
            let mut client = StreamClient::open(&address, "/api/tasks/stream", &token, None).await;
            while let Some(event) = client.next().await {
                shared.lock().unwrap().apply(&event);
            }
            shared.lock().unwrap().tasks.clear();
        }
    });
    tasklist
}

/// Whether a client's tasks are exactly the expected ones, with their fields.
fn agrees(held: &BTreeMap<String, Value>, expected: &BTreeMap<String, TaskRow>) -> bool {
    held.len() == expected.len()
        && expected
            .iter()
            .all(|(id, truth)| held.get(id).is_some_and(|task| truth.shown_as(task)))
}

async fn run_pipeline(kill_relay: bool) {
    let world = World::new().await;
    create_topics(&world).await;
    let mut demo = Demo::<PgStore>::prepare(world.db.pool.clone(), demo_config())
        .await
        .expect("the demo's tables");
    let (address, trigger, running) = start_tasklist(&world).await;

    // Every user's stream is open (snapshot read: empty) before the demo starts.
    let tokens = get(&address, "/api/dev/users", None).await.json();
    let mut clients = Vec::new();
    for user in demo_config().users {
        let token = tokens["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user.name.as_str())
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        clients.push((user, token.clone(), follow(address.clone(), token)));
    }

    let env = world.relay_env();
    let mut relay = RelayProcess::spawn(&env);
    let mut kills = 0;
    let mut next_kill =
        tokio::time::Instant::now() + Duration::from_millis(random_between(200, 900));
    // 400 steps, and in the second variant at least three kills along the way.
    let mut steps = 0;
    while steps < 400 || (kill_relay && kills < 3) {
        demo.step().await.expect("a demo step commits");
        steps += 1;
        if kill_relay && tokio::time::Instant::now() >= next_kill {
            relay.signal("KILL");
            let _ = relay.child.wait().await;
            kills += 1;
            relay = RelayProcess::spawn(&env);
            next_kill =
                tokio::time::Instant::now() + Duration::from_millis(random_between(200, 900));
        }
    }

    let truth = PgStore::all_tasks(&world.db.pool).await.unwrap();
    assert!(truth.iter().any(|t| t.state == "COMPLETED"));
    for (user, token, tasklist) in &clients {
        let expected = visible_to(&truth, &user.name, &user.groups);
        wait_for(
            &format!("{}'s stream to show the committed state", user.name),
            DEADLINE,
            || async { agrees(&tasklist.lock().unwrap().tasks, &expected).then_some(()) },
        )
        .await;
        let listed = get(&address, "/api/tasks?limit=500", Some(token))
            .await
            .json();
        let listed: BTreeMap<String, Value> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
            .collect();
        assert!(agrees(&listed, &expected), "{}'s list", user.name);
        let streamed: BTreeSet<String> = tasklist.lock().unwrap().tasks.keys().cloned().collect();
        assert_eq!(
            streamed,
            listed.keys().cloned().collect(),
            "{}'s stream and list",
            user.name
        );
    }
    relay.signal("TERM");
    let _ = relay.child.wait().await;
    trigger.trigger();
    running.stopped().await;
}

#[tokio::test]
async fn every_committed_change_reaches_every_user_s_screen() {
    run_pipeline(false).await;
}

#[tokio::test]
async fn with_the_relay_killed_at_random_moments_every_change_still_arrives() {
    run_pipeline(true).await;
}
