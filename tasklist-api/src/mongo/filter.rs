//! Task queries as MongoDB filters and sorts, agreeing with [`TaskFilter::matches`] (the
//! embedded view's and the stream's in-memory match), and cursors after stored documents.

use mongodb::bson::{Bson, Document, doc};
use serde_json::Value;
use taskpool_tasklist::documents::ACTIVE;
use taskpool_tasklist::query::{Cursor, Sort, TaskFilter, TaskQuery, encode_cursor};

/// The MongoDB filter for active tasks matching this filter and visible to `principals`.
pub fn task_filter(query: &TaskFilter, principals: &[String]) -> Document {
    let mut filter = doc! {
        "principals": { "$in": principals },
        "state": ACTIVE,
    };
    if let Some(key) = &query.business_key {
        filter.insert("businessKey", key);
    }
    if let Some(key) = &query.process_definition_key {
        filter.insert("sourceReference.processDefinitionKey", key);
    }
    if let Some(application) = &query.application {
        filter.insert("sourceReference.applicationName", application);
    }
    let mut priority = Document::new();
    if let Some(min) = query.priority_min {
        priority.insert("$gte", min);
    }
    if let Some(max) = query.priority_max {
        priority.insert("$lte", max);
    }
    if !priority.is_empty() {
        filter.insert("priority", priority);
    }
    let mut due = Document::new();
    if let Some(before) = query.due_before {
        due.insert("$lt", before);
    }
    if let Some(after) = query.due_after {
        due.insert("$gt", after);
    }
    if !due.is_empty() {
        // Tasks without a due date have dueSort = i64::MAX: they are never "before".
        due.insert("$ne", i64::MAX);
        filter.insert("dueSort", due);
    }
    if let Some(text) = &query.text {
        filter.insert("searchText", doc! { "$regex": escape_regex(text) });
    }
    filter
}

/// The MongoDB filter of this page (the filter plus the cursor's position).
pub fn page_filter(query: &TaskQuery, principals: &[String]) -> Document {
    let mut filter = task_filter(&query.filter, principals);
    if let Some(cursor) = &query.after {
        let path = query.sort.field.path();
        let beyond = if query.sort.descending { "$lt" } else { "$gt" };
        let key = json_to_bson(&cursor.key);
        let after = doc! {
            "$or": [
                { path: { beyond: key.clone() } },
                { path: key, "_id": { "$gt": &cursor.id } },
            ]
        };
        filter = doc! { "$and": [filter, after] };
    }
    filter
}

/// The MongoDB sort: the field, then `_id` to make the order total.
pub fn sort(query: &TaskQuery) -> Document {
    let direction = if query.sort.descending { -1 } else { 1 };
    doc! { query.sort.field.path(): direction, "_id": 1 }
}

/// The cursor after a stored task document as the server returned it, readable or not: a page
/// whose last documents cannot be read still leads on to the next page. `None` when the
/// document lacks its id or sort key.
pub fn next_cursor_after(sort: Sort, last: &Document) -> Option<String> {
    let id = last.get_str("_id").ok()?.to_string();
    let key = match last.get(sort.field.path())? {
        Bson::Int32(n) => Value::from(*n),
        Bson::Int64(n) => Value::from(*n),
        Bson::String(s) => Value::from(s.clone()),
        _ => return None,
    };
    Some(encode_cursor(&Cursor { key, id }))
}

/// A cursor key as MongoDB compares it.
fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::String(s) => Bson::String(s.clone()),
        Value::Number(n) => n.as_i64().map_or(Bson::Null, Bson::Int64),
        _ => Bson::Null,
    }
}

fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_metacharacters_in_search_text_are_literal() {
        assert_eq!(escape_regex("a.b*(c)"), "a\\.b\\*\\(c\\)");
    }
}
