//! The web tasklist (plain HTML, CSS and JavaScript, built into the binary: nothing to build
//! or install) and the development sign-in it uses where that is on.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, AppState};

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const ACTIONS: &str = include_str!("../../web/actions.js");
const STYLE: &str = include_str!("../../web/app.css");

/// Scripts, styles and connections only from this origin; no framing, no other base URL, and
/// forms post nowhere else.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

/// `/`, `/app.js`, `/actions.js` and `/app.css`.
pub fn pages() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/actions.js",
            get(|| async { page("text/javascript; charset=utf-8", ACTIONS) }),
        )
        .route(
            "/app.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/dev/users`: the development users, each with a fresh token. Not found unless the
/// development sign-in is on.
pub async fn dev_users(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let sign_in = state.dev_sign_in.as_ref().ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "users": sign_in.tokens(),
        "notice": "Development sign-in: this server hands out tokens for its demo users to \
                   anyone who can reach it. Use it to try taskpool, never for real work.",
    })))
}
