//! The capture on the real, unmodified engine (Operaton, through its REST API): what its task
//! changes become in the outbox, what a rolled-back engine transaction leaves (nothing), and
//! what installing and uninstalling do to its database.

use std::collections::BTreeSet;

use serde_json::json;
use taskpool_capture::camunda;
use taskpool_capture::drain_once;
use taskpool_core::{PgStore, Store};
use taskpool_testkit::PgTestDb;
use taskpool_testkit::operaton::*;

mod support;
use support::{add_check_tasks, engine_schema, events_of, kinds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_lives_its_life_in_the_outbox_on_operaton() {
    a_purchase_lives_its_life_in_the_outbox(Flavour::Operaton).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_lives_its_life_in_the_outbox_on_camunda_7() {
    a_purchase_lives_its_life_in_the_outbox(Flavour::Camunda).await
}

async fn a_purchase_lives_its_life_in_the_outbox(flavour: Flavour) {
    let engine = Engine::of(flavour).await;
    let people = People::unique();
    let instance = engine.start_purchase("order-life", &people, false).await;
    let tasks = engine.tasks_of(&instance).await;
    assert_eq!(tasks.len(), 1);
    let approve = tasks[0].1.clone();

    let claim = engine
        .call(
            "POST",
            &format!("/task/{approve}/claim"),
            Some(json!({"userId": people.reviewer})),
        )
        .await;
    assert_eq!(claim.status, 204, "{}", claim.body);
    // The task's own variable of an allowed name is not the process instance's: it changes
    // nothing of the payload (no event).
    let local = engine
        .call(
            "PUT",
            &format!("/task/{approve}/localVariables/item"),
            Some(json!({"value": "table", "type": "String"})),
        )
        .await;
    assert_eq!(local.status, 204, "{}", local.body);
    // An allowed variable changes the task's payload; another changes nothing of it.
    for (name, value) in [("amount", 130), ("unlisted", 1)] {
        let set = engine
            .call(
                "PUT",
                &format!("/process-instance/{instance}/variables/{name}"),
                Some(json!({"value": value, "type": "Integer"})),
            )
            .await;
        assert_eq!(set.status, 204, "{}", set.body);
    }
    let complete = engine
        .call(
            "POST",
            &format!("/task/{approve}/complete"),
            Some(json!({"variables": {"amount": {"value": 150, "type": "Integer"}}})),
        )
        .await;
    assert_eq!(complete.status, 204, "{}", complete.body);
    let buy = engine.tasks_of(&instance).await[0].1.clone();
    let cancel = engine
        .call("DELETE", &format!("/process-instance/{instance}"), None)
        .await;
    assert_eq!(cancel.status, 204, "{}", cancel.body);

    let events = events_of(&engine, &[&approve, &buy]).await;
    assert_eq!(
        kinds(&events, &approve),
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskAssigned".to_string()),
            (3, "TaskAttributesUpdated".to_string()),
            (4, "TaskCompleted".to_string())
        ]
    );
    assert_eq!(
        kinds(&events, &buy),
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskDeleted".to_string())
        ]
    );
    let created = &events.iter().find(|e| e.0 == approve).unwrap().3;
    assert_eq!(created.name, "Approve the purchase");
    assert_eq!(created.task_definition_key, "approve");
    assert_eq!(created.priority, 70);
    assert_eq!(
        created.due_date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2030-01-31T09:00:00.000Z")
    );
    assert_eq!(
        created.form_key.as_deref(),
        Some("embedded:app:forms/approve.html")
    );
    assert_eq!(created.business_key.as_deref(), Some("order-life"));
    assert_eq!(
        created.candidate_groups,
        BTreeSet::from([people.approvers.clone()])
    );
    assert_eq!(created.source_reference.application_name, APPLICATION);
    assert_eq!(
        created.source_reference.process_definition_key,
        "taskpool_purchase"
    );
    assert_eq!(created.payload.0["amount"], 120);
    assert_eq!(created.payload.0["item"], "chair");
    let updated = &events.iter().filter(|e| e.0 == approve).nth(2).unwrap().3;
    assert_eq!(updated.payload.0["amount"], 130);
    assert_eq!(updated.payload.0["item"], "chair");
    assert!(!updated.payload.0.contains_key("unlisted"));
    let bought = &events.iter().find(|e| e.0 == buy).unwrap().3;
    assert_eq!(bought.assignee.as_deref(), Some(people.buyer.as_str()));
    assert_eq!(
        bought.candidate_users,
        BTreeSet::from([people.reviewer.clone()])
    );
    assert_eq!(
        bought.payload.0["amount"], 150,
        "the variable changed on completion"
    );
    let deleted = &events.last().unwrap().3;
    assert_eq!(deleted.delete_reason.as_deref(), Some("deleted"));
}

