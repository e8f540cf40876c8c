//! Task list queries: filters, sort and cursor parsed from a query string, matched in memory
//! (the embedded view and the live stream); tasklist-api turns them into MongoDB filters that
//! agree.
//!
//! Parameters: `businessKey`, `processDefinitionKey`, `application`, `priorityMin`,
//! `priorityMax`, `dueBefore`, `dueAfter` (RFC 3339 or epoch milliseconds), `q` (text in name
//! or description, case-insensitive), `sort` (`priority`, `createTime`, `dueDate`, `name`,
//! each optionally prefixed by `-` for descending; default `-priority`), `limit` (1..=500,
//! default 50) and `cursor` (from the previous page).

mod cursor;
mod order;

use std::collections::HashMap;

use serde_json::Value;

use cursor::decode_cursor;
pub use cursor::{Cursor, encode_cursor, next_cursor};

use crate::documents::{TaskDocument, fold_case};

pub const MAX_LIMIT: u32 = 500;
const DEFAULT_LIMIT: u32 = 50;
const MAX_TEXT: usize = 200;

/// A parameter the caller got wrong, with a message for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidQuery(pub String);

fn invalid(message: impl Into<String>) -> InvalidQuery {
    InvalidQuery(message.into())
}

/// What a caller wants to see among the tasks visible to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub business_key: Option<String>,
    pub process_definition_key: Option<String>,
    pub application: Option<String>,
    pub priority_min: Option<i32>,
    pub priority_max: Option<i32>,
    pub due_before: Option<i64>,
    pub due_after: Option<i64>,
    /// Search text, case-folded with [`fold_case`].
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Priority,
    CreateTime,
    DueDate,
    Name,
}

impl SortField {
    /// The stored document's field this sorts by.
    pub fn path(self) -> &'static str {
        match self {
            SortField::Priority => "priority",
            SortField::CreateTime => "createTime",
            SortField::DueDate => "dueSort",
            SortField::Name => "name",
        }
    }

    fn key_of(self, task: &TaskDocument) -> Value {
        match self {
            SortField::Priority => Value::from(task.priority),
            SortField::CreateTime => Value::from(task.create_time),
            SortField::DueDate => Value::from(task.due_sort),
            SortField::Name => Value::from(task.name.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            field: SortField::Priority,
            descending: true,
        }
    }
}

