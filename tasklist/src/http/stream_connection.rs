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
use std::io;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Buf};
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ApiError, headers};

/// The most a stream request's head may weigh (a bearer token, cookies, a few headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most headers a request may have (as hyper allows).
const MAX_HEADERS: usize = 100;

/// Serves the one stream request whose head arrives on `stream` by `deadline`, then closes.
pub(super) async fn serve(mut stream: TcpStream, deadline: Instant, router: Router) {
    let (response, version) = match read_head(&mut stream, deadline).await {
        Head::Request(request) => {
            let version = request.version();
            let response = TowerToHyperService::new(router).call(request).await;
            let response = response.unwrap_or_else(|never: Infallible| match never {});
            (response, version)
        }
        // Outside the router: the headers its last layer puts on every answer.
        Head::Refused(response) => (headers::secure(response).await, Version::HTTP_11),
        Head::Gone => return,
    };
    if write_response(&mut stream, response, version).await.is_ok() {
        let _ = stream.shutdown().await;
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

/// Writes `response`: with its length when known, otherwise chunked (HTTP/1.0: until closed);
/// stops early when the client goes away.
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    version: Version,
) -> io::Result<()> {
    let (parts, mut body) = response.into_parts();
    let length = body.size_hint().exact();
    let chunked = length.is_none() && version != Version::HTTP_10;
    let status = parts.status;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        Some(length) => head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes()),
        None if chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => {}
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(http_date().as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    stream.write_all(&head).await?;
    // Neither is needed while the stream lasts.
    drop((head, parts));
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = client_gone(stream) => return Ok(()),
        };
        let Some(Ok(frame)) = frame else {
            // A body that failed ends the response unfinished: the client sees it cut off.
            if frame.is_some() {
                return Err(io::Error::other("the response body failed"));
            }
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            let size = format!("{:X}\r\n", data.len());
            let mut chunk = Buf::chain(Buf::chain(size.as_bytes(), data), &b"\r\n"[..]);
            stream.write_all_buf(&mut chunk).await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Resolves once the client has closed its side or the connection failed. What the client
/// sends meanwhile (nothing is expected while it streams) is read and dropped.
async fn client_gone(stream: &TcpStream) {
    let mut dropped = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut dropped) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Now as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    let (weekday, month) = (now.weekday().to_string(), now.month().to_string());
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        &weekday[..3],
        now.day(),
        &month[..3],
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    )
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

    #[test]
    fn http_dates_look_like_http_dates() {
        let date = http_date();
        assert!(date.ends_with(" GMT"), "{date}");
        assert_eq!(date.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len(), "{date}");
    }
}
