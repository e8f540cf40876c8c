//! Test support for the relay: a fresh outbox schema and topic prefix per test, engine
//! transactions through the collector, Kafka readers, and relays in-process or as processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub use kafka_relay::config::Horizon;
use kafka_relay::config::{Config, Layered};
use kafka_relay::metrics::Metrics;
use kafka_relay::shutdown::{self, ShutdownTrigger};
use kafka_relay::{Exit, Relay};
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::{PgStore, Store};
pub use taskpool_testkit::fixtures::new_task;
#[allow(unused_imports)]
pub use taskpool_testkit::kafka::PrivateBroker;
use taskpool_testkit::{PgTestDb, required_env, wait_for};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

mod kafka;
#[allow(unused_imports)]
pub use kafka::*;

/// One test's world: its own outbox schema, topic prefix and relay name.
pub struct World {
    pub db: PgTestDb,
    pub prefix: String,
    pub relay_name: String,
    pub bootstrap: String,
    /// Client properties every Kafka client of the test needs (TLS), beyond the brokers.
    pub kafka_properties: Vec<(&'static str, String)>,
    /// Which open transactions the relays of this world wait for.
    pub horizon: Horizon,
}

/// Declares, for each named `async fn name(horizon: Horizon)`, the tests `name::outbox_writers`
/// and `name::all_transactions`: everything the relay guarantees holds with either horizon.
#[macro_export]
macro_rules! with_either_horizon {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn outbox_writers() {
                super::$name(super::Horizon::OutboxWriters).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn all_transactions() {
                super::$name(super::Horizon::AllTransactions).await
            }
        }
    )+};
}

impl World {
    pub async fn new() -> World {
        World::with_bootstrap(required_env("KAFKA_BOOTSTRAP")).await
    }

    pub async fn with_bootstrap(bootstrap: String) -> World {
        World::build(PgTestDb::new().await, bootstrap, Vec::new()).await
    }

    /// The outbox on the PostgreSQL server that accepts TLS only, the broker behind TLS.
    pub async fn over_tls() -> World {
        let properties = vec![
            ("security.protocol", "ssl".to_string()),
            ("ssl.ca.location", required_env("TASKPOOL_TLS_CA")),
        ];
        World::build(
            PgTestDb::on("DATABASE_TLS_URL", 8).await,
            required_env("KAFKA_TLS_BOOTSTRAP"),
            properties,
        )
        .await
    }

    /// The broker's SASL_SSL listener, authenticating with SCRAM-SHA-512 as the test user with
    /// `password` (the right one: `KAFKA_SASL_PASSWORD`).
    pub async fn over_sasl(password: &str) -> World {
        World::build(
            PgTestDb::new().await,
            required_env("KAFKA_SASL_BOOTSTRAP"),
            sasl_properties(password),
        )
        .await
    }

    /// The outbox on the second PostgreSQL server (the one that accepts TLS only), with the
    /// plain broker: transactions a test holds open there hold back no other test's relay.
    pub async fn on_second_server() -> World {
        World::build(
            PgTestDb::on("DATABASE_TLS_URL", 8).await,
            required_env("KAFKA_BOOTSTRAP"),
            Vec::new(),
        )
        .await
    }

