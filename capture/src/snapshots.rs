//! The Camunda capture's queued task states (decision 0027) turned into task events in the
//! drain's transaction: each state is compared with the last one seen of its task
//! (`taskpool_camunda_tasks`), in queue order, which per task is the engine's commit order
//! (the capture takes the task's recording lock before queueing). The last states are locked
//! when read and written back in the same transaction as the events: a drain that dies before
//! its commit leaves both as they were, and the states are compared again.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::{Postgres, Transaction};

use crate::captured::Captured;
use crate::changes::{changes, ended};

/// A task's state as its engine transaction left it, shaped (by the drain, from [`ROW`]; an
/// older installation queued it so).
pub const STATE: &str = "camunda-state";
/// A task's rows as its engine transaction left them, before shaping ([`crate::shaping`]).
pub const ROW: &str = "camunda-row";
/// A task whose row its engine transaction deleted, with the history's reason.
pub const ENDED: &str = "camunda-ended";

/// Whether a queued row is one of the capture's states rather than an event.
pub fn is_snapshot(row: &Captured) -> bool {
    row.aggregate_type == "task" && [STATE, ROW, ENDED].contains(&row.kind.as_str())
}

/// A task's last state as it was before a group of its events: see [`LastStates::restore`].
#[derive(Debug)]
pub struct Checkpoint {
    task: String,
    state: Option<Option<Value>>,
}

/// The last states of the tasks one drain compares, as they change during the drain.
#[derive(Debug, Default)]
pub struct LastStates {
    /// Every task of the drain's states: its last state, none when not (or no longer) active.
    states: HashMap<String, Option<Value>>,
    changed: HashSet<String>,
    /// The form keys of the tasks the drain may create: `(process definition id, task key)`.
    form_keys: HashMap<(String, String), Option<String>>,
    /// Whether the last states are gone (a hand-made uninstall that left states queued):
    /// those states are dead-lettered instead of stopping every drain.
    missing: bool,
}

