//! Unit tests of command execution.

use super::*;
use crate::domain::task::{NewTask, TaskCommand, TaskRejection};
use taskpool_schemas::{Payload, SourceReference, TaskState};

fn create(id: &str) -> Command {
    Command::task(
        id,
        TaskCommand::Create(Box::new(NewTask {
            source_reference: SourceReference {
                process_instance_id: "pi".into(),
                execution_id: "ex".into(),
                process_definition_id: "def:1".into(),
                process_definition_key: "def".into(),
                process_name: "Process".into(),
                application_name: "app".into(),
                tenant_id: None,
            },
            task_definition_key: "step".into(),
            name: "Step".into(),
            description: None,
            form_key: None,
            priority: 0,
            create_time: Timestamp(1),
            due_date: None,
            follow_up_date: None,
            assignee: None,
            owner: None,
            candidate_users: Default::default(),
            candidate_groups: Default::default(),
            business_key: None,
            payload: Payload::default(),
            correlations: vec![],
        })),
    )
}

fn ids() -> impl FnMut() -> Uuid {
    let mut n = 0u128;
    move || {
        n += 1;
        Uuid::from_u128(n)
    }
}

#[test]
fn several_commands_on_one_aggregate_get_consecutive_versions_and_one_state_write() {
    let commands = [
        create("a"),
        Command::task(
            "a",
            TaskCommand::Assign {
                assignee: "kermit".into(),
            },
        ),
        Command::task("a", TaskCommand::Complete),
    ];
    let (batch, recorded) = plan(vec![], &commands, &EventContext::now(), ids()).unwrap();
    let versions: Vec<i64> = recorded.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(batch.created.len(), 1);
    assert_eq!(batch.created[0].version, 3);
    assert_eq!(
        batch.created[0].state, batch.events[2].payload,
        "state is the latest event"
    );
    let DecodedEvent::Task(latest) = decode(&batch.created[0].state).unwrap() else {
        panic!("not a task event")
    };
    let state = latest.task;
    assert_eq!(state.state, TaskState::Completed);
    assert_eq!(state.assignee.as_deref(), Some("kermit"));
    assert!(batch.changed.is_empty());
}

#[test]
fn a_stored_aggregate_continues_from_its_version() {
    let (created, _) = plan(vec![], &[create("a")], &EventContext::now(), ids()).unwrap();
    let stored = StoredAggregate {
        key: created.created[0].key.clone(),
        version: 7,
        state: created.created[0].state.clone(),
    };
    let (batch, recorded) = plan(
        vec![stored],
        &[Command::task("a", TaskCommand::Complete)],
        &EventContext::now(),
        ids(),
    )
    .unwrap();
    assert_eq!(recorded[0].version, 8);
    assert_eq!(batch.changed[0].expected_version, 7);
    assert_eq!(batch.changed[0].version, 8);
}

#[test]
fn one_rejected_command_rejects_the_whole_batch() {
    let commands = [create("a"), Command::task("b", TaskCommand::Complete)];
    let error = plan(vec![], &commands, &EventContext::now(), ids()).unwrap_err();
    match error {
        CommandError::Rejected {
            index, rejection, ..
        } => {
            assert_eq!(index, 1);
            assert_eq!(
                rejection,
                Rejection::Task(TaskRejection::NotFound("b".into()))
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_command_that_changes_nothing_writes_nothing() {
    let (created, _) = plan(vec![], &[create("a")], &EventContext::now(), ids()).unwrap();
    let stored = StoredAggregate {
        key: created.created[0].key.clone(),
        version: 1,
        state: created.created[0].state.clone(),
    };
    let (batch, recorded) = plan(
        vec![stored],
        &[Command::task("a", TaskCommand::Unassign)],
        &EventContext::now(),
        ids(),
    )
    .unwrap();
    assert!(recorded.is_empty());
    assert!(batch.is_empty());
}

#[test]
fn outbox_records_carry_the_encoded_event_and_trace_context() {
    let context = EventContext::now();
    let (batch, _) = plan(vec![], &[create("a")], &context, ids()).unwrap();
    let record = &batch.events[0];
    let decoded = taskpool_schemas::codec::decode_as::<TaskEvent>(&record.payload).unwrap();
    assert_eq!(decoded.event_id, record.event_id);
    assert_eq!(decoded.event_type, "TaskCreated");
    assert_eq!(decoded.task.id, "a");
    let headers: serde_json::Value = serde_json::from_str(&record.headers).unwrap();
    assert_eq!(headers["traceparent"], context.traceparent.as_str());
}

#[test]
fn unreadable_stored_state_is_a_typed_error() {
    let stored = StoredAggregate {
        key: Command::task("a", TaskCommand::Complete).key(),
        version: 1,
        state: b"not an event".to_vec(),
    };
    let error = plan(
        vec![stored],
        &[Command::task("a", TaskCommand::Complete)],
        &EventContext::now(),
        ids(),
    )
    .unwrap_err();
    assert!(matches!(
        error,
        CommandError::Store(StoreError::CorruptState { .. })
    ));
}