    async fn build(
        db: PgTestDb,
        bootstrap: String,
        kafka_properties: Vec<(&'static str, String)>,
    ) -> World {
        PgStore::migrate(&db.pool).await.expect("migrate outbox");
        let id = uuid::Uuid::new_v4().simple().to_string();
        World {
            db,
            prefix: format!("t{}", &id[..12]),
            relay_name: format!("relay-{}", &id[..6]),
            bootstrap,
            kafka_properties,
            horizon: Horizon::OutboxWriters,
        }
    }

    /// This world with relays waiting for `horizon`.
    pub fn with_horizon(self, horizon: Horizon) -> World {
        World { horizon, ..self }
    }

    /// A reader of this world's topics from their beginning.
    pub async fn reader(&self) -> KafkaReader {
        let topics = [self.tasks_topic(), format!("{}.data-entries", self.prefix)];
        KafkaReader::with_properties(&self.bootstrap, &self.kafka_properties, &topics).await
    }

    pub fn tasks_topic(&self) -> String {
        format!("{}.tasks", self.prefix)
    }

    /// The relay's settings as environment variables (for relay processes).
    pub fn relay_env(&self) -> BTreeMap<String, String> {
        let pairs = [
            ("DATABASE__URL", self.db.url()),
            ("KAFKA__BOOTSTRAP_SERVERS", self.bootstrap.clone()),
            ("KAFKA__TOPIC_PREFIX", self.prefix.clone()),
            ("KAFKA__CREATE_TOPICS", "true".into()),
            ("KAFKA__PARTITIONS", "3".into()),
            ("RELAY__NAME", self.relay_name.clone()),
            ("RELAY__BATCH_SIZE", "200".into()),
            ("LEASE__TTL_MS", "4000".into()),
            ("LEASE__RENEW_INTERVAL_MS", "500".into()),
            ("LEASE__SAFETY_MARGIN_MS", "1000".into()),
            ("RELAY__LAG_INTERVAL_MS", "500".into()),
            ("HTTP__LISTEN", "127.0.0.1:0".into()),
            ("LOG__FORMAT", "json".into()),
            ("RELAY__HORIZON", horizon_setting(self.horizon).into()),
        ];
        let security = self.kafka_properties.iter().map(|(key, value)| match *key {
            "security.protocol" => ("KAFKA__SECURITY__PROTOCOL", value.to_uppercase()),
            "ssl.ca.location" => ("KAFKA__SECURITY__SSL_CA_LOCATION", value.clone()),
            "sasl.mechanism" => ("KAFKA__SECURITY__SASL_MECHANISM", value.clone()),
            "sasl.username" => ("KAFKA__SECURITY__SASL_USERNAME", value.clone()),
            "sasl.password" => ("KAFKA__SECURITY__SASL_PASSWORD", value.clone()),
            other => panic!("no relay setting for {other}"),
        });
        pairs
            .into_iter()
            .chain(security)
            .map(kafka_relay::config::Config::env_var)
            .collect()
    }

    /// The relay's configuration for an in-process relay, with overrides (`SECTION__KEY`).
    pub fn relay_config(&self, overrides: &[(&str, &str)]) -> Config {
        let mut env = self.relay_env();
        for (key, value) in overrides {
            env.insert(
                format!("{}{key}", kafka_relay::config::ENV_PREFIX),
                value.to_string(),
            );
        }
        Config::from_sources("", env).expect("valid test configuration")
    }

    /// The tracking id of this world's relay's stored position (0 before it stored one).
    pub async fn stored_tracking_xid(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT tracking_xid::text::int8 FROM taskpool_relay_position WHERE relay_name = $1",
        )
        .bind(&self.relay_name)
        .fetch_optional(&self.db.pool)
        .await
        .unwrap()
        .unwrap_or(0)
    }

    /// Commits one engine transaction with these events.
    pub async fn commit(&self, events: Vec<EngineEvent>) {
        let mut tx = self.db.pool.begin().await.unwrap();
        let mut collector = Collector::new();
        for event in events {
            collector.record(event).unwrap();
        }
        collector.flush::<PgStore>(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// Client properties for the broker's SASL_SSL listener as the test user, with `password`.
pub fn sasl_properties(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "sasl_ssl".to_string()),
        ("ssl.ca.location", required_env("TASKPOOL_TLS_CA")),
        ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
        ("sasl.username", required_env("KAFKA_SASL_USERNAME")),
        ("sasl.password", password.to_string()),
    ]
}

/// The configuration value of a horizon.
pub fn horizon_setting(horizon: Horizon) -> &'static str {
    match horizon {
        Horizon::OutboxWriters => "outbox-writers",
        Horizon::AllTransactions => "all-transactions",
    }
}

/// An in-process relay and the handle to stop it.
pub struct RunningRelay {
    pub metrics: Arc<Metrics>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Exit>,
}

