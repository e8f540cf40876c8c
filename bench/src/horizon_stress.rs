//! `horizon-stress`: the outbox writers' horizon (decision 0024) under every kind of writer
//! the outbox sees, against the relay's own reader polling back to back.
//!
//! Writers run transactions of random shapes (fresh create-only ones, whose transaction id is
//! assigned inside the outbox statement; updates of tasks other writers created; savepoints
//! released or rolled back; prepared transactions committed or rolled back; rollbacks) at
//! random isolation levels. At the end, every committed outbox row must have been read exactly
//! once, and each aggregate's versions in order 1, 2, 3, ...: a skipped row is a lost event.
//!
//! The window decision 0024 closes lasts a microsecond (a new transaction id is in every
//! snapshot, its lock not yet in the lock table), too short to be met by chance often: a few
//! writers' backends are paused in it, by gdb at `XactLockTableInsert`, each time they get an id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_relay::config::Horizon;
use kafka_relay::outbox::{OutboxReader, Position};
use sqlx::PgPool;
use taskpool_testkit::debugger::Breakpoint;
use uuid::Uuid;

use crate::Options;
use crate::horizon_writers::{Counts, Known, Shapes, execute};
use crate::setup::{BenchResult, Scratch, err};

/// Rows per read, as the relay's default batch.
const BATCH: u32 = 500;
/// How long the reader may take to read what the writers left, once they ended.
const CATCH_UP: Duration = Duration::from_secs(60);
/// Where a new transaction id has entered the running-transactions list but not the lock table.
const WINDOW: &str = "XactLockTableInsert";
/// How long gdb may take to attach or detach.
const DEBUGGER: Duration = Duration::from_secs(30);

pub async fn run(options: &Options) -> BenchResult<()> {
    let seconds = options.number("secs", 60)?;
    let writers = options.number("writers", 10)?;
    let pauses = Pauses {
        writers: options.number("paused-writers", 2)?,
        each: Duration::from_millis(options.number("pause-ms", 5)?),
    };
    let scratch = Scratch::new(u32::try_from(writers + 2).unwrap_or(u32::MAX)).await?;
    let outcome = stress(&scratch, seconds, writers, &pauses).await;
    // Prepared transactions outlive their sessions: none of this run may stay behind.
    let cleanup = roll_back_prepared(&scratch.pool, &scratch.schema).await;
    scratch.drop_schema().await?;
    cleanup?;
    outcome
}

/// Writers whose backends pause in the window each time they get a transaction id.
#[derive(Debug)]
struct Pauses {
    writers: u64,
    each: Duration,
}

