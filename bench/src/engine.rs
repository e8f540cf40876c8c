//! The real engine (Operaton, `ENGINE_REST_URL` on `ENGINE_DATABASE_URL`) with taskpool's
//! capture:
//!
//! 1. What the capture costs the engine: its own REST calls (start a process, complete its
//!    first task) timed in rounds with the capture installed and uninstalled, alternating,
//!    while a drain empties the capture queue as the relay would.
//! 2. Engine commit to tasklist stream: processes started at a steady rate; the relay drains
//!    and publishes, tasklist-api projects and streams to the approver's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_relay::Relay;
use kafka_relay::metrics::Metrics as RelayMetrics;
use serde_json::{Value, json};
use taskpool_capture::camunda;
use taskpool_capture::drain::drain_once;
use taskpool_service::shutdown::{self, Shutdown};
use taskpool_testkit::http::StreamClient;
use taskpool_testkit::operaton::{Engine, People, installation};

use crate::setup::BenchResult;
use crate::stats::Samples;
use crate::tasklist_service;
use crate::topics::{delete_topics, unique_prefix};
use crate::{Options, server_env};
use kafka_relay::config::Layered;

/// Untimed purchases before the first round (the engine's JIT and caches warm up), and
/// after each switch.
const WARM_UP: u64 = 300;

pub async fn run(options: &Options) -> BenchResult<()> {
    let rounds = options.number("rounds", 16)?;
    let iterations = options.number("iterations", 30)?;
    let rate = options.number("rate", 50)?.max(1);
    let seconds = options.number("seconds", 20)?;
    // After a switch each of the engine's pooled sessions (ten) compiles and plans the
    // capture's functions once: enough untimed purchases that the timed ones find them planned.
    let settle = options.number("settle", 40)?;
    let engine = Engine::ready().await;
    let people = People::unique();

    let mut untimed = Calls::default();
    for i in 0..WARM_UP {
        let key = format!("warm-{i}");
        untimed.measure(&engine, &people, &key).await?;
    }
    let apart = compare(&engine, &people, (rounds, iterations, settle), false).await?;
    let alongside = compare(&engine, &people, (rounds, iterations, settle), true).await?;
    camunda::install(&engine.pool, &installation())
        .await
        .map_err(|e| e.to_string())?;
    drain_queue(&engine.pool).await?;
    println!("the engine's REST calls, {rounds} rounds of {iterations} each way, alternating");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "call", "without p50", "with p50", "ratio"
    );
    let ratio = apart.print("queue drained between rounds");
    let ratio_alongside = alongside.print("drain running alongside");

    let prefix = unique_prefix("engine");
    let latency = stream_latency(&engine, &prefix, rate, seconds).await;
    delete_topics(&prefix).await;
    let (samples, expected) = latency?;
    println!(
        "engine commit -> tasklist stream at {rate} tasks/s for {seconds} s: {} of {expected} \
         tasks arrived, p50 {:.1} ms, p99 {:.1} ms",
        samples.count(),
        samples.percentile_ms(50.0),
        samples.percentile_ms(99.0)
    );
    if samples.count() < expected {
        return Err(format!(
            "{} tasks never reached the stream",
            expected - samples.count()
        ));
    }
    println!(
        "RESULT engine_capture_ratio={ratio:.3} engine_capture_ratio_drain_alongside={ratio_alongside:.3} engine_e2e_p50_ms={:.1} engine_e2e_p99_ms={:.1}",
        samples.percentile_ms(50.0),
        samples.percentile_ms(99.0)
    );
    Ok(())
}

/// The same calls with the capture installed and uninstalled, in ABBA rounds (a drift in
/// the engine or the machine favours neither); each switch is followed by untimed calls (the
/// engine's connections plan their statements again after the triggers change). With
/// `alongside`, the capture queue is drained all along, as a relay on the same machine would;
/// otherwise between rounds, so the figures are the engine's own.
async fn compare(
    engine: &Engine,
    people: &People,
    (rounds, iterations, settle): (u64, u64, u64),
    alongside: bool,
) -> BenchResult<Comparison> {
    let (stop_drain, draining) = shutdown::channel();
    let drain = alongside.then(|| tokio::spawn(drain_continuously(engine.pool.clone(), draining)));
    let mut comparison = Comparison::default();
    let mut untimed = Calls::default();
    for round in 0..rounds * 2 {
        let captured = (round % 2 == 0) == (round / 2 % 2 == 0);
        let switched = if captured {
            camunda::install(&engine.pool, &installation())
                .await
                .map(drop)
        } else {
            camunda::uninstall(&engine.pool).await
        };
        switched.map_err(|e| e.to_string())?;
        // What an install queues (the engine's open tasks) is not the calls' cost.
        drain_queue(&engine.pool).await?;
        for i in 0..settle {
            let key = format!("settle-{alongside}-{round}-{i}");
            untimed.measure(engine, people, &key).await?;
        }
        let calls = if captured {
            &mut comparison.with
        } else {
            &mut comparison.without
        };
        let mut this_round = Samples::default();
        for i in 0..iterations {
            let key = format!("bench-{alongside}-{round}-{i}");
            this_round.push(calls.measure(engine, people, &key).await?);
        }
        // Each ABBA pair's ratio, so that a drift between pairs cancels out.
        let p50 = this_round.percentile_ms(50.0);
        match comparison.open_pair.take() {
            None => comparison.open_pair = Some((captured, p50)),
            Some((true, with)) => comparison.pair_ratios.push(with / p50),
            Some((false, without)) => comparison.pair_ratios.push(p50 / without),
        }
        if !alongside {
            drain_queue(&engine.pool).await?;
        }
    }
    stop_drain.trigger();
    if let Some(drain) = drain {
        let _ = drain.await;
    }
    Ok(comparison)
}

