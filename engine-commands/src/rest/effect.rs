//! What a command asks of a Camunda 7 / Operaton task, and whether the engine already shows
//! it: the pure half of applying a command through the REST API (no I/O here).
//!
//! A command whose earlier attempt may have reached the engine (the service stopped between
//! the engine's answer and recording it) is not sent again when the engine already shows its
//! effect: that is how a claim is applied once although the REST call and our record are two
//! transactions (decision 0028).

use serde_json::{Value, json};
use taskpool_schemas::{Payload, TaskAction, TaskCommand, Timestamp};
use time::OffsetDateTime;
use time::format_description::FormatItem;

/// What the engine says about an open task (`GET /task/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineTask {
    pub assignee: Option<String>,
    /// Milliseconds since the epoch.
    pub follow_up: Option<i64>,
}

/// How a finished task ended, from the engine's history (`deleteReason`); `None` when the
/// engine keeps no history of it (history level `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Deleted,
}

/// The decision for a command an earlier attempt may have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// The engine shows the command's effect: it is not sent again.
    Applied,
    /// It cannot be applied any more (the task is gone, and not by this command).
    Rejected(String),
    /// The engine does not show it: the earlier attempt did not take effect.
    SendAgain,
}

/// Decides a resumed command from the task's state now (`None`: no longer open) and, for a
/// task that is gone, how it ended (`None`: the engine has no history of it).
pub fn resumed(
    command: &TaskCommand,
    task: Option<&EngineTask>,
    ending: Option<Ending>,
) -> Resumed {
    let Some(task) = task else {
        return match (command.action, ending) {
            // Completed (by this command, or by someone else first: the user's wish holds),
            // or no history to tell: the earlier attempt is the likeliest reason it is gone.
            (TaskAction::Complete, Some(Ending::Completed) | None) => Resumed::Applied,
            _ => Resumed::Rejected(format!("task {} no longer exists", command.task_id)),
        };
    };
    let holds = match command.action {
        TaskAction::Claim => task.assignee.as_deref() == Some(command.issued_by.as_str()),
        TaskAction::Assign => task.assignee.is_some() && task.assignee == command.assignee,
        TaskAction::Unclaim => task.assignee.is_none(),
        TaskAction::Defer => {
            task.follow_up.is_some() && task.follow_up == command.follow_up_date.map(|t| t.0)
        }
        TaskAction::Undefer => task.follow_up.is_none(),
        TaskAction::Complete => false,
    };
    if holds {
        Resumed::Applied
    } else {
        Resumed::SendAgain
    }
}

/// Refuses what the engine cannot be asked: a command missing what its action needs.
pub fn check(command: &TaskCommand) -> Result<(), String> {
    match command.action {
        TaskAction::Assign if command.assignee.as_deref().is_none_or(str::is_empty) => {
            Err("assign needs an assignee".into())
        }
        TaskAction::Defer if command.follow_up_date.is_none() => {
            Err("defer needs a follow-up date".into())
        }
        _ => Ok(()),
    }
}

/// The REST API's variables for `complete`: each value with its engine type.
pub fn engine_variables(variables: &Payload) -> Value {
    let typed = variables.0.iter().map(|(name, value)| {
        let kind = match value {
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Number(n) if n.is_i64() => "Long",
            Value::Number(_) => "Double",
            Value::String(_) => "String",
            Value::Array(_) | Value::Object(_) => "Json",
        };
        let value = match value {
            // The engine takes JSON as its text.
            Value::Array(_) | Value::Object(_) => Value::String(value.to_string()),
            other => other.clone(),
        };
        (name.clone(), json!({ "value": value, "type": kind }))
    });
    Value::Object(typed.collect())
}

const ENGINE_DATE: &[FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
);

/// A date as the REST API writes it (`2027-02-01T09:30:00.000+0000`), in UTC.
pub fn engine_date(at: Timestamp) -> String {
    let nanos = i128::from(at.0) * 1_000_000;
    let date =
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    date.format(ENGINE_DATE).unwrap_or_default()
}

