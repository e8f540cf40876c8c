//! `GET /api/tasks/stream` served apart from hyper's connection machinery.
//!
//! Every user holds a stream open all day, so what a connection costs while it streams decides
//! how many users one instance serves. hyper keeps two 8 KiB buffers for each connection as
//! long as it lives (its read buffer, and its write buffer for heads and small chunks): 16 of
//! the 20 KiB a stream client cost (decision 0032). A stream needs neither once its request
//! head is read: the request carries no body, and the connection closes when the stream ends.
//! So the head is read here into a buffer dropped once parsed, the request goes through the
//! same router as any other (every layer and handler), and the response is written to the
//! socket chunk by chunk, each chunk in one vectored write.

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ApiError, headers, response_writer};

/// The most a stream request's head may weigh (a bearer token, cookies, a few headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most headers a request may have (as hyper allows).
const MAX_HEADERS: usize = 100;

/// Serves the one stream request whose head arrives on `stream` by `deadline`, then closes.
pub(super) async fn serve(mut stream: TcpStream, deadline: Instant, router: Router) {
    // Boxed, and gone once answered: reading the head and the router's work would otherwise
    // keep their room in the connection's task while the stream lasts.
    let Some((response, version)) = Box::pin(answer(&mut stream, deadline, router)).await else {
        return;
    };
    // Consumed here, so that neither the response's head nor its headers are kept while the
    // body streams.
    let (head, body) = response_writer::framed(response, version);
    if response_writer::send(&mut stream, head, body).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// The router's answer to the request whose head arrives by `deadline` (or a refusal of it),
/// and the request's HTTP version; `None` when no head arrives.
async fn answer(
    stream: &mut TcpStream,
    deadline: Instant,
    router: Router,
) -> Option<(Response, Version)> {
    match read_head(stream, deadline).await {
        Head::Request(request) => {
            let version = request.version();
            let response = TowerToHyperService::new(router).call(request).await;
            let response = response.unwrap_or_else(|never: Infallible| match never {});
            Some((response, version))
        }
        // Outside the router: the headers its last layer puts on every answer.
        Head::Refused(response) => Some((headers::secure(response).await, Version::HTTP_11)),
        Head::Gone => None,
    }
}

/// What arrived of a request head.
enum Head {
    Request(Request),
    /// Malformed, too large or with a body: answered with this, then closed.
    Refused(Response),
    /// Closed, failed, or not whole by the deadline (closed without an answer, as hyper does).
    Gone,
}

async fn read_head(stream: &mut TcpStream, deadline: Instant) -> Head {
    let mut head = Vec::with_capacity(1024);
    loop {
        if let Some(end) = head.windows(4).position(|window| window == b"\r\n\r\n") {
            return parse(&head[..end + 4]);
        }
        if head.len() >= MAX_HEAD_BYTES {
            return Head::Refused(too_large());
        }
        head.reserve(1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut head)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Head::Gone,
            Ok(Ok(_)) => {}
        }
    }
}

fn parse(head: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Head::Refused(too_large()),
        _ => return Head::Refused(bad_request("the request head is malformed")),
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(parsed.method.unwrap_or_default())
        .uri(parsed.path.unwrap_or_default())
        .version(version);
    for field in parsed.headers.iter() {
        request = request.header(field.name, field.value);
    }
    let Ok(request) = request.body(Body::empty()) else {
        return Head::Refused(bad_request("the request head is malformed"));
    };
    if carries_body(request.headers()) {
        return Head::Refused(bad_request("a stream request carries no body"));
    }
    Head::Request(request)
}

fn carries_body(headers: &HeaderMap) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0");
    declared || headers.contains_key(header::TRANSFER_ENCODING)
}

fn bad_request(message: &str) -> Response {
    ApiError::BadRequest(message.into()).into_response()
}

fn too_large() -> Response {
    let body = json!({
        "error": "request_header_fields_too_large",
        "message": "the request head is too large",
    });
    (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_with_a_body_or_malformed_is_refused() {
        for head in [
            &b"GET /api/tasks/stream HTTP/1.1\r\nContent-Length: 3\r\n\r\n"[..],
            b"GET /api/tasks/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /api/tasks/stream HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            let Head::Refused(response) = parse(head) else {
                panic!("accepted {}", String::from_utf8_lossy(head));
            };
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
        let Head::Request(request) =
            parse(b"GET /api/tasks/stream?q=1 HTTP/1.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
        else {
            panic!("refused");
        };
        assert_eq!(request.uri(), "/api/tasks/stream?q=1");
        assert_eq!(request.version(), Version::HTTP_10);
        assert_eq!(request.headers()["host"], "h");
    }
}
