//! The real engine in the tests: Operaton's REST API (`ENGINE_REST_URL`) and its database
//! (`ENGINE_DATABASE_URL`), as `scripts/services.sh` runs them.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use taskpool_capture::camunda::{self, Installation};
use taskpool_core::{PgStore, Store};
use taskpool_testkit::http::{self, Reply};
use taskpool_testkit::required_env;

/// The application name the tests' installation gives the engine's tasks.
pub const APPLICATION: &str = "purchases";

/// The BPMN the tests deploy.
pub const MODEL: &str = include_str!("../engine/purchase.bpmn");

pub struct Engine {
    /// `host:port` of the REST API.
    pub address: String,
    /// The path prefix of the REST API (`/engine-rest`).
    pub base: String,
    pub pool: PgPool,
}

impl Engine {
    /// The engine, with taskpool's tables and the capture installed (idempotent: every test
    /// installs the same) and the model deployed.
    pub async fn ready() -> Engine {
        let url = required_env("ENGINE_REST_URL");
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (address, base) = rest.split_at(rest.find('/').expect("a path"));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&required_env("ENGINE_DATABASE_URL"))
            .await
            .expect("the engine's database");
        PgStore::migrate(&pool).await.expect("taskpool's tables");
        camunda::install(&pool, &installation())
            .await
            .expect("install the capture");
        let engine = Engine {
            address: address.to_string(),
            base: base.to_string(),
            pool,
        };
        engine.deploy().await;
        engine
    }

    async fn deploy(&self) {
        let boundary = "taskpool-test-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"deployment-name\"\r\n\r\n\
             purchase\r\n--{boundary}\r\nContent-Disposition: form-data; \
             name=\"deploy-changed-only\"\r\n\r\ntrue\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"purchase.bpmn\"; filename=\"purchase.bpmn\"\r\n\
             Content-Type: application/xml\r\n\r\n{MODEL}\r\n--{boundary}--\r\n"
        );
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let length = body.len().to_string();
        let reply = http::request_with_body(
            &self.address,
            "POST",
            &format!("{}/deployment/create", self.base),
            &[
                ("Connection", "close"),
                ("Content-Type", content_type.as_str()),
                ("Content-Length", length.as_str()),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(reply.status, 200, "deploy: {}", reply.body);
    }

    /// A REST call with a JSON body (or none).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let length = text.len().to_string();
        http::request_with_body(
            &self.address,
            method,
            &format!("{}{path}", self.base),
            &[
                ("Connection", "close"),
                ("Content-Type", "application/json"),
                ("Content-Length", length.as_str()),
            ],
            text.as_bytes(),
        )
        .await
    }

    /// Starts a purchase with these people; returns the process instance id.
    pub async fn start_purchase(&self, business_key: &str, people: &People, fail: bool) -> String {
        let variables = json!({
            "approvers": {"value": people.approvers},
            "buyer": {"value": people.buyer},
            "reviewer": {"value": people.reviewer},
            "priority": {"value": 70, "type": "Integer"},
            "due": {"value": "2030-01-31T09:00:00", "type": "String"},
            "fail": {"value": fail, "type": "Boolean"},
            "amount": {"value": 120, "type": "Integer"},
            "item": {"value": "chair"},
        });
        let reply = self
            .call(
                "POST",
                "/process-definition/key/taskpool_purchase/start",
                Some(json!({"businessKey": business_key, "variables": variables})),
            )
            .await;
        assert_eq!(reply.status, 200, "start: {}", reply.body);
        reply.json()["id"].as_str().expect("an id").to_string()
    }

    /// The engine's tasks of a process instance: `(task definition key, task id)`.
    pub async fn tasks_of(&self, instance: &str) -> Vec<(String, String)> {
        let reply = self
            .call("GET", &format!("/task?processInstanceId={instance}"), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|t| {
                (
                    t["taskDefinitionKey"].as_str().unwrap().to_string(),
                    t["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// The people of one test's purchases (names of their own, so tests do not see each other's).
pub struct People {
    pub approvers: String,
    pub buyer: String,
    pub reviewer: String,
}

impl People {
    pub fn unique() -> People {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        People {
            approvers: format!("approvers-{id}"),
            buyer: format!("gonzo-{id}"),
            reviewer: format!("kermit-{id}"),
        }
    }
}

pub fn installation() -> Installation {
    Installation {
        application: APPLICATION.to_string(),
        time_zone: "UTC".to_string(),
        variables: vec![
            ("taskpool_purchase".to_string(), "amount".to_string()),
            ("taskpool_purchase".to_string(), "item".to_string()),
        ],
    }
}

/// How long the engine may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
