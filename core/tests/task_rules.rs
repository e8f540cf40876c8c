//! Given/when/then tests of the task rules: every command, every rejection. No database.

use std::collections::BTreeSet;

use taskpool_core::domain::task::*;
use taskpool_schemas::{DataEntryReference, Payload, SourceReference, Task, TaskState, Timestamp};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn new_task() -> NewTask {
    NewTask {
        source_reference: SourceReference {
            process_instance_id: "pi-1".into(),
            execution_id: "ex-1".into(),
            process_definition_id: "order:1".into(),
            process_definition_key: "order".into(),
            process_name: "Order approval".into(),
            application_name: "shop".into(),
            tenant_id: None,
        },
        task_definition_key: "approve".into(),
        name: "Approve order".into(),
        description: None,
        form_key: None,
        priority: 50,
        create_time: Timestamp(1_000),
        due_date: None,
        follow_up_date: None,
        assignee: None,
        owner: None,
        candidate_users: set(&["piggy"]),
        candidate_groups: set(&["muppets"]),
        business_key: Some("order-1".into()),
        payload: Payload::default(),
        correlations: vec![],
    }
}

/// The scenario: the task as it stands before the command (none, or after some commands).
struct Given {
    task: Option<Task>,
}

fn given_no_task() -> Given {
    Given { task: None }
}

fn given_active_task() -> Given {
    given_no_task().and(TaskCommand::Create(Box::new(new_task())))
}

fn given_task_in_state(state: TaskState) -> Given {
    let given = given_active_task();
    match state {
        TaskState::Active => given,
        TaskState::Completed => given.and(TaskCommand::Complete),
        TaskState::Deleted => given.and(TaskCommand::Delete {
            reason: "cancelled".into(),
        }),
    }
}

impl Given {
    fn and(self, command: TaskCommand) -> Given {
        let change = decide(self.task.as_ref(), "t1", &command)
            .expect("given command accepted")
            .expect("given command changes the task");
        Given {
            task: Some(change.task),
        }
    }

    fn when(self, command: TaskCommand) -> Then {
        let result = decide(self.task.as_ref(), "t1", &command);
        Then {
            before: self.task,
            result,
        }
    }
}

struct Then {
    before: Option<Task>,
    result: Result<Option<TaskChange>, TaskRejection>,
}

