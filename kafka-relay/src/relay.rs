//! The relay: while this process holds the lease, read committed outbox rows in order, hand
//! them to the producer (several batches in flight), and store the position of each batch
//! once Kafka acknowledged all of it. Crash anywhere: at most the unacknowledged batches are
//! published again, never a loss.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use taskpool_core::store::migrations::migrator_recording_in;
use taskpool_core::{PgStore, Store};
use taskpool_service::ExposeSecret;
use taskpool_service::backoff::Backoff;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::{self, Shutdown};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::actions::{Actions, ActionsError};
use crate::config::Config;
use crate::lease::{self, Lease};
use crate::metrics::Metrics;
use crate::outbox;
use crate::pipeline::{
    self, Completion, Delivered, InFlight, Interrupted, LeadEnd, poll_oldest, wait_oldest,
};
use crate::publisher::Publisher;
use crate::{capture, preconditions, retention, status};

/// The relay's own tables, recorded in `taskpool_relay_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "relay", include_str!("../migrations/0001_relay.sql")),
    (
        2,
        "outbox writers' horizon",
        include_str!("../migrations/0002_writers_horizon.sql"),
    ),
    (
        3,
        "horizon checks",
        include_str!("../migrations/0003_horizon_checks.sql"),
    ),
];

/// How long a shutdown waits for in-flight batches before giving up on them (they are
/// published again by the next leader: at least once).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the lease is checked while waiting for Kafka's acknowledgements.
const LEASE_CHECK: Duration = Duration::from_millis(200);

/// Batches read ahead of the producer.
const READ_AHEAD_BATCHES: usize = 2;

/// How long the outbox reader may take to notice that the lead ended before it is aborted.
const READER_STOP: Duration = Duration::from_millis(500);

