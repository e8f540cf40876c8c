//! `GET /api/data-entries` and `GET /api/data-entries/{entryType}/{entryId}`: visible to their
//! authorized users and groups.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Json;
use serde_json::{Value, json};

use super::{ApiError, AppState, parse_params};
use crate::query::MAX_LIMIT;

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers).await?;
    let params = parse_params(raw.as_deref())?;
    if let Some(unknown) = params
        .keys()
        .find(|k| !["entryType", "limit", "cursor"].contains(&k.as_str()))
    {
        let unknown: String = unknown.chars().take(40).collect();
        return Err(ApiError::BadRequest(format!("unknown parameter {unknown}")));
    }
    let limit = match params.get("limit") {
        None => 50,
        Some(value) => value
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    let page = state
        .store
        .list_data_entries(
            &caller.principals(),
            params.get("entryType").map(String::as_str),
            params.get("cursor").map(String::as_str),
            limit,
        )
        .await?;
    let items: Vec<Value> = page.items.iter().map(|e| e.to_api()).collect();
    Ok(Json(
        json!({ "items": items, "nextCursor": page.next_cursor }),
    ))
}

pub async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((entry_type, entry_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.caller(&headers).await?;
    let id = format!("{entry_type}:{entry_id}");
    match state
        .store
        .visible_data_entry(&id, &caller.principals())
        .await?
    {
        Some(entry) => Ok(Json(entry.to_api())),
        None => Err(ApiError::NotFound),
    }
}
