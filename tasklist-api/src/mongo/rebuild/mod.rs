//! `tasklist-api rebuild`: the projection built again from the topics into a new generation of
//! collections while the service keeps serving the live one, then one switch (decision 0022):
//!
//! 1. take the rebuild lock; drop what earlier interrupted rebuilds left;
//! 2. read every partition from the earliest offset (or a time) to its end at the start, folding
//!    events to the newest document per aggregate in memory and writing in large batches;
//! 3. switch the pointer: every instance moves its reads, writes and change stream within a
//!    second, and its stream clients resync;
//! 4. catch up: read again from where step 2 ended to the end now. Whatever an instance wrote to
//!    the old generation before it saw the switch came from those offsets, and a batch it was
//!    writing during the switch it writes again to the new generation itself;
//! 5. after a grace period for instances to move, drop the old generation.
//!
//! An interrupt before the switch drops the new generation: the live view is untouched. From
//! the switch on, the rebuild finishes (the catch-up is what makes the new generation whole).

mod progress;
pub mod source;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use taskpool_service::shutdown::Shutdown;
use tokio::sync::mpsc;

pub use progress::Progress;
use source::{Range, Start};

use crate::config::{Config, KafkaConfig};
use crate::mongo::generation::{self, Generation, LockError};
use crate::mongo::store::MongoStore;
use taskpool_service::logging::error_chain;
use taskpool_tasklist::fold::Folded;
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::view::ViewError;

