//! Single-node over time: the demo engine at a steady rate for many minutes, stream clients
//! (one per demo user) receiving every change, and the process's resident memory sampled each
//! minute. A process that runs for months must level off: memory after the whole run within a
//! tenth of memory after the warm-up (by default 30 and 5 minutes).

use std::time::{Duration, Instant};

use taskpool_demo::DemoConfig;
use taskpool_testkit::http::{StreamClient, get};

use crate::Options;
use crate::setup::BenchResult;
use crate::single_node::{StartedNode, start_node};
use crate::tasklist::rss_kib;

pub async fn run(options: &Options) -> BenchResult<()> {
    let minutes = options.number("minutes", 30)?.max(1);
    let warm_minutes = options.number("warm-minutes", 5)?.min(minutes);
    let rate = options.number("rate", 100)?.max(1);
    let dir = std::env::temp_dir().join(format!("taskpool-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let outcome = soak(&dir, (minutes, warm_minutes), rate).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn soak(dir: &std::path::Path, (minutes, warm): (u64, u64), rate: u64) -> BenchResult<()> {
    let config = DemoConfig {
        seed: Some(7),
        active_requests: 200,
        ..DemoConfig::default()
    };
    let StartedNode {
        pool,
        address,
        trigger,
        node,
        mut demo,
    } = start_node(dir, config).await?;
    let clients = open_clients(&address).await;

    println!(
        "soak: single node with the demo at {rate} events/s for {minutes} min, {} stream clients",
        clients.len()
    );
    println!("{:>7} {:>10} {:>10}", "minute", "events", "RSS MiB");
    let started = Instant::now();
    let (mut events, mut next_sample) = (0u64, 1u64);
    let (mut rss_start, mut rss_end) = (rss_kib(), rss_kib());
    while next_sample <= minutes {
        // Paced: the events of `elapsed` seconds at `rate` are due.
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if events < due {
            events += demo.step().await.map_err(|e| e.to_string())?.events.len() as u64;
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if started.elapsed() >= Duration::from_secs(60 * next_sample) {
            let rss = rss_kib();
            println!(
                "{next_sample:>7} {events:>10} {:>10.1}",
                rss as f64 / 1024.0
            );
            if next_sample == warm {
                rss_start = rss;
            }
            rss_end = rss;
            next_sample += 1;
        }
    }
    let achieved = events as f64 / started.elapsed().as_secs_f64();
    let alive = clients
        .iter()
        .filter(|client| !client.is_finished())
        .count();
    trigger.trigger();
    for client in &clients {
        client.abort();
    }
    node.stopped().await;
    pool.close().await;
    let (start, end) = (rss_start as f64 / 1024.0, rss_end as f64 / 1024.0);
    println!(
        "after {warm} min {start:.1} MiB, after {minutes} min {end:.1} MiB: {:+.1}% ({} of {} clients still streaming, {achieved:.0} events/s)",
        (end / start - 1.0) * 100.0,
        alive,
        clients.len()
    );
    println!(
        "RESULT soak_rss_start_mib={start:.1} soak_rss_end_mib={end:.1} soak_events_per_s={achieved:.0}"
    );
    if alive < clients.len() {
        return Err("a stream client stopped receiving".into());
    }
    Ok(())
}

/// One stream per demo user, reading and dropping every event (a client that falls behind is
/// disconnected by the server, which ends its task).
async fn open_clients(address: &str) -> Vec<tokio::task::JoinHandle<()>> {
    let tokens = get(address, "/api/dev/users", None).await.json();
    let mut clients = Vec::new();
    for user in tokens["users"].as_array().cloned().unwrap_or_default() {
        let token = user["token"].as_str().unwrap_or_default().to_string();
        let mut client = StreamClient::open(address, "/api/tasks/stream", &token, None).await;
        clients.push(tokio::spawn(async move {
            while let Some(event) = client.next().await {
                if event.name == "resync" {
                    return;
                }
            }
        }));
    }
    clients
}
