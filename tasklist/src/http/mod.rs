//! The HTTP API (axum): routes, the shared state, and errors as JSON without internals.

mod actions;
mod address_slots;
mod connections;
mod data_entries;
mod deadline;
mod headers;
mod hosts;
mod keyed;
mod response_writer;
mod stream;
mod stream_connection;
pub mod stream_slots;
mod tasks;
mod web;

pub use connections::{Limits, default_max_connections, serve};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::actions::ActionTarget;
use crate::actions::outcomes::Waiters;
use crate::identity::dev::DevSignIn;
use crate::identity::{Authenticator, Caller, Unauthenticated};
use crate::metrics::Metrics;
use crate::query::InvalidQuery;
use crate::settings::{HttpConfig, StreamConfig};
use crate::stream::Hub;
use crate::view::{SharedView, ViewError};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: SharedView,
    pub hub: Hub,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub stream: StreamConfig,
    /// Development sign-in (`/api/dev/users`), when it is on.
    pub dev_sign_in: Option<Arc<DevSignIn>>,
    /// Where actions go; none where they are not available (answered 501).
    pub actions: Option<ActionTarget>,
    /// How long an `Idempotency-Key` names its request.
    pub key_life: Duration,
    /// Groups that may hand on others' claimed tasks.
    pub hand_over_groups: Arc<Vec<String>>,
    /// Requests waiting for an action's outcome.
    pub waiters: Waiters,
    /// Each user's open streams, under the per-user cap.
    pub stream_slots: stream_slots::StreamSlots,
}

impl AppState {
    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.auth
            .caller(headers)
            .await
            .map_err(ApiError::Unauthorized)
    }
}

/// Every route of the service (also checked against `/openapi.json` by a test).
pub const ROUTES: [&str; 11] = [
    "/api/tasks",
    "/api/tasks/stream",
    "/api/tasks/{id}",
    "/api/tasks/{id}/{action}",
    "/api/data-entries",
    "/api/data-entries/{entryType}/{entryId}",
    "/api/dev/users",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
];

/// Cross-origin access for browser tasklists served from `allowed_origins` (none when empty):
/// their preflights are answered and their responses carry the CORS headers; other origins get
/// none, so browsers keep them out.
fn cors(allowed_origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("idempotency-key"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The public routes as `http` configures them: `/metrics` among them unless it has an admin
/// port of its own, the web tasklist when asked for, request bodies within the read deadline,
/// and only the allowed host names (this machine's by default where the development sign-in
/// is on).
pub fn router(state: AppState, http: &HttpConfig, with_metrics: bool) -> Router {
    let read_deadline = Duration::from_secs(http.read_deadline_secs);
    let policy = hosts::HostPolicy::new(
        &http.allowed_hosts,
        state.dev_sign_in.is_some(),
        &http.cors_allowed_origins,
    );
    // Outermost: the headers go on every answer, the host check's and the deadline's too.
    let mut router = routes(state, with_metrics, http.web_tasklist)
        .layer(axum::middleware::from_fn(move |request, next| {
            deadline::whole_body_within(read_deadline, request, next)
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            hosts::check(policy.clone(), request, next)
        }))
        .layer(axum::middleware::map_response(headers::secure));
    if !http.cors_allowed_origins.is_empty() {
        router = router.layer(cors(&http.cors_allowed_origins));
    }
    router
}

/// The admin port's routes: `/metrics` and the health endpoints.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::map_response(headers::secure))
}

fn routes(state: AppState, with_metrics: bool, with_web_tasklist: bool) -> Router {
    let router = Router::new()
        .route("/api/tasks", get(tasks::list))
        .route("/api/tasks/stream", get(stream::stream))
        .route("/api/tasks/{id}", get(tasks::one))
        .route("/api/tasks/{id}/{action}", post(actions::act))
        .route("/api/data-entries", get(data_entries::list))
        .route(
            "/api/data-entries/{entryType}/{entryId}",
            get(data_entries::one),
        )
        .route("/api/dev/users", get(web::dev_users))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/openapi.json", get(openapi));
    let router = if with_metrics {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    let router = if with_web_tasklist {
        router.merge(web::pages())
    } else {
        router
    };
    // After every route: it applies to the routes added before it.
    router
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

/// Errors as clients see them: a status and a JSON body, never internal details.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(Unauthenticated),
    /// The caller may not do this (403).
    Forbidden(String),
    NotFound,
    /// The resource's state does not allow it now (409).
    Conflict(String),
    /// An `Idempotency-Key` sent again with another request (422).
    KeyReused,
    MethodNotAllowed,
    /// The caller holds as many streams as one user may (429, retried later).
    TooManyStreams,
    /// The request names a host this service does not answer for (421).
    MisdirectedRequest,
    /// The request's body did not arrive within the read deadline (408).
    RequestTimeout,
    /// The request's body is over the limit (413).
    PayloadTooLarge,
    /// This deployment does not offer it (501).
    NotImplemented,
    /// A dependency failed; the cause is logged, not shown.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl From<InvalidQuery> for ApiError {
    fn from(error: InvalidQuery) -> Self {
        ApiError::BadRequest(error.0)
    }
}

impl From<ViewError> for ApiError {
    fn from(error: ViewError) -> Self {
        ApiError::Unavailable(Box::new(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
            ApiError::Unauthorized(reason) => {
                let body = json!({ "error": "unauthorized", "message": reason.to_string() });
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource".into(),
            ),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, "conflict", message),
            ApiError::KeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was sent with another request; use a new key".into(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this resource does not answer this method".into(),
            ),
            ApiError::TooManyStreams => {
                let body = json!({
                    "error": "too_many_requests",
                    "message": "you hold as many streams as one user may; close one first",
                });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "10")],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::MisdirectedRequest => (
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "this service does not answer for this host name".into(),
            ),
            ApiError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request's body did not arrive in time".into(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large".into(),
            ),
            ApiError::NotImplemented => (
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "actions are not available in this deployment".into(),
            ),
            ApiError::Unavailable(cause) => {
                tracing::error!(
                    error = taskpool_service::logging::error_chain(cause.as_ref()),
                    "request failed on a dependency"
                );
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is temporarily unavailable; try again".into(),
                )
            }
        };
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}

/// Query parameters; malformed encodings and repeated names are refused.
pub fn parse_params(raw: Option<&str>) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| ApiError::BadRequest("the query string is malformed".into()))?;
    let mut params = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if params.insert(name.clone(), value).is_some() {
            let name: String = name.chars().take(40).collect();
            return Err(ApiError::BadRequest(format!(
                "parameter {name} is given twice"
            )));
        }
    }
    Ok(params)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when the view answers (MongoDB, or single-node's embedded view), its change feed is
/// open and the projection runs.
async fn ready(State(state): State<AppState>) -> Response {
    let view = tokio::time::timeout(Duration::from_secs(2), state.store.ping())
        .await
        .is_ok_and(|ping| ping.is_ok());
    let stream = state.metrics.change_stream_open.get() == 1;
    let projection = state.metrics.projection_running.get() == 1;
    let status = if view && stream && projection {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "view": view, "changeStream": stream, "projection": projection })),
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            taskpool_service::metrics::CONTENT_TYPE,
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
