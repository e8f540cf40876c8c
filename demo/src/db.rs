//! The demo engine's own tables (requests and their tasks), next to taskpool's, in SQLite or
//! PostgreSQL. Every write here happens in the transaction that also records the collector's
//! events, so the tables are the ground truth of what the tasklist must show.

use sqlx::{AssertSqlSafe, Pool, Row};
use taskpool_core::store::Connection;
use taskpool_core::{PgStore, SqliteStore, Store};

use crate::process::Request;

/// A task as the demo's table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub request_id: String,
    pub step: String,
    pub name: String,
    /// `ACTIVE`, `COMPLETED` or `DELETED`.
    pub state: String,
    pub assignee: Option<String>,
    pub candidate_group: Option<String>,
    pub candidate_user: Option<String>,
    pub priority: i64,
    pub due_date: Option<i64>,
}

/// Which active task to pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Any,
    Unassigned,
    Assigned,
}

impl Pick {
    fn condition(self) -> &'static str {
        match self {
            Pick::Any => "",
            Pick::Unassigned => " AND assignee IS NULL",
            Pick::Assigned => " AND assignee IS NOT NULL",
        }
    }
}

const CREATE_REQUESTS: &str = "CREATE TABLE IF NOT EXISTS demo_requests (
    id TEXT PRIMARY KEY, requester TEXT NOT NULL, item TEXT NOT NULL,
    amount BIGINT NOT NULL, state TEXT NOT NULL, finished BOOLEAN NOT NULL)";
const CREATE_TASKS: &str = "CREATE TABLE IF NOT EXISTS demo_tasks (
    id TEXT PRIMARY KEY, request_id TEXT NOT NULL, step TEXT NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, assignee TEXT, candidate_group TEXT, candidate_user TEXT,
    priority BIGINT NOT NULL, due_date BIGINT)";
const INDEX_TASKS: &str =
    "CREATE INDEX IF NOT EXISTS demo_tasks_state ON demo_tasks (state, assignee)";
const TASK_COLUMNS: &str = "id, request_id, step, name, state, assignee, candidate_group, \
                            candidate_user, priority, due_date";

/// The demo's statements for one kind of database.
#[allow(async_fn_in_trait)]
pub trait DemoDb: Store {
    /// Creates the demo's tables (idempotent).
    async fn create_tables(pool: &Pool<Self::Db>) -> sqlx::Result<()>;
    /// Begins an engine transaction (on SQLite it takes the write lock at once).
    async fn begin(pool: &Pool<Self::Db>) -> sqlx::Result<sqlx::Transaction<'static, Self::Db>>;
    async fn running_requests(conn: &mut Connection<Self>) -> sqlx::Result<i64>;
    async fn insert_request(conn: &mut Connection<Self>, request: &Request) -> sqlx::Result<()>;
    async fn load_request(conn: &mut Connection<Self>, id: &str) -> sqlx::Result<Request>;
    async fn set_request_state(
        conn: &mut Connection<Self>,
        id: &str,
        state: &str,
        finished: bool,
    ) -> sqlx::Result<()>;
    async fn insert_task(conn: &mut Connection<Self>, task: &TaskRow) -> sqlx::Result<()>;
    async fn update_task(conn: &mut Connection<Self>, task: &TaskRow) -> sqlx::Result<()>;
    /// One task by id, locked for this transaction.
    async fn load_task(conn: &mut Connection<Self>, id: &str) -> sqlx::Result<Option<TaskRow>>;
    /// A random active task of the kind asked for, locked for this transaction.
    async fn pick_task(conn: &mut Connection<Self>, pick: Pick) -> sqlx::Result<Option<TaskRow>>;
    /// Every task the demo ever made.
    async fn all_tasks(pool: &Pool<Self::Db>) -> sqlx::Result<Vec<TaskRow>>;
}

/// Reads a [`TaskRow`] from a row of [`TASK_COLUMNS`].
macro_rules! task_row {
    ($row:expr) => {
        TaskRow {
            id: $row.try_get("id")?,
            request_id: $row.try_get("request_id")?,
            step: $row.try_get("step")?,
            name: $row.try_get("name")?,
            state: $row.try_get("state")?,
            assignee: $row.try_get("assignee")?,
            candidate_group: $row.try_get("candidate_group")?,
            candidate_user: $row.try_get("candidate_user")?,
            priority: $row.try_get("priority")?,
            due_date: $row.try_get("due_date")?,
        }
    };
}

