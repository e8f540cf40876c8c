//! Test support: a fresh MongoDB database, topic prefix and consumer group per test; events
//! produced straight to Kafka; the service started in process on a free port; a small HTTP
//! client that reads streams incrementally.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tasklist_api::config::{Config, Layered};
use tasklist_api::server::{Running, start};
use taskpool_schemas::{DataEntryEvent, TaskEvent, encode as avro};
use taskpool_service::shutdown::{self, ShutdownTrigger};
#[allow(unused_imports)]
pub use taskpool_testkit::fixtures::task_event;
#[allow(unused_imports)]
pub use taskpool_testkit::http::*;
use taskpool_testkit::{kafka_topics, required_env, wait_for};

mod private_mongo;
#[allow(unused_imports)]
pub use private_mongo::PrivateMongo;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One test's world.
#[derive(Clone)]
pub struct World {
    pub mongo_uri: String,
    pub database: String,
    pub bootstrap: String,
    pub prefix: String,
    pub group: String,
    /// TLS settings of every Kafka client, as `kafka.security` keys (empty: plaintext).
    pub security: Vec<(&'static str, String)>,
    producer: FutureProducer,
    client: mongodb::Client,
}

/// A client for `bootstrap` with `security` (`kafka.security` keys, upper case) applied.
fn kafka_client(bootstrap: &str, security: &[(&'static str, String)]) -> ClientConfig {
    kafka_topics::client(bootstrap, &client_properties(security))
}

/// The librdkafka properties of the service's `kafka.security` settings the tests use.
pub fn client_properties(security: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let property = |key: &str| match key {
        "PROTOCOL" => "security.protocol",
        "SSL_CA_LOCATION" => "ssl.ca.location",
        other => panic!("no client property for {other}"),
    };
    security
        .iter()
        .map(|(key, value)| (property(key), value.clone()))
        .collect()
}

/// An integer field, whichever integer type the server returns it as.
pub fn integer(document: &mongodb::bson::Document, field: &str) -> Option<i64> {
    match document.get(field)? {
        mongodb::bson::Bson::Int32(n) => Some(i64::from(*n)),
        mongodb::bson::Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

impl World {
    pub async fn new() -> World {
        World::with_mongo(required_env("MONGODB_URI")).await
    }

    pub async fn with_mongo(mongo_uri: String) -> World {
        World::build(
            mongo_uri,
            required_env("KAFKA_BOOTSTRAP"),
            Vec::new(),
            "none",
        )
        .await
    }

    /// A world whose broker accepts TLS only, and whose producer compresses with `codec`.
    pub async fn over_tls(codec: &str) -> World {
        let security = vec![
            ("PROTOCOL", "SSL".to_string()),
            ("SSL_CA_LOCATION", required_env("TASKPOOL_TLS_CA")),
        ];
        World::build(
            required_env("MONGODB_URI"),
            required_env("KAFKA_TLS_BOOTSTRAP"),
            security,
            codec,
        )
        .await
    }

    /// A Kafka client configuration with this world's broker and TLS settings.
    pub fn kafka_client(&self) -> ClientConfig {
        kafka_client(&self.bootstrap, &self.security)
    }

    async fn build(
        mongo_uri: String,
        bootstrap: String,
        security: Vec<(&'static str, String)>,
        codec: &str,
    ) -> World {
        // One id for the test's topics, database and consumer group.
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}", &id[..12]);
        let names = taskpool_schemas::Topics::new(&prefix);
        let topics = [
            names.tasks.as_str(),
            &names.data_entries,
            &names.commands,
            &names.outcomes,
        ];
        kafka_topics::create_topics(&bootstrap, &client_properties(&security), &topics).await;
        let producer = kafka_client(&bootstrap, &security)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("compression.type", codec)
            .create()
            .unwrap();
        let client = mongodb::Client::with_uri_str(&mongo_uri).await.unwrap();
        World {
            client,
            mongo_uri,
            database: format!("db{}", &id[..12]),
            bootstrap,
            prefix,
            group: format!("g{}", &id[..12]),
            security,
            producer,
        }
    }

    pub fn config(&self) -> Config {
        Config::from_sources("", self.env()).expect("test configuration")
    }

    /// The service's settings as environment variables (for service processes).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("MONGODB__URI", self.mongo_uri.clone()),
            ("MONGODB__DATABASE", self.database.clone()),
            ("KAFKA__BOOTSTRAP_SERVERS", self.bootstrap.clone()),
            ("KAFKA__TOPIC_PREFIX", self.prefix.clone()),
            ("KAFKA__GROUP_ID", self.group.clone()),
            ("IDENTITY__HS256_SECRET", SECRET.into()),
            ("STREAM__HEARTBEAT_SECS", "1".into()),
            ("MONGODB__OPERATION_TIMEOUT_MS", "5000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(
            self.security
                .iter()
                .map(|(k, v)| (format!("KAFKA__SECURITY__{k}"), v.clone())),
        )
        .map(tasklist_api::config::Config::env_var)
        .collect()
    }

    pub async fn start(&self) -> Service {
        Service::start(self.config()).await
    }

    pub async fn send_task(&self, event: &TaskEvent) {
        self.send(
            &format!("{}.tasks", self.prefix),
            &event.task.id,
            avro(event).unwrap(),
        )
        .await;
    }

    pub async fn send_data_entry(&self, event: &DataEntryEvent) {
        let key = format!(
            "{}:{}",
            event.data_entry.entry_type, event.data_entry.entry_id
        );
        self.send(
            &format!("{}.data-entries", self.prefix),
            &key,
            avro(event).unwrap(),
        )
        .await;
    }

    pub async fn send(&self, topic: &str, key: &str, value: Vec<u8>) {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .expect("produce");
    }

    /// The end offset of each partition of the tasks topic.
    pub async fn end_offsets(&self) -> BTreeMap<i32, i64> {
        let consumer = self.offsets_reader();
        let topic = format!("{}.tasks", self.prefix);
        tokio::task::spawn_blocking(move || {
            (0..3)
                .map(|p| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .expect("watermarks");
                    (p, high)
                })
                .collect()
        })
        .await
        .unwrap()
    }

    /// The offsets the service's consumer group committed for the tasks topic.
    pub async fn committed_offsets(&self) -> BTreeMap<i32, i64> {
        let consumer = self.offsets_reader();
        let topic = format!("{}.tasks", self.prefix);
        tokio::task::spawn_blocking(move || {
            let mut partitions = rdkafka::TopicPartitionList::new();
            for p in 0..3 {
                partitions.add_partition(&topic, p);
            }
            let committed = consumer
                .committed_offsets(partitions, Duration::from_secs(10))
                .expect("committed offsets");
            committed
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(0).max(0)))
                .collect()
        })
        .await
        .unwrap()
    }

    /// A consumer in the service's group that never joins it: it only reads offsets.
    fn offsets_reader(&self) -> rdkafka::consumer::BaseConsumer {
        self.kafka_client()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    pub async fn mongo(&self) -> mongodb::Database {
        self.client.database(&self.database)
    }

    /// The stored version of a task, once it is there.
    pub async fn stored_version(&self, id: &str) -> Option<i64> {
        let tasks = self
            .mongo()
            .await
            .collection::<mongodb::bson::Document>("tasks");
        let document = tasks
            .find_one(mongodb::bson::doc! { "_id": id })
            .await
            .ok()??;
        integer(&document, "version")
    }

    pub async fn wait_for_version(&self, id: &str, version: i64) {
        wait_for(&format!("{id} at version {version}"), DEADLINE, || async {
            (self.stored_version(id).await == Some(version)).then_some(())
        })
        .await;
    }
}

/// The service, started in process on a free port.
pub struct Service {
    pub address: String,
    pub running: Running,
    trigger: ShutdownTrigger,
}

impl Service {
    pub async fn start(config: Config) -> Service {
        // TASKPOOL_TEST_LOG=debug shows the service's logs when a test needs explaining.
        static LOGGING: std::sync::Once = std::sync::Once::new();
        if let Ok(level) = std::env::var("TASKPOOL_TEST_LOG") {
            LOGGING.call_once(|| {
                taskpool_service::logging::init(&taskpool_service::logging::LogConfig {
                    format: taskpool_service::logging::LogFormat::Pretty,
                    level,
                    otlp_endpoint: None,
                })
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (trigger, shutdown) = shutdown::channel();
        let running = start(config, listener, shutdown)
            .await
            .expect("service starts");
        Service {
            address,
            running,
            trigger,
        }
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.running.stopped().await;
    }

    /// Drops the shutdown trigger without pulling it (its owner went away), then waits until
    /// every part of the service has ended.
    pub async fn stop_by_dropping_the_trigger(self) {
        drop(self.trigger);
        self.running.stopped().await;
    }
}

/// A bearer token for a user and groups.
pub fn token(user: &str, groups: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::default(),
        &serde_json::json!({ "sub": user, "groups": groups, "exp": exp }),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}
