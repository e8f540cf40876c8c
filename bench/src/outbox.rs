//! `outbox`: what recording a task event costs an engine transaction, on real PostgreSQL.
//!
//! Latency: one engine transaction (insert one business row, commit) without and with
//! recording one TaskCreated through the collector, alternating in the same run on one
//! connection. For scale, a third variant adds one more trivial business insert instead: what
//! any extra statement (one more round trip) costs. Throughput: transactions recording 10
//! events each, from several connections.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::PgStore;
use taskpool_core::domain::task::NewTask;
use taskpool_schemas::{Payload, SourceReference, Timestamp};

use crate::Options;
use crate::setup::{BenchResult, Scratch, err};
use crate::stats::Samples;

pub async fn run(options: &Options) -> BenchResult<()> {
    let iterations = options.number("iterations", 2000)?;
    let workers = options.number("workers", 4)?;
    let seconds = options.number("seconds", 5)?;
    let scratch = Scratch::new(u32::try_from(workers).unwrap_or(u32::MAX)).await?;
    if options.text("notify") == Some("on") {
        // What a LISTEN/NOTIFY wake-up for the relay would cost the engine (see
        // docs/decisions): a statement-level trigger notifying on every outbox insert.
        sqlx::raw_sql(
            "CREATE FUNCTION taskpool_notify() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_notify('taskpool_outbox', ''); RETURN NULL; END $$; \
             CREATE TRIGGER taskpool_outbox_notify AFTER INSERT ON taskpool_outbox \
             FOR EACH STATEMENT EXECUTE FUNCTION taskpool_notify();",
        )
        .execute(&scratch.pool)
        .await
        .map_err(err("install the NOTIFY trigger"))?;
        println!("with a NOTIFY trigger on the outbox");
    }
    let outcome = measure(&scratch.pool, iterations, workers, seconds).await;
    scratch.drop_schema().await?;
    outcome
}

async fn measure(pool: &PgPool, iterations: u64, workers: u64, seconds: u64) -> BenchResult<()> {
    sqlx::query("CREATE TABLE engine_business (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL)")
        .execute(pool)
        .await
        .map_err(err("create business table"))?;

    let warmup = (iterations / 10).max(50);
    let mut without = Samples::default();
    let mut with = Samples::default();
    let mut extra = Samples::default();
    let mut next_task = 0u64;
    for i in 0..warmup + iterations {
        let plain = engine_transaction(pool, Variant::Plain, &mut next_task).await?;
        let recorded = engine_transaction(pool, Variant::Record(1), &mut next_task).await?;
        let extra_insert = engine_transaction(pool, Variant::ExtraInsert, &mut next_task).await?;
        if i >= warmup {
            without.push(plain);
            with.push(recorded);
            extra.push(extra_insert);
        }
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut next_task = (worker + 1) * 1_000_000_000;
                let mut events = 0u64;
                while Instant::now() < deadline {
                    engine_transaction(&pool, Variant::Record(10), &mut next_task).await?;
                    events += 10;
                }
                Ok::<u64, String>(events)
            })
        })
        .collect();
    let mut events = 0;
    for handle in handles {
        events += handle.await.map_err(|e| format!("worker failed: {e}"))??;
    }
    let events_per_s = events as f64 / started.elapsed().as_secs_f64();

    let (p50_without, p99_without) = (without.percentile_ms(50.0), without.percentile_ms(99.0));
    let (p50_with, p99_with) = (with.percentile_ms(50.0), with.percentile_ms(99.0));
    let (p50_extra, p99_extra) = (extra.percentile_ms(50.0), extra.percentile_ms(99.0));
    println!(
        "outbox benchmark: {iterations} transactions per variant, alternating, one connection"
    );
    println!(
        "{:<42} {:>9} {:>9}",
        "engine transaction", "p50 ms", "p99 ms"
    );
    println!(
        "{:<42} {p50_without:>9.3} {p99_without:>9.3}",
        "insert business row, commit"
    );
    println!(
        "{:<42} {p50_with:>9.3} {p99_with:>9.3}",
        "... and record one TaskCreated"
    );
    println!(
        "{:<42} {p50_extra:>9.3} {p99_extra:>9.3}   (p50 ratio {:.3}: one more round trip)",
        "... and insert a second business row",
        p50_extra / p50_without
    );
    println!(
        "throughput: {workers} connections, {seconds} s, 10 TaskCreated per transaction: {events} events, {events_per_s:.0} events/s"
    );
    println!(
        "RESULT outbox_overhead_p50_ratio={:.3} outbox_overhead_p99_ratio={:.3} outbox_events_per_s={:.0}",
        p50_with / p50_without,
        p99_with / p99_without,
        events_per_s
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    /// Insert one business row, commit.
    Plain,
    /// The same, plus a second business row: the cost of one more statement.
    ExtraInsert,
    /// The same, recording this many TaskCreated events through the collector.
    Record(u64),
}

/// One engine transaction of `variant`; returns how long it took.
async fn engine_transaction(
    pool: &PgPool,
    variant: Variant,
    next_task: &mut u64,
) -> BenchResult<Duration> {
    let started = Instant::now();
    let mut tx = pool.begin().await.map_err(err("begin"))?;
    sqlx::query("INSERT INTO engine_business (note) VALUES ('step')")
        .execute(&mut *tx)
        .await
        .map_err(err("business insert"))?;
    if let Variant::ExtraInsert = variant {
        sqlx::query("INSERT INTO engine_business (note) VALUES ('next step')")
            .execute(&mut *tx)
            .await
            .map_err(err("second business insert"))?;
    }
    if let Variant::Record(events) = variant {
        let mut collector = Collector::new();
        for _ in 0..events {
            *next_task += 1;
            collector
                .record(EngineEvent::TaskCreated {
                    task_id: format!("task-{next_task}"),
                    task: Box::new(new_task()),
                })
                .map_err(|e| e.to_string())?;
        }
        collector
            .flush::<PgStore>(&mut *tx)
            .await
            .map_err(|e| format!("flush: {e}"))?;
    }
    tx.commit().await.map_err(err("commit"))?;
    Ok(started.elapsed())
}

/// A typical task: a few hundred bytes of state.
pub fn new_task() -> NewTask {
    NewTask {
        source_reference: SourceReference {
            process_instance_id: "4f7c1e2a-1b2c-4d5e-8f90-123456789abc".into(),
            execution_id: "5a8d2f3b-2c3d-4e5f-9a01-23456789abcd".into(),
            process_definition_id: "order-approval:3:7c1e2a4f".into(),
            process_definition_key: "order-approval".into(),
            process_name: "Order approval".into(),
            application_name: "shop".into(),
            tenant_id: None,
        },
        task_definition_key: "approve-order".into(),
        name: "Approve order".into(),
        description: Some("Check the order and approve or reject it".into()),
        form_key: Some("shop:approve-order".into()),
        priority: 50,
        create_time: Timestamp::now(),
        due_date: None,
        follow_up_date: None,
        assignee: None,
        owner: None,
        candidate_users: Default::default(),
        candidate_groups: ["approvers".to_string()].into(),
        business_key: Some("order-4711".into()),
        payload: Payload::from_value(serde_json::json!({"amount": 1250, "customer": "ACME"}))
            .unwrap_or_default(),
        correlations: vec![],
    }
}