/// Documents folded in memory before they are written: bounds the memory of a rebuild of a
/// long history (about 1 KB each) while keeping writes few and large.
const FLUSH_DOCUMENTS: usize = 100_000;
/// A lock not renewed for this long belongs to a rebuild that was killed.
const LOCK_STALE_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub start: Start,
    /// How long the old generation stays after the switch, for instances to move off it (they
    /// check every second).
    pub switch_grace: Duration,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub from: u64,
    pub to: u64,
    /// Events read before the switch, and after it (the catch-up).
    pub events: u64,
    pub caught_up: u64,
    /// Documents written.
    pub documents: u64,
    /// Messages that were not events, and documents MongoDB refused: both are in the live
    /// projection's dead letters.
    pub unreadable: u64,
    pub refused: u64,
    /// Reading and writing the new generation up to the switch.
    pub build_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
    #[error("writing the new generation")]
    View(#[from] ViewError),
    #[error("interrupted before the switch; the live view is untouched")]
    Interrupted,
    #[error("the Kafka reader failed")]
    Reader(#[from] tokio::task::JoinError),
    /// The new generation is live but may miss what instances wrote to the old one just before
    /// the switch: running the rebuild again makes it whole.
    #[error("switched to the new generation, but catching up failed; run the rebuild again")]
    CatchUp(#[source] Box<RebuildError>),
}

pub async fn run(
    config: &Config,
    options: &Options,
    progress: &mut Progress,
    shutdown: Shutdown,
) -> Result<Report, RebuildError> {
    let store = MongoStore::connect(&config.mongodb, Arc::new(Metrics::default())).await?;
    let database = store.database().clone();
    let holder = format!(
        "pid {} ({})",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    generation::lock(&database, &holder, LOCK_STALE_MS).await?;
    let lock = Lock {
        database: database.clone(),
        holder: holder.clone(),
    };
    let outcome = rebuild(config, options, &store, &lock, progress, shutdown).await;
    if let Err(error) = generation::unlock(&database, &holder).await {
        tracing::warn!(
            error = error_chain(&error),
            "could not release the rebuild lock; it expires by itself"
        );
    }
    outcome
}

/// The rebuild lock, renewed while reading.
struct Lock {
    database: mongodb::Database,
    holder: String,
}

async fn rebuild(
    config: &Config,
    options: &Options,
    store: &MongoStore,
    lock: &Lock,
    progress: &mut Progress,
    shutdown: Shutdown,
) -> Result<Report, RebuildError> {
    let database = store.database();
    let live = generation::active(database).await?;
    let present = generation::present(database).await?;
    let next = Generation(
        present
            .iter()
            .copied()
            .chain([live])
            .max()
            .unwrap_or(live)
            .0
            + 1,
    );
    for leftover in present.into_iter().filter(|g| *g != live) {
        progress.note(&format!(
            "dropping generation {} left by an earlier rebuild",
            leftover.0
        ));
        generation::drop(database, leftover).await?;
    }
    let target = store.at(next);
    target.ensure_indexes().await?;
    progress.note(&format!(
        "building generation {} ({}) next to the live generation {} ({})",
        next.0,
        next.tasks(),
        live.0,
        live.tasks()
    ));

    let kafka = config.kafka.clone();
    let start = options.start;
    let ranges = tokio::task::spawn_blocking(move || source::plan(&kafka, start)).await??;
    let started = Instant::now();
    let mut report = Report {
        from: live.0,
        to: next.0,
        ..Report::default()
    };
    progress.begin("read", ranges.iter().map(Range::len).sum());
    let built = fill(
        &target,
        &config.kafka,
        &ranges,
        progress,
        Some(shutdown),
        lock,
    )
    .await;
    let built = match built {
        Ok(built) => built,
        Err(error) => {
            progress.note("stopping: dropping the unfinished generation");
            generation::drop(database, next).await?;
            return Err(error);
        }
    };
    progress.finish();
    report.build_seconds = started.elapsed().as_secs_f64();
    built.add_to(&mut report, false);

    generation::switch_to(database, next).await?;
    progress.note(&format!(
        "switched to generation {}; catching up (an interrupt now is ignored)",
        next.0
    ));
    catch_up(config, &target, &ranges, progress, lock)
        .await
        .map_err(|error| RebuildError::CatchUp(Box::new(error)))?
        .add_to(&mut report, true);
    progress.finish();

    progress.note(&format!(
        "dropping generation {} in {} s, once every instance moved",
        live.0,
        options.switch_grace.as_secs()
    ));
    tokio::time::sleep(options.switch_grace).await;
    generation::drop(database, live).await?;
    Ok(report)
}

/// Reads from where `ranges` ended to the ends now into `target`.
async fn catch_up(
    config: &Config,
    target: &MongoStore,
    ranges: &[Range],
    progress: &mut Progress,
    lock: &Lock,
) -> Result<Filled, RebuildError> {
    let (kafka, done) = (config.kafka.clone(), ranges.to_vec());
    let caught_up =
        tokio::task::spawn_blocking(move || source::plan_after(&kafka, &done)).await??;
    progress.begin("catch-up", caught_up.iter().map(Range::len).sum());
    fill(target, &config.kafka, &caught_up, progress, None, lock).await
}

/// What one pass of reading wrote.
#[derive(Debug, Default)]
struct Filled {
    events: u64,
    documents: u64,
    unreadable: u64,
    refused: u64,
}

impl Filled {
    fn add_to(&self, report: &mut Report, catch_up: bool) {
        if catch_up {
            report.caught_up += self.events;
        } else {
            report.events += self.events;
        }
        report.documents += self.documents;
        report.unreadable += self.unreadable;
        report.refused += self.refused;
    }
}

/// Reads `ranges` into `target`, folding in memory. With `shutdown`, an interrupt stops it.
async fn fill(
    target: &MongoStore,
    kafka: &KafkaConfig,
    ranges: &[Range],
    progress: &mut Progress,
    mut shutdown: Option<Shutdown>,
    lock: &Lock,
) -> Result<Filled, RebuildError> {
    let (chunks, mut received) = mpsc::channel(8);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (kafka, ranges, stop) = (kafka.clone(), ranges.to_vec(), stop.clone());
        tokio::task::spawn_blocking(move || source::read(&kafka, &ranges, chunks, stop))
    };
    let mut filled = Filled::default();
    let mut folded = Folded::new();
    let mut renewed = Instant::now();
    loop {
        let chunk = tokio::select! {
            chunk = received.recv() => chunk,
            _ = interrupted(&mut shutdown) => {
                stop.store(true, Ordering::Relaxed);
                drop(received);
                let _ = reader.await;
                return Err(RebuildError::Interrupted);
            }
        };
        let Some(chunk) = chunk else { break };
        let count = chunk.len() as u64;
        for read in chunk {
            match read {
                Some((event, traceparent)) => folded.add_traced(&event, 0, traceparent.as_deref()),
                None => filled.unreadable += 1,
            }
        }
        filled.events += count;
        progress.advance(count);
        if folded.len() >= FLUSH_DOCUMENTS {
            write(target, &mut folded, &mut filled).await?;
        }
        if renewed.elapsed() >= Duration::from_secs(5) {
            generation::renew(&lock.database, &lock.holder).await?;
            renewed = Instant::now();
        }
    }
    reader.await??;
    write(target, &mut folded, &mut filled).await?;
    Ok(filled)
}

async fn write(
    target: &MongoStore,
    folded: &mut Folded,
    filled: &mut Filled,
) -> Result<(), ViewError> {
    let written = folded.write(target).await?;
    filled.documents += written.applied as u64;
    filled.refused += written.refused.len() as u64;
    *folded = Folded::new();
    Ok(())
}

/// Resolves on an interrupt; never without a shutdown to listen to.
async fn interrupted(shutdown: &mut Option<Shutdown>) {
    match shutdown {
        Some(shutdown) => shutdown.requested().await,
        None => std::future::pending().await,
    }
}