async fn stress(scratch: &Scratch, seconds: u64, writers: u64, pauses: &Pauses) -> BenchResult<()> {
    kafka_relay::relay::migrate(&scratch.pool)
        .await
        .map_err(|e| format!("relay migrations: {e}"))?;
    let prepared_allowed: i64 =
        sqlx::query_scalar("SELECT current_setting('max_prepared_transactions')::int8")
            .fetch_one(&scratch.pool)
            .await
            .map_err(err("max_prepared_transactions"))?;
    println!(
        "horizon-stress: {seconds} s, {writers} writers at read committed, repeatable read and \
         serializable; savepoints; prepared transactions {}; {} of them paused {:?} by gdb at \
         {WINDOW} each time; the relay's reader polling back to back",
        if prepared_allowed > 0 {
            "on"
        } else {
            "off (max_prepared_transactions = 0)"
        },
        pauses.writers.min(writers),
        pauses.each
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Set once every writer has ended its last transaction: `stop` only asks them to, and a
    // writer still in its last one would commit after a reader that ended on `stop` alone.
    let writers_ended = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let known: Known = Arc::default();
    let reader = tokio::spawn(read_back_to_back(
        scratch.pool.clone(),
        writers_ended.clone(),
    ));
    let mut running = Vec::new();
    let mut breakpoints = Vec::new();
    for writer in 0..writers {
        let mut conn = scratch
            .pool
            .acquire()
            .await
            .map_err(err("connect"))?
            .detach();
        if writer < pauses.writers {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .map_err(err("backend pid"))?;
            let pid = u32::try_from(pid).map_err(|e| format!("backend pid: {e}"))?;
            breakpoints.push(tokio::task::block_in_place(|| {
                Breakpoint::pause_each_time(pid, WINDOW, pauses.each, DEBUGGER)
            }));
        }
        let shapes = Shapes {
            writer,
            prepared: prepared_allowed > 0,
            gid_prefix: format!("{}-{writer}", scratch.schema),
        };
        let (stop, counts, known) = (stop.clone(), counts.clone(), known.clone());
        running.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                shapes.one(&mut conn, n, &counts, &known).await?;
                n += 1;
            }
            Ok::<u64, String>(n)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut last = Vec::new();
    for writer in running {
        last.push(
            writer
                .await
                .map_err(|e| format!("writer: {e}"))??
                .saturating_sub(1),
        );
    }
    writers_ended.store(true, Ordering::Relaxed);
    println!("each writer's last transaction: {last:?}");
    let paused: u64 = tokio::task::block_in_place(|| {
        breakpoints
            .into_iter()
            .map(|b| b.release_counting(DEBUGGER))
            .sum()
    });
    let read = reader.await.map_err(|e| format!("reader: {e}"))??;
    report(&scratch.pool, &counts, &read, paused).await
}

/// What the reader saw.
#[derive(Debug, Default)]
struct Read {
    event_ids: HashSet<Uuid>,
    duplicates: u64,
    /// Rows whose version was not the one after the aggregate's last one read.
    out_of_order: Vec<String>,
    reads: u64,
}

/// The relay's reader with the outbox writers' horizon, without pause between reads; after
/// the writers ended, it reads on until a read finds nothing new and the outbox has nothing
/// after it.
async fn read_back_to_back(pool: PgPool, writers_ended: Arc<AtomicBool>) -> BenchResult<Read> {
    let reader = OutboxReader::new(Horizon::OutboxWriters);
    let mut after = Position::default();
    let mut read = Read::default();
    let mut versions: HashMap<(String, String), i64> = HashMap::new();
    let mut stopped_at: Option<Instant> = None;
    loop {
        let rows = reader
            .read_batch(&pool, after, BATCH)
            .await
            .map_err(err("read a batch"))?;
        read.reads += 1;
        for row in &rows {
            if !read.event_ids.insert(row.event_id) {
                read.duplicates += 1;
            }
            let key = (row.aggregate_type.clone(), row.aggregate_id.clone());
            let previous = versions.insert(key, row.version).unwrap_or(0);
            if row.version != previous + 1 && read.out_of_order.len() < 10 {
                read.out_of_order.push(format!(
                    "{} {} version {} after {previous}",
                    row.aggregate_type, row.aggregate_id, row.version
                ));
            }
        }
        after = rows.last().map_or(after, |row| row.at);
        if writers_ended.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if rows.is_empty() && nothing_after(&pool, after).await? {
                return Ok(read);
            }
            if since.elapsed() > CATCH_UP {
                return Ok(read);
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Whether no committed row sorts after `after` (once the writers ended).
async fn nothing_after(pool: &PgPool, after: Position) -> BenchResult<bool> {
    sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM taskpool_outbox \
         WHERE (tracking_xid, position) > ($1::text::xid8, $2))",
    )
    .bind(after.tracking_xid.to_string())
    .bind(after.position)
    .fetch_one(pool)
    .await
    .map_err(err("look past the reader"))
}

async fn report(pool: &PgPool, counts: &Counts, read: &Read, paused: u64) -> BenchResult<()> {
    let committed: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT event_id, aggregate_id, tracking_xid::text || '/' || position::text \
         FROM taskpool_outbox ORDER BY tracking_xid, position",
    )
    .fetch_all(pool)
    .await
    .map_err(err("committed rows"))?;
    let unread: Vec<&(Uuid, String, String)> = committed
        .iter()
        .filter(|(id, _, _)| !read.event_ids.contains(id))
        .collect();
    let skipped = unread.len();
    for (_, aggregate, at) in unread.iter().take(10) {
        println!("skipped: {aggregate} at {at}");
    }
    let transactions = counts.committed.load(Ordering::Relaxed);
    println!(
        "{:>14} {:>12} {:>10} {:>11} {:>10} {:>10} {:>8} {:>8}",
        "transactions",
        "rolled back",
        "prepared",
        "savepoints",
        "events",
        "read",
        "reads",
        "skipped"
    );
    println!(
        "{:>14} {:>12} {:>10} {:>11} {:>10} {:>10} {:>8} {:>8}",
        transactions,
        counts.rolled_back.load(Ordering::Relaxed),
        counts.prepared.load(Ordering::Relaxed),
        counts.savepoints.load(Ordering::Relaxed),
        committed.len(),
        read.event_ids.len(),
        read.reads,
        skipped
    );
    println!("paused in the window: {paused} times");
    for problem in &read.out_of_order {
        println!("out of order: {problem}");
    }
    println!(
        "RESULT horizon_skipped={skipped} horizon_transactions={transactions} \
         horizon_events={} horizon_prepared={} horizon_paused={paused} horizon_out_of_order={} \
         horizon_duplicates={}",
        committed.len(),
        counts.prepared.load(Ordering::Relaxed),
        read.out_of_order.len(),
        read.duplicates
    );
    if skipped > 0 || !read.out_of_order.is_empty() || read.duplicates > 0 {
        return Err(format!(
            "{skipped} committed events skipped, {} out of order, {} read twice",
            read.out_of_order.len(),
            read.duplicates
        ));
    }
    Ok(())
}

/// Rolls back this run's prepared transactions, if it stopped between PREPARE and its end.
async fn roll_back_prepared(pool: &PgPool, schema: &str) -> BenchResult<()> {
    let gids: Vec<String> =
        sqlx::query_scalar("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE $1 || '-%'")
            .bind(schema)
            .fetch_all(pool)
            .await
            .map_err(err("list prepared transactions"))?;
    for gid in gids {
        execute(
            &mut *pool.acquire().await.map_err(err("connect"))?,
            &format!("ROLLBACK PREPARED '{gid}'"),
        )
        .await?;
    }
    Ok(())
}