/// A parsed list request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    pub filter: TaskFilter,
    pub sort: Sort,
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Parses the parameters of `GET /api/tasks` (and of the stream, which ignores paging).
pub fn parse_task_query(params: &HashMap<String, String>) -> Result<TaskQuery, InvalidQuery> {
    const KNOWN: [&str; 11] = [
        "businessKey",
        "processDefinitionKey",
        "application",
        "priorityMin",
        "priorityMax",
        "dueBefore",
        "dueAfter",
        "q",
        "sort",
        "limit",
        "cursor",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!("unknown parameter {}", truncate(unknown))));
    }
    let text = |name: &str| -> Result<Option<String>, InvalidQuery> {
        match params.get(name) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(invalid(format!("{name} must not be empty"))),
            Some(value) if value.chars().count() > MAX_TEXT => Err(invalid(format!(
                "{name} is longer than {MAX_TEXT} characters"
            ))),
            Some(value) => Ok(Some(value.clone())),
        }
    };
    let number = |name: &str| -> Result<Option<i32>, InvalidQuery> {
        params
            .get(name)
            .map(|value| {
                value
                    .parse::<i32>()
                    .map_err(|_| invalid(format!("{name} must be an integer")))
            })
            .transpose()
    };
    let time = |name: &str| -> Result<Option<i64>, InvalidQuery> {
        params
            .get(name)
            .map(|value| {
                parse_time(value).ok_or_else(|| {
                    invalid(format!(
                        "{name} must be an RFC 3339 time or epoch milliseconds"
                    ))
                })
            })
            .transpose()
    };
    let filter = TaskFilter {
        business_key: text("businessKey")?,
        process_definition_key: text("processDefinitionKey")?,
        application: text("application")?,
        priority_min: number("priorityMin")?,
        priority_max: number("priorityMax")?,
        due_before: time("dueBefore")?,
        due_after: time("dueAfter")?,
        text: text("q")?.map(|q| fold_case(&q)),
    };
    if filter
        .text
        .as_ref()
        .is_some_and(|q| q.chars().any(char::is_control))
    {
        return Err(invalid("q must not contain control characters"));
    }
    if let (Some(min), Some(max)) = (filter.priority_min, filter.priority_max)
        && min > max
    {
        return Err(invalid("priorityMin must not exceed priorityMax"));
    }
    let sort = match params.get("sort") {
        None => Sort::default(),
        Some(value) => parse_sort(value)?,
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(value) => match value.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                return Err(invalid(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let after = params
        .get("cursor")
        .map(|token| decode_cursor(token, sort))
        .transpose()?;
    Ok(TaskQuery {
        filter,
        sort,
        limit,
        after,
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

fn parse_sort(value: &str) -> Result<Sort, InvalidQuery> {
    let (descending, name) = match value.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, value),
    };
    let field = match name {
        "priority" => SortField::Priority,
        "createTime" => SortField::CreateTime,
        "dueDate" => SortField::DueDate,
        "name" => SortField::Name,
        _ => {
            return Err(invalid(
                "sort must be one of priority, createTime, dueDate, name (with - for descending)",
            ));
        }
    };
    Ok(Sort { field, descending })
}

/// RFC 3339 (`2024-05-01T12:00:00Z`, with optional fraction and offset) or epoch milliseconds.
/// Dates that do not exist (`2000-02-31`) are refused.
pub fn parse_time(value: &str) -> Option<i64> {
    if let Ok(millis) = value.parse::<i64>() {
        return Some(millis);
    }
    let time =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

impl TaskFilter {
    /// Whether a task matches, for a caller with `principals` (as the MongoDB filter tasklist-api builds from it would).
    pub fn matches(&self, task: &TaskDocument, principals: &[String]) -> bool {
        task.visible_to(principals)
            && self
                .business_key
                .as_ref()
                .is_none_or(|key| task.business_key.as_ref() == Some(key))
            && self
                .process_definition_key
                .as_ref()
                .is_none_or(|key| &task.source_reference.process_definition_key == key)
            && self
                .application
                .as_ref()
                .is_none_or(|app| &task.source_reference.application_name == app)
            && self.priority_min.is_none_or(|min| task.priority >= min)
            && self.priority_max.is_none_or(|max| task.priority <= max)
            && self
                .due_before
                .is_none_or(|before| task.due_sort != i64::MAX && task.due_sort < before)
            && self
                .due_after
                .is_none_or(|after| task.due_sort != i64::MAX && task.due_sort > after)
            && self
                .text
                .as_ref()
                .is_none_or(|text| task.search_text.contains(text.as_str()))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_every_parameter_parse() {
        assert_eq!(parse_task_query(&params(&[])).unwrap().limit, 50);
        let query = parse_task_query(&params(&[
            ("businessKey", "order-1"),
            ("priorityMin", "10"),
            ("priorityMax", "90"),
            ("dueBefore", "2024-05-01T12:00:00Z"),
            ("dueAfter", "1000"),
            ("q", "Approve"),
            ("sort", "-dueDate"),
            ("limit", "20"),
        ]))
        .unwrap();
        assert_eq!(query.filter.business_key.as_deref(), Some("order-1"));
        assert_eq!(query.filter.due_before, Some(1_714_564_800_000));
        assert_eq!(query.filter.due_after, Some(1000));
        assert_eq!(query.filter.text.as_deref(), Some("approve"));
        assert_eq!(
            query.sort,
            Sort {
                field: SortField::DueDate,
                descending: true
            }
        );
        assert_eq!(query.limit, 20);
    }

    #[test]
    fn malformed_parameters_are_refused_with_a_message() {
        for (pairs, needle) in [
            (vec![("priorityMin", "high")], "priorityMin"),
            (vec![("priorityMin", "5"), ("priorityMax", "1")], "exceed"),
            (vec![("dueBefore", "yesterday")], "dueBefore"),
            (vec![("sort", "color")], "sort"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "501")], "limit"),
            (vec![("cursor", "zz")], "cursor"),
            (vec![("businessKey", "")], "businessKey"),
            (vec![("colour", "red")], "unknown parameter colour"),
        ] {
            let error = parse_task_query(&params(&pairs)).unwrap_err();
            assert!(error.0.contains(needle), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn rfc3339_times_with_fractions_and_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        // RFC 3339 lets applications separate date and time with a space.
        assert_eq!(parse_time("1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_time("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "2000-13-01T00:00:00Z",
            "2000-02-31T00:00:00Z",
            "2001-02-29T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01",
            "2000-01-01T00:00:00",
            "x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
