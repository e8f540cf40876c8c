//! The acknowledgement pipeline: batches handed to the producer stay in flight until Kafka
//! acknowledged every message of them; then dead letters and the newest position are stored
//! in one transaction fenced by the lease. Batches complete in the order they were handed over.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use futures::FutureExt;
use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::PermanentFailure;
use crate::config::RelayConfig;
use crate::metrics::Metrics;
use crate::outbox::{self, Fence, OutboxRow, Position};
use crate::publisher::{PublishError, Publisher, classify};
use sqlx::PgPool;

/// Why leading ended.
pub(crate) enum LeadEnd {
    Shutdown,
    LostLease,
    Halted(String),
}

/// A failure while leading: the relay backs off and starts again from the stored position.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Interrupted {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("Kafka")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("the producer dropped a delivery report")]
    DeliveryLost,
}

/// An event Kafka acknowledged, for observers (see [`crate::Relay::observe_deliveries`]).
#[derive(Debug, Clone)]
pub struct Delivered {
    pub event_id: uuid::Uuid,
    pub aggregate_id: String,
    pub version: i64,
    pub acknowledged_at: Instant,
}

enum Pending {
    Sent(DeliveryFuture),
    Refused(String),
}

pub(crate) type Acknowledged = Result<(u64, Vec<(OutboxRow, String)>), Interrupted>;

/// A batch handed to the producer, until all of it is acknowledged.
pub(crate) struct InFlight {
    last: Position,
    acknowledgement: Pin<Box<dyn Future<Output = Acknowledged> + Send>>,
}

/// The oldest batch's outcome, once it is known.
pub(crate) async fn wait_oldest(in_flight: &mut VecDeque<InFlight>) -> (Position, Acknowledged) {
    match in_flight.front_mut() {
        Some(oldest) => {
            let outcome = oldest.acknowledgement.as_mut().await;
            let last = oldest.last;
            in_flight.pop_front();
            (last, outcome)
        }
        None => std::future::pending().await,
    }
}

/// The oldest batch's outcome if it is already known.
pub(crate) fn poll_oldest(in_flight: &mut VecDeque<InFlight>) -> Option<(Position, Acknowledged)> {
    let oldest = in_flight.front_mut()?;
    let outcome = oldest.acknowledgement.as_mut().now_or_never()?;
    let last = oldest.last;
    in_flight.pop_front();
    Some((last, outcome))
}

/// Gives a batch to the producer; the result waits for all its acknowledgements (and reports
/// each to `observer`).
pub(crate) async fn hand_over(
    rows: Vec<OutboxRow>,
    publisher: &Publisher,
    observer: Option<mpsc::UnboundedSender<Delivered>>,
) -> Result<InFlight, Interrupted> {
    let last = rows.last().map(|row| row.at).unwrap_or_default();
    let mut messages = Vec::with_capacity(rows.len());
    for row in rows {
        let pending = match publisher.enqueue(&row).await {
            Ok(delivery) => Pending::Sent(delivery),
            Err(PublishError::Permanent(reason)) => Pending::Refused(reason),
            Err(PublishError::Transient(e)) => return Err(Interrupted::Kafka(e)),
        };
        messages.push((row, pending));
    }
    Ok(InFlight {
        last,
        acknowledgement: Box::pin(acknowledged(messages, observer)),
    })
}

/// Where acknowledged batches are recorded and counted.
pub(crate) struct Completion<'a> {
    pub pool: &'a PgPool,
    pub relay: &'a RelayConfig,
    pub metrics: &'a Metrics,
}

impl Completion<'_> {
    /// Records acknowledged batches: dead letters, then the newest position, in one
    /// transaction fenced by the lease. `Some` ends leading.
    pub(crate) async fn complete(
        &self,
        done: Vec<(Position, Acknowledged)>,
        fence: &Fence,
        publisher: &Publisher,
    ) -> Result<Option<LeadEnd>, Interrupted> {
        let relay = self.relay;
        let mut delivered = 0;
        let mut refused = Vec::new();
        let mut last = Position::default();
        for (position, outcome) in done {
            let (count, rejected) = outcome?;
            delivered += count;
            refused.extend(rejected);
            last = position;
        }
        if let Some((_, reason)) = refused.first()
            && relay.on_permanent_failure == PermanentFailure::Halt
        {
            return Ok(Some(LeadEnd::Halted(reason.clone())));
        }
        // Usually there is nothing to dead-letter: then one fenced UPDATE stores the position.
        let stored = if refused.is_empty() {
            let mut conn = self.pool.acquire().await?;
            outbox::store_position(&mut conn, &relay.name, last, fence).await?
        } else {
            let mut tx = self.pool.begin().await?;
            for (row, reason) in &refused {
                let topic = publisher
                    .topics()
                    .for_aggregate(&row.aggregate_type)
                    .unwrap_or("(none)");
                outbox::dead_letter(&mut tx, &relay.name, row, topic, reason).await?;
                self.metrics.dead_lettered(row, topic, reason);
            }
            let stored = outbox::store_position(&mut tx, &relay.name, last, fence).await?;
            if stored {
                tx.commit().await?;
            }
            stored
        };
        if !stored {
            return Ok(Some(LeadEnd::LostLease));
        }
        self.metrics.batch_published(delivered, last.position);
        Ok(None)
    }
}

/// A span for an event's publication, continuing the trace its engine transaction started.
fn publish_span(row: &OutboxRow) -> tracing::Span {
    let traceparent = row
        .headers
        .iter()
        .find(|(key, _)| key == "traceparent")
        .map(|(_, value)| value.as_str());
    taskpool_service::event_span!(
        "publish event",
        traceparent,
        event_id = %row.event_id,
        aggregate_id = %row.aggregate_id,
        version = row.version,
        position = row.at.position,
    )
}

/// Waits for every message of a batch: how many Kafka acknowledged, and the ones it refused
/// for good with the reason. A transient failure interrupts.
async fn acknowledged(
    messages: Vec<(OutboxRow, Pending)>,
    observer: Option<mpsc::UnboundedSender<Delivered>>,
) -> Acknowledged {
    let mut delivered = 0;
    let mut refused = Vec::new();
    for (row, pending) in messages {
        match pending {
            Pending::Refused(reason) => refused.push((row, reason)),
            Pending::Sent(delivery) => match delivery.instrument(publish_span(&row)).await {
                Ok(Ok(_)) => {
                    delivered += 1;
                    if let Some(observer) = &observer {
                        let _ = observer.send(Delivered {
                            event_id: row.event_id,
                            aggregate_id: row.aggregate_id,
                            version: row.version,
                            acknowledged_at: Instant::now(),
                        });
                    }
                }
                Ok(Err((error, _))) => match classify(error) {
                    PublishError::Permanent(reason) => refused.push((row, reason)),
                    PublishError::Transient(error) => {
                        return Err(Interrupted::Kafka(error));
                    }
                },
                Err(_) => return Err(Interrupted::DeliveryLost),
            },
        }
    }
    Ok((delivered, refused))
}
