//! The real engines in the tests: Operaton's REST API (`ENGINE_REST_URL`) and database
//! (`ENGINE_DATABASE_URL`), and Camunda 7 CE's (`CAMUNDA_REST_URL`, `CAMUNDA_DATABASE_URL`), as
//! `scripts/services.sh` runs them.

use std::time::Duration;

use crate::http::{self, Reply};
use crate::required_env;
use serde_json::{Value, json};
use sqlx::PgPool;
use taskpool_capture::camunda::{self, Installation};
use taskpool_core::{PgStore, Store};
use tokio::sync::OnceCell;

/// The application name the tests' installation gives the engine's tasks.
pub const APPLICATION: &str = "purchases";

/// The BPMN the tests deploy (Operaton's extension namespace; Camunda 7 gets its own).
pub const MODEL: &str = include_str!("../operaton/purchase.bpmn");

/// Which Camunda 7 engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Operaton 1.0 (`ENGINE_*`).
    Operaton,
    /// Camunda 7 CE 7.24 (`CAMUNDA_*`).
    Camunda,
}

impl Flavour {
    pub const ALL: [Flavour; 2] = [Flavour::Operaton, Flavour::Camunda];

    fn env_prefix(self) -> &'static str {
        match self {
            Flavour::Operaton => "ENGINE",
            Flavour::Camunda => "CAMUNDA",
        }
    }

    /// The tests' model with this engine's extension namespace.
    pub fn model(self) -> String {
        match self {
            Flavour::Operaton => MODEL.to_string(),
            Flavour::Camunda => MODEL
                .replace(
                    "http://operaton.org/schema/1.0/bpmn",
                    "http://camunda.org/schema/1.0/bpmn",
                )
                .replace("xmlns:operaton=", "xmlns:camunda=")
                .replace("operaton:", "camunda:"),
        }
    }

    /// An engine's schema for a database of a test's own (`pg_dump` of the running one).
    pub fn schema_sql(self) -> String {
        required_env(&format!("{}_SCHEMA_SQL", self.env_prefix()))
    }
}

#[derive(Debug)]
pub struct Engine {
    pub flavour: Flavour,
    /// `host:port` of the REST API.
    pub address: String,
    /// The path prefix of the REST API (`/engine-rest`).
    pub base: String,
    pub rest_url: String,
    pub database_url: String,
    pub pool: PgPool,
}

impl Engine {
    /// Operaton, ready (see [`Engine::of`]).
    pub async fn ready() -> Engine {
        Engine::of(Flavour::Operaton).await
    }

