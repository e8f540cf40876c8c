//! A response written straight to its socket, for connections served without hyper
//! ([`super::stream_connection`]): the head, then the body chunk by chunk, each chunk in one
//! vectored write, until the body ends or the client goes away.
//!
//! What a stream's task holds while it waits for events is all that is awaited here (the
//! `send` future): the socket, the body and a chunk being written. So the head is built before
//! it (and dropped once written), and the client's leaving is polled for, not awaited through a
//! future of its own.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Version, header};
use axum::response::Response;
use hyper::body::{Body as _, Buf, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How a body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length`: the body's size is known.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients of a body of unknown size).
    UntilClose,
}

/// A response's head as bytes (ending the connection after it), and its body.
pub(super) fn framed(response: Response, version: Version) -> (Vec<u8>, (Body, Framing)) {
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let framing = match length {
        Some(_) => Framing::Length,
        None if version == Version::HTTP_10 => Framing::UntilClose,
        None => Framing::Chunked,
    };
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
    match (length, framing) {
        (Some(length), _) => {
            head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes())
        }
        (None, Framing::Chunked) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (None, _) => {}
    }
    head.extend_from_slice(format!("date: {}\r\n", http_date()).as_bytes());
    head.extend_from_slice(b"connection: close\r\n\r\n");
    (head, (body, framing))
}

/// Writes `head`, then the body, until it ends (`Ok`), fails, or the client goes away.
pub(super) async fn send(
    stream: &mut TcpStream,
    head: Vec<u8>,
    (mut body, framing): (Body, Framing),
) -> io::Result<()> {
    stream.write_all(&head).await?;
    drop(head);
    loop {
        let data = match poll_fn(|cx| next(cx, stream, &mut body)).await {
            Next::Data(data) => data,
            Next::End => break,
            Next::Failed => return Err(io::Error::other("the response body failed")),
            Next::Gone => return Err(io::ErrorKind::ConnectionReset.into()),
        };
        if framing == Framing::Chunked {
            let size = format!("{:X}\r\n", data.len());
            let mut chunk = Buf::chain(Buf::chain(size.as_bytes(), data), &b"\r\n"[..]);
            stream.write_all_buf(&mut chunk).await?;
        } else {
            stream.write_all(&data).await?;
        }
    }
    if framing == Framing::Chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

enum Next {
    Data(Bytes),
    End,
    /// The body failed: the response ends unfinished, so the client sees it cut off.
    Failed,
    /// The client closed its side, sent something, or the connection failed.
    Gone,
}

/// The body's next data, or why there is none.
fn next(cx: &mut Context<'_>, stream: &TcpStream, body: &mut Body) -> Poll<Next> {
    loop {
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(None) => return Poll::Ready(Next::End),
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Next::Failed),
            Poll::Ready(Some(Ok(frame))) => match Frame::into_data(frame) {
                Ok(data) if !data.is_empty() => return Poll::Ready(Next::Data(data)),
                _ => continue,
            },
            Poll::Pending => break,
        }
    }
    poll_gone(cx, stream).map(|()| Next::Gone)
}

/// Ready once the client has closed its side or the connection failed, or once the client has
/// sent anything: nothing is expected after a stream's request head, and a client that keeps
/// sending would otherwise keep the server reading (hyper stopped reading instead, which
/// polling for the client's leaving cannot).
pub(super) fn poll_gone(cx: &mut Context<'_>, stream: &TcpStream) -> Poll<()> {
    loop {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => match stream.try_read(&mut [0u8; 1]) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                _ => return Poll::Ready(()),
            },
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
    use axum::http::StatusCode;

    #[test]
    fn http_dates_look_like_http_dates() {
        let date = http_date();
        assert!(date.ends_with(" GMT"), "{date}");
        assert_eq!(date.len(), "Sun, 06 Nov 1994 08:49:37 GMT".len(), "{date}");
    }

    #[test]
    fn heads_say_how_the_body_is_framed() {
        let streaming = || {
            let body = Body::from_stream(futures::stream::iter([Ok::<_, io::Error>(
                Bytes::from_static(b"x"),
            )]));
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert(header::CONNECTION, "keep-alive".parse().unwrap());
            response
        };
        let (head, (_, framing)) = framed(streaming(), Version::HTTP_11);
        let head = String::from_utf8(head).unwrap();
        assert_eq!(framing, Framing::Chunked);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("keep-alive"), "{head}");
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");

        let (head, (_, framing)) = framed(streaming(), Version::HTTP_10);
        assert_eq!(framing, Framing::UntilClose);
        assert!(
            !String::from_utf8(head)
                .unwrap()
                .contains("transfer-encoding")
        );

        let mut known = Response::new(Body::from("{}"));
        *known.status_mut() = StatusCode::NOT_FOUND;
        let (head, (_, framing)) = framed(known, Version::HTTP_11);
        let head = String::from_utf8(head).unwrap();
        assert_eq!(framing, Framing::Length);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        assert!(head.contains("content-length: 2\r\n"), "{head}");
    }
}
