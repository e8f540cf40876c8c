//! The whole pipeline on the real engine: Operaton with the capture installed, a `kafka-relay`
//! process draining the capture and carrying out actions through the engine's REST API, and
//! tasklist-api in-process, with the people of one test as development sign-in users.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tasklist_api::config::{Config as TasklistConfig, Layered as _};
use taskpool_schemas::Topics;
use taskpool_service::shutdown::{self, ShutdownTrigger};
use taskpool_testkit::http::{Reply, get, post_json};
use taskpool_testkit::operaton::{APPLICATION, Engine, Flavour, engine_millis};
use taskpool_testkit::required_env;
use tokio::sync::Mutex;

use super::{KafkaReader, RelayProcess};

pub struct Pipeline {
    pub engine: Engine,
    /// The relay's settings, to start it again after a kill.
    pub relay_env: BTreeMap<String, String>,
    relay: Arc<Mutex<RelayProcess>>,
    /// tasklist-api's `host:port`.
    pub address: String,
    pub bootstrap: String,
    pub topics: Topics,
    tokens: BTreeMap<String, String>,
    stop: ShutdownTrigger,
    tasklist: tasklist_api::server::Running,
}

impl Pipeline {
    /// Starts everything for these users (`name`, groups), who are created in the engine too.
    pub async fn start(flavour: Flavour, users: &[(&str, &[&str])]) -> Pipeline {
        let engine = Engine::of(flavour).await;
        for (user, groups) in users {
            engine.create_user(user, groups).await;
        }
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let prefix = format!("engine{id}");
        let bootstrap = required_env("KAFKA_BOOTSTRAP");
        let relay_env: BTreeMap<String, String> = [
            ("DATABASE__URL", engine.database_url.clone()),
            ("KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone()),
            ("KAFKA__TOPIC_PREFIX", prefix.clone()),
            ("KAFKA__CREATE_TOPICS", "true".into()),
            ("KAFKA__PARTITIONS", "3".into()),
            ("RELAY__NAME", prefix.clone()),
            ("LEASE__TTL_MS", "3000".into()),
            ("LEASE__RENEW_INTERVAL_MS", "500".into()),
            ("LEASE__SAFETY_MARGIN_MS", "1000".into()),
            ("HTTP__LISTEN", "127.0.0.1:0".into()),
            ("LOG__FORMAT", "json".into()),
            ("CAPTURE__ENABLED", "true".into()),
            ("ACTIONS__ENABLED", "true".into()),
            ("ACTIONS__APPLICATION", APPLICATION.into()),
            ("ACTIONS__ENGINE_URL", engine.rest_url.clone()),
        ]
        .into_iter()
        .map(kafka_relay::config::Config::env_var)
        .collect();
        let relay = Arc::new(Mutex::new(RelayProcess::spawn(&relay_env)));

        let sign_in: Vec<String> = users
            .iter()
            .map(|(user, groups)| format!("{user}:{}", groups.join("+")))
            .collect();
        let env = [
            ("MONGODB__URI", required_env("MONGODB_URI")),
            ("MONGODB__DATABASE", prefix.clone()),
            ("KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone()),
            ("KAFKA__TOPIC_PREFIX", prefix.clone()),
            ("KAFKA__GROUP_ID", prefix.clone()),
            ("DEV_SIGN_IN__USERS", sign_in.join(",")),
        ]
        .map(tasklist_api::config::Config::env_var);
        let config = TasklistConfig::from_sources("", env).expect("tasklist configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopping) = shutdown::channel();
        let tasklist = tasklist_api::server::start(config, listener, stopping)
            .await
            .expect("tasklist-api starts");
        let dev_users = get(&address, "/api/dev/users", None).await.json();
        let tokens = dev_users["users"]
            .as_array()
            .expect("development users")
            .iter()
            .map(|u| {
                let user = u["user"].as_str().unwrap().to_string();
                (user, u["token"].as_str().unwrap().to_string())
            })
            .collect();
        Pipeline {
            engine,
            relay_env,
            relay,
            address,
            bootstrap,
            topics: Topics::new(&prefix),
            tokens,
            stop,
            tasklist,
        }
    }

    pub fn token(&self, user: &str) -> &str {
        &self.tokens[user]
    }

    /// `POST /api/tasks/{task}/{action}` as `user`, with a JSON body and an idempotency key.
    pub async fn act(
        &self,
        user: &str,
        task: &str,
        action: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Reply {
        let path = format!("/api/tasks/{task}/{action}?wait=30s");
        match key {
            None => {
                let text = body.map(|b| b.to_string());
                post_json(
                    &self.address,
                    &path,
                    Some(self.token(user)),
                    text.as_deref(),
                )
                .await
            }
            Some(key) => {
                let text = body.map(|b| b.to_string()).unwrap_or_default();
                let length = text.len().to_string();
                let auth = format!("Bearer {}", self.token(user));
                taskpool_testkit::http::request_with_body(
                    &self.address,
                    "POST",
                    &path,
                    &[
                        ("Authorization", auth.as_str()),
                        ("Idempotency-Key", key),
                        ("Content-Type", "application/json"),
                        ("Content-Length", length.as_str()),
                        ("Connection", "close"),
                    ],
                    text.as_bytes(),
                )
                .await
            }
        }
    }

    /// `user`'s tasklist (`GET /api/tasks`), by task id.
    pub async fn tasklist(&self, user: &str) -> BTreeMap<String, Value> {
        let reply = get(
            &self.address,
            "/api/tasks?limit=500",
            Some(self.token(user)),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
            .collect()
    }

    /// Waits until `user`'s tasklist holds exactly the tasks the engine lets them see, each
    /// with the engine's fields; returns the tasklist.
    pub async fn wait_until_equal(
        &self,
        user: &str,
        deadline: Duration,
    ) -> BTreeMap<String, Value> {
        let mut last = String::new();
        let found = tokio::time::timeout(deadline, async {
            loop {
                let engine = self.engine.visible_to(user).await;
                let tasklist = self.tasklist(user).await;
                match self.difference(&engine, &tasklist).await {
                    None => return tasklist,
                    Some(difference) => last = difference,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("{user}'s tasklist never equalled the engine's: {last}"))
    }

    /// What differs between the engine's tasks and a tasklist's, if anything.
    pub async fn difference(
        &self,
        engine: &BTreeMap<String, Value>,
        tasklist: &BTreeMap<String, Value>,
    ) -> Option<String> {
        let engine_ids: BTreeSet<&String> = engine.keys().collect();
        let tasklist_ids: BTreeSet<&String> = tasklist.keys().collect();
        if engine_ids != tasklist_ids {
            return Some(format!("engine {engine_ids:?}, tasklist {tasklist_ids:?}"));
        }
        for (id, task) in engine {
            let shown = &tasklist[id];
            let (users, groups) = self.engine.candidates(id).await;
            let millis = |v: &Value| v.as_str().map(engine_millis);
            let pairs = [
                ("name", task["name"].clone(), shown["name"].clone()),
                (
                    "assignee",
                    task["assignee"].clone(),
                    shown["assignee"].clone(),
                ),
                (
                    "priority",
                    task["priority"].clone(),
                    shown["priority"].clone(),
                ),
                (
                    "description",
                    task["description"].clone(),
                    shown["description"].clone(),
                ),
                ("formKey", task["formKey"].clone(), shown["formKey"].clone()),
                (
                    "taskDefinitionKey",
                    task["taskDefinitionKey"].clone(),
                    shown["taskDefinitionKey"].clone(),
                ),
                (
                    "processInstanceId",
                    task["processInstanceId"].clone(),
                    shown["sourceReference"]["processInstanceId"].clone(),
                ),
                ("due", millis(&task["due"]).into(), shown["dueDate"].clone()),
                (
                    "followUp",
                    millis(&task["followUp"]).into(),
                    shown["followUpDate"].clone(),
                ),
                (
                    "created",
                    millis(&task["created"]).into(),
                    shown["createTime"].clone(),
                ),
                (
                    "candidateUsers",
                    users.into(),
                    sorted(&shown["candidateUsers"]),
                ),
                (
                    "candidateGroups",
                    groups.into(),
                    sorted(&shown["candidateGroups"]),
                ),
            ];
            for (field, expected, actual) in pairs {
                if expected != actual {
                    return Some(format!(
                        "task {id} {field}: engine {expected}, tasklist {actual}"
                    ));
                }
            }
        }
        None
    }

    /// A handle that kills the relay (SIGKILL) and starts it again, from another task.
    pub fn relay_killer(&self) -> RelayKiller {
        RelayKiller {
            relay: self.relay.clone(),
            env: self.relay_env.clone(),
        }
    }

    /// The running relay's log lines above INFO, and those about commands (for a failure's
    /// message).
    pub async fn relay_log(&self) -> String {
        let log = self.relay.lock().await.log_text();
        log.lines()
            .filter(|l| !l.contains("\"INFO\"") || l.contains("command"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What each part shows of an action that was not answered `applied`: the engine's
    /// processed-command record and task, `user`'s view, the outbox, the outcome topic and the
    /// relay's log (a failure's message).
    pub async fn why_not_applied(&self, reply: &Reply, task: &str, user: &str) -> String {
        let id = reply.json()["commandId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let decided: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT result, task_version FROM taskpool_processed_commands WHERE command_id = $1",
        )
        .bind(&id)
        .fetch_optional(&self.engine.pool)
        .await
        .unwrap();
        let in_engine = self
            .engine
            .call("GET", &format!("/task/{task}"), None)
            .await
            .body;
        let path = format!("/api/tasks/{task}");
        let view = get(&self.address, &path, Some(self.token(user))).await.body;
        let outbox: Vec<(i64, String)> = sqlx::query_as(
            "SELECT aggregate_version, event_type FROM taskpool_outbox \
             WHERE aggregate_id = $1 ORDER BY position",
        )
        .bind(task)
        .fetch_all(&self.engine.pool)
        .await
        .unwrap();
        let topic = std::slice::from_ref(&self.topics.outcomes);
        let mut reader = KafkaReader::new(&self.bootstrap, topic).await;
        tokio::task::block_in_place(|| reader.poll_for(Duration::from_secs(5)));
        let outcomes: Vec<(&str, Option<i64>)> = reader
            .received
            .iter()
            .map(|r| (r.key.as_str(), r.produced_at_ms))
            .collect();
        format!(
            "{} {} at {:?}\ndecided: {decided:?}\nengine: {in_engine}\nview: {view}\n\
             outbox: {outbox:?}\noutcomes: {outcomes:?}\nrelay: {}",
            reply.status,
            reply.body,
            std::time::SystemTime::now(),
            self.relay_log().await
        )
    }

    /// Sends a signal to the running relay.
    pub async fn signal_relay(&self, signal: &str) {
        self.relay.lock().await.signal(signal);
    }

    pub async fn stop(self) {
        self.stop.trigger();
        self.tasklist.stopped().await;
        drop(self.relay);
    }
}

/// Kills the pipeline's relay and starts it again.
pub struct RelayKiller {
    relay: Arc<Mutex<RelayProcess>>,
    env: BTreeMap<String, String>,
}

impl RelayKiller {
    pub async fn kill_and_restart(&self) {
        let mut relay = self.relay.lock().await;
        relay.signal("KILL");
        let _ = relay.child.wait().await;
        *relay = RelayProcess::spawn(&self.env);
    }
}

fn sorted(list: &Value) -> Value {
    let mut items: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items.into()
}
