//! A shutdown request that any number of tasks can watch, on tokio-util's `CancellationToken`.
//!
//! A trigger that is dropped requests shutdown, exactly as `trigger()` does: a watcher then both
//! sees it (`is_requested`) and is woken by it (`requested`), so no loop can take a vanished
//! trigger for "keep going" in one place and for "stop" in another.

use tokio_util::sync::{CancellationToken, DropGuard};

/// Triggers shutdown for every [`Shutdown`] made from it, when called or when dropped.
#[derive(Debug)]
pub struct ShutdownTrigger {
    token: CancellationToken,
    _on_drop: DropGuard,
}

/// Tells whether shutdown was requested, and waits for it.
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let token = CancellationToken::new();
    let trigger = ShutdownTrigger {
        token: token.clone(),
        _on_drop: token.clone().drop_guard(),
    };
    (trigger, Shutdown(token))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.token.cancel();
    }
}

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown is requested (or its trigger is gone, which requests it).
    pub async fn requested(&mut self) {
        self.0.cancelled().await;
    }

    /// Sleeps for `duration`, or less if shutdown is requested; true if it was.
    pub async fn sleep(&mut self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => self.is_requested(),
            _ = self.requested() => true,
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_dropped_trigger_requests_shutdown_everywhere_it_is_watched() {
        let (trigger, mut shutdown) = channel();
        let watcher = shutdown.clone();
        assert!(!shutdown.is_requested());
        drop(trigger);
        assert!(shutdown.is_requested() && watcher.is_requested());
        tokio::time::timeout(Duration::from_secs(5), shutdown.requested())
            .await
            .expect("requested() resolves");
        assert!(shutdown.sleep(Duration::from_secs(60)).await);
    }

    #[tokio::test]
    async fn a_trigger_wakes_a_waiting_task_and_a_clone_made_later_sees_it() {
        let (trigger, shutdown) = channel();
        let mut waiting = shutdown.clone();
        let waiter = tokio::spawn(async move { waiting.requested().await });
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting task wakes")
            .unwrap();
        assert!(shutdown.clone().is_requested());
    }
}
