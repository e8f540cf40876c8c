//! The stream's matcher and the MongoDB query agree: for generated tasks (names in several
//! scripts and cases) and generated filters, `mongo::filter::task_filter` run by the server selects
//! exactly the tasks `TaskFilter::matches` accepts; and a filtered stream delivers exactly the
//! matching tasks, removing one that stops matching.

mod support;

use std::collections::BTreeSet;

use mongodb::bson::Document;
use proptest::prelude::*;
use support::*;
use taskpool_schemas::{TaskState, Timestamp};
use taskpool_tasklist::documents::{TaskDocument, fold_case};
use taskpool_tasklist::query::TaskFilter;

/// Words whose case differs in interesting ways: ß/ẞ, final and medial sigma, dotted capital I,
/// ligatures, accents, and plain ASCII.
const WORDS: [&str; 12] = [
    "Straße",
    "STRASSE",
    "ẞtraße",
    "Σίσυφος",
    "ΣΊΣΥΦΟΣ",
    "İstanbul",
    "istanbul",
    "Ärger",
    "ärger",
    "ﬀoo",
    "Approve Order",
    "approve ORDER",
];
const NEEDLES: [&str; 12] = [
    "straße", "STRAS", "ẞ", "σ", "Σ", "ς", "İ", "i", "är", "Ä", "ﬀ", "order",
];
const PRINCIPALS: [&str; 3] = ["kermit", "piggy", "muppets"];

#[derive(Debug, Clone)]
struct GeneratedTask {
    name: &'static str,
    description: Option<&'static str>,
    priority: i32,
    due: Option<i64>,
    business_key: Option<&'static str>,
    definition: &'static str,
    application: &'static str,
    assignee: Option<&'static str>,
    group: bool,
    active: bool,
}

fn generated_task() -> impl Strategy<Value = GeneratedTask> {
    let text = (
        prop::sample::select(&WORDS[..]),
        prop::option::of(prop::sample::select(&WORDS[..])),
    );
    let numbers = (
        0..100i32,
        prop::option::of(0..10i64),
        prop::option::of(prop::sample::select(&["a", "b"][..])),
    );
    let origin = (
        prop::sample::select(&["p1", "p2"][..]),
        prop::sample::select(&["x", "y"][..]),
    );
    let sight = (
        prop::option::of(prop::sample::select(&["kermit", "piggy"][..])),
        any::<bool>(),
        prop::bool::weighted(0.85),
    );
    (text, numbers, origin, sight).prop_map(
        |(
            (name, description),
            (priority, due, business_key),
            (definition, application),
            (assignee, group, active),
        )| {
            GeneratedTask {
                name,
                description,
                priority,
                due,
                business_key,
                definition,
                application,
                assignee,
                group,
                active,
            }
        },
    )
}

fn document(id: usize, task: &GeneratedTask) -> TaskDocument {
    let groups: &[&str] = if task.group { &["muppets"] } else { &[] };
    let state = if task.active {
        TaskState::Active
    } else {
        TaskState::Completed
    };
    let mut event = task_event(&format!("t{id}"), 1, task.assignee, groups, state);
    event.task.name = task.name.to_string();
    event.task.description = task.description.map(str::to_string);
    event.task.priority = task.priority;
    event.task.due_date = task.due.map(|day| Timestamp(day * 86_400_000));
    event.task.business_key = task.business_key.map(str::to_string);
    event.task.source_reference.process_definition_key = task.definition.to_string();
    event.task.source_reference.application_name = task.application.to_string();
    TaskDocument::from_event(&event)
}

fn generated_filter() -> impl Strategy<Value = TaskFilter> {
    // Each condition is present in about a third of the filters, so that filters combine a
    // few conditions and still select some tasks of a case.
    fn sometimes<T: std::fmt::Debug>(
        values: impl Strategy<Value = T>,
    ) -> impl Strategy<Value = Option<T>> {
        prop::option::weighted(0.35, values)
    }
    let keys = (
        sometimes(prop::sample::select(&["a", "b"][..])),
        sometimes(prop::sample::select(&["p1", "p2"][..])),
        sometimes(prop::sample::select(&["x", "y"][..])),
    );
    let ranges = (
        sometimes(0..100i32),
        sometimes(0..100i32),
        sometimes(0..10i64),
        sometimes(0..10i64),
    );
    let text = sometimes(prop::sample::select(&NEEDLES[..]));
    (keys, ranges, text).prop_map(
        |((business_key, definition, application), (min, max, before, after), text)| TaskFilter {
            business_key: business_key.map(str::to_string),
            process_definition_key: definition.map(str::to_string),
            application: application.map(str::to_string),
            priority_min: min,
            priority_max: max,
            due_before: before.map(|day| day * 86_400_000),
            due_after: after.map(|day| day * 86_400_000),
            text: text.map(fold_case),
        },
    )
}

fn principals(user: &str) -> Vec<String> {
    let mut principals = vec![format!("user:{user}")];
    if user == "kermit" {
        principals.push("group:muppets".into());
    }
    principals
}

