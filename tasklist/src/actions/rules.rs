//! What the tasklist checks before it sends an action to the owning engine. The engine has the
//! last word (its own rules, on its current state); these checks answer at once what the view
//! already shows to be impossible, so nothing is sent for it.

use serde_json::Value;
use taskpool_schemas::{Payload, TaskAction, TaskCommand, Timestamp};
use uuid::Uuid;

use crate::documents::TaskDocument;
use crate::identity::Caller;
use crate::query::parse_time;

/// An action as a caller asked for it, its body checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    pub action: TaskAction,
    /// `assign`: to whom.
    pub assignee: Option<String>,
    /// `defer`: until when.
    pub follow_up_date: Option<Timestamp>,
    /// `complete`: the form's values.
    pub variables: Payload,
}

/// Why an action is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The body is wrong (400).
    Invalid(String),
    /// The caller may see the task but not do this to it (403).
    Forbidden(String),
    /// The task's state does not allow it now (409).
    Conflict(String),
}

/// The longest user id an `assign` may name.
pub const MAX_ASSIGNEE_BYTES: usize = 256;

/// The most a completion's values may weigh, as JSON: forms carry decisions and short texts,
/// and whatever an engine sends back (a rejection quoting them) stays small too.
pub const MAX_VARIABLES_BYTES: usize = 64 * 1024;

/// Reads an action's body: `complete` takes the form's values (a JSON object), `defer`
/// `{"followUpDate": RFC 3339 or epoch ms}`, `assign` `{"assignee": user}`; the others none.
pub fn parse_body(action: TaskAction, body: Option<&Value>) -> Result<ActionRequest, Refused> {
    let field = |name: &str| body.and_then(|b| b.get(name));
    let mut request = ActionRequest {
        action,
        assignee: None,
        follow_up_date: None,
        variables: Payload::new(),
    };
    match action {
        TaskAction::Complete => {
            if let Some(body) = body {
                if body.to_string().len() > MAX_VARIABLES_BYTES {
                    return Err(Refused::Invalid(format!(
                        "the form's values may take at most {MAX_VARIABLES_BYTES} bytes as JSON"
                    )));
                }
                request.variables = Payload::from_value(body.clone()).ok_or_else(|| {
                    Refused::Invalid("the body must be a JSON object of the form's values".into())
                })?;
            }
        }
        TaskAction::Defer => {
            let text = field("followUpDate")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Refused::Invalid(
                        "defer needs followUpDate (RFC 3339, e.g. 2030-01-31T09:00:00Z)".into(),
                    )
                })?;
            let millis = parse_time(text)
                .ok_or_else(|| Refused::Invalid(format!("followUpDate {text:?} is not a time")))?;
            request.follow_up_date = Some(Timestamp(millis));
        }
        TaskAction::Assign => {
            let user = field("assignee")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|user| !user.is_empty())
                .ok_or_else(|| Refused::Invalid("assign needs assignee (a user id)".into()))?;
            if user.len() > MAX_ASSIGNEE_BYTES || user.chars().any(char::is_control) {
                return Err(Refused::Invalid(format!(
                    "assignee must be a user id of at most {MAX_ASSIGNEE_BYTES} bytes without \
                     control characters"
                )));
            }
            request.assignee = Some(user.to_string());
        }
        TaskAction::Claim | TaskAction::Unclaim | TaskAction::Undefer => {}
    }
    Ok(request)
}

fn is_candidate(task: &TaskDocument, caller: &Caller) -> bool {
    task.candidate_users.contains(&caller.user)
        || task
            .candidate_groups
            .iter()
            .any(|group| caller.groups.contains(group))
}

/// Whether the view allows `request` on `task` (which the caller sees) for `caller`, where no
/// group may hand on others' tasks.
pub fn check(request: &ActionRequest, task: &TaskDocument, caller: &Caller) -> Result<(), Refused> {
    check_for(request, task, caller, &[])
}

