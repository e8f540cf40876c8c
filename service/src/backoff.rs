//! The one back-off every retry loop uses: from `min`, doubling up to `max`, each pause
//! shortened by a random part (jitter) so that many processes retrying against the same
//! server after an outage do not all come back at the same instant.

use std::time::Duration;

use crate::error_chain::error_chain;
use crate::shutdown::Shutdown;

/// Exponential back-off with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The share of each pause that is random: 0 keeps pauses exact, 0.5 makes them fall
    /// anywhere between half and all of the nominal pause.
    jitter: f64,
    current: Duration,
}

impl Backoff {
    /// Pauses from `min`, doubling up to `max`, with 20 % jitter.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            jitter: 0.2,
            current: min,
        }
    }

    /// The back-off of loops that retry a failed call to a server (Kafka, a database): from
    /// 100 ms up to 5 s.
    pub fn for_retries() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// After a failed attempt: logs `what` failed with the error's whole chain and the pause,
    /// then waits it out, or less if shutdown is requested; true if it was. The one place a
    /// retry loop says "retrying".
    ///
    /// Logs before it returns the wait, so that the error is not held across it.
    pub fn wait_after_failure<'a>(
        &mut self,
        what: &str,
        error: &(dyn std::error::Error + 'static),
        shutdown: &'a mut Shutdown,
    ) -> impl std::future::Future<Output = bool> + Send + 'a {
        let pause = self.next_pause();
        tracing::warn!(
            error = error_chain(error),
            retry_in_ms = pause.as_millis() as u64,
            "{what}; retrying"
        );
        shutdown.sleep(pause)
    }

    /// The same, with `jitter` (clamped to 0..=1) of each pause random.
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The pause before the next attempt; the one after it is twice as long, up to `max`.
    pub fn next_pause(&mut self) -> Duration {
        let nominal = self.current;
        self.current = (self.current * 2).min(self.max);
        nominal.mul_f64(1.0 - self.jitter * fastrand::f64())
    }

    /// The nominal pause the next attempt waits (for logs).
    pub fn upcoming(&self) -> Duration {
        self.current
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_reset_to_the_minimum() {
        let mut backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(500)).with_jitter(0.0);
        let pauses: Vec<u128> = (0..5).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_pause(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_shortens_pauses_by_at_most_its_share_and_varies_them() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut backoff =
                Backoff::new(Duration::from_millis(1000), Duration::from_secs(10)).with_jitter(0.5);
            let pause = backoff.next_pause();
            assert!(pause >= Duration::from_millis(500) && pause <= Duration::from_millis(1000));
            seen.insert(pause.as_millis());
        }
        assert!(seen.len() > 10, "pauses vary: {seen:?}");
    }
}