/// A date the REST API wrote, in milliseconds since the epoch.
pub fn parse_engine_date(text: &str) -> Option<i64> {
    let date = OffsetDateTime::parse(text, ENGINE_DATE).ok()?;
    i64::try_from(date.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn command(action: TaskAction) -> TaskCommand {
        TaskCommand {
            command_id: Uuid::new_v4(),
            action,
            task_id: "t1".into(),
            application: "purchases".into(),
            issued_by: "kermit".into(),
            issued_at: Timestamp(1),
            task_version: None,
            assignee: (action == TaskAction::Assign).then(|| "piggy".to_string()),
            follow_up_date: (action == TaskAction::Defer).then_some(Timestamp(1_800_000_000_000)),
            variables: Payload::new(),
        }
    }

    fn task(assignee: Option<&str>, follow_up: Option<i64>) -> EngineTask {
        EngineTask {
            assignee: assignee.map(str::to_string),
            follow_up,
        }
    }

    #[test]
    fn a_resumed_command_is_applied_only_when_the_engine_shows_its_effect() {
        let claim = command(TaskAction::Claim);
        let shown = Some(&task(Some("kermit"), None));
        assert_eq!(resumed(&claim, shown, None), Resumed::Applied);
        let other = task(Some("piggy"), None);
        assert_eq!(resumed(&claim, Some(&other), None), Resumed::SendAgain);
        let open = task(None, None);
        assert_eq!(resumed(&claim, Some(&open), None), Resumed::SendAgain);
        assert_eq!(
            resumed(&command(TaskAction::Unclaim), Some(&open), None),
            Resumed::Applied
        );
        assert_eq!(
            resumed(&command(TaskAction::Assign), Some(&other), None),
            Resumed::Applied
        );
        assert_eq!(
            resumed(&command(TaskAction::Assign), Some(&open), None),
            Resumed::SendAgain
        );
        let deferred = task(None, Some(1_800_000_000_000));
        assert_eq!(
            resumed(&command(TaskAction::Defer), Some(&deferred), None),
            Resumed::Applied
        );
        assert_eq!(
            resumed(&command(TaskAction::Defer), Some(&open), None),
            Resumed::SendAgain
        );
        assert_eq!(
            resumed(&command(TaskAction::Undefer), Some(&deferred), None),
            Resumed::SendAgain
        );
        assert_eq!(
            resumed(&command(TaskAction::Undefer), Some(&open), None),
            Resumed::Applied
        );
        // An open task is never the effect of a complete.
        assert_eq!(
            resumed(&command(TaskAction::Complete), Some(&open), None),
            Resumed::SendAgain
        );
    }

    #[test]
    fn a_task_that_is_gone_completes_a_complete_and_rejects_the_rest() {
        let complete = command(TaskAction::Complete);
        assert_eq!(
            resumed(&complete, None, Some(Ending::Completed)),
            Resumed::Applied
        );
        assert_eq!(resumed(&complete, None, None), Resumed::Applied);
        assert!(matches!(
            resumed(&complete, None, Some(Ending::Deleted)),
            Resumed::Rejected(_)
        ));
        let claim = command(TaskAction::Claim);
        let Resumed::Rejected(reason) = resumed(&claim, None, Some(Ending::Completed)) else {
            panic!("a claim of a finished task is rejected");
        };
        assert!(reason.contains("t1"), "{reason}");
    }

    #[test]
    fn commands_missing_what_their_action_needs_are_refused() {
        assert!(check(&command(TaskAction::Assign)).is_ok());
        let mut assign = command(TaskAction::Assign);
        assign.assignee = Some(String::new());
        assert!(check(&assign).is_err());
        let mut defer = command(TaskAction::Defer);
        defer.follow_up_date = None;
        assert!(check(&defer).is_err());
        assert!(check(&command(TaskAction::Claim)).is_ok());
    }

    #[test]
    fn variables_carry_their_engine_types() {
        let Some(payload) = Payload::from_value(json!({
            "approved": false, "amount": 12, "rate": 0.5, "note": "ok", "gone": null, "items": [1]
        })) else {
            panic!("an object is a payload");
        };
        let typed = engine_variables(&payload);
        assert_eq!(
            typed["approved"],
            json!({"value": false, "type": "Boolean"})
        );
        assert_eq!(typed["amount"], json!({"value": 12, "type": "Long"}));
        assert_eq!(typed["rate"], json!({"value": 0.5, "type": "Double"}));
        assert_eq!(typed["note"], json!({"value": "ok", "type": "String"}));
        assert_eq!(typed["gone"], json!({"value": null, "type": "Null"}));
        assert_eq!(typed["items"], json!({"value": "[1]", "type": "Json"}));
    }

    #[test]
    fn engine_dates_round_trip_and_read_other_offsets() {
        let at = Timestamp(1_800_000_123_456);
        let text = engine_date(at);
        assert_eq!(text, "2027-01-15T08:02:03.456+0000");
        assert_eq!(parse_engine_date(&text), Some(at.0));
        assert_eq!(
            parse_engine_date("2027-01-15T10:02:03.456+0200"),
            Some(at.0)
        );
        assert_eq!(parse_engine_date("yesterday"), None);
    }
}
