//! A request's lifecycle inside an engine transaction: submitting it, starting a step's task,
//! finishing a step (the next one follows, or the request ends), each with the collector's
//! events for the task and the request's data entry.

use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::store::Connection;
use taskpool_schemas::{ProcessingType, Timestamp};

use crate::db::{DemoDb, TaskRow};
use crate::engine::{Demo, DemoError};
use crate::events::{entry_changed, note, record};
use crate::process::{Candidates, ITEMS, Request, Step, after, candidates, new_task};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl<S: DemoDb> Demo<S> {
    /// Completes `task`; `approved` is the decision where the step asks for one.
    pub(crate) async fn finish(
        &mut self,
        mut task: TaskRow,
        approved: bool,
        conn: &mut Connection<S>,
        collector: &mut Collector,
    ) -> Result<(), DemoError> {
        task.state = "COMPLETED".into();
        S::update_task(conn, &task).await?;
        record(
            collector,
            EngineEvent::TaskCompleted {
                task_id: task.id.clone(),
            },
        );
        let mut request = S::load_request(conn, &task.request_id).await?;
        let step = Step::parse(&task.step).unwrap_or(Step::Approve);
        let who = task.assignee.clone().unwrap_or_default();
        match after(step, approved) {
            Ok(next) => {
                request.state = next.request_state().into();
                S::set_request_state(conn, &request.id, &request.state, false).await?;
                let message = match (step, approved) {
                    (Step::Approve, true) => "Approved",
                    (Step::Approve, false) => "Returned for revision",
                    (Step::Revise, _) => "Revised and resubmitted",
                    _ => "Ordered",
                };
                entry_changed(
                    collector,
                    &request,
                    ProcessingType::InProgress,
                    note(&who, message),
                );
                self.start(next, &request, conn, collector).await?;
            }
            Err(final_state) => {
                request.state = final_state.into();
                S::set_request_state(conn, &request.id, &request.state, true).await?;
                let note = note(&who, "Goods received");
                entry_changed(collector, &request, ProcessingType::Completed, note);
            }
        }
        Ok(())
    }

    /// A new request and its approval task, whose id it returns.
    pub(crate) async fn submit(
        &mut self,
        conn: &mut Connection<S>,
        collector: &mut Collector,
    ) -> Result<String, DemoError> {
        let requester = self.config.users[self.rng.usize(0..self.config.users.len())]
            .name
            .clone();
        let id = format!("PR-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let request = Request {
            id,
            item: ITEMS[self.rng.usize(0..ITEMS.len())].into(),
            amount: self.rng.i64(5..=120) * 100,
            state: Step::Approve.request_state().into(),
            requester,
        };
        S::insert_request(conn, &request).await?;
        let note = note(&request.requester, "Request submitted");
        entry_changed(collector, &request, ProcessingType::InProgress, note);
        self.start(Step::Approve, &request, conn, collector).await
    }

    /// Starts a step: its task, offered to its candidates. Returns the task's id.
    async fn start(
        &mut self,
        step: Step,
        request: &Request,
        conn: &mut Connection<S>,
        collector: &mut Collector,
    ) -> Result<String, DemoError> {
        let offered = candidates(step, request, &self.config);
        let priority = self.rng.i32(3..=8) * 10;
        let due_date = self.due_date();
        let task = TaskRow {
            id: format!("task-{}", uuid::Uuid::new_v4().simple()),
            request_id: request.id.clone(),
            step: step.key().into(),
            name: step.title().into(),
            state: "ACTIVE".into(),
            assignee: None,
            candidate_group: match &offered {
                Candidates::Group(group) => Some(group.clone()),
                Candidates::User(_) => None,
            },
            candidate_user: match &offered {
                Candidates::User(user) => Some(user.clone()),
                Candidates::Group(_) => None,
            },
            priority: i64::from(priority),
            due_date,
        };
        S::insert_task(conn, &task).await?;
        let now = Timestamp::now();
        let new = new_task(
            step,
            request,
            &offered,
            priority,
            due_date.map(Timestamp),
            now,
        );
        record(
            collector,
            EngineEvent::TaskCreated {
                task_id: task.id.clone(),
                task: Box::new(new),
            },
        );
        Ok(task.id)
    }

    /// Who may take a task: its group's members, or its one candidate user.
    pub(crate) fn people_for(&self, task: &TaskRow) -> Vec<String> {
        match (&task.candidate_group, &task.candidate_user) {
            (Some(group), _) => self
                .config
                .members(group)
                .into_iter()
                .map(String::from)
                .collect(),
            (None, Some(user)) => vec![user.clone()],
            (None, None) => Vec::new(),
        }
    }

    /// Some days ahead, or (now and then) no due date.
    pub(crate) fn due_date(&mut self) -> Option<i64> {
        (self.rng.f64() < 0.85).then(|| Timestamp::now().millis() + self.rng.i64(1..=14) * DAY_MS)
    }
}
