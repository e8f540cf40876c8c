//! The engine-side tables (processed commands, dead letters) on the engine's own database:
//! PostgreSQL or SQLite, the same kinds taskpool-core stores events in. The SQL is the same for
//! both (ids as text, `$n` parameters); a macro implements the trait for each.

use sqlx::{Pool, Postgres, Row, Sqlite, Transaction};
use taskpool_core::store::Connection;
use taskpool_core::store::migrations::migrator_recording_in;
use taskpool_core::{PgStore, SqliteStore, Store};
use taskpool_schemas::OutcomeResult;

use crate::EngineError;

/// Where this crate records its applied migrations, apart from the outbox's and the engine's.
pub const MIGRATIONS_TABLE: &str = "taskpool_command_migrations";

/// A command's recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub result: OutcomeResult,
    pub reason: Option<String>,
    pub task_version: Option<i64>,
}

/// A message that could not be decoded, as it is kept.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<&'a [u8]>,
    pub reason: String,
}

/// What one pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub commands: u64,
    pub dead_letters: u64,
}

/// A store the commands can be applied in: taskpool-core's store, how a writing transaction
/// begins on it, and this crate's tables.
pub trait CommandStore: Store {
    /// Creates or upgrades the outbox's tables and this crate's (idempotent).
    fn migrate_all(pool: &Pool<Self::Db>) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Begins a transaction that may write (SQLite: `BEGIN IMMEDIATE`, so two writers queue
    /// instead of failing at their first write).
    fn begin(
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Self::Db>>> + Send;

    /// Records that this transaction decides `command_id`; false when it was decided before.
    /// A concurrent transaction deciding the same command waits here for the first one.
    fn take(
        conn: &mut Connection<Self>,
        command_id: &str,
        task_id: &str,
    ) -> impl Future<Output = sqlx::Result<bool>> + Send;

    /// Stores the decision taken in this transaction.
    fn decide(
        conn: &mut Connection<Self>,
        command_id: &str,
        decision: &Decision,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// The decision recorded for a command, if any.
    fn decided(
        pool: &Pool<Self::Db>,
        command_id: &str,
    ) -> impl Future<Output = sqlx::Result<Option<Decision>>> + Send;

    /// Keeps an undecodable message with the reason (once per topic, partition and offset).
    fn dead_letter(
        pool: &Pool<Self::Db>,
        letter: &DeadLetter<'_>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Deletes decided commands and dead letters older than `seconds` (a command still
    /// `pending` stays: it may be on its way to the engine).
    fn prune(
        pool: &Pool<Self::Db>,
        seconds: i64,
    ) -> impl Future<Output = sqlx::Result<Pruned>> + Send;
}

/// The statements that delete what is older than `$1` seconds, in each database's own time.
struct PruneSql {
    commands: &'static str,
    dead_letters: &'static str,
}

const PRUNE_POSTGRES: PruneSql = PruneSql {
    commands: "DELETE FROM taskpool_processed_commands WHERE result <> 'pending' \
               AND processed_at < clock_timestamp() - $1 * INTERVAL '1 second'",
    dead_letters: "DELETE FROM taskpool_command_dead_letters \
                   WHERE received_at < clock_timestamp() - $1 * INTERVAL '1 second'",
};

// The tables' times are text in one ISO format, so they compare as text.
const PRUNE_SQLITE: PruneSql = PruneSql {
    commands: "DELETE FROM taskpool_processed_commands WHERE result <> 'pending' \
               AND processed_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')",
    dead_letters: "DELETE FROM taskpool_command_dead_letters \
                   WHERE received_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || $1 || ' seconds')",
};

const TAKE: &str = "INSERT INTO taskpool_processed_commands (command_id, task_id, result) \
                    VALUES ($1, $2, 'pending') ON CONFLICT (command_id) DO NOTHING";
const DECIDE: &str = "UPDATE taskpool_processed_commands \
                      SET result = $2, reason = $3, task_version = $4 WHERE command_id = $1";
const DECIDED: &str = "SELECT result, reason, task_version FROM taskpool_processed_commands \
                       WHERE command_id = $1 AND result <> 'pending'";
const DEAD_LETTER: &str = "INSERT INTO taskpool_command_dead_letters \
                           (topic, partition, \"offset\", key, payload, reason) \
                           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

fn result_of(text: &str) -> Option<OutcomeResult> {
    match text {
        "applied" => Some(OutcomeResult::Applied),
        "rejected" => Some(OutcomeResult::Rejected),
        _ => None,
    }
}

macro_rules! command_store {
    ($store:ty, $db:ty, $folder:literal, $begin:expr, $prune:expr) => {
        impl CommandStore for $store {
            async fn migrate_all(pool: &Pool<$db>) -> Result<(), EngineError> {
                <$store as Store>::migrate(pool).await?;
                let migrations: &[(i64, &str, &str)] = &[(
                    1,
                    "commands",
                    include_str!(concat!("../migrations/", $folder, "/0001_commands.sql")),
                )];
                migrator_recording_in(migrations, MIGRATIONS_TABLE)
                    .run(pool)
                    .await?;
                Ok(())
            }

            async fn begin(pool: &Pool<$db>) -> sqlx::Result<Transaction<'static, $db>> {
                $begin(pool).await
            }

            async fn take(
                conn: &mut Connection<Self>,
                command_id: &str,
                task_id: &str,
            ) -> sqlx::Result<bool> {
                let done = sqlx::query(TAKE)
                    .bind(command_id)
                    .bind(task_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn decide(
                conn: &mut Connection<Self>,
                command_id: &str,
                decision: &Decision,
            ) -> sqlx::Result<()> {
                sqlx::query(DECIDE)
                    .bind(command_id)
                    .bind(decision.result.as_str())
                    .bind(decision.reason.as_deref())
                    .bind(decision.task_version)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn decided(pool: &Pool<$db>, command_id: &str) -> sqlx::Result<Option<Decision>> {
                let Some(row) = sqlx::query(DECIDED)
                    .bind(command_id)
                    .fetch_optional(pool)
                    .await?
                else {
                    return Ok(None);
                };
                let result: String = row.try_get(0)?;
                Ok(result_of(&result).map(|result| Decision {
                    result,
                    reason: row.try_get(1).ok().flatten(),
                    task_version: row.try_get(2).ok().flatten(),
                }))
            }

            async fn dead_letter(pool: &Pool<$db>, letter: &DeadLetter<'_>) -> sqlx::Result<()> {
                sqlx::query(DEAD_LETTER)
                    .bind(letter.topic)
                    .bind(letter.partition)
                    .bind(letter.offset)
                    .bind(letter.key.as_deref())
                    .bind(letter.payload)
                    .bind(&letter.reason)
                    .execute(pool)
                    .await?;
                Ok(())
            }

            async fn prune(pool: &Pool<$db>, seconds: i64) -> sqlx::Result<Pruned> {
                let sql: PruneSql = $prune;
                let commands = sqlx::query(sql.commands)
                    .bind(seconds)
                    .execute(pool)
                    .await?;
                let dead_letters = sqlx::query(sql.dead_letters)
                    .bind(seconds)
                    .execute(pool)
                    .await?;
                Ok(Pruned {
                    commands: commands.rows_affected(),
                    dead_letters: dead_letters.rows_affected(),
                })
            }
        }
    };
}

async fn begin_plain(pool: &Pool<Postgres>) -> sqlx::Result<Transaction<'static, Postgres>> {
    pool.begin().await
}

async fn begin_immediate(pool: &Pool<Sqlite>) -> sqlx::Result<Transaction<'static, Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

command_store!(PgStore, Postgres, "postgres", begin_plain, PRUNE_POSTGRES);
command_store!(SqliteStore, Sqlite, "sqlite", begin_immediate, PRUNE_SQLITE);
