//! What the engine did while the Camunda capture was away (uninstalled, or detached by an
//! uninstall that did not finish): the endings of the tasks it ended meanwhile (decision 0027).
//! The changes to its open tasks are caught up by capturing every open task again
//! (`camunda::install`).

use std::collections::HashSet;

use sqlx::PgPool;
use taskpool_schemas::{DecodedEvent, decode};

/// The engine's tasks of `application` that taskpool shows open but the engine no longer has:
/// each gets a last state that knows nothing and its ending queued, completed or deleted as the
/// engine's history says (completed when it says nothing: history level none, or cleaned up),
/// so that the drain records it. The engine's tasks are those its history knows, of one of its
/// process definitions, or of none (standalone); another writer's task under the same
/// application name is not the engine's to end. Read in pages: taskpool keeps every task it
/// ever had. Returns how many were ended.
pub(crate) async fn end_tasks_ended_meanwhile(
    pool: &PgPool,
    application: &str,
) -> Result<u64, sqlx::Error> {
    let definitions: HashSet<String> = sqlx::query_scalar("SELECT id_ FROM act_re_procdef")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let open_here = |state: &[u8], in_history: bool| {
        shown_open(state, application) && (in_history || of_definitions(state, &definitions))
    };
    let mut ended = 0;
    let mut after = String::new();
    loop {
        // With what the history knows of each: whether it knows the task, and its instance
        // ('' for none, as at history level none).
        let page: Vec<(String, Vec<u8>, bool, String)> = sqlx::query_as(
            "SELECT a.aggregate_id, a.state, h.id_ IS NOT NULL, coalesce(h.proc_inst_id_, '') \
             FROM taskpool_aggregates a LEFT JOIN act_hi_taskinst h ON h.id_ = a.aggregate_id \
             WHERE a.aggregate_type = 'task' AND a.aggregate_id > $1 \
             AND NOT EXISTS (SELECT 1 FROM act_ru_task t WHERE t.id_ = a.aggregate_id) \
             ORDER BY a.aggregate_id LIMIT 500",
        )
        .bind(&after)
        .fetch_all(pool)
        .await?;
        let Some((last, ..)) = page.last() else {
            return Ok(ended);
        };
        after = last.clone();
        for (task, state, in_history, instance) in &page {
            let open_here = |state: &[u8]| open_here(state, *in_history);
            if open_here(state) && end_task(pool, task, instance, &open_here).await? {
                ended += 1;
            }
        }
    }
}

/// Queues the ending of `task` unless taskpool's state of it, read again under its row lock
/// (which the drain takes to record an event), no longer shows it open. `instance`: its process
/// instance as the history knows it ('' for none), so that the locks are taken in the order of
/// the engine's commits.
async fn end_task(
    pool: &PgPool,
    task: &str,
    instance: &str,
    open_here: &impl Fn(&[u8]) -> bool,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let state: Vec<u8> = sqlx::query_scalar(
        "SELECT state FROM taskpool_aggregates \
         WHERE aggregate_type = 'task' AND aggregate_id = $1 FOR UPDATE",
    )
    .bind(task)
    .fetch_one(&mut *tx)
    .await?;
    if !open_here(&state) {
        return Ok(false);
    }
    // An ending queued by the triggers before they went and not drained yet comes first: the
    // drain records it and forgets the last state, and this one then finds none and records
    // nothing.
    sqlx::query(
        "INSERT INTO taskpool_camunda_tasks (task_id, captured) \
         VALUES ($1, '{\"assignee\": \"taskpool: not known\"}') ON CONFLICT DO NOTHING",
    )
    .bind(task)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT taskpool_camunda_sync($1, $2)")
        .bind(task)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether a task's latest event (taskpool's state of it) shows it open, from `application`.
fn shown_open(state: &[u8], application: &str) -> bool {
    match decode(state) {
        Ok(DecodedEvent::Task(event)) => {
            event.task.source_reference.application_name == application
                && !["TaskCompleted", "TaskDeleted"].contains(&event.event_type.as_str())
        }
        _ => false,
    }
}

/// The process definition key the capture gives a task of no process (`camunda7_install.sql`):
/// no BPMN process can have it, so such a task is the engine's.
const STANDALONE: &str = "(standalone)";

/// Whether a task's latest event names one of the engine's process `definitions`, or no
/// process at all.
fn of_definitions(state: &[u8], definitions: &HashSet<String>) -> bool {
    matches!(decode(state), Ok(DecodedEvent::Task(event))
        if definitions.contains(&event.task.source_reference.process_definition_id)
            || event.task.source_reference.process_definition_key == STANDALONE)
}