impl Then {
    /// Expects the event type; returns the state before and after for further checks.
    fn then_event(self, expected: TaskEventType) -> (Option<Task>, Task) {
        match self.result {
            Ok(Some(change)) => {
                assert_eq!(change.event_type, expected);
                (self.before, change.task)
            }
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }

    fn then_no_event(self) {
        assert_eq!(self.result, Ok(None));
    }

    fn then_rejected(self, expected: TaskRejection) {
        assert_eq!(self.result, Err(expected));
    }
}

#[test]
fn create_makes_an_active_task_with_the_given_fields() {
    let (_, task) = given_no_task()
        .when(TaskCommand::Create(Box::new(new_task())))
        .then_event(TaskEventType::Created);
    assert_eq!(task.id, "t1");
    assert_eq!(task.state, TaskState::Active);
    assert_eq!(task.name, "Approve order");
    assert_eq!(task.candidate_groups, set(&["muppets"]));
    assert_eq!(task.delete_reason, None);
}

#[test]
fn create_rejects_an_existing_task() {
    given_active_task()
        .when(TaskCommand::Create(Box::new(new_task())))
        .then_rejected(TaskRejection::AlreadyExists("t1".into()));
}

#[test]
fn create_rejects_an_empty_task_id() {
    let result = decide(None, " ", &TaskCommand::Create(Box::new(new_task())));
    assert_eq!(result, Err(TaskRejection::EmptyField("task id")));
}

#[test]
fn create_rejects_each_empty_required_field() {
    type Blank = fn(&mut NewTask);
    let cases: [(&str, Blank); 7] = [
        ("name", |t| t.name.clear()),
        ("task definition key", |t| t.task_definition_key.clear()),
        ("process instance id", |t| {
            t.source_reference.process_instance_id.clear()
        }),
        ("process definition key", |t| {
            t.source_reference.process_definition_key.clear()
        }),
        ("application name", |t| {
            t.source_reference.application_name.clear()
        }),
        ("assignee", |t| t.assignee = Some(String::new())),
        ("candidate user", |t| {
            t.candidate_users.insert(String::new());
        }),
    ];
    for (field, blank) in cases {
        let mut task = new_task();
        blank(&mut task);
        given_no_task()
            .when(TaskCommand::Create(Box::new(task)))
            .then_rejected(TaskRejection::EmptyField(field));
    }
    let mut task = new_task();
    task.candidate_groups.insert(" ".into());
    given_no_task()
        .when(TaskCommand::Create(Box::new(task)))
        .then_rejected(TaskRejection::EmptyField("candidate group"));
}

#[test]
fn every_change_rejects_a_task_that_does_not_exist() {
    for command in changes() {
        given_no_task()
            .when(command)
            .then_rejected(TaskRejection::NotFound("t1".into()));
    }
}

#[test]
fn every_change_rejects_a_completed_or_deleted_task() {
    for state in [TaskState::Completed, TaskState::Deleted] {
        for command in changes() {
            given_task_in_state(state)
                .when(command)
                .then_rejected(TaskRejection::NotActive {
                    id: "t1".into(),
                    state,
                });
        }
    }
}

fn changes() -> Vec<TaskCommand> {
    vec![
        TaskCommand::Assign {
            assignee: "kermit".into(),
        },
        TaskCommand::Unassign,
        TaskCommand::UpdateAttributes(Box::new(TaskAttributes {
            name: Some("x".into()),
            ..TaskAttributes::default()
        })),
        TaskCommand::ChangeCandidates(CandidateChanges {
            add_users: set(&["gonzo"]),
            ..CandidateChanges::default()
        }),
        TaskCommand::ChangeDeadlines {
            due_date: Some(Timestamp(5)),
            follow_up_date: None,
        },
        TaskCommand::ChangePriority { priority: 1 },
        TaskCommand::Complete,
        TaskCommand::Delete {
            reason: "gone".into(),
        },
    ]
}

#[test]
fn assign_sets_the_assignee() {
    let (_, task) = given_active_task()
        .when(TaskCommand::Assign {
            assignee: "kermit".into(),
        })
        .then_event(TaskEventType::Assigned);
    assert_eq!(task.assignee.as_deref(), Some("kermit"));
}

#[test]
fn assign_to_the_current_assignee_changes_nothing() {
    given_active_task()
        .and(TaskCommand::Assign {
            assignee: "kermit".into(),
        })
        .when(TaskCommand::Assign {
            assignee: "kermit".into(),
        })
        .then_no_event();
}

#[test]
fn assign_rejects_an_empty_assignee() {
    given_active_task()
        .when(TaskCommand::Assign {
            assignee: "".into(),
        })
        .then_rejected(TaskRejection::EmptyField("assignee"));
}

#[test]
fn unassign_clears_the_assignee() {
    let (_, task) = given_active_task()
        .and(TaskCommand::Assign {
            assignee: "kermit".into(),
        })
        .when(TaskCommand::Unassign)
        .then_event(TaskEventType::Unassigned);
    assert_eq!(task.assignee, None);
}

#[test]
fn unassign_of_an_unassigned_task_changes_nothing() {
    given_active_task()
        .when(TaskCommand::Unassign)
        .then_no_event();
}

#[test]
fn update_attributes_changes_only_the_given_fields() {
    let payload = Payload::from_value(serde_json::json!({"amount": 3})).unwrap();
    let correlations = vec![DataEntryReference {
        entry_type: "io.shop.Order".into(),
        entry_id: "1".into(),
    }];
    let (before, task) = given_active_task()
        .when(TaskCommand::UpdateAttributes(Box::new(TaskAttributes {
            name: Some("Approve big order".into()),
            description: Some(Some("big".into())),
            business_key: Some(None),
            payload: Some(payload.clone()),
            correlations: Some(correlations.clone()),
            ..TaskAttributes::default()
        })))
        .then_event(TaskEventType::AttributesUpdated);
    let before = before.unwrap();
    assert_eq!(task.name, "Approve big order");
    assert_eq!(task.description.as_deref(), Some("big"));
    assert_eq!(task.business_key, None);
    assert_eq!(task.payload, payload);
    assert_eq!(task.correlations, correlations);
    assert_eq!(task.priority, before.priority);
    assert_eq!(task.candidate_users, before.candidate_users);
}

#[test]
fn update_attributes_rejects_an_empty_name() {
    given_active_task()
        .when(TaskCommand::UpdateAttributes(Box::new(TaskAttributes {
            name: Some("".into()),
            ..TaskAttributes::default()
        })))
        .then_rejected(TaskRejection::EmptyField("name"));
}

#[test]
fn update_attributes_to_the_same_values_changes_nothing() {
    given_active_task()
        .when(TaskCommand::UpdateAttributes(Box::new(TaskAttributes {
            name: Some("Approve order".into()),
            priority: Some(50),
            ..TaskAttributes::default()
        })))
        .then_no_event();
}

#[test]
fn change_candidates_adds_and_removes_users_and_groups() {
    let (_, task) = given_active_task()
        .when(TaskCommand::ChangeCandidates(CandidateChanges {
            add_users: set(&["gonzo"]),
            remove_users: set(&["piggy"]),
            add_groups: set(&["frogs"]),
            remove_groups: set(&["muppets"]),
        }))
        .then_event(TaskEventType::CandidatesChanged);
    assert_eq!(task.candidate_users, set(&["gonzo"]));
    assert_eq!(task.candidate_groups, set(&["frogs"]));
}

#[test]
fn change_candidates_that_are_already_so_changes_nothing() {
    given_active_task()
        .when(TaskCommand::ChangeCandidates(CandidateChanges {
            add_users: set(&["piggy"]),
            remove_groups: set(&["nobody"]),
            ..CandidateChanges::default()
        }))
        .then_no_event();
}

#[test]
fn change_candidates_rejects_adding_and_removing_the_same_user() {
    given_active_task()
        .when(TaskCommand::ChangeCandidates(CandidateChanges {
            add_users: set(&["gonzo"]),
            remove_users: set(&["gonzo"]),
            ..CandidateChanges::default()
        }))
        .then_rejected(TaskRejection::ContradictoryCandidates("user gonzo".into()));
}

#[test]
fn change_candidates_rejects_adding_and_removing_the_same_group() {
    given_active_task()
        .when(TaskCommand::ChangeCandidates(CandidateChanges {
            add_groups: set(&["frogs"]),
            remove_groups: set(&["frogs"]),
            ..CandidateChanges::default()
        }))
        .then_rejected(TaskRejection::ContradictoryCandidates("group frogs".into()));
}

#[test]
fn change_candidates_rejects_empty_names() {
    given_active_task()
        .when(TaskCommand::ChangeCandidates(CandidateChanges {
            remove_groups: set(&[""]),
            ..CandidateChanges::default()
        }))
        .then_rejected(TaskRejection::EmptyField("candidate group"));
}

#[test]
fn change_deadlines_sets_due_and_follow_up_dates() {
    let (_, task) = given_active_task()
        .when(TaskCommand::ChangeDeadlines {
            due_date: Some(Timestamp(10)),
            follow_up_date: Some(Timestamp(5)),
        })
        .then_event(TaskEventType::DeadlinesChanged);
    assert_eq!(task.due_date, Some(Timestamp(10)));
    assert_eq!(task.follow_up_date, Some(Timestamp(5)));
}

#[test]
fn change_priority_sets_the_priority() {
    let (_, task) = given_active_task()
        .when(TaskCommand::ChangePriority { priority: 80 })
        .then_event(TaskEventType::PriorityChanged);
    assert_eq!(task.priority, 80);
}

#[test]
fn complete_ends_the_task_and_keeps_its_data() {
    let (before, task) = given_active_task()
        .when(TaskCommand::Complete)
        .then_event(TaskEventType::Completed);
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.name, before.unwrap().name);
}

#[test]
fn delete_ends_the_task_with_its_reason() {
    let (_, task) = given_active_task()
        .when(TaskCommand::Delete {
            reason: "order cancelled".into(),
        })
        .then_event(TaskEventType::Deleted);
    assert_eq!(task.state, TaskState::Deleted);
    assert_eq!(task.delete_reason.as_deref(), Some("order cancelled"));
}

#[test]
fn delete_rejects_an_empty_reason() {
    given_active_task()
        .when(TaskCommand::Delete { reason: " ".into() })
        .then_rejected(TaskRejection::EmptyField("delete reason"));
}

#[test]
fn merged_attributes_keep_the_latest_value_of_each_field() {
    let mut merged = TaskAttributes {
        name: Some("a".into()),
        priority: Some(1),
        ..TaskAttributes::default()
    };
    merged.merge(TaskAttributes {
        name: Some("b".into()),
        due_date: Some(None),
        ..TaskAttributes::default()
    });
    assert_eq!(merged.name.as_deref(), Some("b"));
    assert_eq!(merged.priority, Some(1));
    assert_eq!(merged.due_date, Some(None));
    assert!(!merged.is_empty());
    assert!(TaskAttributes::default().is_empty());
}
