//! Stream requests are served apart from hyper's connection machinery (decision 0032): what
//! they answer must be what any other request answers (the router's headers and errors), in
//! well-formed HTTP/1.1 and 1.0, and a client that goes away must be let go at once.

mod support;

use std::time::{Duration, Instant};

use support::{served, served_with, stop};
use taskpool_tasklist::settings::{HttpConfig, StreamConfig};
use taskpool_testkit::http::{StreamClient, get};
use taskpool_testkit::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/api/tasks/stream";

async fn token(address: &str, user: usize) -> String {
    let users = get(address, "/api/dev/users", None).await.json();
    users["users"][user]["token"].as_str().unwrap().to_string()
}

/// Sends `head` as is and reads what comes back until `done` says it is enough, the server
/// closes, or 20 s pass.
async fn exchange(address: &str, head: &[u8], done: impl Fn(&str) -> bool) -> String {
    let mut connection = TcpStream::connect(address).await.unwrap();
    connection.write_all(head).await.unwrap();
    read_until(&mut connection, done).await
}

/// What `connection` receives until `done` says it is enough, the server closes, or 20 s pass.
async fn read_until(connection: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&answer)) {
            match connection.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn stream_head(token: &str, version: &str) -> Vec<u8> {
    format!(
        "GET {PATH} {version}\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_stream_is_chunked_http_with_the_routers_headers_and_http_1_0_gets_it_until_close() {
    let (address, trigger, tasks) = served(10).await;
    let kermit = token(&address, 0).await;

    let answer = exchange(&address, &stream_head(&kermit, "HTTP/1.1"), |answer| {
        answer.contains("event: marker")
    })
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "connection: close",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "date: ",
    ] {
        assert!(head.contains(line), "{line} missing from {head}");
    }
    // One chunk: its size in hex, then exactly that many bytes.
    let (size, rest) = body.split_once("\r\n").expect("a chunk size");
    let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
    assert!(rest.len() >= size + 2, "{body:?}");
    assert!(rest[..size].starts_with("event: marker\n"), "{body:?}");
    assert_eq!(&rest[size..size + 2], "\r\n");

    let answer = exchange(&address, &stream_head(&kermit, "HTTP/1.0"), |answer| {
        answer.contains("event: marker")
    })
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(body.starts_with("event: marker\n"), "{body:?}");

    stop(trigger, tasks).await;
}

#[tokio::test]
async fn bad_stream_requests_get_json_errors() {
    let (address, trigger, tasks) = served(10).await;
    let kermit = token(&address, 0).await;
    let whole = |answer: &str| answer.contains("}");
    let cases = [
        (
            format!("GET {PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            "401",
            "unauthorized",
        ),
        (
            format!(
                "GET {PATH} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {kermit}\r\n\
                 Content-Length: 2\r\n\r\n{{}}"
            ),
            "400",
            "bad_request",
        ),
        (
            format!("GET {PATH} HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n"),
            "400",
            "bad_request",
        ),
        (
            format!(
                "GET {PATH} HTTP/1.1\r\nHost: localhost\r\nX-Filler: {}\r\n\r\n",
                "x".repeat(70_000)
            ),
            "431",
            "request_header_fields_too_large",
        ),
        (
            format!("GET {PATH} HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n"),
            "421",
            "misdirected_request",
        ),
    ];
    for (request, status, code) in cases {
        let answer = exchange(&address, request.as_bytes(), whole).await;
        let what = &request[..request.len().min(80)];
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{what}: {head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{what}: {head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
        assert_eq!(json["error"], code, "{what}");
    }
    stop(trigger, tasks).await;
}

#[tokio::test]
async fn a_slow_stream_head_is_cut_off_at_the_read_deadline() {
    let (address, trigger, tasks) = served(1).await;
    for opening in [
        &b"GET /api/tasks/str"[..],
        b"GET /api/tasks/stream HTTP/1.1\r\n",
    ] {
        let started = Instant::now();
        let answer = exchange(&address, opening, |_| false).await;
        assert_eq!(answer, "", "nothing is answered to half a head");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed after {:?}",
            started.elapsed()
        );
    }
    stop(trigger, tasks).await;
}

/// A client that closes its stream is let go at once, not at the next heartbeat's write: its
/// slot under the per-user cap is free for its next stream.
#[tokio::test]
async fn a_client_that_goes_away_gives_its_slot_back_at_once() {
    let stream = StreamConfig {
        max_per_user: 1,
        heartbeat_secs: 3600,
        ..StreamConfig::default()
    };
    let (address, trigger, tasks) = served_with(HttpConfig::default(), stream).await;
    let kermit = token(&address, 0).await;
    let mut first = StreamClient::open(&address, PATH, &kermit, None).await;
    let marker = tokio::time::timeout(Duration::from_secs(20), first.next()).await;
    assert!(matches!(marker, Ok(Some(_))), "the first stream serves");
    assert_eq!(get(&address, PATH, Some(&kermit)).await.status, 429);
    drop(first);
    wait_for("the closed stream's slot", Duration::from_secs(10), || {
        let (address, kermit) = (address.clone(), kermit.clone());
        async move {
            let mut again = StreamClient::open(&address, PATH, &kermit, None).await;
            let marker = tokio::time::timeout(Duration::from_secs(2), again.next()).await;
            (again.status == 200 && matches!(marker, Ok(Some(_)))).then_some(())
        }
    })
    .await;
    stop(trigger, tasks).await;
}

#[tokio::test]
async fn a_head_whose_lines_end_in_lf_alone_is_served() {
    let (address, trigger, tasks) = served(10).await;
    let kermit = token(&address, 0).await;
    let head = format!("GET {PATH} HTTP/1.1\nHost: localhost\nAuthorization: Bearer {kermit}\n\n");
    let answer = exchange(&address, head.as_bytes(), |answer| {
        answer.contains("event: marker")
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("event: marker"), "{answer}");
    stop(trigger, tasks).await;
}

/// Nothing is expected from a stream's client after its head: one that keeps sending would
/// keep the server reading, so it is let go.
#[tokio::test]
async fn a_client_that_sends_after_its_head_is_let_go() {
    let (address, trigger, tasks) = served(10).await;
    let kermit = token(&address, 0).await;
    let mut connection = TcpStream::connect(&address).await.unwrap();
    connection
        .write_all(&stream_head(&kermit, "HTTP/1.1"))
        .await
        .unwrap();
    let answer = read_until(&mut connection, |answer| answer.contains("event: marker")).await;
    assert!(
        answer.contains("event: marker"),
        "no marker within 20 s: {answer}"
    );
    connection.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match connection.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stays open");
    stop(trigger, tasks).await;
}

/// A connection that has asked nothing yet does not hold the server's shutdown for the read
/// deadline.
#[tokio::test]
async fn shutdown_does_not_wait_for_a_connection_that_asked_nothing() {
    let (address, trigger, tasks) = served(60).await;
    let _silent = TcpStream::connect(&address).await.unwrap();
    // The server has taken it: a request on another connection is answered after it.
    assert_eq!(get(&address, "/health/live", None).await.status, 200);
    let started = Instant::now();
    trigger.trigger();
    tasks.close();
    tokio::time::timeout(Duration::from_secs(20), tasks.wait())
        .await
        .expect("the server stops");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
}
