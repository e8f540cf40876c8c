//! What every response carries, whoever answered it: headers that keep browsers from sniffing,
//! caching, framing or leaking it, and errors as JSON even where axum or hyper made them
//! (a body over the limit, a path that is not UTF-8).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;

/// API responses run no scripts and load nothing; the web page's own policy (set by its
/// route) is kept.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers a response lacks, and turns an error that is not JSON into JSON.
pub async fn secure(response: Response) -> Response {
    let mut response = if is_error(response.status()) && !is_json(&response) {
        as_json_error(response)
    } else {
        response
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Tokens, tasks and streams are the caller's alone: no cache keeps them.
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, API_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"))
}

/// The same status and headers (`Retry-After`, `Allow`, ...), the body replaced by the JSON
/// every other error has (the API's own where it has that error); what the framework wrote is
/// not shown.
fn as_json_error(response: Response) -> Response {
    let (mut parts, _) = response.into_parts();
    let known = match parts.status {
        StatusCode::PAYLOAD_TOO_LARGE => Some(ApiError::PayloadTooLarge),
        StatusCode::BAD_REQUEST => Some(ApiError::BadRequest("the request is malformed".into())),
        StatusCode::NOT_FOUND => Some(ApiError::NotFound),
        StatusCode::METHOD_NOT_ALLOWED => Some(ApiError::MethodNotAllowed),
        StatusCode::REQUEST_TIMEOUT => Some(ApiError::RequestTimeout),
        _ => None,
    };
    let body = match known {
        Some(error) => error.into_response().into_body(),
        None => {
            let (code, message) = match parts.status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send JSON"),
                StatusCode::LENGTH_REQUIRED => ("length_required", "say how long the body is"),
                StatusCode::UNPROCESSABLE_ENTITY => {
                    ("unprocessable", "the request cannot be processed")
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    ("too_many_requests", "too many requests; try later")
                }
                StatusCode::SERVICE_UNAVAILABLE => (
                    "unavailable",
                    "the service is temporarily unavailable; try again",
                ),
                status if status.is_client_error() => ("bad_request", "the request was refused"),
                _ => ("internal", "the request failed"),
            };
            Body::from(json!({ "error": code, "message": message }).to_string())
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}
