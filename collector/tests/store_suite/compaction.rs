//! Compaction of one transaction's engine events, against both stores (see `support`).

use super::*;

pub(crate) async fn compaction_created_assigned_and_changed_becomes_one_task_created_with_the_final_state<
    H: Harness,
>() {
    let h = H::new().await;
    commit(
        &h,
        "b1",
        vec![
            created("t1"),
            assigned("t1", "kermit"),
            renamed("t1", "first"),
            renamed("t1", "second"),
            EngineEvent::TaskAttributesChanged {
                task_id: "t1".into(),
                attributes: Box::new(TaskAttributes {
                    due_date: Some(Some(Timestamp(9))),
                    ..TaskAttributes::default()
                }),
            },
            candidate_user_added("t1", "piggy"),
            EngineEvent::CandidateGroupRemoved {
                task_id: "t1".into(),
                group: "muppets".into(),
            },
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(event_types(&outbox), ["TaskCreated"]);
    let task = outbox[0].task();
    assert_eq!(outbox[0].version, 1);
    assert_eq!(task.assignee.as_deref(), Some("kermit"));
    assert_eq!(task.name, "second");
    assert_eq!(task.due_date, Some(Timestamp(9)));
    assert_eq!(task.candidate_users, BTreeSet::from(["piggy".into()]));
    assert!(task.candidate_groups.is_empty());
}

pub(crate) async fn compaction_created_then_deleted_records_nothing<H: Harness>() {
    let h = H::new().await;
    commit(
        &h,
        "b1",
        vec![
            created("t1"),
            assigned("t1", "kermit"),
            EngineEvent::TaskDeleted {
                task_id: "t1".into(),
                reason: "cancelled".into(),
            },
        ],
    )
    .await;
    assert!(h.outbox().await.is_empty());
    assert_eq!(h.business_rows().await.len(), 1);
}

pub(crate) async fn compaction_created_then_completed_records_nothing<H: Harness>() {
    let h = H::new().await;
    commit(
        &h,
        "b1",
        vec![
            created("t1"),
            EngineEvent::TaskCompleted {
                task_id: "t1".into(),
            },
        ],
    )
    .await;
    assert!(h.outbox().await.is_empty());
}

pub(crate) async fn compaction_repeated_assignments_record_only_the_last<H: Harness>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            assigned("t1", "kermit"),
            assigned("t1", "piggy"),
            assigned("t1", "gonzo"),
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(event_types(&outbox), ["TaskCreated", "TaskAssigned"]);
    assert_eq!(outbox[1].task().assignee.as_deref(), Some("gonzo"));
}

pub(crate) async fn compaction_assigned_then_unassigned_records_nothing_for_an_unassigned_task<
    H: Harness,
>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            assigned("t1", "kermit"),
            EngineEvent::TaskAssigned {
                task_id: "t1".into(),
                assignee: None,
            },
        ],
    )
    .await;
    assert_eq!(event_types(&h.outbox().await), ["TaskCreated"]);
}

pub(crate) async fn compaction_attribute_changes_merge_into_one_update_with_the_latest_values<
    H: Harness,
>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            renamed("t1", "first"),
            EngineEvent::TaskAttributesChanged {
                task_id: "t1".into(),
                attributes: Box::new(TaskAttributes {
                    priority: Some(90),
                    ..TaskAttributes::default()
                }),
            },
            renamed("t1", "second"),
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(
        event_types(&outbox),
        ["TaskCreated", "TaskAttributesUpdated"]
    );
    let task = outbox[1].task();
    assert_eq!((task.name.as_str(), task.priority), ("second", 90));
}

pub(crate) async fn compaction_candidate_added_then_removed_records_nothing<H: Harness>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            candidate_user_added("t1", "piggy"),
            EngineEvent::CandidateUserRemoved {
                task_id: "t1".into(),
                user: "piggy".into(),
            },
        ],
    )
    .await;
    assert_eq!(event_types(&h.outbox().await), ["TaskCreated"]);
}

