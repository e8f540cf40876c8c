//! The outbox promise, against real databases: an event is in the outbox if and only if the
//! engine transaction that produced it committed, with gap-free versions per aggregate.
//! Every test runs against PostgreSQL and against SQLite (see `support`).

#[path = "../support/mod.rs"]
mod support;

// Compaction within one transaction, against both stores.
mod compaction;
use compaction::*;

use std::collections::BTreeSet;

use futures::future::join_all;
use taskpool_collector::{CollectorError, EngineEvent, RecordError};
use taskpool_core::domain::data_entry::ProtocolNote;
use taskpool_core::domain::task::{TaskAttributes, TaskRejection};
use taskpool_core::{CommandError, Rejection};
use taskpool_schemas::{TaskState, Timestamp};

use support::{Harness, OutboxRow, new_task, order_content};

fn created(task_id: &str) -> EngineEvent {
    EngineEvent::TaskCreated {
        task_id: task_id.into(),
        task: new_task("Approve order"),
    }
}

fn assigned(task_id: &str, user: &str) -> EngineEvent {
    EngineEvent::TaskAssigned {
        task_id: task_id.into(),
        assignee: Some(user.into()),
    }
}

fn renamed(task_id: &str, name: &str) -> EngineEvent {
    EngineEvent::TaskAttributesChanged {
        task_id: task_id.into(),
        attributes: Box::new(TaskAttributes {
            name: Some(name.into()),
            ..TaskAttributes::default()
        }),
    }
}

fn candidate_user_added(task_id: &str, user: &str) -> EngineEvent {
    EngineEvent::CandidateUserAdded {
        task_id: task_id.into(),
        user: user.into(),
    }
}

/// Runs one engine transaction: a business row plus the events, then commit.
async fn commit<H: Harness>(h: &H, business_id: &str, events: Vec<EngineEvent>) {
    let mut tx = h.begin().await;
    H::insert_business_row(&mut tx, business_id).await;
    H::flush(&mut tx, events).await.expect("events recorded");
    tx.commit().await.unwrap();
}

fn event_types(rows: &[OutboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.event_type.as_str()).collect()
}

fn versions_of(rows: &[OutboxRow], aggregate_id: &str) -> Vec<i64> {
    rows.iter()
        .filter(|r| r.aggregate_id == aggregate_id)
        .map(|r| r.version)
        .collect()
}

async fn a_committed_transaction_leaves_exactly_its_compacted_events<H: Harness>() {
    let h = H::new().await;
    commit(
        &h,
        "b1",
        vec![
            created("t1"),
            assigned("t1", "kermit"),
            created("t2"),
            EngineEvent::DataEntryChanged {
                entry_type: "io.shop.Order".into(),
                entry_id: "1".into(),
                content: order_content("Submitted"),
                note: None,
            },
        ],
    )
    .await;
    commit(
        &h,
        "b2",
        vec![assigned("t1", "piggy"), renamed("t2", "Check")],
    )
    .await;
    commit(
        &h,
        "b3",
        vec![EngineEvent::TaskCompleted {
            task_id: "t1".into(),
        }],
    )
    .await;

    let outbox = h.outbox().await;
    assert_eq!(
        event_types(&outbox),
        [
            "TaskCreated",
            "TaskCreated",
            "DataEntryCreated",
            "TaskAssigned",
            "TaskAttributesUpdated",
            "TaskCompleted"
        ]
    );
    assert_eq!(versions_of(&outbox, "t1"), [1, 2, 3]);
    assert_eq!(versions_of(&outbox, "t2"), [1, 2]);
    assert_eq!(versions_of(&outbox, "io.shop.Order:1"), [1]);
    assert_eq!(outbox[0].task().assignee.as_deref(), Some("kermit"));
    assert_eq!(outbox[5].task().state, TaskState::Completed);
    assert_eq!(outbox[5].task().assignee.as_deref(), Some("piggy"));
    assert_eq!(outbox[2].aggregate_type, "data-entry");
    assert_eq!(outbox[2].data_entry().state.state, "Submitted");
    let positions: Vec<i64> = outbox.iter().map(|r| r.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let headers: serde_json::Value = serde_json::from_str(&outbox[0].headers).unwrap();
    assert!(headers["traceparent"].as_str().unwrap().starts_with("00-"));
    assert_eq!(
        h.business_rows().await,
        BTreeSet::from(["b1".into(), "b2".into(), "b3".into()])
    );
}

async fn an_explicit_rollback_leaves_nothing_and_versions_continue_from_the_last_commit<
    H: Harness,
>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;

    let mut tx = h.begin().await;
    H::insert_business_row(&mut tx, "b2").await;
    H::flush(&mut tx, vec![assigned("t1", "kermit"), renamed("t1", "x")])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    assert_eq!(versions_of(&h.outbox().await, "t1"), [1]);
    assert_eq!(h.business_rows().await, BTreeSet::from(["b1".into()]));

    commit(&h, "b3", vec![assigned("t1", "piggy")]).await;
    let outbox = h.outbox().await;
    assert_eq!(versions_of(&outbox, "t1"), [1, 2]);
    assert_eq!(outbox[1].task().assignee.as_deref(), Some("piggy"));
    assert_eq!(
        outbox[1].task().name,
        "Approve order",
        "rolled-back rename is gone"
    );
}