    /// The engine, with taskpool's tables and the capture installed (idempotent: every test
    /// installs the same) and the model deployed.
    pub async fn of(flavour: Flavour) -> Engine {
        let rest_url = required_env(&format!("{}_REST_URL", flavour.env_prefix()));
        let database_url = required_env(&format!("{}_DATABASE_URL", flavour.env_prefix()));
        let rest = rest_url.strip_prefix("http://").expect("an http:// URL");
        let (address, base) = rest.split_at(rest.find('/').expect("a path"));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url)
            .await
            .expect("the engine's database");
        // Once per test process and engine: installing takes locks on the engine's tables,
        // which other tests' engine transactions then wait for.
        static INSTALLED: [OnceCell<()>; 2] = [OnceCell::const_new(), OnceCell::const_new()];
        INSTALLED[flavour as usize]
            .get_or_init(|| async {
                PgStore::migrate(&pool).await.expect("taskpool's tables");
                camunda::install(&pool, &installation())
                    .await
                    .expect("install the capture");
            })
            .await;
        let engine = Engine {
            flavour,
            address: address.to_string(),
            base: base.to_string(),
            rest_url: rest_url.clone(),
            database_url,
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
             Content-Type: application/xml\r\n\r\n{}\r\n--{boundary}--\r\n",
            self.flavour.model()
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
        let reply = self
            .call(
                "POST",
                "/process-definition/key/taskpool_purchase/start",
                Some(people.purchase(business_key, fail)),
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
#[derive(Debug)]
pub struct People {
    pub approvers: String,
    pub buyer: String,
    pub reviewer: String,
}

impl People {
    /// The body of `POST /process-definition/key/taskpool_purchase/start` for these people;
    /// `fail` makes the budget check fail (the completing transaction rolls back).
    pub fn purchase(&self, business_key: &str, fail: bool) -> Value {
        json!({"businessKey": business_key, "variables": {
            "approvers": {"value": self.approvers},
            "buyer": {"value": self.buyer},
            "reviewer": {"value": self.reviewer},
            "priority": {"value": 70, "type": "Integer"},
            "due": {"value": "2030-01-31T09:00:00", "type": "String"},
            "fail": {"value": fail, "type": "Boolean"},
            "amount": {"value": 120, "type": "Integer"},
            "item": {"value": "chair"},
        }})
    }

    pub fn unique() -> People {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        People {
            approvers: format!("approvers{id}"),
            buyer: format!("gonzo{id}"),
            reviewer: format!("kermit{id}"),
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

impl Engine {
    /// Creates a user in the engine's identity service, member of `groups` (created when
    /// missing), so that the engine's own candidate queries know them.
    pub async fn create_user(&self, user: &str, groups: &[&str]) {
        let profile = json!({
            "profile": {"id": user, "firstName": user, "lastName": "Test", "email": format!("{user}@test.invalid")},
            "credentials": {"password": "secret-pw"},
        });
        let reply = self.call("POST", "/user/create", Some(profile)).await;
        assert!(reply.status == 204, "create user {user}: {}", reply.body);
        for group in groups {
            let exists = self.call("GET", &format!("/group/{group}"), None).await;
            if exists.status == 404 {
                let group_json = json!({"id": group, "name": group, "type": "WORKFLOW"});
                let reply = self.call("POST", "/group/create", Some(group_json)).await;
                assert!(reply.status == 204, "create group {group}: {}", reply.body);
            }
            let path = format!("/group/{group}/members/{user}");
            let reply = self.call("PUT", &path, None).await;
            assert_eq!(
                reply.status, 204,
                "membership {group}/{user}: {}",
                reply.body
            );
        }
    }

    /// The open tasks the engine lets `user` see: assigned to them, or offered to them or one
    /// of their groups (claimed or not), by task id.
    pub async fn visible_to(&self, user: &str) -> std::collections::BTreeMap<String, Value> {
        let mut visible = std::collections::BTreeMap::new();
        for query in [
            format!("/task?candidateUser={user}&includeAssignedTasks=true"),
            format!("/task?assignee={user}"),
        ] {
            let reply = self.call("GET", &query, None).await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.body);
            for task in reply.json().as_array().expect("a list") {
                let id = task["id"].as_str().expect("an id").to_string();
                visible.insert(id, task.clone());
            }
        }
        visible
    }

    /// A task's candidate users and groups, sorted, from its identity links.
    pub async fn candidates(&self, task: &str) -> (Vec<String>, Vec<String>) {
        let reply = self
            .call("GET", &format!("/task/{task}/identity-links"), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let (mut users, mut groups) = (vec![], vec![]);
        for link in reply.json().as_array().expect("a list") {
            if link["type"] != "candidate" {
                continue;
            }
            if let Some(user) = link["userId"].as_str() {
                users.push(user.to_string());
            }
            if let Some(group) = link["groupId"].as_str() {
                groups.push(group.to_string());
            }
        }
        users.sort();
        groups.sort();
        (users, groups)
    }

    /// How many claims of the task by `user` the engine's operation log shows (every claim
    /// call the engine carried out, also one that changed nothing: services.sh has the engine
    /// log operations of unauthenticated REST calls too).
    pub async fn times_claimed(&self, task: &str, user: &str) -> usize {
        let path = format!("/history/user-operation?taskId={task}&operationType=Claim");
        let reply = self.call("GET", &path, None).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let entries = reply.json();
        let entries = entries.as_array().expect("a list");
        entries
            .iter()
            .filter(|e| e["property"] == "assignee" && e["newValue"] == user)
            .count()
    }

    /// Cancels a process instance (its open tasks are deleted).
    pub async fn cancel(&self, instance: &str) {
        let reply = self
            .call("DELETE", &format!("/process-instance/{instance}"), None)
            .await;
        assert_eq!(reply.status, 204, "cancel: {}", reply.body);
    }
}

/// A date the REST API wrote (`2030-01-31T09:00:00.000+0000`), in milliseconds since the epoch.
pub fn engine_millis(text: &str) -> i64 {
    let (date, rest) = text.split_once('T').expect("a date and a time");
    let numbers: Vec<i64> = date
        .split('-')
        .map(|n| n.parse().expect("a date"))
        .collect();
    let (time, offset) = rest.split_at(12);
    let clock: Vec<i64> = time
        .split([':', '.'])
        .map(|n| n.parse().expect("a time"))
        .collect();
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let offset_minutes =
        sign * (offset[1..3].parse::<i64>().unwrap() * 60 + offset[3..5].parse::<i64>().unwrap());
    let days = days_from_civil(numbers[0], numbers[1], numbers[2]);
    let seconds = days * 86_400 + clock[0] * 3600 + clock[1] * 60 + clock[2] - offset_minutes * 60;
    seconds * 1000 + clock[3]
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