#[derive(Default)]
struct Comparison {
    with: Calls,
    without: Calls,
    /// The first round of a pair: whether captured, and its p50 of one purchase.
    open_pair: Option<(bool, f64)>,
    /// Per pair of rounds: with p50 / without p50 of one purchase.
    pair_ratios: Vec<f64>,
}

impl Comparison {
    /// Prints the table's rows; returns the ratio of one purchase's p50s.
    fn print(&self, how: &str) -> f64 {
        let mut ratio = f64::NAN;
        for (name, without, with) in [
            ("start a process", &self.without.start, &self.with.start),
            (
                "complete a task",
                &self.without.complete,
                &self.with.complete,
            ),
            ("both (one purchase)", &self.without.both, &self.with.both),
        ] {
            ratio = with.percentile_ms(50.0) / without.percentile_ms(50.0);
            println!(
                "{:<44} {:>9.1} ms {:>9.1} ms {ratio:>8.3}",
                format!("{name}, {how}"),
                without.percentile_ms(50.0),
                with.percentile_ms(50.0)
            );
        }
        // How much the machine moved meanwhile: each ABBA pair's own ratio.
        let mut pairs = self.pair_ratios.clone();
        pairs.sort_by(f64::total_cmp);
        let shown: Vec<String> = pairs.iter().map(|r| format!("{r:.2}")).collect();
        println!("  {how}: ratio per pair of rounds {}", shown.join(" "));
        ratio
    }
}

/// Latencies of the engine's calls in one mode.
#[derive(Default)]
struct Calls {
    start: Samples,
    complete: Samples,
    both: Samples,
}

impl Calls {
    /// One purchase's calls, timed; returns their sum.
    async fn measure(
        &mut self,
        engine: &Engine,
        people: &People,
        key: &str,
    ) -> BenchResult<Duration> {
        let started = Instant::now();
        let instance = engine.start_purchase(key, people, false).await;
        let start = started.elapsed();
        let task = engine
            .tasks_of(&instance)
            .await
            .first()
            .map(|(_, id)| id.clone())
            .ok_or("the process has no task")?;
        let completing = Instant::now();
        let reply = engine
            .call("POST", &format!("/task/{task}/complete"), Some(json!({})))
            .await;
        let complete = completing.elapsed();
        if reply.status != 204 {
            return Err(format!("complete: {} {}", reply.status, reply.body));
        }
        // Untimed: the process goes, so that open tasks do not pile up (each install
        // captures every open task, and a bigger engine is a slower one in both modes).
        engine.cancel(&instance).await;
        self.start.push(start);
        self.complete.push(complete);
        self.both.push(start + complete);
        Ok(start + complete)
    }
}

/// Empties the capture queue once.
async fn drain_queue(pool: &sqlx::PgPool) -> BenchResult<()> {
    while drain_once(pool, 500).await.map_err(|e| e.to_string())?.rows > 0 {}
    Ok(())
}

/// Empties the capture queue as the relay's leader does, until shutdown.
async fn drain_continuously(pool: sqlx::PgPool, mut shutdown: Shutdown) {
    while !shutdown.is_requested() {
        let drained = drain_once(&pool, 500).await.map(|d| d.rows).unwrap_or(0);
        if drained == 0 && shutdown.sleep(Duration::from_millis(5)).await {
            return;
        }
    }
}

/// Starts processes at `rate` a second for `seconds`; each one's approval must reach the
/// approver's stream. Returns the latencies from the start call (which commits) to the stream,
/// and how many were started.
async fn stream_latency(
    engine: &Engine,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> BenchResult<(Samples, usize)> {
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
    wait_for_instance(&mut stream, &warm, Duration::from_secs(60)).await?;

    let total = usize::try_from(rate * seconds).unwrap_or(usize::MAX);
    let reader = tokio::spawn({
        let started = started.clone();
        async move {
            let mut samples = Samples::default();
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
                    samples.push(arrived.saturating_duration_since(at));
                }
            }
            samples
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
    let samples = match tokio::time::timeout(Duration::from_secs(30), &mut reader).await {
        Ok(samples) => samples,
        Err(_) => {
            trigger.trigger();
            reader.await
        }
    }
    .map_err(|e| e.to_string())?;
    trigger.trigger();
    let _ = relay_task.await;
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
    Ok((samples, total))
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
