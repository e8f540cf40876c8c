//! The Camunda capture's raw task rows (`camunda-row`, queued in the engine's commit) shaped into
//! task states (`camunda-state`) in the drain's transaction, by the capture's SQL
//! (`taskpool_camunda_shape`), one query per batch. The engine's commit only copies the rows:
//! naming, time zones and the allow list per process definition cost it nothing.

use sqlx::{Postgres, Transaction};

use crate::captured::Captured;
use crate::snapshots::{ROW, STATE};

/// Shapes the raw rows among `rows` in place. Rows stay raw when the capture's functions are
/// gone (a hand-made uninstall): they are then dead-lettered like its other states.
pub async fn shape<'a>(
    tx: &mut Transaction<'_, Postgres>,
    rows: impl IntoIterator<Item = &'a mut Captured>,
) -> Result<(), sqlx::Error> {
    let mut raw: Vec<&mut Captured> = rows
        .into_iter()
        .filter(|r| r.aggregate_type == "task" && r.kind == ROW)
        .collect();
    if raw.is_empty() {
        return Ok(());
    }
    let installed: bool =
        sqlx::query_scalar("SELECT to_regprocedure('taskpool_camunda_shape(jsonb)') IS NOT NULL")
            .fetch_one(&mut **tx)
            .await?;
    if !installed {
        return Ok(());
    }
    let fields: Vec<String> = raw.iter().map(|r| r.fields.to_string()).collect();
    let shaped: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT taskpool_camunda_shape(r::jsonb)::text \
         FROM unnest($1::text[]) WITH ORDINALITY AS u(r, i) ORDER BY i",
    )
    .bind(&fields)
    .fetch_all(&mut **tx)
    .await?;
    for (row, state) in raw.iter_mut().zip(shaped) {
        // No state from rows that cannot be shaped (a value their column cannot hold, the
        // settings gone): left raw, and refused.
        if let Some(state) = state {
            row.fields = serde_json::from_str(&state).map_err(|e| sqlx::Error::Decode(e.into()))?;
            row.kind = STATE.to_string();
        }
    }
    Ok(())
}