/// Whether the view allows `request` on `task` (which the caller sees) for `caller`; members
/// of `hand_over_groups` who are candidates of a task claimed by someone else may hand it on
/// (`assign`), defer and undefer it, as its assignee may.
pub fn check_for(
    request: &ActionRequest,
    task: &TaskDocument,
    caller: &Caller,
    hand_over_groups: &[String],
) -> Result<(), Refused> {
    let assignee = task.assignee.as_deref();
    let hands_over = hand_over_groups
        .iter()
        .any(|group| caller.groups.contains(group));
    let mine = assignee == Some(caller.user.as_str());
    let involved = mine || is_candidate(task, caller);
    match request.action {
        TaskAction::Claim => match assignee {
            Some(holder) if holder == caller.user => Err(Refused::Conflict(
                "you have claimed this task already".into(),
            )),
            Some(holder) => Err(Refused::Conflict(format!(
                "the task is claimed by {holder}"
            ))),
            None if is_candidate(task, caller) => Ok(()),
            None => Err(Refused::Forbidden(
                "you are not a candidate for this task".into(),
            )),
        },
        TaskAction::Unclaim => match assignee {
            None => Err(Refused::Conflict("the task is not claimed".into())),
            Some(_) if mine => Ok(()),
            Some(holder) => Err(Refused::Forbidden(format!(
                "the task is claimed by {holder}, not by you"
            ))),
        },
        TaskAction::Complete if mine => Ok(()),
        TaskAction::Complete => Err(Refused::Forbidden(
            "only the task's assignee can complete it; claim it first".into(),
        )),
        _ if !involved => Err(Refused::Forbidden(
            "only the task's assignee or a candidate can do this".into(),
        )),
        // A claimed task is its assignee's: handing it on or deferring it is theirs to do, as
        // claiming it again is refused to everyone else.
        TaskAction::Defer | TaskAction::Undefer | TaskAction::Assign
            if !mine && !hands_over && assignee.is_some() =>
        {
            Err(Refused::Conflict(format!(
                "the task is claimed by {}; only they can hand it on or defer it",
                assignee.unwrap_or_default()
            )))
        }
        TaskAction::Undefer if task.follow_up_date.is_none() => {
            Err(Refused::Conflict("the task is not deferred".into()))
        }
        TaskAction::Assign if request.assignee.as_deref() == assignee => {
            Err(Refused::Conflict(format!(
                "the task is assigned to {} already",
                assignee.unwrap_or_default()
            )))
        }
        TaskAction::Defer | TaskAction::Undefer | TaskAction::Assign => Ok(()),
    }
}

