//! The HTTP/1.1 server loop.
//!
//! Stream clients keep their connections open for hours, so what one connection costs decides
//! how many an instance holds. This loop drives hyper's HTTP/1 connection directly: a server
//! that also speaks HTTP/2 first sniffs each connection's opening bytes, and handing those back
//! grows every connection's read buffer from 8 to 16 KiB (measured with the `fanout` benchmark).
//! Stream requests, told apart by a look at the opening bytes that leaves them in the socket,
//! are served without hyper's connection state at all ([`stream_connection`], decision 0032).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tracing::{debug, warn};

use super::address_slots::{AddressSlot, AddressSlots};
use super::stream_connection;

/// Connections turned away at once (beyond that, further ones are closed without an answer).
const MAX_REFUSING: usize = 64;

/// What a connection beyond the cap is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 5\r\nConnection: close\r\nContent-Length: 87\r\n\r\n\
{\"error\":\"unavailable\",\"message\":\"too many connections; try again or another instance\"}";

/// What a connection beyond its address's cap is told before it is closed.
const ADDRESS_FULL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
Retry-After: 10\r\nConnection: close\r\nContent-Length: 97\r\n\r\n\
{\"error\":\"too_many_requests\",\"message\":\"too many connections from your address; close one first\"}";

/// How many connections the server takes, and how long a client may take to send its head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// In all (more are answered 503).
    pub connections: usize,
    /// From one remote address (more are answered 429); 0: no such cap.
    pub per_address: usize,
    pub read_deadline: Duration,
}

/// What `/health/live` is told beyond the cap: the process lives (an orchestrator must not
/// restart a service for being busy), though it takes no more connections.
const LIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 17\r\n\r\n\
{\"status\":\"live\"}";

/// Serves `router` on at most `limits.connections` connections at once (more are answered
/// 503, so a crowd of clients costs neither memory nor file descriptors beyond the cap), at
/// most `limits.per_address` of them from one address (more are answered 429), until shutdown
/// is requested, then lets every open connection finish its response (streams end when the hub
/// closes them) and returns once all are closed. A client that has not sent its request head
/// within `limits.read_deadline` is disconnected. Beyond either cap, `GET /health/live` is
/// still answered 200.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, mut shutdown: Shutdown) {
    let read_deadline = limits.read_deadline;
    let (stopping_tx, stopping) = watch::channel(false);
    // Every connection task holds a sender: `recv` returns `None` once all have ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let slots = Arc::new(Semaphore::new(limits.connections));
    let addresses = AddressSlots::new(limits.per_address);
    // Refusals of the total cap and of one address's apart: an address refused in a loop must
    // not take the answers (liveness among them) of everyone beyond the total cap.
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let refusing_addresses = Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: give connections time to close.
                    warn!(error = error_chain(&error), "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.requested() => break,
        };
        let Some(address_slot) = addresses.take(peer.ip()) else {
            if let Ok(permit) = refusing_addresses.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, ADDRESS_FULL, permit));
            }
            continue;
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(
                    (stream, read_deadline),
                    router.clone(),
                    stopping.clone(),
                    (open.clone(), slot, address_slot),
                ));
            }
            Err(_) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, FULL, permit));
                }
            }
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

/// Answers `refusal` on a connection beyond a cap (`/health/live` 200): reads what the client
/// sent (briefly), so the answer is not lost to a reset, then closes.
async fn refuse(mut stream: TcpStream, refusal: &'static [u8], _permit: OwnedSemaphorePermit) {
    let mut request = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut request)).await;
    let received = match read {
        Ok(Ok(length)) => &request[..length],
        _ => &[],
    };
    let answer = if asks_liveness(received) {
        LIVE
    } else {
        refusal
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// Whether a request's first bytes ask `GET /health/live` (a liveness probe).
fn asks_liveness(received: &[u8]) -> bool {
    received.starts_with(b"GET /health/live ") || received.starts_with(b"GET /health/live?")
}

async fn connection(
    (stream, read_deadline): (TcpStream, Duration),
    router: Router,
    mut stopping: watch::Receiver<bool>,
    // Held while the connection lives: the shutdown's count, a slot under the cap and one
    // under its address's cap.
    _held: (mpsc::Sender<()>, OwnedSemaphorePermit, AddressSlot),
) {
    // Events are small and must go out at once.
    let _ = stream.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + read_deadline;
    // Boxed, as what follows: only a stream's own state stays in its task while it lasts. A
    // connection that has not asked anything yet is closed at shutdown, as hyper does.
    let opened = tokio::select! {
        opened = Box::pin(opening(&stream, deadline)) => opened,
        _ = stopping.wait_for(|stopping| *stopping) => Opening::Gone,
    };
    match opened {
        Opening::Stream => stream_connection::serve(stream, deadline, router).await,
        // A task is as large as its largest state: hyper's connection would make every
        // stream's task as large as it.
        Opening::Other => Box::pin(with_hyper(stream, read_deadline, router, stopping)).await,
        Opening::Gone => {}
    }
}

/// Serves the connection's requests with hyper until it closes, or, once shutdown begins,
/// until its current response is done.
async fn with_hyper(
    stream: TcpStream,
    read_deadline: Duration,
    router: Router,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(read_deadline);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                debug!(error = error_chain(&error), "connection ended with an error");
            }
            return;
        }
        _ = stopping.wait_for(|stopping| *stopping) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        debug!(
            error = error_chain(&error),
            "connection ended with an error while shutting down"
        );
    }
}

