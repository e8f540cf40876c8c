//! The calls taskpool makes to a Camunda 7 / Operaton REST API (`…/engine-rest`), and how an
//! answer is told apart: done, refused by the engine's rules (the user gets its message), or
//! not reached (the command waits and is tried again).

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use taskpool_schemas::{Payload, Timestamp};
use taskpool_service::http_client::{Answer, FetchError, Fetcher};
use taskpool_service::{ExposeSecret, SecretString};

use super::effect::{Ending, EngineTask, engine_date, engine_variables, parse_engine_date};

/// Where the engine's REST API is and how to sign in to it.
#[derive(Debug, Clone)]
pub struct EngineEndpoint {
    /// The REST API's root, e.g. `http://engine:8080/engine-rest`.
    pub url: String,
    /// HTTP basic authentication, when the engine asks for it.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// A PEM file of one more trusted certificate authority (for `https`).
    pub ca_location: Option<String>,
    pub timeout: Duration,
}

/// Why a call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The engine's rules refuse it; the message is the engine's.
    #[error("the engine refused: {0}")]
    Refused(String),
    /// The engine was not reached or could not decide now; nothing is known to have happened.
    #[error("the engine is not available")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct EngineAnswer(String);

/// A Camunda 7 / Operaton engine's REST API.
#[derive(Clone)]
pub struct EngineApi {
    fetcher: Fetcher,
    root: String,
    authorization: Option<SecretString>,
}

impl std::fmt::Debug for EngineApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineApi")
            .field("root", &self.root)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskDto {
    assignee: Option<String>,
    follow_up: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoricTaskDto {
    end_time: Option<String>,
    delete_reason: Option<String>,
}

impl EngineApi {
    pub fn new(endpoint: &EngineEndpoint) -> Result<EngineApi, FetchError> {
        let authorization = endpoint.username.as_ref().map(|user| {
            let password = endpoint.password.as_ref().map_or("", |p| p.expose_secret());
            SecretString::from(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            ))
        });
        Ok(EngineApi {
            fetcher: Fetcher::new(endpoint.ca_location.as_deref(), endpoint.timeout)?,
            root: endpoint.url.trim_end_matches('/').to_string(),
            authorization,
        })
    }

    /// The open task, or `None` when the engine has no such open task.
    pub async fn task(&self, id: &str) -> Result<Option<EngineTask>, CallError> {
        let answer = self
            .call(Method::GET, &format!("/task/{}", path(id)), None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let task: TaskDto = read(accepted(answer)?)?;
        Ok(Some(EngineTask {
            assignee: task.assignee,
            follow_up: task.follow_up.as_deref().and_then(parse_engine_date),
        }))
    }

    /// How a task that is no longer open ended; `None` when the engine keeps no such history.
    pub async fn ending(&self, id: &str) -> Result<Option<Ending>, CallError> {
        let url = format!("/history/task?taskId={}", path(id));
        let found: Vec<HistoricTaskDto> =
            read(accepted(self.call(Method::GET, &url, None).await?)?)?;
        Ok(found.first().filter(|t| t.end_time.is_some()).map(|t| {
            match t.delete_reason.as_deref() {
                Some("completed") => Ending::Completed,
                _ => Ending::Deleted,
            }
        }))
    }

    pub async fn claim(&self, id: &str, user: &str) -> Result<(), CallError> {
        let body = json!({ "userId": user });
        self.act(&format!("/task/{}/claim", path(id)), Some(body))
            .await
    }

    pub async fn unclaim(&self, id: &str) -> Result<(), CallError> {
        self.act(&format!("/task/{}/unclaim", path(id)), None).await
    }

    pub async fn assign(&self, id: &str, user: &str) -> Result<(), CallError> {
        let body = json!({ "userId": user });
        self.act(&format!("/task/{}/assignee", path(id)), Some(body))
            .await
    }

    pub async fn complete(&self, id: &str, variables: &Payload) -> Result<(), CallError> {
        let body = json!({ "variables": engine_variables(variables) });
        self.act(&format!("/task/{}/complete", path(id)), Some(body))
            .await
    }

    /// Sets or clears the follow-up date. The REST API updates a task as a whole, so the task
    /// is read and written back with only that field changed.
    pub async fn set_follow_up(&self, id: &str, at: Option<Timestamp>) -> Result<(), CallError> {
        let url = format!("/task/{}", path(id));
        let answer = self.call(Method::GET, &url, None).await?;
        let mut task: serde_json::Map<String, Value> = read(accepted(answer)?)?;
        // What PUT /task/{id} takes; everything else the GET returned is read-only.
        const UPDATABLE: [&str; 11] = [
            "name",
            "description",
            "assignee",
            "owner",
            "delegationState",
            "due",
            "followUp",
            "priority",
            "parentTaskId",
            "caseInstanceId",
            "tenantId",
        ];
        task.retain(|key, _| UPDATABLE.contains(&key.as_str()));
        task.insert(
            "followUp".into(),
            at.map_or(Value::Null, |at| Value::String(engine_date(at))),
        );
        accepted(
            self.call(Method::PUT, &url, Some(Value::Object(task)))
                .await?,
        )
        .map(drop)
    }

    async fn act(&self, url: &str, body: Option<Value>) -> Result<(), CallError> {
        let body = body.unwrap_or_else(|| json!({}));
        accepted(self.call(Method::POST, url, Some(body)).await?).map(drop)
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Answer, CallError> {
        let mut headers = vec![];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization.expose_secret()));
        }
        let body = body.map(|b| b.to_string().into_bytes());
        self.fetcher
            .request(method, &format!("{}{url}", self.root), &headers, body)
            .await
            .map_err(|error| CallError::Unavailable(Box::new(error)))
    }
}

