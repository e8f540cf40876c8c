//! The relay: while this process holds the lease, read committed outbox rows in order, hand
//! them to the producer (several batches in flight), and store the position of each batch
//! once Kafka acknowledged all of it. Crash anywhere: at most the unacknowledged batches are
//! published again, never a loss.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::producer::DeliveryFuture;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use taskpool_core::{PgStore, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{Config, PermanentFailure, RelayConfig};
use crate::lease::Lease;
use crate::metrics::Metrics;
use crate::outbox::{self, Fence, OutboxRow, Position};
use crate::publisher::{PublishError, Publisher, classify};
use crate::retention;
use taskpool_service::ExposeSecret;
use taskpool_service::shutdown::Shutdown;

const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "relay", include_str!("../migrations/0001_relay.sql"))];

/// How long a shutdown waits for in-flight batches before giving up on them (they are
/// published again by the next leader: at least once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the lease is checked while waiting for Kafka's acknowledgements.
const LEASE_CHECK: Duration = Duration::from_millis(200);

/// Failures that stop the relay process.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(String),
    #[error("{0}")]
    Kafka(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was requested; every acknowledged batch is stored.
    Shutdown,
    /// A message can never be published and `on_permanent_failure = halt`.
    Halted { reason: String },
}

enum LeadEnd {
    Shutdown,
    LostLease,
    Halted(String),
}

/// A failure while leading: the relay backs off and starts again from the stored position.
#[derive(Debug, thiserror::Error)]
enum Interrupted {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(String),
}

enum Pending {
    Sent(DeliveryFuture),
    Refused(String),
}

/// A relay process's shared parts.
#[derive(Debug)]
pub struct Relay {
    config: Config,
    pool: PgPool,
    metrics: Arc<Metrics>,
    lease: Arc<Lease>,
    /// Connected at start-up and kept while it works; replaced after a Kafka failure.
    publisher: Publisher,
    observer: Option<mpsc::UnboundedSender<Delivered>>,
}

/// An event Kafka acknowledged, for observers (see [`Relay::observe_deliveries`]).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub event_id: uuid::Uuid,
    pub aggregate_id: String,
    pub version: i64,
    pub acknowledged_at: Instant,
}

