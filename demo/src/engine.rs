//! The demo engine: each step is one engine transaction in the life of some purchase request
//! (submit, claim, update, hand over, give back, complete with the next step following,
//! withdraw), writing the demo's tables and the collector's events together. The request's
//! lifecycle (submitting, starting a step, finishing one) is in `lifecycle`.

use std::time::Duration;

use sqlx::Pool;
use taskpool_collector::{Collector, CollectorError, EngineEvent};
use taskpool_core::RecordedEvent;
use taskpool_core::domain::task::TaskAttributes;
use taskpool_core::store::Connection;
use taskpool_schemas::{ProcessingType, Timestamp};
use taskpool_service::shutdown::Shutdown;
use tracing::{debug, warn};

use crate::config::DemoConfig;
use crate::db::{DemoDb, Pick};
use crate::events::{entry_changed, note, record};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Submit,
    Claim,
    Update,
    Reassign,
    Unclaim,
    Complete,
    Withdraw,
}

/// Why a step failed; its transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo's database")]
    Database(#[from] sqlx::Error),
    #[error("taskpool refused the step's events")]
    Collector(#[from] CollectorError),
    #[error("taskpool's tables")]
    Store(#[from] taskpool_core::StoreError),
}

/// One committed step: what happened and the events it recorded.
#[derive(Debug, Clone)]
pub struct Stepped {
    pub action: Action,
    pub events: Vec<RecordedEvent>,
}

/// The engine over one database.
#[derive(Debug)]
pub struct Demo<S: DemoDb> {
    pub(crate) pool: Pool<S::Db>,
    pub(crate) config: DemoConfig,
    pub(crate) rng: fastrand::Rng,
}

impl<S: DemoDb> Demo<S> {
    /// Creates taskpool's and the demo's tables if needed.
    pub async fn prepare(pool: Pool<S::Db>, config: DemoConfig) -> Result<Demo<S>, DemoError> {
        S::migrate(&pool).await?;
        S::create_tables(&pool).await?;
        let rng = config
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Ok(Demo { pool, config, rng })
    }

    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    /// Runs steps at the configured rate until shutdown. A failed step is logged and the
    /// next one goes on (the database may be back by then).
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / self.config.rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.requested() => return,
            }
            match self.step().await {
                Ok(stepped) => {
                    debug!(action = ?stepped.action, events = stepped.events.len(), "demo step")
                }
                Err(error) => {
                    let error = taskpool_service::logging::error_chain(&error);
                    warn!(error, "a demo step failed and was rolled back");
                }
            }
        }
    }

    /// Submits a new purchase request: one transaction, committed. Returns it and the id of
    /// the approval task it created.
    pub async fn submit_request(&mut self) -> Result<(Stepped, String), DemoError> {
        let mut tx = S::begin(&self.pool).await?;
        let mut collector = Collector::new();
        let task_id = self.submit(&mut tx, &mut collector).await?;
        let events = collector.flush::<S>(&mut tx).await?;
        tx.commit().await?;
        let stepped = Stepped {
            action: Action::Submit,
            events,
        };
        Ok((stepped, task_id))
    }

    /// Completes an active task as `user` (who claims it first if nobody has), approving
    /// where there is a decision; the next step follows. `Ok(None)` if the task is not active.
    pub async fn complete_task(
        &mut self,
        task_id: &str,
        user: &str,
    ) -> Result<Option<Stepped>, DemoError> {
        let mut tx = S::begin(&self.pool).await?;
        let Some(mut task) = S::load_task(&mut tx, task_id).await? else {
            return Ok(None);
        };
        if task.state != "ACTIVE" {
            return Ok(None);
        }
        let mut collector = Collector::new();
        if task.assignee.is_none() {
            task.assignee = Some(user.to_string());
            record(
                &mut collector,
                EngineEvent::TaskAssigned {
                    task_id: task.id.clone(),
                    assignee: Some(user.to_string()),
                },
            );
        }
        self.finish(task, true, &mut tx, &mut collector).await?;
        let events = collector.flush::<S>(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(Stepped {
            action: Action::Complete,
            events,
        }))
    }

    /// One engine transaction, committed.
    pub async fn step(&mut self) -> Result<Stepped, DemoError> {
        let mut tx = S::begin(&self.pool).await?;
        let running = S::running_requests(&mut tx).await?;
        let mut collector = Collector::new();
        let wanted = self.choose(running);
        // A step that finds no task for its action completes or claims one instead: starting
        // another request then would let the running ones grow without end (each such step
        // adds work no step removes), and with them every tasklist. Only a step that finds
        // nothing to do at all starts one.
        let mut action = Action::Submit;
        for candidate in [wanted, Action::Complete, Action::Claim] {
            if self.act(candidate, &mut tx, &mut collector).await? {
                action = candidate;
                break;
            }
        }
        if action == Action::Submit && wanted != Action::Submit {
            self.submit(&mut tx, &mut collector).await?;
        }
        let events = collector.flush::<S>(&mut tx).await?;
        tx.commit().await?;
        Ok(Stepped { action, events })
    }

    fn choose(&mut self, running: i64) -> Action {
        let wanted = i64::try_from(self.config.active_requests).unwrap_or(i64::MAX);
        if running < wanted && self.rng.f64() < 0.5 {
            return Action::Submit;
        }
        let weights = [
            (Action::Claim, 30),
            (Action::Complete, 30),
            (Action::Update, 15),
            (Action::Reassign, 10),
            (Action::Unclaim, 8),
            (Action::Withdraw, 3),
        ];
        let mut roll = self.rng.u32(0..weights.iter().map(|(_, w)| w).sum());
        for (action, weight) in weights {
            if roll < weight {
                return action;
            }
            roll -= weight;
        }
        Action::Claim
    }

    /// Does `action` on a task that allows it; false if none does.
    async fn act(
        &mut self,
        action: Action,
        conn: &mut Connection<S>,
        collector: &mut Collector,
    ) -> Result<bool, DemoError> {
        let pick = match action {
            Action::Submit => {
                self.submit(conn, collector).await?;
                return Ok(true);
            }
            Action::Complete => {
                let Some(task) = S::pick_task(conn, Pick::Assigned).await? else {
                    return Ok(false);
                };
                let approved = self.rng.f64() < 0.8;
                self.finish(task, approved, conn, collector).await?;
                return Ok(true);
            }
            Action::Claim => Pick::Unassigned,
            Action::Update | Action::Withdraw => Pick::Any,
            Action::Reassign | Action::Unclaim => Pick::Assigned,
        };
        let Some(mut task) = S::pick_task(conn, pick).await? else {
            return Ok(false);
        };
        let task_id = task.id.clone();
        match action {
            Action::Claim | Action::Reassign => {
                let people: Vec<String> = self
                    .people_for(&task)
                    .into_iter()
                    .filter(|p| task.assignee.as_ref() != Some(p))
                    .collect();
                if people.is_empty() {
                    return Ok(false);
                }
                let person = people[self.rng.usize(0..people.len())].clone();
                task.assignee = Some(person.clone());
                S::update_task(conn, &task).await?;
                record(
                    collector,
                    EngineEvent::TaskAssigned {
                        task_id,
                        assignee: Some(person),
                    },
                );
            }
            Action::Unclaim => {
                task.assignee = None;
                S::update_task(conn, &task).await?;
                record(
                    collector,
                    EngineEvent::TaskAssigned {
                        task_id,
                        assignee: None,
                    },
                );
            }
            Action::Update => {
                // Always a change: the same values would record nothing.
                let before = task.priority;
                while task.priority == before {
                    task.priority = i64::from(self.rng.i32(1..=10) * 10);
                }
                task.due_date = self.due_date();
                S::update_task(conn, &task).await?;
                let attributes = TaskAttributes {
                    priority: Some(i32::try_from(task.priority).unwrap_or(50)),
                    due_date: Some(task.due_date.map(Timestamp)),
                    ..TaskAttributes::default()
                };
                record(
                    collector,
                    EngineEvent::TaskAttributesChanged {
                        task_id,
                        attributes: Box::new(attributes),
                    },
                );
            }
            Action::Withdraw => {
                task.state = "DELETED".into();
                S::update_task(conn, &task).await?;
                let reason = "the requester withdrew the request".to_string();
                record(collector, EngineEvent::TaskDeleted { task_id, reason });
                let mut request = S::load_request(conn, &task.request_id).await?;
                request.state = "withdrawn".into();
                S::set_request_state(conn, &request.id, &request.state, true).await?;
                let note = note(&request.requester, "Request withdrawn");
                entry_changed(collector, &request, ProcessingType::Cancelled, note);
            }
            Action::Submit | Action::Complete => {}
        }
        Ok(true)
    }
}
