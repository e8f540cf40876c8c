//! The demo's answer to tasklist actions: its own rules decide (a claimed task cannot be
//! claimed again, only candidates may claim or be assigned, only the assignee completes or
//! unclaims; the demo process keeps no follow-up dates, so it refuses defer and undefer).
//! Complete takes `approved` (default true) from the form's values.

use taskpool_collector::{Collector, EngineEvent};
use taskpool_core::store::Connection;
use taskpool_core::{PgStore, SqliteStore};
use taskpool_engine_commands::{CommandHandler, CommandStore, Refusal};
use taskpool_schemas::{TaskAction, TaskCommand};
use tokio::sync::Mutex;

use crate::db::DemoDb;
use crate::engine::{Demo, DemoError};
use crate::events::record;
use crate::process::Step;

/// The demo engine as a command handler (it shares the database with the running demo).
pub struct DemoActions<S: DemoDb> {
    demo: Mutex<Demo<S>>,
}

impl<S: DemoDb> std::fmt::Debug for DemoActions<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemoActions")
    }
}

impl<S: DemoDb> DemoActions<S> {
    pub fn new(demo: Demo<S>) -> DemoActions<S> {
        DemoActions {
            demo: Mutex::new(demo),
        }
    }
}

fn failed(error: DemoError) -> Refusal {
    Refusal::Failed(Box::new(error))
}

/// The demo's form values: a completion's `approved`, when given, is `true` or `false` (a
/// string "false" must not read as an approval).
pub fn check_values(command: &TaskCommand) -> Result<(), String> {
    match command.variables.0.get("approved") {
        Some(value) if command.action == TaskAction::Complete && !value.is_boolean() => {
            Err("approved must be true or false".into())
        }
        _ => Ok(()),
    }
}

// For each store kind apart: the demo's generic futures are Send only once the store is known.
macro_rules! handler_for {
    ($store:ty) => {
        impl CommandHandler<$store> for DemoActions<$store> {
            fn check(&self, command: &TaskCommand) -> Result<(), String> {
                check_values(command)
            }

            async fn handle(
                &self,
                conn: &mut Connection<$store>,
                command: &TaskCommand,
                collector: &mut Collector,
            ) -> Result<(), Refusal> {
                self.decide(conn, command, collector).await
            }
        }
    };
}

handler_for!(SqliteStore);
handler_for!(PgStore);

impl<S: DemoDb + CommandStore> DemoActions<S> {
    async fn decide(
        &self,
        conn: &mut Connection<S>,
        command: &TaskCommand,
        collector: &mut Collector,
    ) -> Result<(), Refusal> {
        check_values(command).map_err(Refusal::Rejected)?;
        let mut demo = self.demo.lock().await;
        let Some(mut task) = S::load_task(conn, &command.task_id).await? else {
            return Err(Refusal::rejected("the demo has no such task"));
        };
        if task.state != "ACTIVE" {
            return Err(Refusal::rejected("the task is no longer active"));
        }
        let user = command.issued_by.as_str();
        let assignee = task.assignee.clone();
        let new_assignee = match command.action {
            TaskAction::Claim => match assignee {
                Some(holder) => {
                    return Err(Refusal::rejected(format!("already claimed by {holder}")));
                }
                None if demo.people_for(&task).iter().any(|p| p == user) => Some(user.to_string()),
                None => return Err(Refusal::rejected(format!("{user} may not take this task"))),
            },
            TaskAction::Unclaim if assignee.as_deref() == Some(user) => None,
            TaskAction::Unclaim => {
                return Err(Refusal::rejected(
                    "only the assignee can give the task back",
                ));
            }
            // A claimed task is handed on by its assignee only; an open one by its candidates.
            TaskAction::Assign => {
                match assignee.as_deref() {
                    Some(holder) if holder != user => {
                        return Err(Refusal::rejected(format!(
                            "claimed by {holder}; only they can hand it on"
                        )));
                    }
                    None if !demo.people_for(&task).iter().any(|p| p == user) => {
                        return Err(Refusal::rejected(format!(
                            "{user} may not assign this task"
                        )));
                    }
                    _ => {}
                }
                let to = command.assignee.clone().unwrap_or_default();
                if !demo.people_for(&task).contains(&to) {
                    return Err(Refusal::rejected(format!("{to} may not take this task")));
                }
                Some(to)
            }
            TaskAction::Complete if assignee.as_deref() == Some(user) => {
                let decision = command.variables.0.get("approved");
                // An approval needs the approver's decision; other steps ask for none.
                let approved = match decision.and_then(serde_json::Value::as_bool) {
                    Some(approved) => approved,
                    None if task.step == Step::Approve.key() => {
                        return Err(Refusal::rejected(
                            "an approval needs approved: true or false",
                        ));
                    }
                    None => true,
                };
                return demo
                    .finish(task, approved, conn, collector)
                    .await
                    .map_err(failed);
            }
            TaskAction::Complete => {
                return Err(Refusal::rejected("only the assignee can complete the task"));
            }
            TaskAction::Defer | TaskAction::Undefer => {
                return Err(Refusal::rejected(
                    "the purchasing process keeps no follow-up dates",
                ));
            }
        };
        task.assignee = new_assignee.clone();
        S::update_task(conn, &task).await?;
        record(
            collector,
            EngineEvent::TaskAssigned {
                task_id: task.id,
                assignee: new_assignee,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use taskpool_schemas::{Payload, Timestamp};

    fn completing(variables: serde_json::Value) -> TaskCommand {
        let serde_json::Value::Object(values) = variables else {
            panic!("an object")
        };
        TaskCommand {
            command_id: uuid::Uuid::new_v4(),
            action: TaskAction::Complete,
            task_id: "t".into(),
            application: "demo".into(),
            issued_by: "piggy".into(),
            issued_at: Timestamp::now(),
            task_version: None,
            assignee: None,
            follow_up_date: None,
            variables: Payload(values),
        }
    }

    #[test]
    fn a_decision_is_true_or_false_and_may_be_left_out() {
        let refused = Err("approved must be true or false".to_string());
        assert_eq!(
            check_values(&completing(json!({"approved": "false"}))),
            refused
        );
        assert_eq!(check_values(&completing(json!({"approved": 0}))), refused);
        assert_eq!(
            check_values(&completing(json!({"approved": null}))),
            refused
        );
        assert_eq!(
            check_values(&completing(json!({"approved": false}))),
            Ok(())
        );
        assert_eq!(check_values(&completing(json!({}))), Ok(()));
    }
}
