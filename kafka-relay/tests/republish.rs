//! `kafka-relay republish` as an operator uses it: after everything was published, selecting by
//! aggregate, by position range and by time sends exactly the selected events again (and
//! `--dry-run` only counts them); with no selection it refuses to run. tasklist-api's projection
//! consumes it all, and its documents are the same afterwards: republishing is idempotent end to
//! end.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use support::*;
use tasklist_api::config::{Config as TasklistConfig, Layered as _};
use tasklist_api::mongo::store::MongoStore;
use taskpool_service::shutdown;
use taskpool_tasklist::metrics::Metrics;
use taskpool_testkit::{required_env, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

async fn republish(env: &BTreeMap<String, String>, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .arg("republish")
        .args(args)
        .envs(env)
        .output()
        .await
        .unwrap()
}

/// The keys received from the `from`-th message on, sorted (partitions interleave).
fn keys(reader: &KafkaReader, from: usize) -> Vec<String> {
    let mut keys: Vec<String> = reader.received[from..]
        .iter()
        .map(|m| m.key.clone())
        .collect();
    keys.sort();
    keys
}

/// tasklist-api's projection of the world's topics, in this process, into a fresh database.
struct Projection {
    store: MongoStore,
    metrics: std::sync::Arc<Metrics>,
    stop: shutdown::ShutdownTrigger,
    running: tokio::task::JoinHandle<Result<(), rdkafka::error::KafkaError>>,
}

impl Projection {
    async fn start(world: &World) -> Projection {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let env = [
            ("MONGODB__URI", required_env("MONGODB_URI")),
            ("MONGODB__DATABASE", format!("republish{id}")),
            ("KAFKA__BOOTSTRAP_SERVERS", world.bootstrap.clone()),
            ("KAFKA__TOPIC_PREFIX", world.prefix.clone()),
            ("KAFKA__GROUP_ID", format!("republish{id}")),
            (
                "IDENTITY__HS256_SECRET",
                "republish-test-secret-republish-test".into(),
            ),
        ]
        .map(tasklist_api::config::Config::env_var);
        let config = TasklistConfig::from_sources("", env).expect("tasklist configuration");
        let metrics = std::sync::Arc::new(Metrics::default());
        let store = MongoStore::connect(&config.mongodb, metrics.clone())
            .await
            .unwrap();
        let (stop, shutdown) = shutdown::channel();
        let running = tokio::spawn(tasklist_api::kafka::projection::run(
            config.kafka,
            store.clone(),
            metrics.clone(),
            shutdown,
        ));
        Projection {
            store,
            metrics,
            stop,
            running,
        }
    }

    async fn consumed(&self, events: u64) {
        wait_for(
            &format!("the projection to consume {events} events"),
            DEADLINE,
            || async { (self.metrics.consumed_events.get() >= events).then_some(()) },
        )
        .await;
    }

    /// Every task document, as JSON by id.
    async fn documents(&self) -> BTreeMap<String, serde_json::Value> {
        let found: Vec<Document> = self
            .store
            .database()
            .collection::<Document>(&self.store.tasks_collection())
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        found
            .into_iter()
            .map(|d| {
                (
                    d.get_str("_id").unwrap().to_string(),
                    Bson::Document(d).into_relaxed_extjson(),
                )
            })
            .collect()
    }

    async fn stop(self) {
        self.stop.trigger();
        self.running.await.unwrap().unwrap();
        let _ = self.store.database().drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_selected_events_are_sent_again() {
    let world = World::new().await;
    let relay = RunningRelay::start(world.relay_config(&[])).await;
    world.commit(vec![created("a")]).await; // position 1
    world.commit(vec![created("b")]).await; // 2
    world.commit(vec![created("c")]).await; // 3
    world.commit(vec![assigned("a", "kermit")]).await; // 4
    let mut reader = world.reader().await;
    reader
        .read_until("the first publication", DEADLINE, |r| r.len() >= 4)
        .await;
    relay.stop().await;
    assert_eq!(keys(&reader, 0), ["a", "a", "b", "c"]);
    let env = world.relay_env();
    let projection = Projection::start(&world).await;
    projection.consumed(4).await;
    let projected = projection.documents().await;
    assert_eq!(projected.len(), 3);
    assert_eq!(projected["a"]["assignee"], "kermit");

    // A dry run counts and sends nothing.
    let dry = republish(&env, &["--aggregate", "a", "--dry-run"]).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout).trim(),
        "would republish 2 events"
    );

    // By aggregate: a's two events, in order.
    let sent = republish(&env, &["--aggregate", "a"]).await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        "republished 2 events"
    );
    reader
        .read_until("a's events again", DEADLINE, |r| r.len() >= 6)
        .await;
    assert_eq!(keys(&reader, 4), ["a", "a"]);
    let versions: Vec<i64> = reader.received[4..].iter().map(|m| m.version()).collect();
    assert_eq!(versions, [1, 2], "an aggregate's events keep their order");

    // By position range: 1 to 3 (a's creation arrives after its assignment, again).
    assert!(
        republish(&env, &["--from-position", "1", "--to-position", "3"])
            .await
            .status
            .success()
    );
    reader
        .read_until("positions 1 to 3", DEADLINE, |r| r.len() >= 9)
        .await;
    assert_eq!(keys(&reader, 6), ["a", "b", "c"]);

    // By time: everything written at or after position 3's time.
    let since: String = wait_for("position 3's time", DEADLINE, || async {
        sqlx::query_scalar(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM taskpool_outbox WHERE position = 3",
        )
        .fetch_optional(&world.db.pool)
        .await
        .unwrap()
    })
    .await;
    assert!(republish(&env, &["--since", &since]).await.status.success());
    reader
        .read_until("positions 3 and 4", DEADLINE, |r| r.len() >= 11)
        .await;
    assert_eq!(keys(&reader, 9), ["a", "c"]);

    // Nothing more was sent than selected.
    reader.poll_for(Duration::from_secs(1));
    assert_eq!(reader.received.len(), 11);

    // No selection: refused as a usage error, nothing sent.
    assert_eq!(republish(&env, &[]).await.status.code(), Some(2));
    reader.poll_for(Duration::from_millis(500));
    assert_eq!(reader.received.len(), 11);

    // The projection took every copy and its documents did not change.
    projection.consumed(11).await;
    assert_eq!(projection.documents().await, projected);
    projection.stop().await;
}
