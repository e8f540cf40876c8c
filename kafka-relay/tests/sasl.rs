//! The relay against the broker's SASL_SSL listener with SCRAM-SHA-512: it publishes with the
//! right password; with a wrong one it stops at start, saying authentication failed, and
//! neither publishes nor touches the outbox.

mod support;

use std::time::Duration;

use support::*;
use tasklist_api::config::{Config as TasklistConfig, Layered as _};
use taskpool_core::PgStore;
use taskpool_demo::actions::DemoActions;
use taskpool_demo::process::APPLICATION;
use taskpool_demo::{Demo, DemoConfig};
use taskpool_engine_commands::CommandStore as _;
use taskpool_engine_commands::consumer::{self, ConsumerConfig};
use taskpool_service::kafka::{KafkaSecurity, SaslMechanism, SecurityProtocol};
use taskpool_service::shutdown;
use taskpool_testkit::http::{get, post_json};
use taskpool_testkit::{required_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_over_sasl_ssl_with_scram() {
    let world = World::over_sasl(&required_env("KAFKA_SASL_PASSWORD")).await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    world.commit(vec![created("t1")]).await;
    world.commit(vec![assigned("t1", "kermit")]).await;
    let mut reader = world.reader().await;
    reader
        .read_until("both events", DEADLINE, |r| r.len() == 2)
        .await;
    let versions: Vec<i64> = reader.received.iter().map(Received::version).collect();
    assert_eq!(versions, [1, 2]);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_relay_saying_authentication_failed() {
    let world = World::over_sasl("not-the-password").await;
    world.commit(vec![created("waiting")]).await;
    let mut relay = RelayProcess::spawn(&world.relay_env());
    let status = tokio::time::timeout(DEADLINE, relay.child.wait())
        .await
        .expect("the relay gives up within the deadline")
        .expect("the relay's exit status");
    assert!(!status.success(), "{status}");
    let log = relay.log_text();
    assert!(
        log.to_lowercase().contains("authentication failed"),
        "the log says why: {log}"
    );

    // Nothing was published (the right password sees no topic with messages) and the outbox
    // is as the engine left it: the event is still there, no position was stored.
    let right = World::over_sasl(&required_env("KAFKA_SASL_PASSWORD")).await;
    assert!(
        !topic_exists(&right, &world.tasks_topic()).await,
        "the relay created its topic"
    );
    assert_eq!(outbox_event_ids(&world.db.pool).await.len(), 1);
    let positions: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_relay_position")
        .fetch_one(&world.db.pool)
        .await
        .unwrap_or(0);
    assert_eq!(positions, 0, "no position stored");
}

/// Every Kafka client of the distributed setup over SASL_SSL with SCRAM: the relay publishes
/// the demo engine's task, tasklist-api's projection shows it to kermit, his claim travels as a
/// command to the engine's consumer, and its outcome back to tasklist-api, which answers the
/// waiting request once kermit's own view shows the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_travels_the_whole_pipeline_over_sasl_ssl() {
    let password = required_env("KAFKA_SASL_PASSWORD");
    let world = World::over_sasl(&password).await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    let (trigger, stop) = shutdown::channel();

    let config = DemoConfig {
        seed: Some(7),
        manager_threshold: i64::MAX,
        ..DemoConfig::default()
    };
    let users = config.dev_sign_in_users();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let env = [
        ("MONGODB__URI", required_env("MONGODB_URI")),
        ("MONGODB__DATABASE", format!("sasl{}", &id[..12])),
        ("KAFKA__BOOTSTRAP_SERVERS", world.bootstrap.clone()),
        ("KAFKA__TOPIC_PREFIX", world.prefix.clone()),
        ("KAFKA__GROUP_ID", format!("sasl{}", &id[..12])),
        ("KAFKA__SECURITY__PROTOCOL", "SASL_SSL".into()),
        (
            "KAFKA__SECURITY__SSL_CA_LOCATION",
            required_env("TASKPOOL_TLS_CA"),
        ),
        ("KAFKA__SECURITY__SASL_MECHANISM", "SCRAM-SHA-512".into()),
        (
            "KAFKA__SECURITY__SASL_USERNAME",
            required_env("KAFKA_SASL_USERNAME"),
        ),
        ("KAFKA__SECURITY__SASL_PASSWORD", password.clone()),
        ("DEV_SIGN_IN__USERS", users),
    ]
    .map(tasklist_api::config::Config::env_var);
    let tasklist_config = TasklistConfig::from_sources("", env).expect("tasklist configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tasklist = tasklist_api::server::start(tasklist_config, listener, stop.clone())
        .await
        .expect("tasklist-api starts");

    // The engine: the demo's rules on the world's database, taking commands over SASL_SSL.
    PgStore::migrate_all(&world.db.pool).await.unwrap();
    let mut demo = Demo::<PgStore>::prepare(world.db.pool.clone(), config.clone())
        .await
        .unwrap();
    let engine = Demo::<PgStore>::prepare(world.db.pool.clone(), config)
        .await
        .unwrap();
    let mut commands = ConsumerConfig::new(&world.bootstrap, &world.prefix, APPLICATION);
    commands.security = KafkaSecurity {
        protocol: SecurityProtocol::SaslSsl,
        sasl_mechanism: Some(SaslMechanism::ScramSha512),
        sasl_username: Some(required_env("KAFKA_SASL_USERNAME")),
        sasl_password: Some(password.into()),
        ssl_ca_location: Some(required_env("TASKPOOL_TLS_CA")),
        ..Default::default()
    };
    let engine_task = tokio::spawn(consumer::run::<PgStore, _>(
        commands,
        world.db.pool.clone(),
        DemoActions::new(engine),
        stop.clone(),
    ));

    let (_, task) = demo.submit_request().await.unwrap();
    let dev_users = get(&address, "/api/dev/users", None).await.json();
    let token = dev_users["users"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["user"] == "kermit"))
        .and_then(|u| u["token"].as_str())
        .expect("a development token for kermit")
        .to_string();
    let path = format!("/api/tasks/{task}");
    wait_for("kermit to see the task", DEADLINE, || async {
        let reply = get(&address, &path, Some(&token)).await;
        (reply.status == 200).then_some(())
    })
    .await;

    let claimed = post_json(
        &address,
        &format!("/api/tasks/{task}/claim?wait=30s"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(claimed.status, 200, "{}", claimed.json());
    let shown = get(&address, &path, Some(&token)).await.json();
    assert_eq!(shown["assignee"], "kermit", "{shown}");

    trigger.trigger();
    engine_task
        .await
        .unwrap()
        .expect("the engine's consumer ran");
    tasklist.stopped().await;
    relay.stop().await;
}