/// The same statements for both databases; only how a transaction begins and how a picked
/// row is locked differ.
macro_rules! demo_db {
    ($store:ty, $begin:expr, $lock:literal) => {
        impl DemoDb for $store {
            async fn create_tables(pool: &Pool<Self::Db>) -> sqlx::Result<()> {
                for statement in [CREATE_REQUESTS, CREATE_TASKS, INDEX_TASKS] {
                    sqlx::query(statement).execute(pool).await?;
                }
                Ok(())
            }

            async fn begin(
                pool: &Pool<Self::Db>,
            ) -> sqlx::Result<sqlx::Transaction<'static, Self::Db>> {
                $begin(pool).await
            }

            async fn running_requests(conn: &mut Connection<Self>) -> sqlx::Result<i64> {
                sqlx::query("SELECT COUNT(*) FROM demo_requests WHERE NOT finished")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)
            }

            async fn insert_request(
                conn: &mut Connection<Self>,
                request: &Request,
            ) -> sqlx::Result<()> {
                sqlx::query(
                    "INSERT INTO demo_requests (id, requester, item, amount, state, finished) \
                     VALUES ($1, $2, $3, $4, $5, FALSE)",
                )
                .bind(&request.id)
                .bind(&request.requester)
                .bind(&request.item)
                .bind(request.amount)
                .bind(&request.state)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn load_request(conn: &mut Connection<Self>, id: &str) -> sqlx::Result<Request> {
                let row = sqlx::query(
                    "SELECT id, requester, item, amount, state FROM demo_requests WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                Ok(Request {
                    id: row.try_get("id")?,
                    requester: row.try_get("requester")?,
                    item: row.try_get("item")?,
                    amount: row.try_get("amount")?,
                    state: row.try_get("state")?,
                })
            }

            async fn set_request_state(
                conn: &mut Connection<Self>,
                id: &str,
                state: &str,
                finished: bool,
            ) -> sqlx::Result<()> {
                sqlx::query("UPDATE demo_requests SET state = $1, finished = $2 WHERE id = $3")
                    .bind(state)
                    .bind(finished)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn insert_task(conn: &mut Connection<Self>, task: &TaskRow) -> sqlx::Result<()> {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO demo_tasks ({TASK_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                )))
                .bind(&task.id)
                .bind(&task.request_id)
                .bind(&task.step)
                .bind(&task.name)
                .bind(&task.state)
                .bind(&task.assignee)
                .bind(&task.candidate_group)
                .bind(&task.candidate_user)
                .bind(task.priority)
                .bind(task.due_date)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn update_task(conn: &mut Connection<Self>, task: &TaskRow) -> sqlx::Result<()> {
                sqlx::query(
                    "UPDATE demo_tasks SET state = $1, assignee = $2, priority = $3, \
                     due_date = $4 WHERE id = $5",
                )
                .bind(&task.state)
                .bind(&task.assignee)
                .bind(task.priority)
                .bind(task.due_date)
                .bind(&task.id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            async fn load_task(
                conn: &mut Connection<Self>,
                id: &str,
            ) -> sqlx::Result<Option<TaskRow>> {
                // Waits for a lock another transaction holds (one task asked for by id must
                // not read as absent); only picking any task skips locked ones.
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TASK_COLUMNS} FROM demo_tasks WHERE id = $1{}",
                    $lock.trim_end_matches(" SKIP LOCKED")
                )))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(match row {
                    Some(row) => Some(task_row!(row)),
                    None => None,
                })
            }

            async fn pick_task(
                conn: &mut Connection<Self>,
                pick: Pick,
            ) -> sqlx::Result<Option<TaskRow>> {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TASK_COLUMNS} FROM demo_tasks WHERE state = 'ACTIVE'{} \
                     ORDER BY random() LIMIT 1{}",
                    pick.condition(),
                    $lock
                )))
                .fetch_optional(&mut *conn)
                .await?;
                Ok(match row {
                    Some(row) => Some(task_row!(row)),
                    None => None,
                })
            }

            async fn all_tasks(pool: &Pool<Self::Db>) -> sqlx::Result<Vec<TaskRow>> {
                let rows = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TASK_COLUMNS} FROM demo_tasks ORDER BY id"
                )))
                .fetch_all(pool)
                .await?;
                let mut tasks = Vec::with_capacity(rows.len());
                for row in rows {
                    tasks.push(task_row!(row));
                }
                Ok(tasks)
            }
        }
    };
}

async fn begin_immediate(
    pool: &Pool<sqlx::Sqlite>,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

async fn begin_plain(
    pool: &Pool<sqlx::Postgres>,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    pool.begin().await
}

demo_db!(SqliteStore, begin_immediate, "");
demo_db!(PgStore, begin_plain, " FOR UPDATE SKIP LOCKED");
