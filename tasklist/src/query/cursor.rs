//! Paging cursors: where the previous page ended (its last task's sort key and id), handed to
//! clients as an opaque token and checked against the sort it is used with.

use serde_json::Value;

use super::{InvalidQuery, Sort, SortField, invalid};
use crate::documents::TaskDocument;

/// Where the previous page ended: its last task's sort key and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub key: Value,
    pub id: String,
}

/// The opaque token of a cursor.
pub fn encode_cursor(cursor: &Cursor) -> String {
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