async fn a_dropped_transaction_leaves_nothing_and_versions_continue_from_the_last_commit<
    H: Harness,
>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    {
        let mut tx = h.begin().await;
        H::insert_business_row(&mut tx, "b2").await;
        H::flush(&mut tx, vec![assigned("t1", "kermit"), created("t2")])
            .await
            .unwrap();
        // Dropped without commit: the engine crashed or returned an error.
    }
    commit(&h, "b3", vec![assigned("t1", "piggy"), created("t2")]).await;
    let outbox = h.outbox().await;
    assert_eq!(versions_of(&outbox, "t1"), [1, 2]);
    assert_eq!(versions_of(&outbox, "t2"), [1]);
    assert_eq!(outbox[1].task().assignee.as_deref(), Some("piggy"));
    assert_eq!(
        h.business_rows().await,
        BTreeSet::from(["b1".into(), "b3".into()])
    );
}

async fn concurrent_transactions_on_one_task_all_land_in_commit_order_without_lost_updates<
    H: Harness,
>() {
    const WRITERS: usize = 8;
    let h = H::new().await;
    commit(&h, "b0", vec![created("t1")]).await;

    // Each writer adds its own candidate user, all at once, on separate connections.
    join_all((0..WRITERS).map(|i| {
        let h = &h;
        async move {
            let user = format!("user-{i}");
            commit(
                h,
                &format!("b{}", i + 1),
                vec![candidate_user_added("t1", &user)],
            )
            .await;
        }
    }))
    .await;

    let outbox = h.outbox().await;
    let versions = versions_of(&outbox, "t1");
    let expected: Vec<i64> = (1..=i64::try_from(WRITERS).unwrap() + 1).collect();
    assert_eq!(versions, expected, "gap-free versions in outbox order");
    // Each event's state is the previous one plus exactly one user: every transaction saw
    // the one before it committed (commit order = version order) and nothing was lost.
    for pair in outbox.windows(2) {
        let (before, after) = (pair[0].task(), pair[1].task());
        assert!(after.candidate_users.is_superset(&before.candidate_users));
        assert_eq!(
            after.candidate_users.len(),
            before.candidate_users.len() + 1
        );
    }
    let last = outbox.last().unwrap().task();
    let all: BTreeSet<String> = (0..WRITERS).map(|i| format!("user-{i}")).collect();
    assert_eq!(last.candidate_users, all);
}

async fn concurrent_creation_of_one_task_records_it_once<H: Harness>() {
    let h = H::new().await;
    let results = join_all((0..2).map(|i| {
        let h = &h;
        async move {
            let mut tx = h.begin().await;
            H::insert_business_row(&mut tx, &format!("b{i}")).await;
            match H::flush(&mut tx, vec![created("t1")]).await {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    Ok(())
                }
                Err(error) => {
                    tx.rollback().await.unwrap();
                    Err(error)
                }
            }
        }
    }))
    .await;
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(failures.len(), 1, "exactly one creator fails");
    assert!(
        matches!(
            &failures[0],
            CollectorError::Command(CommandError::Rejected {
                rejection: Rejection::Task(TaskRejection::AlreadyExists(_)),
                ..
            })
        ),
        "{:?}",
        failures[0]
    );
    assert_eq!(versions_of(&h.outbox().await, "t1"), [1]);
    assert_eq!(h.business_rows().await.len(), 1);
}

