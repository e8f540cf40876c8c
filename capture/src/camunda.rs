//! Capture for Camunda 7 and Operaton: installing and removing the triggers on the engine's own
//! tables (`capture/sql/camunda7_install.sql` and `camunda7_commit.sql`, decision 0027).
//! Installing is idempotent: a second install changes nothing but the settings it is given; the
//! tasks already in the engine are captured when the triggers were away before (the first
//! install, one after an uninstall), with what the engine did meanwhile (`catch_up`).

use sqlx::{AssertSqlSafe, PgPool};

use crate::catch_up::end_tasks_ended_meanwhile;
use crate::drain::{DrainError, drain_once};
use crate::snapshots;

/// The tables and the drain's functions, then what runs in the engine's commit.
pub const INSTALL: &str = concat!(
    include_str!("../sql/camunda7_install.sql"),
    include_str!("../sql/camunda7_commit.sql")
);
const DETACH: &str = include_str!("../sql/camunda7_detach.sql");
const UNINSTALL: &str = include_str!("../sql/camunda7_uninstall.sql");

/// The engine tables the triggers read or sit on.
const ENGINE_TABLES: [&str; 7] = [
    "act_ru_task",
    "act_ru_identitylink",
    "act_ru_variable",
    "act_ru_execution",
    "act_re_procdef",
    "act_ge_bytearray",
    "act_hi_taskinst",
];

