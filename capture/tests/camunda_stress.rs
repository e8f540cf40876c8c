//! A stress run of the Camunda capture: concurrent engine-like transactions raise a few tasks'
//! priorities and add candidate users (on the engine's own tables, as the engine writes them)
//! while drains run beside them. No event takes a committed change back (a state read past a
//! change committed before it would), every version comes once and in order, and each task's
//! last event shows what the engine's tables hold; nothing is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sqlx::PgPool;
use taskpool_capture::drain_once;

mod support;
use support::{captured_engine, drain_all, insert_task, outbox_task_events};

const TASKS: usize = 3;
const WRITERS: u64 = 4;
const TRANSACTIONS: usize = 300;

/// A small deterministic generator per writer (the run is repeatable, its interleaving not).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }
}

/// One writer's transactions: each raises a task's priority or adds a candidate user of its
/// own, on a connection of its own. Its triggers fire before its commit (`SET CONSTRAINTS ALL
/// IMMEDIATE`), so that the state is queued a round trip before the transaction ends: a window
/// in which another transaction on the task must wait for it.
async fn write(pool: PgPool, writer: u64) {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (writer + 1));
    for n in 0..TRANSACTIONS {
        let task = format!("s{}", dice.roll(TASKS));
        let statement = match dice.roll(2) {
            0 => sqlx::query(
                "UPDATE act_ru_task SET priority_ = priority_ + 1, rev_ = rev_ + 1 WHERE id_ = $1",
            )
            .bind(task),
            _ => sqlx::query(
                "INSERT INTO act_ru_identitylink (id_, rev_, user_id_, type_, task_id_) \
                 VALUES ($2, 1, $2, 'candidate', $1)",
            )
            .bind(task)
            .bind(format!("w{writer}-{n}")),
        };
        let mut tx = pool.begin().await.unwrap();
        statement.execute(&mut *tx).await.unwrap();
        sqlx::query("SET CONSTRAINTS ALL IMMEDIATE")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// What the engine's tables say of a task: its priority and candidate users.
async fn engine_view(pool: &PgPool, task: &str) -> (i32, BTreeSet<String>) {
    let priority: i32 = sqlx::query_scalar("SELECT priority_ FROM act_ru_task WHERE id_ = $1")
        .bind(task)
        .fetch_one(pool)
        .await
        .unwrap();
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT user_id_ FROM act_ru_identitylink WHERE task_id_ = $1 AND type_ = 'candidate'",
    )
    .bind(task)
    .fetch_all(pool)
    .await
    .unwrap();
    (priority, users.into_iter().collect())
}

/// Each of the task's outbox events in order: `(version, priority, candidate users)`.
async fn outbox_view(pool: &PgPool, task: &str) -> Vec<(i64, i32, BTreeSet<String>)> {
    outbox_task_events(pool, Some(&[task.to_string()]))
        .await
        .into_iter()
        .map(|(_, version, event)| (version, event.task.priority, event.task.candidate_users))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_engine_transactions_and_drains_lose_and_reorder_nothing() {
    let db = captured_engine().await;
    for t in 0..TASKS {
        insert_task(&mut db.pool.acquire().await.unwrap(), &format!("s{t}")).await;
    }
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(db.pool.clone(), w)))
        .collect();
    let writing = Arc::new(AtomicBool::new(true));
    let drainer = tokio::spawn({
        let (pool, writing) = (db.pool.clone(), writing.clone());
        async move {
            let mut drains = 0;
            while writing.load(Ordering::Relaxed) {
                drain_once(&pool, 20).await.unwrap();
                drains += 1;
            }
            drains
        }
    });
    for writer in writers {
        writer.await.unwrap();
    }
    writing.store(false, Ordering::Relaxed);
    let drains = drainer.await.unwrap();
    // What the drains beside the writers left.
    drain_all(&db.pool).await;
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_capture_dead_letters")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "nothing refused");
    let mut events = 0;
    for t in 0..TASKS {
        let task = format!("s{t}");
        let shown = outbox_view(&db.pool, &task).await;
        let versions: Vec<i64> = shown.iter().map(|e| e.0).collect();
        assert_eq!(
            versions,
            (1..=shown.len() as i64).collect::<Vec<_>>(),
            "{task}: every version once, in order"
        );
        // Priorities only rise and candidates are only added: an event that shows less than
        // the one before is a state read past a change committed before it.
        for pair in shown.windows(2) {
            let ((_, was, had), (version, is, has)) = (&pair[0], &pair[1]);
            assert!(
                is >= was && has.is_superset(had),
                "{task} version {version} took a change back: priority {was} to {is}, \
                 candidates {had:?} to {has:?}"
            );
        }
        let last = shown.last().expect("events");
        assert_eq!(
            (last.1, last.2.clone()),
            engine_view(&db.pool, &task).await,
            "{task}: the last event shows what the engine holds"
        );
        events += shown.len();
    }
    println!(
        "{} engine transactions, {drains} drains beside them, {events} events, in {:?}",
        WRITERS as usize * TRANSACTIONS,
        started.elapsed()
    );
}
