//! How long decided commands are remembered, and what that allows (decision 0031).
//!
//! A processed-command record is what stops a redelivered command from being applied twice, so
//! it may only go once the command can no longer arrive as one to apply: a command issued more
//! than half the retention ago is refused as expired (unless its decision is still on record,
//! which is then its answer), and records are deleted after the whole retention. The half
//! leaves room for clocks that disagree (the tasklist stamps `issued_at`, the engine's database
//! stamps `processed_at`). Undecodable commands' dead letters go after the same age.

use std::time::Duration;

use sqlx::Pool;
use taskpool_schemas::{TaskCommand, Timestamp};

use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tracing::{info, warn};

use crate::store::{CommandStore, Pruned};

/// How often a running engine deletes what is past its retention.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long decided commands (and undecodable ones) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    keep_for: Duration,
}

impl Default for Retention {
    /// Two weeks: a command waits up to a week for an engine that is down (Kafka's default
    /// retention is a week too).
    fn default() -> Self {
        Retention::keeping(Duration::from_secs(14 * 24 * 3600))
    }
}

impl Retention {
    /// Keeps records for `keep_for` (at least two seconds, so that half of it is a whole one).
    pub fn keeping(keep_for: Duration) -> Retention {
        Retention {
            keep_for: keep_for.max(Duration::from_secs(2)),
        }
    }

    pub fn keep_for(self) -> Duration {
        self.keep_for
    }

    /// The longest a command may wait before it is refused as expired.
    pub fn accept_for(self) -> Duration {
        self.keep_for / 2
    }

    /// Whether `command` is too old to be applied at `now` (its record may be gone).
    pub fn expired(self, command: &TaskCommand, now: Timestamp) -> bool {
        let age_millis = now.millis().saturating_sub(command.issued_at.millis());
        u128::try_from(age_millis).is_ok_and(|age| age > self.accept_for().as_millis())
    }

    /// The reason an expired command is refused with.
    pub fn expired_reason(self) -> String {
        format!(
            "the command expired: it was issued more than {} ago",
            describe(self.accept_for())
        )
    }
}

/// Deletes the decided commands and dead letters older than the retention.
pub async fn prune_once<S: CommandStore>(
    pool: &Pool<S::Db>,
    retention: Retention,
) -> sqlx::Result<Pruned> {
    let seconds = i64::try_from(retention.keep_for().as_secs()).unwrap_or(i64::MAX);
    S::prune(pool, seconds).await
}

/// Prunes now and every [`PRUNE_EVERY`] until shutdown; a failure is logged and tried again at
/// the next turn (nothing depends on it but disk space).
pub async fn prune_periodically<S: CommandStore>(
    pool: Pool<S::Db>,
    retention: Retention,
    mut shutdown: Shutdown,
) {
    loop {
        match prune_once::<S>(&pool, retention).await {
            Ok(pruned) if pruned != Pruned::default() => info!(
                commands = pruned.commands,
                dead_letters = pruned.dead_letters,
                "deleted decided commands past their retention"
            ),
            Ok(_) => {}
            Err(error) => warn!(
                error = error_chain(&error),
                "cannot delete decided commands past their retention; trying again later"
            ),
        }
        if shutdown.sleep(PRUNE_EVERY).await {
            return;
        }
    }
}

fn describe(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskpool_schemas::TaskAction;
    use uuid::Uuid;

    fn issued_at(millis: i64) -> TaskCommand {
        TaskCommand {
            command_id: Uuid::new_v4(),
            action: TaskAction::Claim,
            task_id: "t".into(),
            application: "a".into(),
            issued_by: "u".into(),
            issued_at: Timestamp(millis),
            task_version: None,
            assignee: None,
            follow_up_date: None,
            variables: Default::default(),
        }
    }

    #[test]
    fn commands_expire_after_half_the_retention() {
        let retention = Retention::keeping(Duration::from_secs(10 * 24 * 3600));
        let now = Timestamp(1_000_000_000_000);
        let five_days = 5 * 24 * 3600 * 1000;
        assert!(!retention.expired(&issued_at(now.0 - five_days), now));
        assert!(retention.expired(&issued_at(now.0 - five_days - 1), now));
        // Issued "later" than now by a clock ahead of ours: not expired.
        assert!(!retention.expired(&issued_at(now.0 + 60_000), now));
        assert_eq!(
            retention.expired_reason(),
            "the command expired: it was issued more than 5 days ago"
        );
    }

    #[test]
    fn a_retention_is_at_least_two_seconds() {
        assert_eq!(
            Retention::keeping(Duration::ZERO).accept_for(),
            Duration::from_secs(1)
        );
        assert_eq!(Retention::default().accept_for().as_secs(), 7 * 24 * 3600);
    }
}
