//! The order of a query in memory, as MongoDB sorts it: what the embedded view pages with.

use serde_json::Value;

use super::TaskQuery;
use crate::documents::TaskDocument;

impl TaskQuery {
    /// The list order, in memory: the field (numbers numerically, names by their UTF-8 bytes,
    /// as MongoDB compares strings without a collation, so both views agree), then the id.
    pub fn compare(&self, a: &TaskDocument, b: &TaskDocument) -> std::cmp::Ordering {
        let by_field = compare_keys(&self.sort.field.key_of(a), &self.sort.field.key_of(b));
        let by_field = if self.sort.descending {
            by_field.reverse()
        } else {
            by_field
        };
        by_field.then_with(|| a.id.cmp(&b.id))
    }

    /// Whether a task comes after the cursor in this query's order (as the cursor part of
    /// tasklist-api's MongoDB page filter selects); every task does when there is no cursor.
    pub fn is_after_cursor(&self, task: &TaskDocument) -> bool {
        let Some(cursor) = &self.after else {
            return true;
        };
        let key = compare_keys(&self.sort.field.key_of(task), &cursor.key);
        let beyond = if self.sort.descending {
            key.is_lt()
        } else {
            key.is_gt()
        };
        beyond || (key.is_eq() && task.id > cursor.id)
    }
}

/// Sort keys compare as numbers or as strings; a cursor key of the other kind never matches
/// (cursors are checked against their sort when decoded).
fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
        _ => a
            .as_i64()
            .unwrap_or_default()
            .cmp(&b.as_i64().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Sort, SortField};
    use super::*;
    use crate::query::cursor::Cursor;

    fn task(id: &str, priority: i32, name: &str) -> TaskDocument {
        let mut event = document(id);
        event.priority = priority;
        event.name = name.into();
        event
    }

    fn document(id: &str) -> TaskDocument {
        serde_json::from_value(serde_json::json!({
            "_id": id, "version": 1,
            "sourceReference": { "processInstanceId": "p", "executionId": "e",
                "processDefinitionId": "d", "processDefinitionKey": "k", "processName": "n",
                "applicationName": "a", "tenantId": null },
            "taskDefinitionKey": "t", "name": "", "description": null, "formKey": null,
            "priority": 0, "createTime": 0, "dueDate": null, "dueSort": i64::MAX,
            "followUpDate": null, "assignee": null, "owner": null, "candidateUsers": [],
            "candidateGroups": [], "businessKey": null, "payload": {}, "correlations": [],
            "state": "ACTIVE", "deleteReason": null, "principals": [], "occurredAt": 0
        }))
        .unwrap()
    }

    #[test]
    fn the_field_decides_then_the_id_and_descending_reverses_only_the_field() {
        let query = TaskQuery::default();
        let (a, b, c) = (task("a", 5, "x"), task("b", 9, "x"), task("c", 5, "x"));
        let mut tasks = [&c, &a, &b];
        tasks.sort_by(|x, y| query.compare(x, y));
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "c"]);
        let by_name = TaskQuery {
            sort: Sort {
                field: SortField::Name,
                descending: false,
            },
            ..TaskQuery::default()
        };
        // Bytes, not letters: upper case sorts before lower case, as in MongoDB.
        assert!(
            by_name
                .compare(&task("1", 0, "Zebra"), &task("2", 0, "apple"))
                .is_lt()
        );
    }

    #[test]
    fn a_cursor_excludes_its_own_task_and_everything_before() {
        let query = TaskQuery {
            after: Some(Cursor {
                key: Value::from(5),
                id: "b".into(),
            }),
            ..TaskQuery::default()
        };
        assert!(!query.is_after_cursor(&task("a", 5, "x")));
        assert!(!query.is_after_cursor(&task("b", 5, "x")));
        assert!(query.is_after_cursor(&task("c", 5, "x")));
        assert!(query.is_after_cursor(&task("a", 4, "x")));
        assert!(!query.is_after_cursor(&task("z", 6, "x")));
    }
}