impl Relay {
    /// Connects to PostgreSQL, runs migrations if configured, and checks Kafka's topics.
    pub async fn connect(config: Config, metrics: Arc<Metrics>) -> Result<Relay, RelayError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.database.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(config.database.url.expose_secret())
            .await?;
        if config.database.migrate {
            PgStore::migrate(&pool)
                .await
                .map_err(|e| RelayError::Migration(e.to_string()))?;
            migrate(&pool).await?;
        }
        let publisher =
            Publisher::new(&config.kafka).map_err(|e| RelayError::Kafka(e.to_string()))?;
        publisher
            .ensure_topics(&config.kafka)
            .await
            .map_err(RelayError::Kafka)?;
        let holder = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let lease = Arc::new(Lease::new(&config.relay.name, &holder, config.lease.ttl()));
        Ok(Relay {
            config,
            pool,
            metrics,
            lease,
            publisher,
            observer: None,
        })
    }

    /// Reports every acknowledged event on `sender` (for latency measurements and tracing).
    pub fn observe_deliveries(&mut self, sender: mpsc::UnboundedSender<Delivered>) {
        self.observer = Some(sender);
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs until shutdown is requested or a permanent failure halts it.
    pub async fn run(self, shutdown: Shutdown) -> Result<Exit, RelayError> {
        info!(relay = %self.config.relay.name, holder = %self.lease.holder(), "relay started");
        let background = [
            tokio::spawn(keep_lease(
                self.pool.clone(),
                self.lease.clone(),
                self.metrics.clone(),
                Duration::from_millis(self.config.lease.renew_interval_ms),
                shutdown.clone(),
            )),
            tokio::spawn(watch_lag(
                self.pool.clone(),
                self.config.relay.name.clone(),
                self.metrics.clone(),
                Duration::from_millis(self.config.relay.lag_interval_ms),
                shutdown.clone(),
            )),
            tokio::spawn(apply_retention(
                self.pool.clone(),
                self.config.clone(),
                self.lease.clone(),
                self.metrics.clone(),
                shutdown.clone(),
            )),
        ];
        let exit = self.publish_while_leader(shutdown).await;
        for task in background {
            task.abort();
        }
        if let Err(e) = self.lease.release(&self.pool).await {
            warn!(error = %e, "could not release the lease; a standby takes over when it expires");
        }
        self.metrics.leader.store(false, Ordering::Relaxed);
        info!(?exit, "relay stopped");
        Ok(exit)
    }

    async fn publish_while_leader(&self, mut shutdown: Shutdown) -> Exit {
        let relay = &self.config.relay;
        let margin = Duration::from_millis(self.config.lease.safety_margin_ms);
        let mut backoff = Duration::from_millis(relay.retry_min_ms);
        let mut replacement: Option<Publisher> = None;
        let mut use_replacement = false;
        loop {
            if shutdown.is_requested() {
                return Exit::Shutdown;
            }
            if self.lease.remaining().is_none_or(|left| left <= margin) {
                if shutdown.sleep(Duration::from_millis(50)).await {
                    return Exit::Shutdown;
                }
                continue;
            }
            if use_replacement && replacement.is_none() {
                match Publisher::new(&self.config.kafka) {
                    Ok(publisher) => replacement = Some(publisher),
                    Err(error) => {
                        warn!(error = %error, "cannot create a Kafka producer");
                        if shutdown.sleep(backoff).await {
                            return Exit::Shutdown;
                        }
                        continue;
                    }
                }
            }
            let publisher = match (&replacement, use_replacement) {
                (Some(publisher), true) => publisher,
                _ => &self.publisher,
            };
            let led = self.lead(publisher, &mut shutdown, &mut backoff).await;
            // Whatever ended the lead, nothing this producer still holds may go out later.
            publisher.abandon_pending();
            match led {
                Ok(LeadEnd::Shutdown) => return Exit::Shutdown,
                Ok(LeadEnd::LostLease) => {
                    warn!("lease lost or about to expire; stopped publishing");
                }
                Ok(LeadEnd::Halted(reason)) => {
                    self.metrics.halted.store(true, Ordering::Relaxed);
                    error!(%reason, "halted: a message can never be published (on_permanent_failure = halt)");
                    return Exit::Halted { reason };
                }
                Err(interrupted) => {
                    // Start over with a fresh producer: nothing of the old one is trusted.
                    use_replacement = true;
                    replacement = None;
                    Metrics::add(&self.metrics.retries, 1);
                    warn!(error = %interrupted, retry_in_ms = backoff.as_millis() as u64, "publishing interrupted; retrying from the stored position");
                    if shutdown.sleep(backoff).await {
                        return Exit::Shutdown;
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(relay.retry_max_ms));
                }
            }
        }
    }

    /// Publishes from the stored position until the lease is lost, shutdown, or a failure.
    ///
    /// Three stages overlap: a reader fetches the next batches from the outbox, this loop
    /// hands batches to the producer (up to `max_in_flight_batches` unacknowledged), and
    /// stores the position of acknowledged batches (several at once when they are ready).
    async fn lead(
        &self,
        publisher: &Publisher,
        shutdown: &mut Shutdown,
        backoff: &mut Duration,
    ) -> Result<LeadEnd, Interrupted> {
        let relay = &self.config.relay;
        let margin = Duration::from_millis(self.config.lease.safety_margin_ms);
        let Some(fence) = self.lease.fence() else {
            return Ok(LeadEnd::LostLease);
        };
        let start = outbox::load_position(&self.pool, &relay.name).await?;
        info!(
            position = start.position,
            epoch = fence.epoch,
            "leading: publishing from the stored position"
        );

        let (batches_tx, mut batches) = mpsc::channel(READ_AHEAD_BATCHES);
        let reader = AbortOnDrop(tokio::spawn(read_ahead(
            self.pool.clone(),
            start,
            relay.clone(),
            self.metrics.clone(),
            batches_tx,
            shutdown.clone(),
        )));
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut drain_started: Option<Instant> = None;
        let mut lease_check = tokio::time::interval(LEASE_CHECK);

        let end = loop {
            let draining = shutdown.is_requested();
            if draining && in_flight.is_empty() {
                break LeadEnd::Shutdown;
            }
            if self.lease.remaining().is_none_or(|left| left <= margin) {
                break LeadEnd::LostLease;
            }
            if draining && drain_started.get_or_insert_with(Instant::now).elapsed() >= DRAIN_TIMEOUT
            {
                warn!(
                    "shutdown: Kafka did not acknowledge in time; unacknowledged batches will be published again"
                );
                break LeadEnd::Shutdown;
            }
            let accepting = !draining && in_flight.len() < relay.max_in_flight_batches;
            tokio::select! {
                outcome = wait_oldest(&mut in_flight), if !in_flight.is_empty() => {
                    let mut done = vec![outcome];
                    // Batches acknowledged meanwhile are stored together with this one.
                    while let Some(ready) = poll_oldest(&mut in_flight) {
                        done.push(ready);
                    }
                    match self.complete(done, &fence, publisher).await? {
                        Some(end) => break end,
                        None => *backoff = Duration::from_millis(relay.retry_min_ms),
                    }
                }
                next = batches.recv(), if accepting => {
                    // The reader stops only on shutdown: then drain what is in flight.
                    if let Some(rows) = next {
                        in_flight.push_back(self.hand_over(rows?, publisher).await?);
                    }
                }
                _ = lease_check.tick() => {}
                _ = shutdown.requested(), if !draining => {}
            }
        };
        drop(reader);
        Ok(end)
    }

    /// Gives a batch to the producer; the result waits for all its acknowledgements.
    async fn hand_over(
        &self,
        rows: Vec<OutboxRow>,
        publisher: &Publisher,
    ) -> Result<InFlight, Interrupted> {
        let last = rows.last().map(|row| row.at).unwrap_or_default();
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let pending = match publisher.enqueue(&row).await {
                Ok(delivery) => Pending::Sent(delivery),
                Err(PublishError::Permanent(reason)) => Pending::Refused(reason),
                Err(PublishError::Transient(e)) => return Err(Interrupted::Kafka(e.to_string())),
            };
            messages.push((row, pending));
        }
        Ok(InFlight {
            last,
            acknowledgement: Box::pin(acknowledged(messages, self.observer.clone())),
        })
    }

    /// Records acknowledged batches: dead letters, then the newest position, in one
    /// transaction fenced by the lease. `Some` ends leading.
    async fn complete(
        &self,
        done: Vec<(Position, Acknowledged)>,
        fence: &Fence,
        publisher: &Publisher,
    ) -> Result<Option<LeadEnd>, Interrupted> {
        let relay = &self.config.relay;
        let mut delivered = 0;
        let mut refused = Vec::new();
        let mut last = Position::default();
        for (position, outcome) in done {
            let (count, rejected) = outcome?;
            delivered += count;
            refused.extend(rejected);
            last = position;
        }
        if let Some((_, reason)) = refused.first()
            && relay.on_permanent_failure == PermanentFailure::Halt
        {
            return Ok(Some(LeadEnd::Halted(reason.clone())));
        }
        // Usually there is nothing to dead-letter: then one fenced UPDATE stores the position.
        let stored = if refused.is_empty() {
            let mut conn = self.pool.acquire().await?;
            outbox::store_position(&mut conn, &relay.name, last, fence).await?
        } else {
            let mut tx = self.pool.begin().await?;
            for (row, reason) in &refused {
                let topic = publisher
                    .topics()
                    .for_aggregate(&row.aggregate_type)
                    .unwrap_or("(none)");
                outbox::dead_letter(&mut tx, &relay.name, row, topic, reason).await?;
                error!(position = row.at.position, event_id = %row.event_id, %reason, "event moved to the dead-letter table");
            }
            let stored = outbox::store_position(&mut tx, &relay.name, last, fence).await?;
            if stored {
                tx.commit().await?;
            }
            stored
        };
        if !stored {
            return Ok(Some(LeadEnd::LostLease));
        }
        Metrics::add(&self.metrics.published_events, delivered);
        Metrics::add(&self.metrics.dead_letters, refused.len() as u64);
        Metrics::add(&self.metrics.batches, 1);
        self.metrics
            .position
            .store(last.position, Ordering::Relaxed);
        Ok(None)
    }
}