#[test]
fn the_mongodb_query_and_the_matcher_select_the_same_tasks() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let world = runtime.block_on(World::new());
    let mut config = ProptestConfig::with_cases(24);
    config.failure_persistence = None;
    let round = std::sync::atomic::AtomicUsize::new(0);
    let selective = std::sync::atomic::AtomicUsize::new(0);
    let checked = std::sync::atomic::AtomicUsize::new(0);
    proptest!(config, |(tasks in prop::collection::vec(generated_task(), 1..30),
                        filters in prop::collection::vec(generated_filter(), 1..8))| {
        let round = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let documents: Vec<TaskDocument> =
            tasks.iter().enumerate().map(|(i, task)| document(i, task)).collect();
        let collection = format!("tasks_{round}");
        let checks: Vec<(String, TaskFilter, BTreeSet<String>, BTreeSet<String>)> =
            runtime.block_on(async {
                let database = world.mongo().await;
                let stored = database.collection::<TaskDocument>(&collection);
                stored.insert_many(&documents).await.unwrap();
                let mut checks = Vec::new();
                for filter in &filters {
                    for user in PRINCIPALS.iter().take(2) {
                        let principals = principals(user);
                        let mut found = BTreeSet::new();
                        let mut cursor = database
                            .collection::<Document>(&collection)
                            .find(tasklist_api::mongo::filter::task_filter(filter, &principals))
                            .await
                            .unwrap();
                        while cursor.advance().await.unwrap() {
                            found.insert(cursor.current().get_str("_id").unwrap().to_string());
                        }
                        let matched: BTreeSet<String> = documents
                            .iter()
                            .filter(|d| filter.matches(d, &principals))
                            .map(|d| d.id.clone())
                            .collect();
                        checks.push((user.to_string(), filter.clone(), found, matched));
                    }
                }
                stored.drop().await.unwrap();
                checks
            });
        for (user, filter, found, matched) in checks {
            checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !matched.is_empty() && matched.len() < documents.len() {
                selective.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            prop_assert_eq!(found, matched, "{} with {:?}", user, filter);
        }
    });
    // The generated cases exercised filters that select some tasks and leave out others.
    let (selective, checked) = (selective.into_inner(), checked.into_inner());
    eprintln!("{selective} of {checked} checks selected some tasks and left out others");
    assert!(
        selective * 10 >= checked,
        "{selective} of {checked} checks were selective"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_stream_delivers_exactly_the_matching_tasks() {
    let world = World::new().await;
    let service = world.start().await;
    let mut street = task_event("street", 1, Some("kermit"), &[], TaskState::Active);
    street.task.name = "Straße sperren".into();
    street.task.priority = 80;
    world.send_task(&street).await;
    let mut low = task_event("low", 1, Some("kermit"), &[], TaskState::Active);
    low.task.name = "STRASSE räumen".into();
    low.task.priority = 10;
    world.send_task(&low).await;
    world.wait_for_version("street", 1).await;
    world.wait_for_version("low", 1).await;

    // "STRAẞE" folds to "straße": matches the first name, not "STRASSE".
    let path = "/api/tasks/stream?priorityMin=50&q=STRA%E1%BA%9EE";
    let mut client = StreamClient::open(&service.address, path, &token("kermit", &[]), None).await;
    assert_eq!(client.status, 200);
    let mut tasklist = Tasklist::default();
    loop {
        let event = client.expect("the snapshot and marker", DEADLINE).await;
        if event.name == "marker" {
            break;
        }
        tasklist.apply(&event);
    }
    assert_eq!(tasklist.ids(), BTreeSet::from(["street".to_string()]));

    // A new matching task arrives; one that matches only by a name without ß does not.
    let mut second = task_event("second", 1, Some("kermit"), &[], TaskState::Active);
    second.task.name = "Hauptstraße".into();
    second.task.priority = 60;
    world.send_task(&second).await;
    let mut other = task_event("other", 1, Some("kermit"), &[], TaskState::Active);
    other.task.name = "Strasse".into();
    other.task.priority = 90;
    world.send_task(&other).await;
    // The first task's priority falls below the filter: it leaves the stream.
    let mut lowered = street.clone();
    lowered.version = 2;
    lowered.task.priority = 20;
    world.send_task(&lowered).await;
    while tasklist.ids() != BTreeSet::from(["second".to_string()]) {
        let event = client
            .expect("the second task and the remove", DEADLINE)
            .await;
        tasklist.apply(&event);
    }
    world.wait_for_version("other", 1).await;
    let mut marker = task_event("marker", 1, Some("kermit"), &[], TaskState::Active);
    marker.task.name = "straße marker".into();
    marker.task.priority = 99;
    world.send_task(&marker).await;
    while !tasklist.ids().contains("marker") {
        let event = client.expect("the marker task", DEADLINE).await;
        tasklist.apply(&event);
    }
    assert_eq!(
        tasklist.ids(),
        BTreeSet::from(["second".to_string(), "marker".to_string()]),
        "the non-matching task never arrived"
    );
    service.stop().await;
}
