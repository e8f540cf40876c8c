//! `actions`: claims through the distributed pipeline at a steady rate. A claim goes
//! `POST /api/tasks/{id}/claim` -> command topic -> the demo engine (taskpool-engine-commands,
//! PostgreSQL) -> outbox -> relay -> broker -> tasklist-api's projection -> the caller's stream,
//! which shows the task claimed. Measured: request sent to that stream event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_relay::Relay;
use kafka_relay::metrics::Metrics as RelayMetrics;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use taskpool_core::PgStore;
use taskpool_demo::actions::DemoActions;
use taskpool_demo::process::APPLICATION;
use taskpool_demo::{Demo, DemoConfig};
use taskpool_engine_commands::CommandStore;
use taskpool_engine_commands::consumer::{self, ConsumerConfig};
use taskpool_schemas::Topics;
use taskpool_service::shutdown;
use taskpool_testkit::http::{StreamClient, get, post_json};
use tokio::sync::mpsc;

use crate::relay::relay_config_with;
use crate::setup::{BenchResult, Scratch};
use crate::stats::Samples;
use crate::tasklist_service;
use crate::topics::{delete_topics, unique_prefix};
use crate::{Options, server_env};

const DEADLINE: Duration = Duration::from_secs(120);

pub async fn run(options: &Options) -> BenchResult<()> {
    let rate = options.number("rate", 50)?.max(1);
    let seconds = options.number("seconds", 20)?.max(1);
    let bootstrap = server_env("KAFKA_BOOTSTRAP")?;
    let mongo_uri = server_env("MONGODB_URI")?;
    let scratch = Scratch::new(8).await?;
    let prefix = unique_prefix("actions");
    let outcome = measure(&scratch, &bootstrap, &mongo_uri, &prefix, rate, seconds).await;
    delete_topics(&prefix).await;
    scratch.drop_schema().await?;
    let (samples, actions_per_s) = outcome?;
    let (p50, p99) = (samples.percentile_ms(50.0), samples.percentile_ms(99.0));
    println!(
        "actions benchmark: {} claims at {rate}/s, request -> the caller's stream shows the claim",
        rate * seconds
    );
    println!(
        "  (tasklist-api -> command topic -> demo engine on PostgreSQL -> relay -> broker -> projection -> stream)"
    );
    println!(
        "p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        samples.percentile_ms(100.0)
    );
    println!(
        "RESULT actions_per_s={actions_per_s:.1} action_p50_ms={p50:.1} action_p99_ms={p99:.1}"
    );
    Ok(())
}