async fn an_invalid_command_is_a_typed_error_and_writes_nothing<H: Harness>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;

    let mut tx = h.begin().await;
    H::insert_business_row(&mut tx, "b2").await;
    // The first command is valid, the second is not: the whole batch is refused.
    let error = H::flush(
        &mut tx,
        vec![
            assigned("t1", "kermit"),
            EngineEvent::TaskAssigned {
                task_id: "missing".into(),
                assignee: Some("kermit".into()),
            },
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &error,
            CollectorError::Command(CommandError::Rejected {
                rejection: Rejection::Task(TaskRejection::NotFound(id)),
                ..
            }) if id == "missing"
        ),
        "{error:?}"
    );
    // The engine's transaction is still usable and commits its own work; no event was written.
    tx.commit().await.unwrap();
    assert_eq!(versions_of(&h.outbox().await, "t1"), [1]);
    assert_eq!(
        h.business_rows().await,
        BTreeSet::from(["b1".into(), "b2".into()])
    );

    let mut tx = h.begin().await;
    let error = H::flush(
        &mut tx,
        vec![EngineEvent::TaskCreated {
            task_id: "t2".into(),
            task: new_task(""),
        }],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            CollectorError::Command(CommandError::Rejected {
                rejection: Rejection::Task(TaskRejection::EmptyField("name")),
                ..
            })
        ),
        "{error:?}"
    );
    tx.commit().await.unwrap();
    assert_eq!(h.outbox().await.len(), 1);

    // Creating an existing task next to a new one: refused as a whole, the new one included.
    let mut tx = h.begin().await;
    let error = H::flush(&mut tx, vec![created("t1"), created("t3")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            CollectorError::Command(CommandError::Rejected {
                rejection: Rejection::Task(TaskRejection::AlreadyExists(id)),
                ..
            }) if id == "t1"
        ),
        "{error:?}"
    );
    H::insert_business_row(&mut tx, "b3").await;
    tx.commit().await.unwrap();
    commit(&h, "b4", vec![created("t3")]).await;
    let outbox = h.outbox().await;
    assert_eq!(
        versions_of(&outbox, "t3"),
        [1],
        "t3 was not half-created before"
    );
    assert_eq!(h.business_rows().await.len(), 4);
}

async fn migrations_can_run_again<H: Harness>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    h.migrate_again().await;
    assert_eq!(h.outbox().await.len(), 1);
}

// Compaction rules (see `taskpool_collector::compaction`), one test each.

macro_rules! suite {
    ($store:ident, $harness:ty: $($test:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test::<$harness>().await;
                }
            )*
        }
    };
}

macro_rules! both_stores {
    ($($test:ident),* $(,)?) => {
        suite!(postgres, crate::support::Postgres: $($test),*);
        suite!(sqlite, crate::support::Sqlite: $($test),*);
    };
}

both_stores!(
    a_committed_transaction_leaves_exactly_its_compacted_events,
    an_explicit_rollback_leaves_nothing_and_versions_continue_from_the_last_commit,
    a_dropped_transaction_leaves_nothing_and_versions_continue_from_the_last_commit,
    concurrent_transactions_on_one_task_all_land_in_commit_order_without_lost_updates,
    concurrent_creation_of_one_task_records_it_once,
    an_invalid_command_is_a_typed_error_and_writes_nothing,
    migrations_can_run_again,
    compaction_created_assigned_and_changed_becomes_one_task_created_with_the_final_state,
    compaction_created_then_deleted_records_nothing,
    compaction_created_then_completed_records_nothing,
    compaction_repeated_assignments_record_only_the_last,
    compaction_assigned_then_unassigned_records_nothing_for_an_unassigned_task,
    compaction_attribute_changes_merge_into_one_update_with_the_latest_values,
    compaction_candidate_added_then_removed_records_nothing,
    compaction_candidate_changes_net_out_into_one_event,
    compaction_changes_then_completion_record_each_kind_once_then_the_completion,
    compaction_refuses_events_after_the_task_ended_and_creation_after_other_events,
    compaction_consecutive_data_entry_changes_become_one_with_all_protocol_notes,
    compaction_data_entry_changed_then_deleted_keeps_both_in_order,
);
