//! `Idempotency-Key`: a caller's key names one request for a while (the HTTP Idempotency-Key
//! draft). The first request with a key binds it to what it asked (task, action, values) and to
//! the command it became, stamped with its first issue time; once the command has been handed
//! on, a retry of the same request within the binding's life is that command again (the engine,
//! which decides each command once, answers it as before, and refuses it when it has expired);
//! a retry of one never handed on is checked as a new request would be; the same key with
//! another request is refused (422); once the binding has expired, the key starts a new command.
//! Bindings are kept where the deployment keeps state ([`KeyStore`]): MongoDB for tasklist-api,
//! the engine's SQLite for single-node, so they hold across restarts and instances.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use super::rules::ActionRequest;
use crate::view::ViewError;

/// A caller's key bound to a request and its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBinding {
    pub user: String,
    pub key: String,
    /// What the request asked ([`request_digest`]).
    pub request: String,
    pub command_id: Uuid,
    /// When it was bound, in epoch milliseconds: the command's issue time, on every retry.
    pub bound_at: i64,
    /// Whether its command was handed on (to the topic, or the engine).
    pub sent: bool,
}

/// Where bindings are kept.
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// The user's binding of `key` made at or after `valid_since` (epoch ms), if any.
    fn bound<'a>(
        &'a self,
        user: &'a str,
        key: &'a str,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<Option<KeyBinding>, ViewError>>;

    /// Stores `binding` unless one of the same user and key made at or after `valid_since`
    /// exists (then that one is returned: two requests racing with one key get one command);
    /// expired bindings may be deleted meanwhile.
    fn bind<'a>(
        &'a self,
        binding: &'a KeyBinding,
        valid_since: i64,
    ) -> BoxFuture<'a, Result<KeyBinding, ViewError>>;

    /// Records that the command of the user's `key` was handed on.
    fn confirm<'a>(&'a self, user: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), ViewError>>;
}

pub type SharedKeys = Arc<dyn KeyStore>;

/// Where the digests of requests come from (a name-based UUID: equal requests, equal digests).
const REQUESTS: Uuid = Uuid::from_u128(0x3e9d_51c2_8a47_4b0f_b6e1_7c20_d94a_15f3);

/// What a request asks, as a short text: its task, action and values (objects' keys sorted,
/// so that the same values in another order are the same request).
pub fn request_digest(task_id: &str, request: &ActionRequest) -> String {
    let values = Value::Object(request.variables.0.clone());
    let text = format!(
        "{task_id}\n{}\n{}\n{}\n{}",
        request.action,
        request.assignee.as_deref().unwrap_or_default(),
        request.follow_up_date.map_or(0, |t| t.millis()),
        canonical(&values)
    );
    Uuid::new_v5(&REQUESTS, text.as_bytes()).to_string()
}

/// JSON with every object's keys in order.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use taskpool_schemas::TaskAction;

    fn completing(values: Value) -> ActionRequest {
        let Value::Object(map) = values else {
            panic!("an object")
        };
        ActionRequest {
            action: TaskAction::Complete,
            assignee: None,
            follow_up_date: None,
            variables: taskpool_schemas::Payload(map),
        }
    }

    #[test]
    fn equal_requests_have_equal_digests_whatever_the_order_of_their_values() {
        let one = completing(json!({"a": 1, "b": {"y": [1, {"q": 2, "p": 1}], "x": true}}));
        let other = completing(json!({"b": {"x": true, "y": [1, {"p": 1, "q": 2}]}, "a": 1}));
        assert_eq!(request_digest("t", &one), request_digest("t", &other));
        let changed = completing(json!({"a": 2, "b": {"x": true, "y": [1, {"p": 1, "q": 2}]}}));
        assert_ne!(request_digest("t", &one), request_digest("t", &changed));
        assert_ne!(request_digest("t", &one), request_digest("u", &one));
        let mut assign = completing(json!({}));
        assign.action = TaskAction::Assign;
        assign.assignee = Some("piggy".into());
        let mut other_assignee = assign.clone();
        other_assignee.assignee = Some("kermit".into());
        assert_ne!(
            request_digest("t", &assign),
            request_digest("t", &other_assignee)
        );
    }
}