impl LastStates {
    /// Reads and locks the last states of the tasks `rows` holds states of (none when the
    /// rows are only events: the capture may not be installed).
    pub async fn load(
        tx: &mut Transaction<'_, Postgres>,
        rows: &[&Captured],
    ) -> Result<LastStates, sqlx::Error> {
        let tasks: Vec<&str> = rows
            .iter()
            .filter(|r| is_snapshot(r))
            .map(|r| r.aggregate_id.as_str())
            .collect();
        let mut last = LastStates::default();
        if tasks.is_empty() {
            return Ok(last);
        }
        let installed: bool =
            sqlx::query_scalar("SELECT to_regclass('taskpool_camunda_tasks') IS NOT NULL")
                .fetch_one(&mut **tx)
                .await?;
        if !installed {
            last.missing = true;
            return Ok(last);
        }
        last.states = tasks.iter().map(|t| (t.to_string(), None)).collect();
        let known: Vec<(String, String)> = sqlx::query_as(
            "SELECT task_id, captured::text FROM taskpool_camunda_tasks \
             WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE",
        )
        .bind(&tasks)
        .fetch_all(&mut **tx)
        .await?;
        for (task, state) in known {
            let state = serde_json::from_str(&state).map_err(|e| sqlx::Error::Decode(e.into()))?;
            last.states.insert(task, Some(state));
        }
        // One query for the form keys of every task that may be new, not one a task.
        let (definitions, task_keys): (Vec<&str>, Vec<&str>) = rows
            .iter()
            .filter(|r| r.kind == STATE && last.states.get(&r.aggregate_id) == Some(&None))
            .filter_map(|r| form_key_of(&r.fields))
            .unzip();
        if !definitions.is_empty() {
            let keys: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT d, k, taskpool_camunda_form_key(d, k) \
                 FROM (SELECT DISTINCT d, k FROM unnest($1::text[], $2::text[]) AS u(d, k)) AS u",
            )
            .bind(&definitions)
            .bind(&task_keys)
            .fetch_all(&mut **tx)
            .await?;
            last.form_keys = keys.into_iter().map(|(d, k, f)| ((d, k), f)).collect();
        }
        Ok(last)
    }

    /// The events of one queued row: a state compared with its task's last state (which it
    /// then becomes), or the row itself when it is an event; or why a state cannot be.
    pub fn events(&mut self, row: &Captured) -> Result<Vec<Captured>, String> {
        if !is_snapshot(row) {
            return Ok(vec![row.clone()]);
        }
        if self.missing {
            return Err(
                "a Camunda task state, but the capture's last states are gone \
                        (uninstalled without draining)"
                    .to_string(),
            );
        }
        if row.kind == ROW {
            return Err("Camunda task rows that could not be shaped into a state".to_string());
        }
        if row.kind == STATE && !row.fields.is_object() {
            return Err("a Camunda task state that is not a JSON object".to_string());
        }
        let task = row.aggregate_id.as_str();
        let before = self.states.get(task).cloned().flatten();
        let (events, after) = match (row.kind.as_str(), before) {
            // Created and ended in one transaction, or ended before it was ever captured.
            (ENDED, None) => (vec![], None),
            (ENDED, Some(_)) => {
                let reason = row.fields.get("reason").and_then(Value::as_str);
                (vec![ended(reason)], None)
            }
            (_, None) => {
                let mut now = row.fields.clone();
                let form_key = form_key_of(&now).and_then(|(d, k)| {
                    self.form_keys.get(&(d.to_string(), k.to_string())).cloned()
                });
                if let Some(Some(form_key)) = form_key {
                    now["formKey"] = Value::String(form_key);
                }
                (vec![("created", now.clone())], Some(now))
            }
            (_, Some(before)) => {
                let mut now = row.fields.clone();
                if let Some(form_key) = before.get("formKey") {
                    now["formKey"] = form_key.clone();
                }
                (changes(&before, &now), Some(now))
            }
        };
        if self.states.get(task) != Some(&after) {
            self.states.insert(task.to_string(), after);
            self.changed.insert(task.to_string());
        }
        Ok(events
            .into_iter()
            .map(|(kind, fields)| Captured {
                aggregate_type: row.aggregate_type.clone(),
                aggregate_id: row.aggregate_id.clone(),
                kind: kind.to_string(),
                fields,
                recorded_at: row.recorded_at,
            })
            .collect())
    }

    /// What the drain holds of `row`'s task now, to put back with [`LastStates::restore`].
    pub fn checkpoint(&self, row: &Captured) -> Checkpoint {
        Checkpoint {
            task: row.aggregate_id.clone(),
            state: self.states.get(&row.aggregate_id).cloned(),
        }
    }

    /// Puts a task's last state back as it was at `checkpoint`, when the events compared
    /// since were refused: the task's next state is compared with what taskpool accepted, so
    /// a refused change (a creation above all) is recorded once it is acceptable. An ended
    /// task is not put back: no state of it will follow.
    pub fn restore(&mut self, checkpoint: Checkpoint) {
        let Some(state) = checkpoint.state else {
            return; // not a task of the capture's states
        };
        if matches!(self.states.get(&checkpoint.task), Some(Some(_))) {
            self.states.insert(checkpoint.task.clone(), state);
            self.changed.insert(checkpoint.task);
        }
    }

    /// Writes the states that changed back, in the drain's transaction.
    pub async fn save(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        let mut active: (Vec<&str>, Vec<String>) = Default::default();
        let mut gone: Vec<&str> = Vec::new();
        for task in &self.changed {
            match &self.states[task] {
                Some(state) => {
                    active.0.push(task);
                    active.1.push(state.to_string());
                }
                None => gone.push(task),
            }
        }
        if !active.0.is_empty() {
            sqlx::query(
                "INSERT INTO taskpool_camunda_tasks (task_id, captured) \
                 SELECT t, s::jsonb FROM unnest($1::text[], $2::text[]) AS u(t, s) \
                 ON CONFLICT (task_id) DO UPDATE SET captured = EXCLUDED.captured",
            )
            .bind(&active.0)
            .bind(&active.1)
            .execute(&mut **tx)
            .await?;
        }
        if !gone.is_empty() {
            sqlx::query("DELETE FROM taskpool_camunda_tasks WHERE task_id = ANY($1)")
                .bind(&gone)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Where a new task's form key is read from (the BPMN of its process definition, once per
/// definition by the capture's SQL): its process definition id and task definition key.
fn form_key_of(state: &Value) -> Option<(&str, &str)> {
    // A task of no process has no model to name a form key (and would otherwise leave a row
    // in the remembered form keys for each such task).
    let definition = state
        .pointer("/sourceReference/processDefinitionId")
        .and_then(Value::as_str)
        .filter(|definition| !definition.is_empty())?;
    let task_key = state.get("taskDefinitionKey").and_then(Value::as_str)?;
    Some((definition, task_key))
}