/// Failures that stop the relay process.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("migrating the outbox tables")]
    OutboxMigration(#[from] taskpool_core::StoreError),
    #[error("migrating the relay's tables")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create a Kafka producer")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Topics(#[from] crate::publisher::TopicError),
    #[error(transparent)]
    Preconditions(#[from] preconditions::CheckError),
    #[error("the engine actions")]
    Actions(#[from] ActionsError),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was requested; every acknowledged batch is stored.
    Shutdown,
    /// A message can never be published and `on_permanent_failure = halt`.
    Halted { reason: String },
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
    /// Set when `[actions]` is enabled.
    actions: Option<Actions>,
}

impl Relay {
    /// Connects to PostgreSQL, runs migrations if configured, and checks Kafka's topics.
    pub async fn connect(config: Config, metrics: Arc<Metrics>) -> Result<Relay, RelayError> {
        // Each statement takes a snapshot of its own (the horizon needs it), whatever the
        // role's or the database's default says.
        let options = PgConnectOptions::from_str(config.database.url.expose_secret())?
            .options([("default_transaction_isolation", "read committed")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.database.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        preconditions::check_primary(&pool).await?;
        if config.database.migrate {
            PgStore::migrate(&pool).await?;
            migrate(&pool).await?;
        }
        preconditions::check_order(&pool, config.relay.horizon).await?;
        let actions = Actions::prepare(&config, &pool).await?;
        let publisher = Publisher::new(&config.kafka)?;
        publisher.ensure_topics(&config.kafka).await?;
        // Every topic's dead-letter count exists from the start, at zero: alerts and rates see
        // the first one as an increase.
        for topic in publisher.topics().all() {
            metrics.dead_letters.with_label_values(&[topic]);
        }
        let holder = format!(
            "{}-{}-{}",
            lease::hostname(),
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
            actions,
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
    ///
    /// The chores (lease renewal, lag metrics, retention) run until publishing has ended,
    /// draining included (the lease must stay renewed while the last batches are
    /// acknowledged), and are joined before this returns.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<Exit, RelayError> {
        info!(relay = %self.config.relay.name, holder = %self.lease.holder(), "relay started");
        let (stop_chores, chores) = shutdown::channel();
        let tracker = TaskTracker::new();
        tracker.spawn(lease::keep_lease(
            self.pool.clone(),
            self.lease.clone(),
            self.metrics.clone(),
            Duration::from_millis(self.config.lease.renew_interval_ms),
            chores.clone(),
        ));
        tracker.spawn(status::watch_lag(
            self.pool.clone(),
            self.config.relay.name.clone(),
            self.metrics.clone(),
            Duration::from_millis(self.config.relay.lag_interval_ms),
            chores.clone(),
        ));
        tracker.spawn(retention::apply_retention(
            self.pool.clone(),
            self.config.clone(),
            self.lease.clone(),
            self.metrics.clone(),
            chores.clone(),
        ));
        tracker.spawn(capture::drain_queue(
            self.pool.clone(),
            self.config.clone(),
            self.lease.clone(),
            self.metrics.clone(),
            chores.clone(),
        ));
        if let Some(actions) = self.actions.take() {
            tracker.spawn(actions.take_commands(self.pool.clone(), chores));
        }
        tracker.close();
        let exit = self.publish_while_leader(shutdown).await;
        stop_chores.trigger();
        tracker.wait().await;
        if let Err(e) = self.lease.release(&self.pool).await {
            warn!(
                error = error_chain(&e),
                "could not release the lease; a standby takes over when it expires"
            );
        }
        self.metrics.leader.set(0);
        info!(?exit, "relay stopped");
        Ok(exit)
    }

    async fn publish_while_leader(&self, mut shutdown: Shutdown) -> Exit {
        let relay = &self.config.relay;
        let margin = Duration::from_millis(self.config.lease.safety_margin_ms);
        let mut backoff = Backoff::new(
            Duration::from_millis(relay.retry_min_ms),
            Duration::from_millis(relay.retry_max_ms),
        )
        .with_jitter(relay.retry_jitter);
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
                        warn!(
                            error = error_chain(&error),
                            "cannot create a Kafka producer"
                        );
                        if shutdown.sleep(backoff.next_pause()).await {
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
                    self.metrics.publishing_halted(&reason);
                    // Stays up, halted, until stopped: an exit would take the halted gauge and
                    // /health away before anyone saw them, and a restart would only halt again.
                    // The lease stays held, so a standby does not run into the same row.
                    shutdown.requested().await;
                    return Exit::Halted { reason };
                }
                Err(interrupted) => {
                    // Start over with a fresh producer: nothing of the old one is trusted.
                    use_replacement = true;
                    replacement = None;
                    let pause = backoff.next_pause();
                    self.metrics.publishing_interrupted(&interrupted, pause);
                    if shutdown.sleep(pause).await {
                        return Exit::Shutdown;
                    }
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
        backoff: &mut Backoff,
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
        let reader = tokio::spawn(outbox::read_ahead(
            self.pool.clone(),
            start,
            relay.clone(),
            self.metrics.clone(),
            batches_tx,
            shutdown.clone(),
        ));
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut drain_started: Option<Instant> = None;
        let mut lease_check = tokio::time::interval(LEASE_CHECK);

        let end: Result<LeadEnd, Interrupted> = async {
            loop {
                let draining = shutdown.is_requested();
                if draining && in_flight.is_empty() {
                    return Ok(LeadEnd::Shutdown);
                }
                if self.lease.remaining().is_none_or(|left| left <= margin) {
                    return Ok(LeadEnd::LostLease);
                }
                if draining && drain_started.get_or_insert_with(Instant::now).elapsed() >= DRAIN_TIMEOUT
                {
                    warn!(
                        "shutdown: Kafka did not acknowledge in time; unacknowledged batches will be published again"
                    );
                    return Ok(LeadEnd::Shutdown);
                }
                let accepting = !draining && in_flight.len() < relay.max_in_flight_batches;
                tokio::select! {
                    outcome = wait_oldest(&mut in_flight), if !in_flight.is_empty() => {
                        let mut done = vec![outcome];
                        // Batches acknowledged meanwhile are stored together with this one.
                        while let Some(ready) = poll_oldest(&mut in_flight) {
                            done.push(ready);
                        }
                        let completion = Completion {
                            pool: &self.pool,
                            relay,
                            metrics: &self.metrics,
                        };
                        match completion.complete(done, &fence, publisher).await? {
                            Some(end) => return Ok(end),
                            None => backoff.reset(),
                        }
                    }
                    next = batches.recv(), if accepting => {
                        // The reader stops only on shutdown: then drain what is in flight.
                        if let Some(rows) = next {
                            let observer = self.observer.clone();
                            in_flight.push_back(pipeline::hand_over(rows?, publisher, observer).await?);
                        }
                    }
                    _ = lease_check.tick() => {}
                    _ = shutdown.requested(), if !draining => {}
                }
            }
        }
        .await;
        // The reader ends once nobody takes its batches. It may be inside a query that a
        // failing database does not answer: then it is aborted, so a lost lease or a shutdown
        // never waits for it. Either way it is joined: nothing outlives the lead.
        drop(batches);
        let mut reader = reader;
        if tokio::time::timeout(READER_STOP, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
            let _ = reader.await;
        }
        end
    }
}

/// Creates or upgrades the relay's own tables.
pub async fn migrate(pool: &PgPool) -> Result<(), RelayError> {
    migrator_recording_in(MIGRATIONS, "taskpool_relay_migrations")
        .run(pool)
        .await?;
    Ok(())
}