/// Batches read ahead of the producer.
const READ_AHEAD_BATCHES: usize = 2;

type Acknowledged = Result<(u64, Vec<(OutboxRow, String)>), Interrupted>;

/// A batch handed to the producer, until all of it is acknowledged.
struct InFlight {
    last: Position,
    acknowledgement: Pin<Box<dyn Future<Output = Acknowledged> + Send>>,
}

async fn wait_oldest(in_flight: &mut VecDeque<InFlight>) -> (Position, Acknowledged) {
    match in_flight.front_mut() {
        Some(oldest) => {
            let outcome = oldest.acknowledgement.as_mut().await;
            let last = oldest.last;
            in_flight.pop_front();
            (last, outcome)
        }
        None => std::future::pending().await,
    }
}

fn poll_oldest(in_flight: &mut VecDeque<InFlight>) -> Option<(Position, Acknowledged)> {
    let oldest = in_flight.front_mut()?;
    let outcome = oldest.acknowledgement.as_mut().now_or_never()?;
    let last = oldest.last;
    in_flight.pop_front();
    Some((last, outcome))
}

/// Reads batches after `start` as long as the channel takes them; polls with back-off when
/// the outbox is idle. Stops on shutdown (the channel closes) or a database error (sent on).
async fn read_ahead(
    pool: PgPool,
    start: Position,
    relay: RelayConfig,
    metrics: Arc<Metrics>,
    batches: mpsc::Sender<Result<Vec<OutboxRow>, sqlx::Error>>,
    mut shutdown: Shutdown,
) {
    let mut after = start;
    let poll_min = Duration::from_millis(relay.poll_min_ms);
    let mut idle = poll_min;
    while !shutdown.is_requested() {
        let rows = outbox::read_batch(&pool, after, relay.batch_size).await;
        Metrics::add(&metrics.reads, 1);
        match rows {
            Ok(rows) if rows.is_empty() => {
                shutdown.sleep(idle).await;
                idle = (idle * 2).min(Duration::from_millis(relay.poll_max_ms));
            }
            Ok(rows) => {
                idle = poll_min;
                after = rows.last().map_or(after, |row| row.at);
                if batches.send(Ok(rows)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = batches.send(Err(error)).await;
                return;
            }
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits for every message of a batch: how many Kafka acknowledged, and the ones it refused
/// for good with the reason. A transient failure interrupts.
async fn acknowledged(
    messages: Vec<(OutboxRow, Pending)>,
    observer: Option<mpsc::UnboundedSender<Delivered>>,
) -> Acknowledged {
    let mut delivered = 0;
    let mut refused = Vec::new();
    for (row, pending) in messages {
        match pending {
            Pending::Refused(reason) => refused.push((row, reason)),
            Pending::Sent(delivery) => match delivery.await {
                Ok(Ok(_)) => {
                    delivered += 1;
                    if let Some(observer) = &observer {
                        let _ = observer.send(Delivered {
                            event_id: row.event_id,
                            aggregate_id: row.aggregate_id,
                            version: row.version,
                            acknowledged_at: Instant::now(),
                        });
                    }
                }
                Ok(Err((error, _))) => match classify(error) {
                    PublishError::Permanent(reason) => refused.push((row, reason)),
                    PublishError::Transient(error) => {
                        return Err(Interrupted::Kafka(error.to_string()));
                    }
                },
                Err(_) => return Err(Interrupted::Kafka("producer dropped a delivery".into())),
            },
        }
    }
    Ok((delivered, refused))
}

/// Creates or upgrades the relay's own tables (recorded in `taskpool_relay_migrations`).
pub async fn migrate(pool: &PgPool) -> Result<(), RelayError> {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let mut migrator = Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    migrator.dangerous_set_table_name("taskpool_relay_migrations");
    migrator
        .run(pool)
        .await
        .map_err(|e| RelayError::Migration(e.to_string()))
}

/// Takes the lease when free and keeps renewing it while held.
async fn keep_lease(
    pool: PgPool,
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        match lease.acquire_or_renew(&pool).await {
            Ok(leader) => {
                if leader && !metrics.leader.swap(true, Ordering::Relaxed) {
                    info!("lease acquired: this process publishes");
                }
                if !leader && metrics.leader.swap(false, Ordering::Relaxed) {
                    warn!("lease taken by another process: standing by");
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot renew the lease");
                if lease.expire_if_due() {
                    metrics.leader.store(false, Ordering::Relaxed);
                }
            }
        }
        if shutdown.sleep(interval).await {
            return;
        }
    }
}

/// Refreshes the lag metrics from the stored position.
async fn watch_lag(
    pool: PgPool,
    relay: String,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        match outbox::load_position(&pool, &relay).await {
            Ok(position) => match outbox::lag(&pool, position).await {
                Ok(lag) => {
                    metrics.lag_events.store(lag.events, Ordering::Relaxed);
                    metrics
                        .lag_millis
                        .store((lag.seconds * 1000.0) as i64, Ordering::Relaxed);
                    metrics.position.store(position.position, Ordering::Relaxed);
                }
                Err(e) => warn!(error = %e, "cannot measure lag"),
            },
            Err(e) => warn!(error = %e, "cannot read the stored position"),
        }
        if shutdown.sleep(interval).await {
            return;
        }
    }
}

/// Deletes old published rows, in bounded batches, while this process is the leader.
async fn apply_retention(
    pool: PgPool,
    config: Config,
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let retention = &config.retention;
    if retention.max_age_secs == 0 {
        return;
    }
    let max_age = Duration::from_secs(retention.max_age_secs);
    loop {
        while lease.remaining().is_some() && !shutdown.is_requested() {
            match retention::delete_batch(&pool, max_age, retention.batch_size).await {
                Ok(deleted) => {
                    Metrics::add(&metrics.deleted_by_retention, deleted);
                    if deleted < u64::from(retention.batch_size) {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "retention failed");
                    break;
                }
            }
        }
        if shutdown
            .sleep(Duration::from_secs(retention.interval_secs.max(1)))
            .await
        {
            return;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".into())
}
