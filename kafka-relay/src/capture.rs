//! Draining the capture queue (events engines recorded through SQL, decision 0026) into the
//! outbox while this process holds the lease; the relay then publishes them like any other.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use taskpool_service::backoff::Backoff;
use taskpool_service::shutdown::Shutdown;

use crate::config::Config;
use crate::lease::Lease;
use crate::metrics::Metrics;

/// Drains as long as there is something queued, then polls with back-off; only the leader
/// drains (two drains at once would be safe, the rows are locked, but only one is needed).
pub async fn drain_queue(
    pool: PgPool,
    config: Config,
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    let capture = &config.capture;
    if !capture.enabled {
        return;
    }
    let mut idle = Backoff::new(
        Duration::from_millis(capture.poll_min_ms),
        Duration::from_millis(capture.poll_max_ms),
    )
    .with_jitter(0.0);
    let mut failing = Backoff::new(
        Duration::from_millis(config.relay.retry_min_ms),
        Duration::from_millis(config.relay.retry_max_ms),
    );
    let batch = i64::from(capture.batch_size);
    while !shutdown.is_requested() {
        let pause = if lease.remaining().is_none() {
            idle.next_pause()
        } else {
            match taskpool_capture::drain_once(&pool, batch).await {
                Ok(drained) if drained.rows > 0 => {
                    metrics.capture_drained(drained.rows as u64, drained.dead_letters as u64);
                    idle.reset();
                    failing.reset();
                    continue;
                }
                Ok(_) => idle.next_pause(),
                Err(error) => {
                    let what = "draining the capture queue failed";
                    if failing
                        .wait_after_failure(what, &error, &mut shutdown)
                        .await
                    {
                        return;
                    }
                    continue;
                }
            }
        };
        if shutdown.sleep(pause).await {
            return;
        }
    }
}
