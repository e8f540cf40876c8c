//! Test support: a fresh MongoDB database, topic prefix and consumer group per test; events
//! produced straight to Kafka; the service started in process on a free port; a small HTTP
//! client that reads streams incrementally.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use tasklist_api::config::{Config, Layered};
use tasklist_api::service::{Running, start};
use taskpool_schemas::{
    DataEntryEvent, Payload, SourceReference, Task, TaskEvent, TaskState, Timestamp, encode as avro,
};
use taskpool_service::shutdown::{self, ShutdownTrigger};
use taskpool_testkit::{required_env, wait_for};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One test's world.
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
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    for (key, value) in security {
        match *key {
            "PROTOCOL" => client.set("security.protocol", value),
            "SSL_CA_LOCATION" => client.set("ssl.ca.location", value),
            other => panic!("no client property for {other}"),
        };
    }
    client
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
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}", &id[..12]);
        let admin: AdminClient<DefaultClientContext> =
            kafka_client(&bootstrap, &security).create().unwrap();
        let topics = [format!("{prefix}.tasks"), format!("{prefix}.data-entries")];
        let new_topics: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
            .collect();
        admin
            .create_topics(&new_topics, &AdminOptions::new())
            .await
            .expect("create topics");
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
        .map(|(k, v)| (format!("{}{k}", tasklist_api::config::ENV_PREFIX), v))
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

/// A complete HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send_request(address: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    send(address, "GET", path, headers).await
}

async fn send(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// A GET whose whole response is read (`Connection: close`).
pub async fn get(address: &str, path: &str, bearer: Option<&str>) -> Reply {
    request(address, "GET", path, bearer).await
}

/// A bodiless request whose whole response is read (`Connection: close`).
pub async fn request(address: &str, method: &str, path: &str, bearer: Option<&str>) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Connection", "close"), ("Content-Length", "0")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    request_with(address, method, path, &headers).await
}

/// A request with exactly these headers, whose whole response is read (send
/// `Connection: close`).
pub async fn request_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = send(address, method, path, headers).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_lowercase(), v.to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A stream being read event by event.
pub struct StreamClient {
    reader: BufReader<TcpStream>,
    pending: String,
    chunk_left: usize,
    pub status: u16,
    pub last_id: Option<String>,
}

impl StreamClient {
    pub async fn open(
        address: &str,
        path: &str,
        bearer: &str,
        last_event_id: Option<&str>,
    ) -> StreamClient {
        let auth = format!("Bearer {bearer}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", "text/event-stream"),
        ];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let stream = send_request(address, path, &headers).await;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        StreamClient {
            reader,
            pending: String::new(),
            chunk_left: 0,
            status,
            last_id: None,
        }
    }

    /// Reads more of the chunked body; false at its end.
    async fn fill(&mut self) -> bool {
        if self.chunk_left == 0 {
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                return false;
            }
            if size.trim().is_empty() {
                size.clear();
                if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                    return false;
                }
            }
            self.chunk_left = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if self.chunk_left == 0 {
                return false;
            }
        }
        let mut buffer = vec![0u8; self.chunk_left];
        let read = self.reader.read(&mut buffer).await.unwrap_or(0);
        if read == 0 {
            return false;
        }
        self.chunk_left -= read;
        self.pending
            .push_str(&String::from_utf8_lossy(&buffer[..read]));
        true
    }

    /// The next event (heartbeats skipped), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut name = None;
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("event data is JSON"));
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    if id.is_some() {
                        self.last_id = id.clone();
                    }
                    return Some(SseEvent { name, id, data });
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next event within `deadline`, or a panic naming `what`.
    pub async fn expect(&mut self, what: &str, deadline: Duration) -> SseEvent {
        tokio::time::timeout(deadline, self.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
    }
}

/// A client-side view of a stream: the tasks it currently holds.
#[derive(Debug, Default)]
pub struct Tasklist {
    pub tasks: BTreeMap<String, Value>,
    pub resyncs: usize,
}

impl Tasklist {
    pub fn apply(&mut self, event: &SseEvent) {
        match event.name.as_str() {
            "upsert" => {
                let id = event.data["id"].as_str().unwrap().to_string();
                self.tasks.insert(id, event.data.clone());
            }
            "remove" => {
                self.tasks.remove(event.data["id"].as_str().unwrap());
            }
            "resync" => {
                self.tasks.clear();
                self.resyncs += 1;
            }
            _ => {}
        }
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.tasks.keys().cloned().collect()
    }
}

/// A task event: `assignee` and `groups` decide who sees it.
pub fn task_event(
    id: &str,
    version: i64,
    assignee: Option<&str>,
    groups: &[&str],
    state: TaskState,
) -> TaskEvent {
    TaskEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "TaskUpdated".into(),
        version,
        occurred_at: Timestamp::now(),
        task: Task {
            id: id.into(),
            source_reference: SourceReference {
                process_instance_id: "pi".into(),
                execution_id: "ex".into(),
                process_definition_id: "order:1".into(),
                process_definition_key: "order".into(),
                process_name: "Order".into(),
                application_name: "shop".into(),
                tenant_id: None,
            },
            task_definition_key: "approve".into(),
            name: format!("Task {id}"),
            description: None,
            form_key: None,
            priority: 50,
            create_time: Timestamp(1_000),
            due_date: None,
            follow_up_date: None,
            assignee: assignee.map(str::to_string),
            owner: None,
            candidate_users: Default::default(),
            candidate_groups: groups.iter().map(|g| g.to_string()).collect(),
            business_key: Some(format!("bk-{id}")),
            payload: Payload::default(),
            correlations: vec![],
            state,
            delete_reason: None,
        },
    }
}

/// A private MongoDB-wire server (so a test may stop and restart it), keeping its data in a
/// temporary directory across restarts.
pub struct PrivateMongo {
    pub port: u16,
    pub data: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateMongo {
    pub async fn start() -> PrivateMongo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = std::env::temp_dir().join(format!("tasklist-mongo-{}", uuid::Uuid::new_v4()));
        let mut mongo = PrivateMongo {
            port,
            data,
            child: None,
        };
        mongo.restart().await;
        mongo
    }

    pub fn uri(&self) -> String {
        // Quick heartbeats: the driver notices the restarted server within a second.
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&heartbeatFrequencyMS=500&serverSelectionTimeoutMS=5000",
            self.port
        )
    }

    /// Starts the server (again) on the same port and data.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new(required_env("MONGO_PYTHON"))
            .arg(required_env("MONGO_LAUNCHER"))
            .args([
                "--host",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--data-dir",
            ])
            .arg(&self.data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(match std::env::var("TASKPOOL_TEST_MONGO_LOG") {
                Ok(path) => std::process::Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .unwrap(),
                ),
                Err(_) => std::process::Stdio::null(),
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start a private MongoDB-wire server");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        wait_for("the private MongoDB to listen", DEADLINE, || async {
            TcpStream::connect(&address).await.ok().map(|_| ())
        })
        .await;
    }

    /// Kills the server at once (no clean shutdown).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
