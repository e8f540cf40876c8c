//! `/metrics` and `/health` on a small HTTP port.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::metrics::Metrics;

pub fn router(metrics: Arc<Metrics>) -> Router {
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
        .with_state(metrics)
}

fn error(status: StatusCode, code: &str, message: &str) -> impl IntoResponse {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, Json(body))
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// 200 while the relay runs (leader or standby); 503 once it halted on a permanent failure.
async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let halted = metrics.halted.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "status": if halted { "halted" } else { "ok" },
        "leader": metrics.leader.load(Ordering::Relaxed),
    });
    let status = if halted {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}
