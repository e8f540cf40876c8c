//! `/metrics` and `/health` on a small HTTP port.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::metrics::Metrics;

/// What the handlers read: the metrics, and after how long without progress a leader with
/// events to publish is reported stalled.
#[derive(Debug, Clone)]
struct Health {
    metrics: Arc<Metrics>,
    stalled_after: Duration,
}

pub fn router(metrics: Arc<Metrics>, stalled_after: Duration) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/health", get(health))
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is answered here",
            )
        })
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such resource") })
        .with_state(Health {
            metrics,
            stalled_after,
        })
}

fn error(status: StatusCode, code: &str, message: &str) -> impl IntoResponse {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, Json(body))
}

async fn render_metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            taskpool_service::metrics::CONTENT_TYPE,
        )],
        health.metrics.render(),
    )
}

/// 200 while the relay works (a standby, an idle leader, or a leader that keeps publishing);
/// 503 once it halted on a permanent failure, or while it leads with events to publish but has
/// stored no batch for longer than `relay.stalled_after_secs` (the broker refuses it, say).
async fn health(State(health): State<Health>) -> impl IntoResponse {
    let metrics = &health.metrics;
    let leader = metrics.is_leader();
    let without_progress = metrics.seconds_without_progress();
    let stalled = leader
        && metrics.lag_events.get() > 0
        && u64::try_from(without_progress).unwrap_or(0) > health.stalled_after.as_secs();
    let (status, code) = if metrics.halted.get() == 1 {
        (StatusCode::SERVICE_UNAVAILABLE, "halted")
    } else if stalled {
        (StatusCode::SERVICE_UNAVAILABLE, "stalled")
    } else {
        (StatusCode::OK, "ok")
    };
    let body = serde_json::json!({
        "status": code,
        "leader": leader,
        "lagEvents": metrics.lag_events.get(),
        "secondsWithoutProgress": if leader { Some(without_progress) } else { None },
    });
    (status, Json(body))
}
