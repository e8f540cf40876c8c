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
use std::future::poll_fn;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
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
            let call = TowerToHyperService::new(router).call(request);
            // A client that leaves meanwhile is let go at once, and the router's work (the
            // snapshot) with it, as hyper does.
            let response = tokio::select! {
                response = call => response.unwrap_or_else(|never: Infallible| match never {}),
                () = poll_fn(|cx| response_writer::poll_gone(cx, stream)) => return None,
            };
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
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_HEAD_BYTES - head.len();
        if room == 0 {
            return Head::Refused(too_large());
        }
        let read = stream.read(&mut chunk[..room.min(1024)]);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Head::Gone,
            Ok(Ok(read)) => head.extend_from_slice(&chunk[..read]),
        }
        if let Some(parsed) = parse(&head) {
            return parsed;
        }
    }
}

/// The request whose head `received` begins with, or its refusal; `None` while the head is
/// not whole (lines may end in CRLF or, as hyper accepts, LF alone).
fn parse(received: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(received) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(Head::Refused(too_large())),
        Err(_) => return Some(Head::Refused(bad_request("the request head is malformed"))),
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
        return Some(Head::Refused(bad_request("the request head is malformed")));
    };
    if carries_body(request.headers()) {
        return Some(Head::Refused(bad_request(
            "a stream request carries no body",
        )));
    }
    Some(Head::Request(request))
}

fn carries_body(headers: &HeaderMap) -> bool {
    let zero = |length: &HeaderValue| {
        length.to_str().is_ok_and(|length| {
            length
                .split(',')
                .all(|part| part.trim().parse::<u64>() == Ok(0))
        })
    };
    let declared = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|length| !zero(length));
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
            let Some(Head::Refused(response)) = parse(head) else {
                panic!("accepted {}", String::from_utf8_lossy(head));
            };
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
        assert!(parse(b"GET /api/tasks/stream HTTP/1.1\r\nHost: h\r\n").is_none());
        let Some(Head::Request(request)) =
            parse(b"GET /api/tasks/stream?q=1 HTTP/1.0\r\nHost: h\r\nContent-Length: 00\r\n\r\n")
        else {
            panic!("refused");
        };
        assert_eq!(request.uri(), "/api/tasks/stream?q=1");
        assert_eq!(request.version(), Version::HTTP_10);
        assert_eq!(request.headers()["host"], "h");
    }
}