/// An answer that says the call was done, or the error it stands for.
fn accepted(answer: Answer) -> Result<bytes::Bytes, CallError> {
    if answer.status.is_success() {
        return Ok(answer.body);
    }
    let (kind, message) = match serde_json::from_slice::<Value>(&answer.body) {
        Ok(error) => (
            error["type"].as_str().unwrap_or_default().to_string(),
            error["message"].as_str().unwrap_or_default().to_string(),
        ),
        Err(_) => (String::new(), String::new()),
    };
    let unavailable = |what: String| Err(CallError::Unavailable(Box::new(EngineAnswer(what))));
    match answer.status {
        // Wrong credentials are the operator's to fix: the commands wait for them.
        StatusCode::UNAUTHORIZED => unavailable("the engine refused taskpool's credentials".into()),
        status if status.is_server_error() && retryable(status, &kind) => {
            unavailable(format!("the engine answered {status} {kind}: {message}"))
        }
        status if message.is_empty() => {
            Err(CallError::Refused(format!("the engine answered {status}")))
        }
        _ => Err(CallError::Refused(message)),
    }
}

/// Server errors that say "not now" rather than "no": the engine or its proxy is overloaded or
/// starting (no engine error in the body), another transaction changed the task first (the
/// engine's optimistic lock), or the engine cannot reach its database.
fn retryable(status: StatusCode, kind: &str) -> bool {
    const NOT_NOW: [&str; 4] = [
        "OptimisticLockingException",
        "ProcessEnginePersistenceException",
        "PersistenceException",
        "CannotCreateTransactionException",
    ];
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    ) || kind.is_empty()
        || NOT_NOW.contains(&kind)
}

fn read<T: serde::de::DeserializeOwned>(body: bytes::Bytes) -> Result<T, CallError> {
    serde_json::from_slice(&body).map_err(|error| CallError::Unavailable(Box::new(error)))
}

/// A task id as one path segment (engine ids are UUIDs or numbers; anything else is escaped).
fn path(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Standard base64 with padding, for the basic authentication header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn the_engines_rule_errors_are_refusals_with_its_message() {
        let claimed = answer(
            500,
            r#"{"type":"TaskAlreadyClaimedException","message":"Task 't' is already claimed by someone else.","code":0}"#,
        );
        let Err(CallError::Refused(message)) = accepted(claimed) else {
            panic!("a claimed task is a refusal");
        };
        assert_eq!(message, "Task 't' is already claimed by someone else.");
        let missing = answer(
            404,
            r#"{"type":"InvalidRequestException","message":"No matching task"}"#,
        );
        assert!(matches!(accepted(missing), Err(CallError::Refused(m)) if m == "No matching task"));
        assert!(matches!(
            accepted(answer(403, "")),
            Err(CallError::Refused(_))
        ));
    }

    #[test]
    fn what_says_not_now_is_tried_again() {
        for (status, body) in [
            (401, ""),
            (503, "busy"),
            (502, ""),
            (500, "<html>proxy</html>"),
            (
                500,
                r#"{"type":"OptimisticLockingException","message":"changed"}"#,
            ),
        ] {
            assert!(
                matches!(
                    accepted(answer(status, body)),
                    Err(CallError::Unavailable(_))
                ),
                "{status} {body}"
            );
        }
        assert!(accepted(answer(204, "")).is_ok());
    }

    #[test]
    fn ids_are_one_path_segment_and_credentials_encode_as_basic() {
        assert_eq!(path("3182694d-f1b9-11f1"), "3182694d-f1b9-11f1");
        assert_eq!(path("a/b c"), "a%2Fb%20c");
        assert_eq!(base64(b"demo:demo"), "ZGVtbzpkZW1v");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let api = EngineApi::new(&EngineEndpoint {
            url: "http://engine/engine-rest/".into(),
            username: Some("taskpool".into()),
            password: Some(SecretString::from("s3cret-pw".to_string())),
            ca_location: None,
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(api.root, "http://engine/engine-rest");
        let shown = format!("{api:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("czNjcmV0"),
            "{shown}"
        );
    }
}
