//! The writers of `horizon-stress`: transactions of random shapes at random isolation levels,
//! through the collector, each committed, prepared or rolled back. Refusals (conflicts,
//! serialization failures) roll back and count as such.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::{AssertSqlSafe, PgConnection};
use taskpool_collector::{Collector, CollectorError, EngineEvent};
use taskpool_core::PgStore;
use taskpool_testkit::fixtures::new_task;

use crate::setup::BenchResult;

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) committed: AtomicU64,
    pub(crate) rolled_back: AtomicU64,
    pub(crate) prepared: AtomicU64,
    pub(crate) savepoints: AtomicU64,
}

/// Tasks committed so far, which any writer may change next.
pub(crate) type Known = Arc<Mutex<Vec<String>>>;

/// One writer's transactions.
pub(crate) struct Shapes {
    pub(crate) writer: u64,
    pub(crate) prepared: bool,
    pub(crate) gid_prefix: String,
}

impl Shapes {
    /// One transaction of a random shape at a random isolation level.
    pub(crate) async fn one(
        &self,
        conn: &mut PgConnection,
        n: u64,
        counts: &Counts,
        known: &Known,
    ) -> BenchResult<()> {
        // SERIALIZABLE the most: registering a new id for predicate locking waits on an LWLock
        // between the id's assignment and its lock, which widens the window of decision 0024.
        let isolation = [
            "READ COMMITTED",
            "REPEATABLE READ",
            "SERIALIZABLE",
            "SERIALIZABLE",
        ][fastrand::usize(..4)];
        execute(conn, &format!("BEGIN ISOLATION LEVEL {isolation}")).await?;
        let mut created = Vec::new();
        let outcome = self.body(conn, n, counts, known, &mut created).await;
        match outcome {
            Ok(Ending::Commit) => match execute(conn, "COMMIT").await {
                Ok(()) => {
                    counts.committed.fetch_add(1, Ordering::Relaxed);
                    known.lock().expect("known tasks").extend(created);
                }
                // A serialization failure at commit: nothing was written.
                Err(_) => {
                    counts.rolled_back.fetch_add(1, Ordering::Relaxed);
                }
            },
            Ok(Ending::Prepare) => {
                let gid = format!("{}-{n}", self.gid_prefix);
                // A PREPARE that fails (a serialization failure) rolls the transaction back.
                if execute(conn, &format!("PREPARE TRANSACTION '{gid}'"))
                    .await
                    .is_err()
                {
                    counts.rolled_back.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                counts.prepared.fetch_add(1, Ordering::Relaxed);
                if fastrand::bool() {
                    execute(conn, &format!("COMMIT PREPARED '{gid}'")).await?;
                    counts.committed.fetch_add(1, Ordering::Relaxed);
                    known.lock().expect("known tasks").extend(created);
                } else {
                    execute(conn, &format!("ROLLBACK PREPARED '{gid}'")).await?;
                    counts.rolled_back.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Rolled back on purpose, or refused: a conflict with a concurrent writer, a
            // serialization failure.
            Ok(Ending::Rollback) | Err(Refused) => {
                execute(conn, "ROLLBACK").await?;
                counts.rolled_back.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    async fn body(
        &self,
        conn: &mut PgConnection,
        n: u64,
        counts: &Counts,
        known: &Known,
        created: &mut Vec<String>,
    ) -> Result<Ending, Refused> {
        let task = |i: u64| format!("w{}-{n}-{i}", self.writer);
        match fastrand::u8(..20) {
            // Fresh create-only transactions, the most: the id is assigned in the outbox
            // statement, after it took its lock on the outbox.
            0..=11 => {
                let ids: Vec<String> = (0..fastrand::u64(1..4)).map(task).collect();
                write(conn, ids.iter().map(|id| create(id)).collect()).await?;
                created.extend(ids);
                Ok(Ending::Commit)
            }
            12..=13 => {
                let Some(id) = pick(known) else {
                    return Ok(Ending::Rollback);
                };
                write(conn, vec![assign(&id, n)]).await?;
                Ok(Ending::Commit)
            }
            14..=15 => {
                counts.savepoints.fetch_add(1, Ordering::Relaxed);
                execute(conn, "SAVEPOINT first")
                    .await
                    .map_err(|_| Refused)?;
                let first = task(0);
                write(conn, vec![create(&first)]).await?;
                if fastrand::bool() {
                    execute(conn, "RELEASE SAVEPOINT first")
                        .await
                        .map_err(|_| Refused)?;
                    created.push(first);
                } else {
                    execute(conn, "ROLLBACK TO SAVEPOINT first")
                        .await
                        .map_err(|_| Refused)?;
                }
                let second = task(1);
                write(conn, vec![create(&second)]).await?;
                created.push(second);
                Ok(Ending::Commit)
            }
            16..=17 if self.prepared => {
                let id = task(0);
                write(conn, vec![create(&id)]).await?;
                created.push(id);
                Ok(Ending::Prepare)
            }
            _ => {
                write(conn, vec![create(&task(0))]).await?;
                Ok(Ending::Rollback)
            }
        }
    }
}

enum Ending {
    Commit,
    Prepare,
    Rollback,
}

/// The database refused a statement (a conflict, a serialization failure): roll back.
struct Refused;

fn pick(known: &Known) -> Option<String> {
    let known = known.lock().expect("known tasks");
    (!known.is_empty()).then(|| known[fastrand::usize(..known.len())].clone())
}

fn create(id: &str) -> EngineEvent {
    EngineEvent::TaskCreated {
        task_id: id.to_string(),
        task: new_task(id),
    }
}

fn assign(id: &str, n: u64) -> EngineEvent {
    EngineEvent::TaskAssigned {
        task_id: id.to_string(),
        assignee: Some(format!("user-{}", n % 7)),
    }
}

async fn write(conn: &mut PgConnection, events: Vec<EngineEvent>) -> Result<(), Refused> {
    let mut collector = Collector::new();
    for event in events {
        collector.record(event).map_err(|_| Refused)?;
    }
    match collector.flush::<PgStore>(conn).await {
        Ok(_) => Ok(()),
        Err(CollectorError::Command(_) | CollectorError::Record(_)) => Err(Refused),
    }
}

pub(crate) async fn execute(conn: &mut PgConnection, sql: &str) -> BenchResult<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}
