//! What changed between two states of a Camunda task (decision 0027), as the capture's task
//! events: pure, so that the drain's comparison is tested apart from any database.
//!
//! A state holds the fields of a `created` event, nulls left out (as the capture's SQL builds
//! it with `jsonb_strip_nulls`): a field missing on both sides has not changed.

use serde_json::{Map, Value, json};

/// The fields of an `attributes` event, compared one by one.
const ATTRIBUTES: [&str; 8] = [
    "name",
    "description",
    "owner",
    "priority",
    "dueDate",
    "followUpDate",
    "businessKey",
    "payload",
];

/// The events that take a task from `before` to `now`, in the order they are recorded:
/// assignment, candidate users added and removed, candidate groups added and removed, then one
/// `attributes` event with every attribute that changed (its new value, null when gone).
pub fn changes(before: &Value, now: &Value) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    if before.get("assignee") != now.get("assignee") {
        events.push(("assigned", json!({ "assignee": field(now, "assignee") })));
    }
    for (list, key, added, removed) in [
        (
            "candidateUsers",
            "user",
            "candidate-user-added",
            "candidate-user-removed",
        ),
        (
            "candidateGroups",
            "group",
            "candidate-group-added",
            "candidate-group-removed",
        ),
    ] {
        let (was, is) = (names(before, list), names(now, list));
        for name in is.iter().filter(|n| !was.contains(n)) {
            events.push((added, json!({ key: name })));
        }
        for name in was.iter().filter(|n| !is.contains(n)) {
            events.push((removed, json!({ key: name })));
        }
    }
    let changed: Map<String, Value> = ATTRIBUTES
        .iter()
        .filter(|f| before.get(**f) != now.get(**f))
        .map(|f| (f.to_string(), field(now, f)))
        .collect();
    if !changed.is_empty() {
        events.push(("attributes", Value::Object(changed)));
    }
    events
}

/// The event of a task whose row is gone, by the history's delete reason: completed when it
/// says so or says nothing (no history kept), deleted with the reason otherwise.
pub fn ended(reason: Option<&str>) -> (&'static str, Value) {
    match reason {
        None | Some("completed") => ("completed", json!({})),
        Some(reason) => ("deleted", json!({ "reason": reason })),
    }
}

fn field(state: &Value, name: &str) -> Value {
    state.get(name).cloned().unwrap_or(Value::Null)
}

/// A list of names (candidate users or groups), without duplicates, in its order.
fn names<'a>(state: &'a Value, list: &str) -> Vec<&'a str> {
    let mut names: Vec<&str> = state
        .get(list)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Value {
        json!({
            "name": "Approve", "priority": 50, "assignee": "kermit",
            "candidateUsers": ["gonzo"], "candidateGroups": ["approvers", "buyers"],
            "payload": {"amount": 120}
        })
    }

    #[test]
    fn an_unchanged_state_gives_no_event() {
        assert!(changes(&state(), &state()).is_empty());
    }

    #[test]
    fn each_kind_of_change_gives_its_event_in_the_recorded_order() {
        let mut now = state();
        now["assignee"] = json!("piggy");
        now["candidateUsers"] = json!(["animal"]);
        now["candidateGroups"] = json!(["approvers", "managers"]);
        now["priority"] = json!(80);
        now["dueDate"] = json!(1_700_000_000_000_i64);
        now.as_object_mut().unwrap().remove("name");
        assert_eq!(
            changes(&state(), &now),
            vec![
                ("assigned", json!({"assignee": "piggy"})),
                ("candidate-user-added", json!({"user": "animal"})),
                ("candidate-user-removed", json!({"user": "gonzo"})),
                ("candidate-group-added", json!({"group": "managers"})),
                ("candidate-group-removed", json!({"group": "buyers"})),
                (
                    "attributes",
                    json!({"name": null, "priority": 80, "dueDate": 1_700_000_000_000_i64})
                ),
            ]
        );
    }

    #[test]
    fn an_unassigned_task_is_assigned_to_nobody() {
        let mut now = state();
        now.as_object_mut().unwrap().remove("assignee");
        assert_eq!(
            changes(&state(), &now),
            vec![("assigned", json!({"assignee": null}))]
        );
    }

    #[test]
    fn fields_outside_the_events_change_nothing() {
        let mut now = state();
        now["createTime"] = json!(1);
        now["sourceReference"] = json!({"tenantId": "t"});
        assert!(changes(&state(), &now).is_empty());
    }

    #[test]
    fn an_ended_task_is_completed_unless_the_history_names_another_reason() {
        assert_eq!(ended(Some("completed")).0, "completed");
        assert_eq!(ended(None).0, "completed");
        assert_eq!(
            ended(Some("cancelled by the buyer")),
            ("deleted", json!({"reason": "cancelled by the buyer"}))
        );
    }
}