/// How a stream request opens (then a space, or `?` and its query).
const STREAM_OPENING: &[u8] = b"GET /api/tasks/stream";

/// What a connection's first bytes ask for.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// `GET /api/tasks/stream`: served without hyper ([`stream_connection`]).
    Stream,
    /// Anything else, for hyper.
    Other,
    /// Closed, nothing by the deadline, or shutting down before anything.
    Gone,
}

/// How long the start of a request line that could still be a stream's is waited on before
/// hyper takes the connection (and reads the rest within its own deadline).
const UNDECIDED_WAIT: Duration = Duration::from_millis(500);

/// Looks at a connection's first bytes without taking them, so that hyper reads them itself
/// when they are not a stream request's. A request line arriving in pieces is looked at again
/// after a short wait (most arrive whole), for at most [`UNDECIDED_WAIT`].
async fn opening(stream: &TcpStream, deadline: tokio::time::Instant) -> Opening {
    let mut first = [0u8; STREAM_OPENING.len() + 1];
    let mut wait = Duration::from_millis(1);
    let mut give_up = None;
    loop {
        let seen = match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Opening::Gone,
            Ok(Ok(length)) => &first[..length],
        };
        if let Some(opening) = classify(seen) {
            return opening;
        }
        let now = tokio::time::Instant::now();
        let give_up = *give_up.get_or_insert(now + UNDECIDED_WAIT);
        if now >= give_up {
            return Opening::Other;
        }
        tokio::time::sleep(wait.min(give_up - now)).await;
        wait = (wait * 2).min(Duration::from_millis(100));
    }
}

/// What `seen`, a connection's first bytes, ask for; `None` while they could still be either.
fn classify(seen: &[u8]) -> Option<Opening> {
    match seen.split_at_checked(STREAM_OPENING.len()) {
        Some((opening, [next, ..])) if opening == STREAM_OPENING => {
            Some(if matches!(next, b' ' | b'?') {
                Opening::Stream
            } else {
                Opening::Other
            })
        }
        _ if STREAM_OPENING.starts_with(seen) => None,
        _ => Some(Opening::Other),
    }
}

/// A connection cap below this process's file-descriptor limit, leaving room for the view's
/// and feeds' connections (MongoDB, Kafka) and log files: the soft `Max open files` of `/proc/self/limits` less 512 (at least
/// 64), or 10,000 where that cannot be read.
pub fn default_max_connections() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        })
        .map_or(10_000, |soft| soft.saturating_sub(512).max(64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_refusals_are_complete_json() {
        for (refusal, code) in [
            (super::FULL, "unavailable"),
            (super::ADDRESS_FULL, "too_many_requests"),
        ] {
            let text = std::str::from_utf8(refusal).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), length, "{code}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"], code);
        }
    }

    #[test]
    fn stream_requests_are_told_from_others_by_their_first_bytes() {
        use super::{Opening, classify};
        assert_eq!(
            classify(b"GET /api/tasks/stream HTTP/1.1"),
            Some(Opening::Stream)
        );
        assert_eq!(
            classify(b"GET /api/tasks/stream?q=a"),
            Some(Opening::Stream)
        );
        assert_eq!(classify(b"GET /api/tasks/streams "), Some(Opening::Other));
        assert_eq!(
            classify(b"GET /api/tasks/t1 HTTP/1.1"),
            Some(Opening::Other)
        );
        assert_eq!(classify(b"POST /api/tasks/stream "), Some(Opening::Other));
        assert_eq!(classify(b"GET /api/tasks/str"), None);
        assert_eq!(classify(b"GET /api/tasks/stream"), None);
        assert_eq!(classify(b"G"), None);
    }

    #[test]
    fn the_default_cap_stays_below_the_descriptor_limit() {
        // The soft limit as the shell reports it (a child inherits this process's limits),
        // apart from the parsing of /proc/self/limits under test.
        let shell = std::process::Command::new("sh")
            .args(["-c", "ulimit -Sn"])
            .output()
            .expect("sh runs");
        let soft = String::from_utf8_lossy(&shell.stdout).trim().to_string();
        let expected = match soft.parse::<usize>() {
            Ok(soft) => soft.saturating_sub(512).max(64),
            // /proc/self/limits says `unlimited` too, which is no number.
            Err(_) if soft == "unlimited" => 10_000,
            Err(_) => panic!("the shell reports no soft limit: {soft}"),
        };
        assert_eq!(
            super::default_max_connections(),
            expected,
            "soft limit {soft}"
        );
    }
}
