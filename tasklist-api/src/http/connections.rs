//! The HTTP/1.1 server loop.
//!
//! Stream clients keep their connections open for hours, so what one connection costs decides
//! how many an instance holds. This loop drives hyper's HTTP/1 connection directly: a server
//! that also speaks HTTP/2 first sniffs each connection's opening bytes, and handing those back
//! grows every connection's read buffer from 8 to 16 KiB (measured with the `fanout` benchmark).

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use taskpool_service::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

/// A client that has not sent its request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` until shutdown is requested, then lets every open connection finish its
/// response (streams end when the hub closes them) and returns once all are closed.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: Shutdown) {
    let (stopping_tx, stopping) = watch::channel(false);
    // Every connection task holds a sender: `recv` returns `None` once all have ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, mostly: give connections time to close.
                    warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.requested() => break,
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            stopping.clone(),
            open.clone(),
        ));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    mut stopping: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    // Events are small and must go out at once.
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                debug!(%error, "connection ended with an error");
            }
            return;
        }
        _ = stopping.wait_for(|stopping| *stopping) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        debug!(%error, "connection ended with an error while shutting down");
    }
}