/// The command for an allowed request, addressed to the task's application.
pub fn command(
    request: ActionRequest,
    task: &TaskDocument,
    caller: &Caller,
    command_id: Uuid,
) -> TaskCommand {
    TaskCommand {
        command_id,
        action: request.action,
        task_id: task.id.clone(),
        application: task.source_reference.application_name.clone(),
        issued_by: caller.user.clone(),
        issued_at: Timestamp::now(),
        task_version: Some(task.version),
        assignee: request.assignee,
        follow_up_date: request.follow_up_date,
        variables: request.variables,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use taskpool_schemas::TaskState;
    use taskpool_testkit::fixtures::task_event;

    use super::*;

    fn task(assignee: Option<&str>) -> TaskDocument {
        let mut event = task_event("t1", 3, assignee, &["muppets"], TaskState::Active);
        event.task.candidate_users = ["rowlf".to_string()].into();
        TaskDocument::from_event(&event)
    }

    fn caller(user: &str, groups: &[&str]) -> Caller {
        Caller {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn request(action: TaskAction) -> ActionRequest {
        parse_body(action, None).unwrap_or(ActionRequest {
            action,
            assignee: Some("gonzo".into()),
            follow_up_date: Some(Timestamp(5)),
            variables: Payload::new(),
        })
    }

    #[test]
    fn claim_needs_candidacy_and_no_assignee() {
        let kermit = caller("kermit", &["muppets"]);
        assert_eq!(
            check(&request(TaskAction::Claim), &task(None), &kermit),
            Ok(())
        );
        let rowlf = caller("rowlf", &[]);
        assert_eq!(
            check(&request(TaskAction::Claim), &task(None), &rowlf),
            Ok(())
        );
        assert!(matches!(
            check(
                &request(TaskAction::Claim),
                &task(None),
                &caller("animal", &["band"])
            ),
            Err(Refused::Forbidden(_))
        ));
        assert_eq!(
            check(&request(TaskAction::Claim), &task(Some("piggy")), &kermit),
            Err(Refused::Conflict("the task is claimed by piggy".into()))
        );
    }

    #[test]
    fn complete_and_unclaim_need_the_caller_as_assignee() {
        let piggy = caller("piggy", &["muppets"]);
        let kermit = caller("kermit", &["muppets"]);
        for action in [TaskAction::Complete, TaskAction::Unclaim] {
            assert_eq!(
                check(&request(action), &task(Some("piggy")), &piggy),
                Ok(())
            );
            assert!(matches!(
                check(&request(action), &task(Some("piggy")), &kermit),
                Err(Refused::Forbidden(_))
            ));
        }
        assert!(matches!(
            check(&request(TaskAction::Complete), &task(None), &kermit),
            Err(Refused::Forbidden(_))
        ));
        assert!(matches!(
            check(&request(TaskAction::Unclaim), &task(None), &kermit),
            Err(Refused::Conflict(_))
        ));
    }

    #[test]
    fn defer_undefer_and_assign_need_an_involved_caller() {
        let stranger = caller("animal", &["band"]);
        let kermit = caller("kermit", &["muppets"]);
        for action in [TaskAction::Defer, TaskAction::Assign] {
            assert_eq!(check(&request(action), &task(None), &kermit), Ok(()));
            assert!(matches!(
                check(&request(action), &task(None), &stranger),
                Err(Refused::Forbidden(_))
            ));
        }
        assert!(matches!(
            check(&request(TaskAction::Undefer), &task(None), &kermit),
            Err(Refused::Conflict(_))
        ));
        assert!(matches!(
            check(&request(TaskAction::Assign), &task(Some("gonzo")), &kermit),
            Err(Refused::Conflict(_))
        ));
    }

    #[test]
    fn bodies_are_read_per_action_and_refused_when_wrong() {
        let defer = parse_body(
            TaskAction::Defer,
            Some(&json!({"followUpDate": "2030-01-31T09:00:00Z"})),
        )
        .unwrap();
        assert_eq!(defer.follow_up_date, Some(Timestamp(1_896_080_400_000)));
        assert!(matches!(
            parse_body(TaskAction::Defer, Some(&json!({"followUpDate": "soon"}))),
            Err(Refused::Invalid(_))
        ));
        assert!(matches!(
            parse_body(TaskAction::Defer, None),
            Err(Refused::Invalid(_))
        ));
        assert!(matches!(
            parse_body(TaskAction::Assign, Some(&json!({"assignee": "  "}))),
            Err(Refused::Invalid(_))
        ));
        for bad in ["k".repeat(MAX_ASSIGNEE_BYTES + 1), "kermit\nadmin".into()] {
            let refused = parse_body(TaskAction::Assign, Some(&json!({ "assignee": bad })));
            assert!(
                matches!(&refused, Err(Refused::Invalid(m)) if m.len() < 200),
                "{refused:?}"
            );
        }
        let heavy = json!({ "comment": "x".repeat(MAX_VARIABLES_BYTES) });
        assert!(matches!(
            parse_body(TaskAction::Complete, Some(&heavy)),
            Err(Refused::Invalid(_))
        ));
        let complete = parse_body(TaskAction::Complete, Some(&json!({"approved": true}))).unwrap();
        assert_eq!(complete.variables.0["approved"], true);
        assert!(matches!(
            parse_body(TaskAction::Complete, Some(&json!([1, 2]))),
            Err(Refused::Invalid(_))
        ));
    }

    #[test]
    fn a_claimed_task_is_handed_on_or_deferred_by_its_assignee_only() {
        let kermit = caller("kermit", &["muppets"]);
        let piggy = caller("piggy", &["muppets"]);
        let claimed = task(Some("piggy"));
        for action in [TaskAction::Assign, TaskAction::Defer, TaskAction::Undefer] {
            let refused = check(&request(action), &claimed, &kermit);
            assert!(
                matches!(&refused, Err(Refused::Conflict(m)) if m.contains("claimed by piggy")),
                "{action} by a candidate: {refused:?}"
            );
        }
        for action in [TaskAction::Assign, TaskAction::Defer] {
            assert_eq!(check(&request(action), &claimed, &piggy), Ok(()));
        }
        // A candidate in a group the configuration names may hand it on; claiming it stays
        // refused.
        let supervisor = caller("gonzo", &["muppets", "leads"]);
        let leads = ["leads".to_string()];
        for action in [TaskAction::Assign, TaskAction::Defer] {
            let allowed = check_for(&request(action), &claimed, &supervisor, &leads);
            assert_eq!(allowed, Ok(()), "{action}");
        }
        assert!(matches!(
            check_for(&request(TaskAction::Claim), &claimed, &supervisor, &leads),
            Err(Refused::Conflict(_))
        ));
        assert!(matches!(
            check_for(&request(TaskAction::Assign), &claimed, &kermit, &leads),
            Err(Refused::Conflict(_))
        ));
    }

    #[test]
    fn the_command_goes_to_the_task_s_application_with_the_version_seen() {
        let piggy = caller("piggy", &[]);
        let document = task(Some("piggy"));
        let command = command(
            request(TaskAction::Complete),
            &document,
            &piggy,
            Uuid::new_v4(),
        );
        assert_eq!(command.application, "shop");
        assert_eq!(command.task_version, Some(3));
        assert_eq!(command.issued_by, "piggy");
        assert_eq!(command.task_id, "t1");
    }
}
