//! `POST /api/tasks/{id}/{action}`: an action on a task the caller sees, checked against the
//! view (400, 403, 404, 409 at once, nothing sent), then sent to the owning engine: 202 with
//! the command's id. The engine decides; its outcome follows on the caller's streams.
//!
//! With an `Idempotency-Key`, a retried request is the same command, which the engine applies
//! once (and answers as it did): the key is bound to the request for `http.idempotency_key_secs`
//! ([`crate::actions::keys`], [`super::keyed`]); the same key with another request is 422;
//! later, a new command.
//!
//! With `?wait=<duration>` (`5s`, `500ms`, at most 30 s) the answer waits for the outcome:
//! 409 with the engine's reason when it rejected the action; 200 once applied *and* visible to
//! the caller (their `GET /api/tasks/{id}` shows the version the engine produced, or no longer
//! shows the task), so a client reads its own writes; 202 when the wait ran out first.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};
use taskpool_schemas::{CommandOutcome, OutcomeResult, TaskAction, Timestamp};
use tokio::time::Instant;
use uuid::Uuid;

use super::keyed::KeyedRequest;
use super::{ApiError, AppState, parse_params};
use crate::actions::rules::{self, Refused};
use crate::identity::Caller;

/// The longest a request may wait for its outcome.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting request looks at the caller's view.
const VIEW_POLL: Duration = Duration::from_millis(20);

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        _ => Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        )),
    }
}

/// `5s`, `500ms` or plain seconds; at most [`MAX_WAIT`].
fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let invalid =
        || ApiError::BadRequest(format!("wait {text:?} is not a duration like 5s or 500ms"));
    let duration = if let Some(millis) = text.strip_suffix("ms") {
        Duration::from_millis(millis.parse().map_err(|_| invalid())?)
    } else {
        let seconds: f64 = text
            .strip_suffix('s')
            .unwrap_or(text)
            .parse()
            .map_err(|_| invalid())?;
        Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?
    };
    Ok(duration.min(MAX_WAIT))
}

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
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let action = TaskAction::parse(&action).ok_or(ApiError::NotFound)?;
    let wait = match parse_params(raw.as_deref())?.get("wait") {
        Some(text) => Some(parse_wait(text)?),
        None => None,
    };
    let body: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|_| ApiError::BadRequest("the body is not JSON".into()))?,
        )
    };
    let request = rules::parse_body(action, body.as_ref())?;
    let key = idempotency_key(&headers)?;
    // Not visible and not there look the same, as for GET.
    let task = state
        .store
        .visible_task(&id, &caller.principals())
        .await?
        .ok_or(ApiError::NotFound)?;
    let target = state.actions.as_ref().ok_or(ApiError::NotImplemented)?;
    let mut keyed = match key {
        Some(key) => {
            let caller_key = (caller.user.as_str(), key);
            let life = (Timestamp::now(), state.key_life);
            Some(KeyedRequest::find(target, caller_key, (&task.id, &request), life).await?)
        }
        None => None,
    };
    // A keyed request whose command was handed on before is that command again: the engine
    // answers it as it decided it (the view may show its effect by now, and is not asked).
    if !keyed.as_ref().is_some_and(KeyedRequest::sent_before) {
        rules::check_for(&request, &task, &caller, &state.hand_over_groups)?;
    }
    let mut command = rules::command(request, &task, &caller, Uuid::new_v4());
    target.sink.check(&command).map_err(ApiError::BadRequest)?;
    if let Some(keyed) = keyed.as_mut() {
        keyed.bind(target, &mut command).await?;
    }
    let command_id = command.command_id;
    let outcome = wait.map(|_| state.waiters.expect(command_id));
    if let Err(error) = target.sink.send(&command).await {
        // Its waiter (if any) is dropped with the receiver and pruned by the next request.
        return Err(ApiError::Unavailable(Box::new(error)));
    }
    if let Some(keyed) = &keyed {
        keyed.confirm(target).await;
    }
    tracing::info!(command = %command_id, action = %action, task = %command.task_id, user = %caller.user, "action sent to the engine");
    let pending = (
        StatusCode::ACCEPTED,
        Json(json!({ "commandId": command_id.to_string(), "status": "pending" })),
    );
    let (Some(limit), Some(outcome)) = (wait, outcome) else {
        return Ok(pending.into_response());
    };
    let deadline = Instant::now() + limit;
    let Ok(Ok(outcome)) = tokio::time::timeout_at(deadline, outcome).await else {
        return Ok(pending.into_response());
    };
    match outcome.result {
        OutcomeResult::Rejected => Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": "rejected",
                "message": outcome.reason.as_deref().unwrap_or("the engine refused the action"),
                "commandId": command_id.to_string(),
            })),
        )
            .into_response()),
        OutcomeResult::Applied if visible_to(&state, &caller, &outcome, deadline).await? => Ok((
            StatusCode::OK,
            Json(json!({
                "commandId": command_id.to_string(),
                "status": "applied",
                "taskVersion": outcome.task_version,
            })),
        )
            .into_response()),
        OutcomeResult::Applied => Ok(pending.into_response()),
    }
}

/// Waits until the caller's view shows what the engine produced: the task at that version or
/// later, or no longer the task (completed, handed to someone they cannot see). False when
/// `deadline` came first.
async fn visible_to(
    state: &AppState,
    caller: &Caller,
    outcome: &CommandOutcome,
    deadline: Instant,
) -> Result<bool, ApiError> {
    let Some(version) = outcome.task_version else {
        return Ok(true);
    };
    let principals = caller.principals();
    loop {
        match state
            .store
            .visible_task(&outcome.task_id, &principals)
            .await?
        {
            Some(task) if task.version < version => {}
            _ => return Ok(true),
        }
        if Instant::now() + VIEW_POLL > deadline {
            return Ok(false);
        }
        tokio::time::sleep(VIEW_POLL).await;
    }
}