/// Candidates changed on a living task through the REST API, one call a transaction: adding a
/// candidate user and removing the candidate group each become an event (the capture's
/// triggers on identity links fire for candidate links only, on insert and on delete); a link
/// of another type changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_added_and_removed_on_a_living_task_become_events() {
    let engine = Engine::of(Flavour::Operaton).await;
    let people = People::unique();
    let instance = engine.start_purchase("order-links", &people, false).await;
    let approve = engine.tasks_of(&instance).await[0].1.clone();
    let created = events_of(&engine, &[&approve]).await.len();
    for (path, body) in [
        (
            "identity-links",
            json!({"userId": "extra", "type": "candidate"}),
        ),
        (
            "identity-links",
            json!({"userId": "watcher", "type": "follower"}),
        ),
        (
            "identity-links/delete",
            json!({"groupId": people.approvers, "type": "candidate"}),
        ),
    ] {
        let url = format!("/task/{approve}/{path}");
        let reply = engine.call("POST", &url, Some(body)).await;
        assert_eq!(reply.status, 204, "{path}: {}", reply.body);
    }
    let events = events_of(&engine, &[&approve]).await;
    assert_eq!(events.len(), created + 2, "{:?}", kinds(&events, &approve));
    let now = &events.last().unwrap().3;
    assert_eq!(now.candidate_users, BTreeSet::from(["extra".to_string()]));
    assert!(
        now.candidate_groups.is_empty(),
        "{:?}",
        now.candidate_groups
    );
    // The engine also touches the task row when its links change (its last-updated time), so
    // the link triggers are checked alone: a candidate link deleted by itself, as an engine
    // path that leaves the task row alone would.
    sqlx::query("DELETE FROM act_ru_identitylink WHERE task_id_ = $1 AND user_id_ = 'extra'")
        .bind(&approve)
        .execute(&engine.pool)
        .await
        .unwrap();
    let events = events_of(&engine, &[&approve]).await;
    assert_eq!(events.len(), created + 3, "{:?}", kinds(&events, &approve));
    assert!(events.last().unwrap().3.candidate_users.is_empty());
    engine.cancel(&instance).await;
}

/// Completing the approval runs the budget check, which fails on demand: the engine rolls its
/// transaction back, and the capture with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_transaction_that_rolls_back_leaves_no_event_on_operaton() {
    an_engine_transaction_that_rolls_back_leaves_no_event(Flavour::Operaton).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_transaction_that_rolls_back_leaves_no_event_on_camunda_7() {
    an_engine_transaction_that_rolls_back_leaves_no_event(Flavour::Camunda).await
}

async fn an_engine_transaction_that_rolls_back_leaves_no_event(flavour: Flavour) {
    let engine = Engine::of(flavour).await;
    let people = People::unique();
    let instance = engine.start_purchase("order-fails", &people, true).await;
    let approve = engine.tasks_of(&instance).await[0].1.clone();
    let assign = engine
        .call(
            "POST",
            &format!("/task/{approve}/assignee"),
            Some(json!({"userId": people.reviewer})),
        )
        .await;
    assert_eq!(assign.status, 204, "{}", assign.body);
    let complete = engine
        .call("POST", &format!("/task/{approve}/complete"), None)
        .await;
    assert_eq!(complete.status, 500, "the check fails: {}", complete.body);
    assert_eq!(
        engine.tasks_of(&instance).await,
        [("approve".to_string(), approve.clone())],
        "the engine rolled back: the approval is still there"
    );

    let events = events_of(&engine, &[&approve]).await;
    assert_eq!(
        kinds(&events, &approve),
        [
            (1, "TaskCreated".to_string()),
            (2, "TaskAssigned".to_string())
        ],
        "nothing of the failed completion"
    );
    let cancel = engine
        .call("DELETE", &format!("/process-instance/{instance}"), None)
        .await;
    assert_eq!(cancel.status, 204);
}

