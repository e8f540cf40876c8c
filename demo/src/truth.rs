//! The demo's tables as ground truth: which tasks a user must see in a tasklist, and whether a
//! task as the tasklist API shows it has the fields the demo's table holds.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::db::TaskRow;

/// The tasks `user` (in `groups`) must see, by id: active, and assigned to them, offered to
/// them, or offered to one of their groups.
pub fn visible_to(tasks: &[TaskRow], user: &str, groups: &[String]) -> BTreeMap<String, TaskRow> {
    tasks
        .iter()
        .filter(|t| t.state == "ACTIVE")
        .filter(|t| {
            t.assignee.as_deref() == Some(user)
                || t.candidate_user.as_deref() == Some(user)
                || t.candidate_group
                    .as_ref()
                    .is_some_and(|g| groups.contains(g))
        })
        .map(|t| (t.id.clone(), t.clone()))
        .collect()
}

impl TaskRow {
    /// Whether a task as the API shows it (JSON) has this row's assignee, priority, due date,
    /// name and candidates.
    pub fn shown_as(&self, task: &Value) -> bool {
        let list = |field: &str| -> Vec<String> {
            task[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        task["assignee"].as_str() == self.assignee.as_deref()
            && task["priority"].as_i64() == Some(self.priority)
            && task["dueDate"].as_i64() == self.due_date
            && task["name"].as_str() == Some(self.name.as_str())
            && list("candidateGroups") == self.candidate_group.iter().cloned().collect::<Vec<_>>()
            && list("candidateUsers") == self.candidate_user.iter().cloned().collect::<Vec<_>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: &str, assignee: Option<&str>, group: Option<&str>) -> TaskRow {
        TaskRow {
            id: id.into(),
            request_id: "PR-1".into(),
            step: "approve".into(),
            name: "Approve".into(),
            state: state.into(),
            assignee: assignee.map(String::from),
            candidate_group: group.map(String::from),
            candidate_user: None,
            priority: 50,
            due_date: None,
        }
    }

    #[test]
    fn users_see_active_tasks_of_theirs_and_of_their_groups() {
        let tasks = [
            row("mine", "ACTIVE", Some("kermit"), None),
            row("group", "ACTIVE", None, Some("approvers")),
            row("done", "COMPLETED", Some("kermit"), None),
            row("other", "ACTIVE", None, Some("purchasing")),
        ];
        let seen = visible_to(&tasks, "kermit", &["approvers".into()]);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["group", "mine"]);
        let shown = serde_json::json!({"assignee": "kermit", "priority": 50, "dueDate": null,
            "name": "Approve", "candidateGroups": [], "candidateUsers": []});
        assert!(tasks[0].shown_as(&shown));
        assert!(!tasks[1].shown_as(&shown));
    }
}