/// What an installation is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The application name of the engine's tasks: tasklist actions are addressed to it.
    pub application: String,
    /// The zone the engine writes its (zone-less) times in.
    pub time_zone: String,
    /// `(process definition key, variable name)`: which process variables become a task's
    /// payload.
    pub variables: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "not a Camunda 7 or Operaton database: table {0} is missing (is the database URL the \
         engine's, and its search path the engine's schema?)"
    )]
    NotAnEngine(&'static str),
    #[error("time zone {0:?} is unknown to PostgreSQL")]
    TimeZone(String),
    #[error("database")]
    Database(#[from] sqlx::Error),
    /// The states queued before uninstalling could not be drained (tried again by running
    /// uninstall again).
    #[error("draining the task states queued before uninstalling")]
    Drain(#[from] DrainError),
}

/// Installs (or updates) the capture; returns how many of the engine's tasks were captured
/// now. The open tasks not captured yet are. When the capture's triggers were away before
/// (a first install, one after an uninstall, or after an uninstall that did not finish), what
/// the engine did meanwhile is caught up: every open task is captured again, and the tasks
/// taskpool still shows open that the engine ended are ended. Until that is done, every
/// install tries it again. Needs taskpool's own tables first (`PgStore::migrate`).
pub async fn install(pool: &PgPool, installation: &Installation) -> Result<u64, InstallError> {
    let mark = yielding_to_the_engine(|| install_triggers(pool, installation)).await?;
    let captured = capture_existing(pool, mark.is_some()).await?;
    let Some(mark) = mark else {
        return Ok(captured);
    };
    let ended = end_tasks_ended_meanwhile(pool, &installation.application).await?;
    // Only the mark this install caught up for: an uninstall and another install since may
    // have put a new one.
    sqlx::query("DELETE FROM taskpool_camunda_catching_up WHERE mark = $1")
        .bind(mark)
        .execute(pool)
        .await?;
    Ok(captured + ended)
}

/// How long the installer waits for a lock on an engine table before it lets go and tries
/// again: well below `deadlock_timeout` (1 s by default), so that when an engine transaction
/// and the installer wait for each other (the engine's commit reading a table whose triggers
/// are being replaced), the installer is the one that gives way, not the engine.
const LOCK_WAIT: &str = "SET LOCAL lock_timeout = '200ms'";

/// Runs `step` again while it gave way to the engine (`lock_not_available`), for a minute.
async fn yielding_to_the_engine<F, Fut, T>(mut step: F) -> Result<T, InstallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, InstallError>>,
{
    for _ in 0..300 {
        match step().await {
            Err(InstallError::Database(e))
                if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            done => return done,
        }
    }
    step().await
}

/// The triggers, functions and tables, and the installation's settings, in one transaction;
/// returns the mark of what the engine did while the capture was away, when that is still to
/// be caught up.
async fn install_triggers(
    pool: &PgPool,
    installation: &Installation,
) -> Result<Option<String>, InstallError> {
    let mut tx = pool.begin().await?;
    // Two installers at once would recreate the same triggers under each other.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('taskpool camunda install'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(LOCK_WAIT).execute(&mut *tx).await?;
    for table in ENGINE_TABLES {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(InstallError::NotAnEngine(table));
        }
    }
    let zone_known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)")
            .bind(&installation.time_zone)
            .fetch_one(&mut *tx)
            .await?;
    if !zone_known {
        return Err(InstallError::TimeZone(installation.time_zone.clone()));
    }
    // A trigger disabled by hand captured nothing either.
    let was_attached: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'taskpool_capture_task' \
                        AND tgrelid = 'act_ru_task'::regclass AND tgenabled <> 'D')",
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(INSTALL))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO taskpool_camunda_settings (application, time_zone) VALUES ($1, $2) \
         ON CONFLICT (singleton) DO UPDATE SET application = $1, time_zone = $2",
    )
    .bind(&installation.application)
    .bind(&installation.time_zone)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM taskpool_camunda_variables")
        .execute(&mut *tx)
        .await?;
    let (keys, names): (Vec<&str>, Vec<&str>) = installation
        .variables
        .iter()
        .map(|(k, n)| (k.as_str(), n.as_str()))
        .unzip();
    sqlx::query(
        "INSERT INTO taskpool_camunda_variables SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&keys)
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT taskpool_camunda_watch_variables()")
        .execute(&mut *tx)
        .await?;
    // The planner's estimates for the state's query: a table never analyzed is thought to hold
    // hundreds of rows, and these small ones are never changed enough for autovacuum to.
    sqlx::query("ANALYZE taskpool_camunda_settings, taskpool_camunda_variables")
        .execute(&mut *tx)
        .await?;
    // Tasks taskpool knows from an earlier installation (uninstalled since): not created
    // again (taskpool would refuse that) but compared with a captured state that knows
    // nothing of them, so that their assignee, candidates and attributes now are recorded;
    // what taskpool already has changes nothing there.
    sqlx::query(
        "INSERT INTO taskpool_camunda_tasks (task_id, captured) \
         SELECT t.id_, '{\"assignee\": \"taskpool: not known\"}' FROM act_ru_task t \
         WHERE EXISTS (SELECT 1 FROM taskpool_aggregates a \
                       WHERE a.aggregate_type = 'task' AND a.aggregate_id = t.id_) \
         ON CONFLICT (task_id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    if !was_attached {
        sqlx::query(
            "INSERT INTO taskpool_camunda_catching_up DEFAULT VALUES ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
    }
    let mark: Option<String> = sqlx::query_scalar("SELECT mark FROM taskpool_camunda_catching_up")
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(mark)
}

/// The tasks the engine has that this installation has not captured yet (every one, when
/// catching up: their last states may predate changes made while the capture was away):
/// captured as created, or brought up to date as above. One task per transaction: each holds
/// the task's recording lock until its end, and an engine with many open tasks would otherwise
/// fill PostgreSQL's lock table. A task the engine changes meanwhile is captured by its own
/// transaction too; the drain finds the second of the two states unchanged.
async fn capture_existing(pool: &PgPool, every_task: bool) -> Result<u64, InstallError> {
    let mut captured = 0;
    let mut after = String::new();
    loop {
        let tasks: Vec<String> = sqlx::query_scalar(
            "SELECT t.id_ FROM act_ru_task t WHERE t.id_ > $1 \
             AND ($2 OR NOT EXISTS (SELECT 1 FROM taskpool_camunda_tasks c \
                                    WHERE c.task_id = t.id_ AND c.captured ? 'sourceReference')) \
             ORDER BY t.id_ LIMIT 500",
        )
        .bind(&after)
        .bind(every_task)
        .fetch_all(pool)
        .await?;
        let Some(last) = tasks.last() else {
            return Ok(captured);
        };
        after = last.clone();
        for task in &tasks {
            // No instance known: a task gone meanwhile has its ending queued by the engine's
            // commit that removed it.
            sqlx::query("SELECT taskpool_camunda_sync($1, NULL)")
                .bind(task)
                .execute(pool)
                .await?;
            captured += 1;
        }
    }
}

/// Removes the triggers, functions and tables the capture added, and nothing else. The task
/// states queued before the triggers went are drained first: they are compared with the last
/// states, which go with the rest.
pub async fn uninstall(pool: &PgPool) -> Result<(), InstallError> {
    yielding_to_the_engine(|| run_installer(pool, DETACH)).await?;
    // Every engine transaction that queued a state held a lock on a table the triggers sat
    // on, so dropping them waited for it: all the states there will be are visible now.
    while sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM taskpool_capture WHERE kind IN ($1, $2, $3))",
    )
    .bind(snapshots::STATE)
    .bind(snapshots::ROW)
    .bind(snapshots::ENDED)
    .fetch_one(pool)
    .await?
    {
        // A drain fails now and then (another writer on the same task, a dropped
        // connection); it is tried again a few times before the uninstall gives up, the
        // triggers gone and the rest in place (running uninstall again finishes it).
        let mut failures = 0;
        while let Err(e) = drain_once(pool, 500).await {
            failures += 1;
            if failures == 5 {
                return Err(e.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    yielding_to_the_engine(|| run_installer(pool, UNINSTALL)).await
}

/// Runs one of the capture's scripts under the installer's lock.
async fn run_installer(pool: &PgPool, script: &'static str) -> Result<(), InstallError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('taskpool camunda install'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(LOCK_WAIT).execute(&mut *tx).await?;
    sqlx::raw_sql(AssertSqlSafe(script))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
