//! A request's body must arrive whole within the read deadline: a client that trickles it (one
//! byte a second) would otherwise hold a connection, and a slot under the cap, for as long as it
//! likes. (Its head has the same deadline, set on the connection.)

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;

use super::ApiError;

/// The most a request body may weigh (axum's default for extracted bodies): an action's own
/// fields have tighter limits of their own, refused with a message saying which.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Reads the whole body of a request that may carry one within `deadline` (408 after it, 413
/// beyond [`MAX_BODY_BYTES`], at once when its declared length is), then hands the request on
/// with it.
pub async fn whole_body_within(deadline: Duration, request: Request, next: Next) -> Response {
    // Only actions (POST) carry bodies; the others are handed on untouched.
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY_BYTES)).await;
    match read {
        Err(_) => ApiError::RequestTimeout.into_response(),
        Ok(Err(error)) if is_length_limit(&error) => ApiError::PayloadTooLarge.into_response(),
        Ok(Err(_)) => ApiError::BadRequest("the body could not be read".into()).into_response(),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<LengthLimitError>() {
            return true;
        }
        cause = current.source();
    }
    false
}
