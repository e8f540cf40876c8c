//! Domain values that tests build again and again.

use taskpool_core::domain::task::NewTask;
use taskpool_schemas::{Payload, SourceReference, Timestamp};

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