async fn create_action_topics(bootstrap: &str, prefix: &str) -> BenchResult<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let topics = Topics::new(prefix);
    let new: Vec<NewTopic> = [&topics.commands, &topics.outcomes]
        .into_iter()
        .map(|t| NewTopic::new(t, 6, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn measure(
    scratch: &Scratch,
    bootstrap: &str,
    mongo_uri: &str,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> BenchResult<(Samples, f64)> {
    create_action_topics(bootstrap, prefix).await?;
    let (trigger, stop) = shutdown::channel();
    let relay_config = relay_config_with(scratch, prefix, bootstrap, &[])?;
    let relay = Relay::connect(relay_config, Arc::new(RelayMetrics::default()))
        .await
        .map_err(|e| format!("relay: {e}"))?;
    let relay_task = tokio::spawn(relay.run(stop.clone()));

    // Every approval goes to the approvers (kermit among them).
    let config = DemoConfig {
        seed: Some(rate),
        manager_threshold: i64::MAX,
        ..DemoConfig::default()
    };
    let users = config.dev_sign_in_users();
    let env = tasklist_service::settings(mongo_uri, bootstrap, prefix, &users);
    let (address, tasklist) = tasklist_service::start(env, stop.clone()).await?;

    // The engine: the demo's rules on the same database, taking the commands.
    PgStore::migrate_all(&scratch.pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut demo = Demo::<PgStore>::prepare(scratch.pool.clone(), config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let engine = Demo::<PgStore>::prepare(scratch.pool.clone(), config)
        .await
        .map_err(|e| e.to_string())?;
    let engine_task = tokio::spawn(consumer::run::<PgStore, _>(
        ConsumerConfig::new(bootstrap, prefix, APPLICATION),
        scratch.pool.clone(),
        DemoActions::new(engine),
        stop.clone(),
    ));

    let total = usize::try_from(rate * seconds).map_err(|e| e.to_string())?;
    eprintln!("submitting {total} requests (one approval task each) ...");
    let mut tasks = Vec::with_capacity(total);
    for _ in 0..total {
        tasks.push(demo.submit_request().await.map_err(|e| e.to_string())?.1);
    }
    let users = get(&address, "/api/dev/users", None).await.json();
    let token = users["users"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["user"] == "kermit"))
        .and_then(|u| u["token"].as_str())
        .ok_or("no development token for kermit")?
        .to_string();

    // Kermit's stream: when each task first shows him as its assignee.
    let (claims_tx, mut claims) = mpsc::unbounded_channel::<(String, Instant)>();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let stream_address = address.clone();
    let stream_token = token.clone();
    let reader = tokio::spawn(async move {
        let mut stream =
            StreamClient::open(&stream_address, "/api/tasks/stream", &stream_token, None).await;
        while let Some(event) = stream.next().await {
            if event.name != "upsert" {
                continue;
            }
            let id = event.data["id"].as_str().unwrap_or_default().to_string();
            if event.data["assignee"] == "kermit" {
                let _ = claims_tx.send((id, Instant::now()));
            } else {
                let _ = seen_tx.send(id);
            }
        }
    });
    eprintln!("waiting for the {total} tasks to reach kermit's stream ...");
    let ready = tokio::time::timeout(DEADLINE, async {
        let mut known = std::collections::HashSet::new();
        while known.len() < total {
            match seen.recv().await {
                Some(id) => {
                    known.insert(id);
                }
                None => return false,
            }
        }
        true
    })
    .await;
    if ready != Ok(true) {
        return Err("the tasks did not all reach the stream".into());
    }

    eprintln!("claiming at {rate}/s for {seconds} s ...");
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut pace = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total);
    for task in &tasks {
        pace.tick().await;
        sent.insert(task.clone(), Instant::now());
        let (address, token, path) = (
            address.clone(),
            token.clone(),
            format!("/api/tasks/{task}/claim"),
        );
        requests.push(tokio::spawn(async move {
            post_json(&address, &path, Some(&token), None).await.status
        }));
    }
    for request in requests {
        let status = request.await.map_err(|e| e.to_string())?;
        if status != 202 {
            return Err(format!("a claim was answered {status}, not 202"));
        }
    }
    let mut shown: HashMap<String, Instant> = HashMap::new();
    let collected = tokio::time::timeout(DEADLINE, async {
        while shown.len() < total {
            match claims.recv().await {
                Some((id, at)) => {
                    shown.entry(id).or_insert(at);
                }
                None => return,
            }
        }
    })
    .await;
    if collected.is_err() {
        return Err(format!(
            "{} of {total} claims reached the stream",
            shown.len()
        ));
    }
    let mut samples = Samples::default();
    for (task, at) in &sent {
        let arrived = shown
            .get(task)
            .ok_or_else(|| format!("{task} never showed"))?;
        samples.push(arrived.saturating_duration_since(*at));
    }
    let first = sent.values().min().copied().ok_or("nothing sent")?;
    let last = shown.values().max().copied().ok_or("nothing shown")?;
    let actions_per_s = total as f64 / last.saturating_duration_since(first).as_secs_f64();

    trigger.trigger();
    reader.abort();
    let _ = engine_task.await;
    let _ = relay_task.await;
    tasklist.stopped().await;
    Ok((samples, actions_per_s))
}