pub(crate) async fn compaction_candidate_changes_net_out_into_one_event<H: Harness>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            EngineEvent::CandidateGroupRemoved {
                task_id: "t1".into(),
                group: "muppets".into(),
            },
            candidate_user_added("t1", "piggy"),
            EngineEvent::CandidateGroupAdded {
                task_id: "t1".into(),
                group: "frogs".into(),
            },
            candidate_user_added("t1", "gonzo"),
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(
        event_types(&outbox),
        ["TaskCreated", "TaskCandidatesChanged"]
    );
    let task = outbox[1].task();
    assert_eq!(
        task.candidate_users,
        BTreeSet::from(["gonzo".into(), "piggy".into()])
    );
    assert_eq!(task.candidate_groups, BTreeSet::from(["frogs".into()]));
}

pub(crate) async fn compaction_changes_then_completion_record_each_kind_once_then_the_completion<
    H: Harness,
>() {
    let h = H::new().await;
    commit(&h, "b1", vec![created("t1")]).await;
    commit(
        &h,
        "b2",
        vec![
            renamed("t1", "a"),
            assigned("t1", "kermit"),
            candidate_user_added("t1", "piggy"),
            renamed("t1", "b"),
            EngineEvent::TaskCompleted {
                task_id: "t1".into(),
            },
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(
        event_types(&outbox),
        [
            "TaskCreated",
            "TaskAssigned",
            "TaskAttributesUpdated",
            "TaskCandidatesChanged",
            "TaskCompleted"
        ]
    );
    assert_eq!(versions_of(&outbox, "t1"), [1, 2, 3, 4, 5]);
    let last = outbox[4].task();
    assert_eq!(last.state, TaskState::Completed);
    assert_eq!(last.name, "b");
    assert_eq!(last.assignee.as_deref(), Some("kermit"));
}

pub(crate) async fn compaction_refuses_events_after_the_task_ended_and_creation_after_other_events<
    H: Harness,
>() {
    let h = H::new().await;
    let mut tx = h.begin().await;
    let error = H::flush(
        &mut tx,
        vec![
            created("t1"),
            EngineEvent::TaskCompleted {
                task_id: "t1".into(),
            },
            assigned("t1", "kermit"),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(
        error,
        CollectorError::Record(RecordError::TaskAlreadyEnded(ref id)) if id == "t1"
    ));
    let error = H::flush(&mut tx, vec![assigned("t2", "kermit"), created("t2")])
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        CollectorError::Record(RecordError::CreatedAfterOtherEvents(ref id)) if id == "t2"
    ));
    tx.commit().await.unwrap();
    assert!(h.outbox().await.is_empty());
}

pub(crate) async fn compaction_consecutive_data_entry_changes_become_one_with_all_protocol_notes<
    H: Harness,
>() {
    let h = H::new().await;
    let note = |message: &str| {
        Some(ProtocolNote {
            username: Some("kermit".into()),
            log_message: Some(message.into()),
            log_details: None,
        })
    };
    commit(
        &h,
        "b1",
        vec![
            EngineEvent::DataEntryChanged {
                entry_type: "io.shop.Order".into(),
                entry_id: "1".into(),
                content: order_content("Submitted"),
                note: note("submitted"),
            },
            EngineEvent::DataEntryChanged {
                entry_type: "io.shop.Order".into(),
                entry_id: "1".into(),
                content: order_content("Approved"),
                note: note("approved"),
            },
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(event_types(&outbox), ["DataEntryCreated"]);
    let entry = outbox[0].data_entry();
    assert_eq!(entry.state.state, "Approved");
    let messages: Vec<_> = entry
        .protocol
        .iter()
        .map(|p| p.log_message.clone().unwrap())
        .collect();
    assert_eq!(messages, ["submitted", "approved"]);
}

pub(crate) async fn compaction_data_entry_changed_then_deleted_keeps_both_in_order<H: Harness>() {
    let h = H::new().await;
    commit(
        &h,
        "b1",
        vec![
            EngineEvent::DataEntryChanged {
                entry_type: "io.shop.Order".into(),
                entry_id: "1".into(),
                content: order_content("Submitted"),
                note: None,
            },
            EngineEvent::DataEntryDeleted {
                entry_type: "io.shop.Order".into(),
                entry_id: "1".into(),
                note: None,
            },
        ],
    )
    .await;
    let outbox = h.outbox().await;
    assert_eq!(
        event_types(&outbox),
        ["DataEntryCreated", "DataEntryDeleted"]
    );
    assert_eq!(versions_of(&outbox, "io.shop.Order:1"), [1, 2]);
    assert!(outbox[1].data_entry().deleted);
}
