//! The view contract, one suite for both implementations: MongoDB (a real MongoDB-wire server)
//! and the embedded in-memory view. Documents are written through the contract; everything
//! else is read as clients read it, through the HTTP API and the stream: queries (filters,
//! sorts, cursors), visibility, the version guard, removals, and resuming a stream.

#[path = "../support/mod.rs"]
mod support;

// What streams of either view send when tasks leave sight, and after a reconnect.
mod streams;
use streams::{removals, resume};

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use support::*;
use tasklist_api::config::{Config, Layered};
use tasklist_api::mongo::store::MongoStore;
use taskpool_schemas::{
    DataEntry, DataEntryEvent, DataEntryState, Payload, ProcessingType, TaskEvent, TaskState,
    Timestamp,
};
use taskpool_service::shutdown::{self, ShutdownTrigger};
use taskpool_tasklist::documents::{DataEntryDocument, TaskDocument};
use taskpool_tasklist::identity::Authenticator;
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::serve::{Api, serve_api};
use taskpool_tasklist::view::{EmbeddedView, SharedView};
use tokio_util::task::TaskTracker;

/// The API served over one view, in process.
struct Served {
    view: SharedView,
    address: String,
    trigger: ShutdownTrigger,
    tasks: TaskTracker,
}

impl Served {
    async fn over(view: SharedView) -> Served {
        let config = config("mongodb://unused".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (trigger, shutdown) = shutdown::channel();
        let tasks = TaskTracker::new();
        let api = Api {
            view: view.clone(),
            auth: Authenticator::new(&config.identity).unwrap(),
            metrics: Arc::new(Metrics::default()),
            stream: config.stream.clone(),
            http: config.http.clone(),
            action_rules: Default::default(),
            dev_sign_in: None,
            actions: None,
            outcomes: None,
        };
        serve_api(api, listener, &tasks, shutdown)
            .await
            .expect("the API starts");
        Served {
            view,
            address,
            trigger,
            tasks,
        }
    }

    async fn write(&self, events: &[TaskEvent]) -> taskpool_tasklist::view::Applied {
        let documents: Vec<TaskDocument> = events.iter().map(TaskDocument::from_event).collect();
        let refs: Vec<&TaskDocument> = documents.iter().collect();
        self.view.apply_tasks(&refs).await.expect("tasks written")
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The service's settings for a test, with its own MongoDB database.
fn config(mongo_uri: String) -> Config {
    let database = format!("view{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let env = [
        ("MONGODB__URI", mongo_uri),
        ("MONGODB__DATABASE", database),
        ("MONGODB__OPERATION_TIMEOUT_MS", "5000".to_string()),
        ("IDENTITY__HS256_SECRET", SECRET.to_string()),
        ("STREAM__HEARTBEAT_SECS", "1".to_string()),
        ("KAFKA__BOOTSTRAP_SERVERS", "unused:9092".to_string()),
    ]
    .map(tasklist_api::config::Config::env_var);
    Config::from_sources("", env).expect("test configuration")
}

async fn mongo() -> SharedView {
    let config = config(taskpool_testkit::required_env("MONGODB_URI"));
    let store = MongoStore::connect(&config.mongodb, Arc::new(Metrics::default()))
        .await
        .expect("MongoDB at MONGODB_URI");
    store.ensure_indexes().await.expect("indexes");
    Arc::new(store)
}

async fn embedded() -> SharedView {
    Arc::new(EmbeddedView::new())
}

/// A task with the fields the queries look at.
fn task(
    id: &str,
    version: i64,
    priority: i32,
    groups: &[&str],
    assignee: Option<&str>,
) -> TaskEvent {
    let mut event = task_event(id, version, assignee, groups, TaskState::Active);
    event.task.priority = priority;
    event.task.name = format!("Check {id}");
    event
}

fn ids(reply: &Value) -> Vec<String> {
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every page of a list, following the cursors.
async fn all_pages(address: &str, query: &str, bearer: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut path = format!("/api/tasks?{query}");
    loop {
        let reply = get(address, &path, Some(bearer)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json();
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/tasks?{query}&cursor={cursor}"),
            None => return seen,
        }
        assert!(seen.len() < 1000, "cursors loop");
    }
}

async fn queries(view: SharedView) {
    let served = Served::over(view).await;
    let mut events = Vec::new();
    for n in 0..23 {
        let mut event = task(&format!("q{n:02}"), 1, (n * 7) % 5, &["crew"], None);
        event.task.due_date = (n % 3 != 0).then_some(Timestamp(10_000 + i64::from(n) * 100));
        event.task.business_key = Some(if n % 2 == 0 { "even" } else { "odd" }.to_string());
        event.task.description = Some(if n % 4 == 0 { "Urgent ÄRGER" } else { "calm" }.into());
        events.push(event);
    }
    served.write(&events).await;
    let bearer = token("kermit", &["crew"]);
    let address = &served.address;

    // Priority, highest first, then id: every page, each task once.
    let mut expected: Vec<&TaskEvent> = events.iter().collect();
    expected.sort_by(|a, b| {
        b.task
            .priority
            .cmp(&a.task.priority)
            .then(a.task.id.cmp(&b.task.id))
    });
    let expected: Vec<String> = expected.iter().map(|e| e.task.id.clone()).collect();
    assert_eq!(all_pages(address, "limit=4", &bearer).await, expected);

    // Due date, earliest first; tasks without one last.
    let mut by_due: Vec<&TaskEvent> = events.iter().collect();
    by_due.sort_by_key(|e| (e.task.due_date.map_or(i64::MAX, |t| t.0), e.task.id.clone()));
    let by_due: Vec<String> = by_due.iter().map(|e| e.task.id.clone()).collect();
    assert_eq!(
        all_pages(address, "sort=dueDate&limit=5", &bearer).await,
        by_due
    );

    // Name descending.
    let mut by_name = expected.clone();
    by_name.sort_by(|a, b| b.cmp(a));
    assert_eq!(
        all_pages(address, "sort=-name&limit=6", &bearer).await,
        by_name
    );

    // Filters: business key, priority range, due window, case-folded search.
    let pick = |keep: &dyn Fn(&TaskEvent) -> bool| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.task.id.clone())
            .collect()
    };
    let got = |q: &'static str| {
        let bearer = bearer.clone();
        async move {
            all_pages(address, q, &bearer)
                .await
                .into_iter()
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(
        got("businessKey=even").await,
        pick(&|e| e.task.business_key.as_deref() == Some("even"))
    );
    assert_eq!(
        got("priorityMin=2&priorityMax=3").await,
        pick(&|e| (2..=3).contains(&e.task.priority))
    );
    let window = |e: &TaskEvent| {
        e.task
            .due_date
            .is_some_and(|d| d.0 > 10_500 && d.0 < 11_500)
    };
    let due = "dueAfter=1970-01-01T00:00:10.500Z&dueBefore=1970-01-01T00:00:11.500Z";
    assert_eq!(got(due).await, pick(&window));
    assert_eq!(
        got("q=%C3%A4rger").await,
        pick(&|e| e.task.description.as_deref() == Some("Urgent ÄRGER"))
    );
    assert!(!got("q=%C3%A4rger").await.is_empty());

    // A cursor from one sort is refused with another.
    let page = get(address, "/api/tasks?limit=2", Some(&bearer))
        .await
        .json();
    let cursor = page["nextCursor"].as_str().unwrap();
    let refused = get(
        address,
        &format!("/api/tasks?sort=name&cursor={cursor}"),
        Some(&bearer),
    )
    .await;
    assert_eq!(refused.status, 400);
    served.stop().await;
}

async fn visibility(view: SharedView) {
    let served = Served::over(view).await;
    served
        .write(&[
            task("mine", 1, 50, &[], Some("kermit")),
            task("group", 1, 50, &["muppets"], None),
            task("other", 1, 50, &["villains"], Some("gonzo")),
            task_event("done", 2, Some("kermit"), &[], TaskState::Completed),
        ])
        .await;
    let mut candidate = task("named", 1, 50, &[], None);
    candidate.task.candidate_users.insert("kermit".into());
    served.write(&[candidate]).await;
    let address = &served.address;
    let kermit = token("kermit", &["muppets"]);
    let listed: BTreeSet<String> = ids(&get(address, "/api/tasks", Some(&kermit)).await.json())
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from(["group", "mine", "named"].map(String::from))
    );
    assert_eq!(
        get(address, "/api/tasks/mine", Some(&kermit)).await.status,
        200
    );
    // Someone else's task, and a completed one, are not there for kermit.
    assert_eq!(
        get(address, "/api/tasks/other", Some(&kermit)).await.status,
        404
    );
    assert_eq!(
        get(address, "/api/tasks/done", Some(&kermit)).await.status,
        404
    );
    assert_eq!(get(address, "/api/tasks", None).await.status, 401);

    let entry = |id: &str, users: &[&str], deleted: bool| DataEntryEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "DataEntryCreated".into(),
        version: 1,
        occurred_at: Timestamp::now(),
        data_entry: DataEntry {
            entry_type: "request".into(),
            entry_id: id.into(),
            type_name: "Purchase request".into(),
            application_name: "shop".into(),
            name: format!("Request {id}"),
            description: None,
            state: DataEntryState {
                processing_type: ProcessingType::InProgress,
                state: "open".into(),
            },
            payload: Payload::default(),
            correlations: vec![],
            authorized_users: users.iter().map(|u| u.to_string()).collect(),
            authorized_groups: Default::default(),
            form_key: None,
            protocol: vec![],
            deleted,
        },
    };
    let documents: Vec<DataEntryDocument> = [
        entry("r1", &["kermit"], false),
        entry("r2", &["gonzo"], false),
        entry("r3", &["kermit"], true),
        entry("r4", &["kermit", "gonzo"], false),
    ]
    .iter()
    .map(DataEntryDocument::from_event)
    .collect();
    let refs: Vec<&DataEntryDocument> = documents.iter().collect();
    served.view.apply_data_entries(&refs).await.unwrap();
    let first = get(address, "/api/data-entries?limit=1", Some(&kermit))
        .await
        .json();
    assert_eq!(ids(&first), ["request:r1"]);
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let rest = get(
        address,
        &format!("/api/data-entries?limit=1&cursor={cursor}"),
        Some(&kermit),
    )
    .await
    .json();
    assert_eq!(ids(&rest), ["request:r4"]);
    assert_eq!(
        get(address, "/api/data-entries/request/r2", Some(&kermit))
            .await
            .status,
        404
    );
    assert_eq!(
        get(address, "/api/data-entries/request/r3", Some(&kermit))
            .await
            .status,
        404
    );
    assert_eq!(
        get(address, "/api/data-entries/request/r4", Some(&kermit))
            .await
            .status,
        200
    );
    served.stop().await;
}

async fn version_guard(view: SharedView) {
    let served = Served::over(view).await;
    let mut newer = task("t1", 3, 50, &["crew"], None);
    newer.task.name = "Version three".into();
    assert_eq!(served.write(std::slice::from_ref(&newer)).await.stale, 0);
    let mut older = task("t1", 2, 50, &["crew"], None);
    older.task.name = "Version two".into();
    // An older version and a duplicate change nothing.
    assert_eq!(served.write(&[older]).await.stale, 1);
    assert_eq!(served.write(&[newer]).await.stale, 1);
    let bearer = token("kermit", &["crew"]);
    let stored = get(&served.address, "/api/tasks/t1", Some(&bearer))
        .await
        .json();
    assert_eq!(stored["version"], 3);
    assert_eq!(stored["name"], "Version three");
    served.stop().await;
}

macro_rules! view_suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn queries_filter_sort_and_page() {
                super::queries(super::$backend().await).await;
            }

            #[tokio::test]
            async fn callers_see_only_what_concerns_them() {
                super::visibility(super::$backend().await).await;
            }

            #[tokio::test]
            async fn a_newer_version_wins() {
                super::version_guard(super::$backend().await).await;
            }

            #[tokio::test]
            async fn tasks_leaving_sight_are_removed_from_streams() {
                super::removals(super::$backend().await).await;
            }

            #[tokio::test]
            async fn streams_resume_after_the_last_event_or_resync() {
                super::resume(super::$backend().await).await;
            }
        }
    };
}

view_suite!(mongo);
view_suite!(embedded);
