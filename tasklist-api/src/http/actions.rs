//! `POST /api/tasks/{id}/{action}`: an action on a task the caller sees, checked against the
//! view (400, 403, 404, 409 at once, nothing sent), then sent to the owning engine: 202 with
//! the command's id. The engine decides; its outcome follows.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use serde_json::{Value, json};
use taskpool_schemas::TaskAction;

use super::{ApiError, AppState};
use crate::actions::rules::{self, Refused};

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Invalid(message) => ApiError::BadRequest(message),
            Refused::Forbidden(message) => ApiError::Forbidden(message),
            Refused::Conflict(message) => ApiError::Conflict(message),
        }
    }
}

pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.caller(&headers).await?;
    let action = TaskAction::parse(&action).ok_or(ApiError::NotFound)?;
    let body: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|_| ApiError::BadRequest("the body is not JSON".into()))?,
        )
    };
    let request = rules::parse_body(action, body.as_ref())?;
    // Not visible and not there look the same, as for GET.
    let task = state
        .store
        .visible_task(&id, &caller.principals())
        .await?
        .ok_or(ApiError::NotFound)?;
    rules::check(&request, &task, &caller)?;
    let sink = state.actions.as_ref().ok_or(ApiError::NotImplemented)?;
    let command = rules::command(request, &task, &caller);
    sink.send(&command)
        .await
        .map_err(|error| ApiError::Unavailable(Box::new(error)))?;
    tracing::info!(command = %command.command_id, action = %action, task = %command.task_id, user = %caller.user, "action sent to the engine");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "commandId": command.command_id.to_string(), "status": "pending" })),
    ))
}
