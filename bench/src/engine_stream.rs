//! Engine commit to tasklist stream (the `engine` benchmark's second part): processes started
//! through the engine's REST API at a steady rate; the relay drains the capture and publishes,
//! tasklist-api projects and streams each approval to the approver's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_relay::Relay;
use kafka_relay::config::Layered;
use kafka_relay::metrics::Metrics as RelayMetrics;
use serde_json::Value;
use taskpool_service::shutdown;
use taskpool_testkit::http::StreamClient;
use taskpool_testkit::operaton::{Engine, People};

use crate::server_env;
use crate::setup::BenchResult;
use crate::stats::Samples;
use crate::tasklist_service;

pub struct StreamLatency {
    /// From each start call (which commits) to the approval in the approver's stream.
    pub samples: Samples,
    /// How many processes were started.
    pub expected: usize,
    /// The slowest one: its latency, and when it was started after the first.
    pub slowest: (Duration, Duration),
}

/// Starts processes at `rate` a second for `seconds`; each one's approval must reach the
/// approver's stream.
pub async fn stream_latency(
    engine: &Engine,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> BenchResult<StreamLatency> {
    let people = People::unique();
    let approver = format!("{}a", people.approvers);
    let relay_env = [
        ("DATABASE__URL", server_env("ENGINE_DATABASE_URL")?),
        ("KAFKA__BOOTSTRAP_SERVERS", server_env("KAFKA_BOOTSTRAP")?),
        ("KAFKA__TOPIC_PREFIX", prefix.to_string()),
        ("KAFKA__CREATE_TOPICS", "true".into()),
        ("RELAY__NAME", prefix.to_string()),
        ("HTTP__LISTEN", "127.0.0.1:0".into()),
        ("LOG__LEVEL", "warn".into()),
        ("CAPTURE__ENABLED", "true".into()),
    ]
    .map(kafka_relay::config::Config::env_var);
    let relay_config =
        kafka_relay::config::Config::from_sources("", relay_env).map_err(|e| e.to_string())?;
    let relay = Relay::connect(relay_config, Arc::new(RelayMetrics::default()))
        .await
        .map_err(|e| format!("relay: {e}"))?;
    let (trigger, stop) = shutdown::channel();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let users = format!("{approver}:{}", people.approvers);
    let settings = tasklist_service::settings(
        &server_env("MONGODB_URI")?,
        &server_env("KAFKA_BOOTSTRAP")?,
        prefix,
        &users,
    );
    let tasklist_config = tasklist_service::config(settings.clone())?;
    let (address, tasklist) = tasklist_service::start(settings, stop.clone()).await?;
    let dev_users = taskpool_testkit::http::get(&address, "/api/dev/users", None)
        .await
        .json();
    let token = dev_users["users"][0]["token"]
        .as_str()
        .ok_or("no token")?
        .to_string();
    let mut stream = StreamClient::open(&address, "/api/tasks/stream", &token, None).await;

    // Warm-up: one process all the way (consumers joined, topics known).
    let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let warm = engine.start_purchase("warm-up", &people, false).await;
    wait_for_instance(&mut stream, &warm, Duration::from_secs(300)).await?;
    // The relay published the outbox's history first (a new relay starts at its beginning:
    // the comparison's events, earlier runs'); the timed processes start once tasklist-api
    // has projected all of it, so that they measure the pipeline, not the backlog.
    tasklist_service::caught_up(&tasklist_config, Duration::from_secs(300)).await?;

    let total = usize::try_from(rate * seconds).unwrap_or(usize::MAX);
    let began = Instant::now();
    let reader = tokio::spawn({
        let started = started.clone();
        async move {
            let mut samples = Samples::default();
            let mut slowest = (Duration::ZERO, Duration::ZERO);
            let mut seen = std::collections::HashSet::new();
            while seen.len() < total
                && let Some(event) = stream.next().await
            {
                let arrived = Instant::now();
                let instance = instance_of(&event.data);
                let at = started.lock().ok().and_then(|s| s.get(&instance).copied());
                if let Some(at) = at
                    && event.name == "upsert"
                    && seen.insert(instance)
                {
                    let latency = arrived.saturating_duration_since(at);
                    if latency > slowest.0 {
                        slowest = (latency, at.saturating_duration_since(began));
                    }
                    samples.push(latency);
                }
            }
            (samples, slowest)
        }
    });
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut calls = vec![];
    let rest = Arc::new(RestTarget::from_env()?);
    let body = Arc::new(people.purchase("rate", false).to_string());
    for _ in 0..total {
        ticks.tick().await;
        let (rest, body, started) = (rest.clone(), body.clone(), started.clone());
        calls.push(tokio::spawn(async move {
            let at = Instant::now();
            let instance = rest.start(&body).await?;
            started.lock().map_err(|_| "poisoned")?.insert(instance, at);
            Ok::<(), String>(())
        }));
    }
    for call in calls {
        call.await.map_err(|e| e.to_string())??;
    }
    // Until the last one arrived, or 30 s more (ending the stream ends the reader).
    let mut reader = reader;
    let (samples, slowest) = match tokio::time::timeout(Duration::from_secs(30), &mut reader).await
    {
        Ok(measured) => measured,
        Err(_) => {
            trigger.trigger();
            reader.await
        }
    }
    .map_err(|e| e.to_string())?;
    trigger.trigger();
    let _ = relay_task.await;
    // The relay's position goes with its topics: a position left behind would keep the
    // outbox's retention from ever deleting what it has not published.
    for forget in [
        "DELETE FROM taskpool_relay_position WHERE relay_name = $1",
        "DELETE FROM taskpool_relay_lease WHERE relay_name = $1",
    ] {
        sqlx::query(forget)
            .bind(prefix)
            .execute(&engine.pool)
            .await
            .map_err(|e| format!("forgetting the relay: {e}"))?;
    }
    tasklist.stopped().await;
    // The processes go, so that the next run does not start beside a thousand open tasks
    // (each install captures every open task).
    let instances: Vec<String> = started
        .lock()
        .map_err(|_| "poisoned")?
        .keys()
        .cloned()
        .collect();
    for instance in instances.iter().chain([&warm]) {
        engine.cancel(instance).await;
    }
    Ok(StreamLatency {
        samples,
        expected: total,
        slowest,
    })
}

fn instance_of(task: &Value) -> String {
    task["sourceReference"]["processInstanceId"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_for_instance(
    stream: &mut StreamClient,
    instance: &str,
    deadline: Duration,
) -> BenchResult<()> {
    tokio::time::timeout(deadline, async {
        while let Some(event) = stream.next().await {
            if instance_of(&event.data) == instance {
                return Ok(());
            }
        }
        Err("the stream ended during the warm-up".to_string())
    })
    .await
    .map_err(|_| "the warm-up process never reached the stream".to_string())?
}

/// The start call as a bare HTTP request, so that many run at once.
struct RestTarget {
    address: String,
    path: String,
}

impl RestTarget {
    fn from_env() -> BenchResult<RestTarget> {
        let url = server_env("ENGINE_REST_URL")?;
        let rest = url
            .strip_prefix("http://")
            .ok_or("ENGINE_REST_URL is not http://")?;
        let slash = rest.find('/').ok_or("ENGINE_REST_URL has no path")?;
        Ok(RestTarget {
            address: rest[..slash].to_string(),
            path: format!(
                "{}/process-definition/key/taskpool_purchase/start",
                &rest[slash..]
            ),
        })
    }

    async fn start(&self, body: &str) -> BenchResult<String> {
        let length = body.len().to_string();
        let reply = taskpool_testkit::http::request_with_body(
            &self.address,
            "POST",
            &self.path,
            &[
                ("Connection", "close"),
                ("Content-Type", "application/json"),
                ("Content-Length", length.as_str()),
            ],
            body.as_bytes(),
        )
        .await;
        if reply.status != 200 {
            return Err(format!("start: {} {}", reply.status, reply.body));
        }
        reply.json()["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no id".into())
    }
}
