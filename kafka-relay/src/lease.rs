//! Leader lease: one publishing relay process per relay name.
//!
//! The lease is a row with a holder, an epoch and an expiry set by the database clock. The
//! leader renews it every `renew_interval`; a standby takes it once it has expired. The leader
//! measures its own validity from *before* each renewal request on its local monotonic clock,
//! so it always believes the lease ends earlier than the database does; it stops publishing
//! `safety_margin` before that, hence before any standby can take over. Position updates are
//! fenced by holder and epoch (see `outbox::store_position`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use taskpool_service::shutdown::Shutdown;
use tracing::{info, warn};

use crate::metrics::Metrics;

use crate::outbox::Fence;
use taskpool_service::logging::error_chain;

/// The lease as this process sees it.
#[derive(Debug)]
pub struct Lease {
    relay: String,
    holder: String,
    ttl: Duration,
    state: Mutex<Option<Held>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    valid_until: Instant,
}

impl Lease {
    pub fn new(relay: &str, holder: &str, ttl: Duration) -> Lease {
        Lease {
            relay: relay.to_string(),
            holder: holder.to_string(),
            ttl,
            state: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn held(&self) -> Option<Held> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, held: Option<Held>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    /// How long this process may still act as leader, if it is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.held()
            .and_then(|h| h.valid_until.checked_duration_since(Instant::now()))
    }

    /// The fence to store positions with, while the lease is held.
    pub fn fence(&self) -> Option<Fence> {
        self.held().map(|h| Fence {
            holder: self.holder.clone(),
            epoch: h.epoch,
        })
    }

    /// Takes the lease if it is free or expired, or renews it if this process holds it.
    /// Returns whether this process holds it now.
    pub async fn acquire_or_renew(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let asked_at = Instant::now();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let epoch: Option<i64> = match self.held() {
            Some(held) => {
                sqlx::query_scalar(
                    "UPDATE taskpool_relay_lease \
                     SET expires_at = clock_timestamp() + $4 * interval '1 millisecond' \
                     WHERE relay_name = $1 AND holder = $2 AND epoch = $3 \
                     RETURNING epoch",
                )
                .bind(&self.relay)
                .bind(&self.holder)
                .bind(held.epoch)
                .bind(ttl_ms)
                .fetch_optional(pool)
                .await?
            }
            None => {
                sqlx::query_scalar(
                    "INSERT INTO taskpool_relay_lease (relay_name, holder, epoch, expires_at) \
                     VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond') \
                     ON CONFLICT (relay_name) DO UPDATE \
                     SET holder = EXCLUDED.holder, epoch = taskpool_relay_lease.epoch + 1, \
                         expires_at = EXCLUDED.expires_at \
                     WHERE taskpool_relay_lease.expires_at < clock_timestamp() \
                     RETURNING epoch",
                )
                .bind(&self.relay)
                .bind(&self.holder)
                .bind(ttl_ms)
                .fetch_optional(pool)
                .await?
            }
        };
        match epoch {
            Some(epoch) => {
                self.set(Some(Held {
                    epoch,
                    valid_until: asked_at + self.ttl,
                }));
                Ok(true)
            }
            None => {
                self.set(None);
                Ok(false)
            }
        }
    }

    /// Forgets the lease locally once its validity has run out.
    pub fn expire_if_due(&self) -> bool {
        match self.held() {
            Some(held) if held.valid_until <= Instant::now() => {
                self.set(None);
                true
            }
            _ => false,
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once.
    pub async fn release(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        if let Some(held) = self.held() {
            sqlx::query(
                "UPDATE taskpool_relay_lease SET expires_at = clock_timestamp() - interval '1 millisecond' \
                 WHERE relay_name = $1 AND holder = $2 AND epoch = $3",
            )
            .bind(&self.relay)
            .bind(&self.holder)
            .bind(held.epoch)
            .execute(pool)
            .await?;
            self.set(None);
        }
        Ok(())
    }
}

/// Who holds a relay's lease, for `status`.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub holder: String,
    pub epoch: i64,
    /// Milliseconds until expiry; negative once expired.
    pub expires_in_ms: i64,
}

pub async fn current(pool: &PgPool, relay: &str) -> Result<Option<LeaseInfo>, sqlx::Error> {
    let row: Option<(String, i64, f64)> = sqlx::query_as(
        "SELECT holder, epoch, \
         (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 \
         FROM taskpool_relay_lease WHERE relay_name = $1",
    )
    .bind(relay)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(holder, epoch, ms)| LeaseInfo {
        holder,
        epoch,
        expires_in_ms: ms as i64,
    }))
}

/// Takes the lease when free and keeps renewing it while held.
pub async fn keep_lease(
    pool: PgPool,
    lease: Arc<Lease>,
    metrics: Arc<Metrics>,
    interval: Duration,
    mut shutdown: Shutdown,
) {
    loop {
        match lease.acquire_or_renew(&pool).await {
            Ok(leader) => {
                let was_leader = metrics.is_leader();
                metrics.leader.set(i64::from(leader));
                if leader && !was_leader {
                    // The stalled clock starts with leadership, not with each retry of a lead.
                    metrics.progressed();
                    info!("lease acquired: this process publishes");
                }
                if !leader && was_leader {
                    warn!("lease taken by another process: standing by");
                }
            }
            Err(e) => {
                warn!(error = error_chain(&e), "cannot renew the lease");
                if lease.expire_if_due() {
                    metrics.leader.set(0);
                }
            }
        }
        if shutdown.sleep(interval).await {
            return;
        }
    }
}

/// This machine's name, for lease holder names.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".into())
}
