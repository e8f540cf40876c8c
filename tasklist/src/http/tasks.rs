//! `GET /api/tasks` and `GET /api/tasks/{id}`.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Json;
use serde_json::{Value, json};

use super::{ApiError, AppState, parse_params};
use crate::query::parse_task_query;

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers).await?;
    let query = parse_task_query(&parse_params(raw.as_deref())?)?;
    let page = state.store.list_tasks(&query, &caller.principals()).await?;
    let items: Vec<Value> = page.items.iter().map(|t| t.to_api()).collect();
    Ok(Json(
        json!({ "items": items, "nextCursor": page.next_cursor }),
    ))
}

pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers).await?;
    // Not visible and not there look the same: a caller learns nothing of others' tasks.
    match state.store.visible_task(&id, &caller.principals()).await? {
        Some(task) => Ok(Json(task.to_api())),
        None => Err(ApiError::NotFound),
    }
}
