//! An action request with an `Idempotency-Key` ([`crate::actions::keys`]): the binding its key
//! has, and the steps that make and confirm one.

use taskpool_schemas::{TaskCommand, Timestamp};
use uuid::Uuid;

use super::ApiError;
use crate::actions::ActionTarget;
use crate::actions::keys::{KeyBinding, request_digest};
use crate::actions::rules::ActionRequest;

/// A keyed request and the binding of its key, if it has one.
#[derive(Debug)]
pub struct KeyedRequest {
    user: String,
    key: String,
    digest: String,
    valid_since: i64,
    bound: Option<KeyBinding>,
}

impl KeyedRequest {
    /// The key's binding made within `life` before `now`, if any; 422 when it names another
    /// request.
    pub async fn find(
        target: &ActionTarget,
        (user, key): (&str, String),
        (task_id, request): (&str, &ActionRequest),
        (now, life): (Timestamp, std::time::Duration),
    ) -> Result<KeyedRequest, ApiError> {
        let life = i64::try_from(life.as_millis()).unwrap_or(i64::MAX);
        let valid_since = now.millis().saturating_sub(life);
        let bound = target.keys.bound(user, &key, valid_since).await?;
        let keyed = KeyedRequest {
            user: user.to_string(),
            key,
            digest: request_digest(task_id, request),
            valid_since,
            bound,
        };
        keyed.same_request()?;
        Ok(keyed)
    }

    /// Whether the key's command was handed on before: then this request is that command
    /// again, not a new one to check.
    pub fn sent_before(&self) -> bool {
        self.bound.as_ref().is_some_and(|bound| bound.sent)
    }

    /// Gives `command` the binding's id and first issue time, binding the key to it first
    /// when it has no binding yet (a request racing with the same key may have bound it:
    /// then its binding is adopted, or 422 when it names another request).
    pub async fn bind(
        &mut self,
        target: &ActionTarget,
        command: &mut TaskCommand,
    ) -> Result<(), ApiError> {
        if self.bound.is_none() {
            let fresh = KeyBinding {
                user: self.user.clone(),
                key: self.key.clone(),
                request: self.digest.clone(),
                command_id: Uuid::new_v4(),
                bound_at: command.issued_at.millis(),
                sent: false,
            };
            self.bound = Some(target.keys.bind(&fresh, self.valid_since).await?);
            self.same_request()?;
        }
        if let Some(bound) = &self.bound {
            command.command_id = bound.command_id;
            command.issued_at = Timestamp(bound.bound_at);
        }
        Ok(())
    }

    /// Records that the command was handed on. A failure only means a retry is checked as a
    /// new request (and sends the same command, which the engine decides once).
    pub async fn confirm(&self, target: &ActionTarget) {
        if self.sent_before() {
            return;
        }
        if let Err(error) = target.keys.confirm(&self.user, &self.key).await {
            tracing::warn!(
                error = taskpool_service::logging::error_chain(&error),
                "cannot record that a keyed action was sent"
            );
        }
    }

    fn same_request(&self) -> Result<(), ApiError> {
        match &self.bound {
            Some(bound) if bound.request != self.digest => Err(ApiError::KeyReused),
            _ => Ok(()),
        }
    }
}