/// A catalog of what a database holds (tables with their columns, triggers, functions,
/// composite types with their attributes), as one sorted list of lines.
async fn catalog(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type \
           FROM information_schema.columns WHERE table_schema = current_schema() \
         UNION ALL SELECT 'trigger ' || t.tgrelid::regclass || ' ' || t.tgname \
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
           WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace \
         UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p \
           WHERE p.pronamespace = current_schema()::regnamespace \
         UNION ALL SELECT 'type ' || c.relname || ' ' || a.attname || ' ' || a.atttypid::regtype \
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
           WHERE c.relkind = 'c' AND c.relnamespace = current_schema()::regnamespace \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// On a database of its own holding the engine's tables: a second install changes nothing,
/// uninstalling leaves the database as taskpool's own tables left it.
#[tokio::test]
async fn installing_twice_changes_nothing_and_uninstalling_removes_what_it_added() {
    for flavour in Flavour::ALL {
        installing_twice_changes_nothing(flavour).await;
    }
}

async fn installing_twice_changes_nothing(flavour: Flavour) {
    let db = engine_schema(flavour).await;
    let before = catalog(&db.pool).await;

    let installed = camunda::install(&db.pool, &installation()).await.unwrap();
    assert_eq!(installed, 0, "no tasks yet");
    let once = catalog(&db.pool).await;
    assert!(once.len() > before.len(), "the install added objects");
    add_check_tasks(&db.pool, &["open"], &[]).await;
    drain_once(&db.pool, 100).await.unwrap();
    let caught_up: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_camunda_catching_up")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(caught_up, 0, "the first install caught up to the end");
    assert_eq!(
        camunda::install(&db.pool, &installation()).await.unwrap(),
        0,
        "a second install captures nothing again"
    );
    assert_eq!(
        catalog(&db.pool).await,
        once,
        "a second install changes nothing"
    );

    let added: Vec<&String> = once.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        added.iter().all(|l| l.contains("taskpool_")),
        "only taskpool's objects: {added:?}"
    );
    camunda::uninstall(&db.pool).await.unwrap();
    assert_eq!(
        catalog(&db.pool).await,
        before,
        "uninstall removes what it added"
    );
}

/// An engine with more open tasks than PostgreSQL's lock table has room for recording locks
/// (64 per connection by default): installing captures them all (in one transaction, with a
/// lock per task, it failed with "out of shared memory").
#[tokio::test]
async fn installing_on_an_engine_with_many_open_tasks_captures_them_all() {
    let db = engine_schema(Flavour::Operaton).await;
    // The lock table's size (PostgreSQL's NLOCKENTS: per backend slot, with the auxiliary
    // processes), three times over: more than its spare shared memory holds beyond that.
    let slots: i64 = sqlx::query_scalar(
        "SELECT current_setting('max_locks_per_transaction')::int8 * \
         (current_setting('max_connections')::int8 \
          + current_setting('autovacuum_max_workers')::int8 + 1 \
          + current_setting('max_worker_processes')::int8 \
          + current_setting('max_wal_senders')::int8 \
          + current_setting('max_prepared_transactions')::int8)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let tasks = slots * 3;
    sqlx::query(
        "INSERT INTO act_re_procdef (id_, key_, version_) VALUES ('check:1', 'check', 1); ",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO act_ru_task (id_, rev_, name_, task_def_key_, proc_def_id_, create_time_) \
         SELECT 'open-' || n, 1, 'Check', 'check', 'check:1', now() \
         FROM generate_series(1, $1) AS n",
    )
    .bind(tasks)
    .execute(&db.pool)
    .await
    .unwrap();
    let captured = camunda::install(&db.pool, &installation()).await.unwrap();
    assert_eq!(i64::try_from(captured).unwrap(), tasks);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_capture")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queued, tasks, "one created event per open task");
}

#[tokio::test]
async fn installing_into_a_database_without_the_engine_says_so() {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.unwrap();
    let error = camunda::install(&db.pool, &installation())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not a Camunda 7 or Operaton database"),
        "{error}"
    );
}
