//! Domain values that tests build again and again.

use taskpool_core::domain::task::NewTask;
use taskpool_schemas::{Payload, SourceReference, TaskEvent, TaskState, Timestamp};

/// A task to create, named `name`, offered to the group `muppets`.
pub fn new_task(name: &str) -> Box<NewTask> {
    Box::new(NewTask {
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
        name: name.into(),
        description: None,
        form_key: None,
        priority: 50,
        create_time: Timestamp(1_000),
        due_date: None,
        follow_up_date: None,
        assignee: None,
        owner: None,
        candidate_users: Default::default(),
        candidate_groups: ["muppets".to_string()].into(),
        business_key: None,
        payload: Payload::default(),
        correlations: vec![],
    })
}

/// Task `id`'s event at `version` as the topics carry it, named `Task <id>` with business key
/// `bk-<id>`: its `assignee` and candidate `groups` decide who sees it.
pub fn task_event(
    id: &str,
    version: i64,
    assignee: Option<&str>,
    groups: &[&str],
    state: TaskState,
) -> TaskEvent {
    let mut new = new_task(&format!("Task {id}"));
    new.assignee = assignee.map(str::to_string);
    new.candidate_groups = groups.iter().map(|group| group.to_string()).collect();
    new.business_key = Some(format!("bk-{id}"));
    let mut task = new.to_active_task(id);
    task.state = state;
    TaskEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "TaskUpdated".into(),
        version,
        occurred_at: Timestamp::now(),
        task,
    }
}