impl RunningRelay {
    pub async fn start(config: Config) -> RunningRelay {
        let metrics = Arc::new(Metrics::default());
        let relay = Relay::connect(config, metrics.clone())
            .await
            .expect("relay connects");
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(async move { relay.run(shutdown).await.expect("relay runs") });
        RunningRelay {
            metrics,
            trigger,
            task,
        }
    }

    pub async fn stop(self) -> Exit {
        self.trigger.trigger();
        self.task.await.expect("relay task")
    }

    /// Drops the shutdown trigger instead of calling it; the relay's exit, if within 30 s.
    pub async fn drop_trigger(self) -> Option<Exit> {
        drop(self.trigger);
        let ended = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        ended.ok().map(|exit| exit.expect("relay task"))
    }

    pub fn reads(&self) -> u64 {
        self.metrics.reads.get()
    }
}

/// A relay process (the `kafka-relay` binary), its stderr kept in a temporary file.
pub struct RelayProcess {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl RelayProcess {
    pub fn spawn(env: &BTreeMap<String, String>) -> RelayProcess {
        let log = std::env::temp_dir().join(format!("kafka-relay-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
            .arg("run")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn kafka-relay");
        RelayProcess { child, log }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id().expect("running")).unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The address of its HTTP endpoint, from its log.
    pub async fn http_address(&self) -> String {
        wait_for(
            "the relay's HTTP address in its log",
            Duration::from_secs(30),
            || async {
                let log = std::fs::read_to_string(&self.log).ok()?;
                log.lines().find_map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).ok()?;
                    value["fields"]["address"].as_str().map(str::to_string)
                })
            },
        )
        .await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A minimal HTTP GET, for `/metrics` and `/health`.
pub async fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The value of a metric in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

pub fn created(task_id: &str) -> EngineEvent {
    EngineEvent::TaskCreated {
        task_id: task_id.into(),
        task: new_task("Approve"),
    }
}

pub fn assigned(task_id: &str, user: &str) -> EngineEvent {
    EngineEvent::TaskAssigned {
        task_id: task_id.into(),
        assignee: Some(user.into()),
    }
}

/// A random number in `low..high` (test pacing only).
pub fn random_between(low: u64, high: u64) -> u64 {
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    low + random % (high - low)
}

/// Streams `total_events` events, `per_transaction` per transaction, over `tasks` task ids: first each task
/// is created, then its priority changes, so every key has many versions. Commits at most
/// `per_second` transactions a second; returns how many events were committed.
pub async fn stream_events(
    pool: sqlx::PgPool,
    task_prefix: &'static str,
    tasks: usize,
    total_events: usize,
    per_transaction: usize,
    transactions_per_second: u64,
) -> usize {
    let mut interval =
        tokio::time::interval(Duration::from_micros(1_000_000 / transactions_per_second));
    let mut committed = 0;
    while committed < total_events {
        interval.tick().await;
        let mut tx = pool.begin().await.unwrap();
        let mut collector = Collector::new();
        for i in 0..per_transaction.min(total_events - committed) {
            let slot = committed + i;
            let task_id = format!("{task_prefix}-{}", slot % tasks);
            let event = if slot < tasks {
                created(&task_id)
            } else {
                EngineEvent::TaskAttributesChanged {
                    task_id,
                    attributes: Box::new(taskpool_core::domain::task::TaskAttributes {
                        priority: Some(i32::try_from(slot / tasks).unwrap()),
                        ..Default::default()
                    }),
                }
            };
            collector.record(event).unwrap();
        }
        collector.flush::<PgStore>(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        committed += per_transaction.min(total_events - committed);
    }
    committed
}

/// Every event id in the outbox.
pub async fn outbox_event_ids(pool: &sqlx::PgPool) -> std::collections::BTreeSet<String> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM taskpool_outbox")
        .fetch_all(pool)
        .await
        .unwrap();
    ids.into_iter().map(|id| id.to_string()).collect()
}
pub mod pipeline;
