//! `GET /api/tasks/stream`: the caller's current tasks, a `marker`, then `upsert` / `remove`
//! events for the changes that concern them, with heartbeats, until the client goes away.
//! Server-Sent Events by default, NDJSON with `Accept: application/x-ndjson`.
//!
//! Live events carry ids `<session>-<n>`; reconnecting with `Last-Event-ID` replays what was
//! missed, or, when that is no longer possible, sends `resync` followed by a fresh snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde_json::json;

use super::stream_slots::StreamSlot;
use super::{ApiError, AppState, parse_params};
use crate::metrics::resync;
use crate::query::parse_task_query;
use crate::stream::{EventKind, Hub, Registration, SessionId, StreamEvent, task_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Sse,
    Ndjson,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        let accepts_ndjson = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/x-ndjson"));
        if accepts_ndjson {
            Format::Ndjson
        } else {
            Format::Sse
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    /// One event on the wire. `data` is JSON without newlines.
    fn event(self, name: &str, id: Option<&str>, data: &str) -> Bytes {
        match self {
            Format::Sse => {
                let id = id.map(|id| format!("id: {id}\n")).unwrap_or_default();
                Bytes::from(format!("event: {name}\n{id}data: {data}\n\n"))
            }
            Format::Ndjson => {
                let id = id.map(|id| format!(",\"id\":\"{id}\"")).unwrap_or_default();
                Bytes::from(format!("{{\"event\":\"{name}\"{id},\"data\":{data}}}\n"))
            }
        }
    }

    fn heartbeat(self) -> Bytes {
        match self {
            Format::Sse => Bytes::from_static(b": heartbeat\n\n"),
            Format::Ndjson => Bytes::from_static(b"{\"event\":\"heartbeat\"}\n"),
        }
    }

    fn resync(self, reason: &str) -> Bytes {
        self.event("resync", None, &json!({ "reason": reason }).to_string())
    }
}

fn event_id(session: SessionId, seq: u64) -> String {
    format!("{session}-{seq}")
}

fn parse_event_id(value: &str) -> Option<(SessionId, u64)> {
    let (session, seq) = value.split_once('-')?;
    Some((session.parse().ok()?, seq.parse().ok()?))
}

/// Tells the hub when a connection's body is dropped (the client went away), and gives the
/// user's stream slot back.
struct DetachOnDrop {
    hub: Hub,
    session: SessionId,
    attachment: u64,
    _slot: StreamSlot,
}

impl DetachOnDrop {
    fn new(hub: &Hub, registration: &Registration, slot: StreamSlot) -> DetachOnDrop {
        DetachOnDrop {
            _slot: slot,
            hub: hub.clone(),
            session: registration.session,
            attachment: registration.attachment,
        }
    }
}

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.hub.detach(self.session, self.attachment);
    }
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let caller = state.caller(&headers).await?;
    let slot = state
        .stream_slots
        .take(&caller.user)
        .ok_or(ApiError::TooManyStreams)?;
    let params = parse_params(raw.as_deref())?;
    if params.contains_key("cursor") || params.contains_key("limit") {
        return Err(ApiError::BadRequest(
            "the stream sends every matching task: cursor and limit do not apply".into(),
        ));
    }
    let query = parse_task_query(&params)?;
    let format = Format::of(&headers);
    let mut preamble: Vec<Bytes> = Vec::new();

    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        match parse_event_id(last) {
            Some((session, seq)) => match state.hub.resume(session, seq, &caller).await {
                Ok(registration) => {
                    let guard = DetachOnDrop::new(&state.hub, &registration, slot);
                    return Ok(respond(format, Vec::new(), registration, guard, &state));
                }
                Err(refused) => preamble.push(format.resync(&refused.to_string())),
            },
            None => preamble.push(format.resync("unknown Last-Event-ID")),
        }
        state.metrics.resynced(resync::RESUME_REFUSED);
    }

    let registration = state
        .hub
        .register(caller.clone(), query.filter.clone())
        .await
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
    // From here on, a client that goes away (even mid-snapshot) detaches its session.
    let guard = DetachOnDrop::new(&state.hub, &registration, slot);
    let snapshot = match state.store.all_tasks(&query, &caller.principals()).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            state.hub.cancel(registration.session);
            return Err(error.into());
        }
    };
    state.hub.snapshot_taken(
        registration.session,
        snapshot.iter().map(|t| (t.id.clone(), t.version)).collect(),
    );
    let snapshot_id = format!("{}-s", registration.session);
    for task in &snapshot {
        preamble.push(format.event("upsert", Some(&snapshot_id), &task_json(task)));
    }
    preamble.push(format.event(
        "marker",
        Some(&event_id(registration.session, 0)),
        &json!({ "tasks": snapshot.len() }).to_string(),
    ));
    Ok(respond(format, preamble, registration, guard, &state))
}

fn respond(
    format: Format,
    preamble: Vec<Bytes>,
    registration: Registration,
    guard: DetachOnDrop,
    state: &AppState,
) -> Response {
    let body = stream::iter(preamble.into_iter().map(Ok::<_, std::convert::Infallible>))
        .chain(live(format, registration, guard, state));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct Live {
    format: Format,
    events: tokio::sync::mpsc::Receiver<StreamEvent>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    heartbeat: tokio::time::Interval,
    session: SessionId,
    finished: bool,
    _detach: DetachOnDrop,
}

/// Live events as they come, heartbeats when idle, and `resync` if the client fell behind.
fn live(
    format: Format,
    registration: Registration,
    guard: DetachOnDrop,
    state: &AppState,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + use<> {
    let every = Duration::from_secs(state.stream.heartbeat_secs.max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = Live {
        format,
        events: registration.events,
        overflowed: registration.overflowed,
        heartbeat,
        session: registration.session,
        finished: false,
        _detach: guard,
    };
    stream::unfold(live, |mut live| async move {
        if live.finished {
            return None;
        }
        let bytes = tokio::select! {
            event = live.events.recv() => match event {
                Some(event) => {
                    let name = match event.kind {
                        EventKind::Upsert => "upsert",
                        EventKind::Remove => "remove",
                        EventKind::Outcome => "outcome",
                    };
                    live.format.event(name, Some(&event_id(live.session, event.seq)), &event.body)
                }
                None => {
                    live.finished = true;
                    if live.overflowed.load(Ordering::Relaxed) {
                        live.format.resync("the client fell behind or changes may be missing; reload")
                    } else {
                        return None;
                    }
                }
            },
            _ = live.heartbeat.tick() => live.format.heartbeat(),
        };
        Some((Ok(bytes), live))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_event_id(&event_id(42, 7)), Some((42, 7)));
        for bad in ["", "42", "42-s", "x-1", "-1", "1-2-3"] {
            assert_eq!(parse_event_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn sse_and_ndjson_frames() {
        assert_eq!(
            Format::Sse.event("upsert", Some("1-2"), "{\"a\":1}"),
            Bytes::from("event: upsert\nid: 1-2\ndata: {\"a\":1}\n\n")
        );
        assert_eq!(
            Format::Ndjson.event("remove", Some("1-3"), "{\"id\":\"t\"}"),
            Bytes::from("{\"event\":\"remove\",\"id\":\"1-3\",\"data\":{\"id\":\"t\"}}\n")
        );
    }
}
