//! Paging cursors: where the previous page ended (its last task's sort key and id), handed to
//! clients as an opaque token and checked against the sort it is used with.

use mongodb::bson::Bson;
use serde_json::Value;

use super::{InvalidQuery, Sort, SortField, invalid};
use crate::documents::TaskDocument;

/// Where the previous page ended: its last task's sort key and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub key: Value,
    pub id: String,
}

fn encode_cursor(cursor: &Cursor) -> String {
    let json = serde_json::json!([cursor.key, cursor.id]).to_string();
    json.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn decode_cursor(token: &str, sort: Sort) -> Result<Cursor, InvalidQuery> {
    let bad = || invalid("cursor is not one this server handed out for this sort");
    if !token.len().is_multiple_of(2) || token.len() > 2048 {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let value: Value = serde_json::from_slice(&bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let [key, Value::String(id)] = value.as_array().ok_or_else(bad)?.as_slice() else {
        return Err(bad());
    };
    let key_fits = match sort.field {
        SortField::Name => key.is_string(),
        _ => key.is_i64() || key.is_u64(),
    };
    if !key_fits {
        return Err(bad());
    }
    Ok(Cursor {
        key: key.clone(),
        id: id.clone(),
    })
}

/// The cursor for the page after one ending with `last`.
pub fn next_cursor(sort: Sort, last: &TaskDocument) -> String {
    encode_cursor(&Cursor {
        key: sort.field.key_of(last),
        id: last.id.clone(),
    })
}

/// The cursor after a stored task document as the server returned it, readable or not: a page
/// whose last documents cannot be read still leads on to the next page. `None` when the
/// document lacks its id or sort key.
pub fn next_cursor_after(sort: Sort, last: &mongodb::bson::Document) -> Option<String> {
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
pub(super) fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::String(s) => Bson::String(s.clone()),
        Value::Number(n) => n.as_i64().map_or(Bson::Null, Bson::Int64),
        _ => Bson::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_task_query, tests::params};
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let sort = Sort::default();
        let token = encode_cursor(&Cursor {
            key: Value::from(50),
            id: "t1".into(),
        });
        let query = parse_task_query(&params(&[("cursor", &token)])).unwrap();
        assert_eq!(query.after.unwrap().id, "t1");
        let name_cursor = encode_cursor(&Cursor {
            key: Value::from("x"),
            id: "t1".into(),
        });
        assert!(
            decode_cursor(&name_cursor, sort).is_err(),
            "wrong key type for sort"
        );
    }
}
