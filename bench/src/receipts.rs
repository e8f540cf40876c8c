//! Stream clients that note when each task version arrives, and the latencies from commit to
//! that arrival: shared by the single-node and end-to-end benchmarks.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use taskpool_testkit::http::{StreamClient, get};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use taskpool_core::AggregateType;
use taskpool_demo::{Demo, DemoDb};

use crate::setup::BenchResult;
use crate::stats::Samples;

/// A task version: (task id, version).
pub type Version = (String, i64);

/// One stream client per development user of the service at `address`, each past its
/// snapshot, sending every upsert's version and arrival time.
pub async fn open_clients(
    address: &str,
) -> (
    Vec<JoinHandle<()>>,
    mpsc::UnboundedReceiver<(Version, Instant)>,
) {
    let (sender, received) = mpsc::unbounded_channel();
    let tokens = get(address, "/api/dev/users", None).await.json();
    let mut clients = Vec::new();
    for user in tokens["users"].as_array().cloned().unwrap_or_default() {
        let token = user["token"].as_str().unwrap_or_default().to_string();
        let mut client = StreamClient::open(address, "/api/tasks/stream", &token, None).await;
        while let Some(event) = client.next().await {
            if event.name == "marker" {
                break;
            }
        }
        let sender = sender.clone();
        clients.push(tokio::spawn(async move {
            while let Some(event) = client.next().await {
                let version = (
                    event.data["id"].as_str().unwrap_or_default().to_string(),
                    event.data["version"].as_i64().unwrap_or_default(),
                );
                if event.name == "upsert" && sender.send((version, Instant::now())).is_err() {
                    return;
                }
            }
        }));
    }
    (clients, received)
}

/// Arrivals per task: a version counts as arrived when it or a newer one did (versions
/// committed close together are folded into the newest, as the projection does).
#[derive(Debug, Default)]
pub struct Arrivals(HashMap<String, Vec<(i64, Instant)>>);

impl Arrivals {
    pub fn add(&mut self, (id, version): Version, at: Instant) {
        self.0.entry(id).or_default().push((version, at));
    }

    /// When `version` (or a newer one) first arrived.
    pub fn first(&self, (id, version): &Version) -> Option<Instant> {
        self.0
            .get(id)
            .into_iter()
            .flatten()
            .filter(|(arrived, _)| arrived >= version)
            .map(|(_, at)| *at)
            .min()
    }

    /// Receives until the newest committed version of every task arrived, or for at most
    /// `patience`.
    pub async fn collect(
        received: &mut mpsc::UnboundedReceiver<(Version, Instant)>,
        committed: &HashMap<Version, Instant>,
        patience: Duration,
    ) -> Arrivals {
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for (id, version) in committed.keys() {
            let entry = newest.entry(id.as_str()).or_insert(*version);
            *entry = (*entry).max(*version);
        }
        let mut arrivals = Arrivals::default();
        let mut caught_up = HashSet::new();
        let until = tokio::time::Instant::now() + patience;
        while caught_up.len() < newest.len() {
            match tokio::time::timeout_at(until, received.recv()).await {
                Ok(Some(((id, version), at))) => {
                    if newest.get(id.as_str()) == Some(&version) {
                        caught_up.insert(id.clone());
                    }
                    arrivals.add((id, version), at);
                }
                _ => break,
            }
        }
        while let Ok((version, at)) = received.try_recv() {
            arrivals.add(version, at);
        }
        arrivals
    }

    /// Latencies from each commit to its arrival, and how many commits arrived.
    pub fn latencies(&self, committed: &HashMap<Version, Instant>) -> (Samples, usize) {
        let mut samples = Samples::default();
        let mut matched = 0;
        for (version, commit) in committed {
            if let Some(arrival) = self.first(version) {
                matched += 1;
                samples.push(arrival.saturating_duration_since(*commit));
            }
        }
        (samples, matched)
    }
}

/// What a paced demo run committed.
#[derive(Debug, Default)]
pub struct Driven {
    /// Each task version that reaches clients as an upsert, and when it was committed.
    pub committed: HashMap<Version, Instant>,
    /// Tasks completed or deleted: their last version reaches clients as a removal, which
    /// carries no version.
    pub ended: HashSet<String>,
    pub events_per_s: f64,
}

/// Runs demo steps for `seconds`, paced to `rate` events per second.
pub async fn drive<S: DemoDb>(demo: &mut Demo<S>, rate: u64, seconds: u64) -> BenchResult<Driven> {
    let mut driven = Driven::default();
    let mut events = 0u64;
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    while Instant::now() < until {
        let stepped = demo.step().await.map_err(|e| e.to_string())?;
        let at = Instant::now();
        events += stepped.events.len() as u64;
        for event in stepped.events {
            if event.key.aggregate_type != AggregateType::Task {
                continue;
            }
            if matches!(event.event_type, "TaskCompleted" | "TaskDeleted") {
                driven.ended.insert(event.key.id);
            } else {
                driven.committed.insert((event.key.id, event.version), at);
            }
        }
        let due = started + Duration::from_secs_f64(events as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    driven.events_per_s = events as f64 / started.elapsed().as_secs_f64();
    Ok(driven)
}
