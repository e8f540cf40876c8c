//! The embedded view's memory over time: what leaves, and what is remembered of it.
use super::*;
use taskpool_schemas::{
    DataEntry, DataEntryEvent, DataEntryState, Payload, ProcessingType, TaskState, Timestamp,
};
use taskpool_testkit::fixtures::task_event;

fn task(id: &str, version: i64, state: TaskState) -> TaskDocument {
    TaskDocument::from_event(&task_event(id, version, None, &["muppets"], state))
}

#[test]
fn a_finished_task_leaves_memory_on_the_feed_and_its_duplicates_change_nothing() {
    let view = EmbeddedView::new();
    let mut feed = view.feed.subscribe();
    view.write_tasks(&[&task("t", 1, TaskState::Active)]);
    assert_eq!(view.task_count(), 1);
    let completed = task("t", 2, TaskState::Completed);
    assert_eq!(view.write_tasks(&[&completed]).stale, 0);
    assert_eq!(view.task_count(), 0, "a finished task is not held");
    let mut versions = Vec::new();
    while let Ok(Change::Task(task)) = feed.try_recv() {
        versions.push((task.version, task.state.clone()));
    }
    assert_eq!(versions, [(1, "ACTIVE".into()), (2, "COMPLETED".into())]);
    for late in [
        task("t", 2, TaskState::Completed),
        task("t", 1, TaskState::Active),
    ] {
        assert_eq!(
            view.write_tasks(&[&late]).stale,
            1,
            "version {}",
            late.version
        );
    }
    assert_eq!(view.task_count(), 0);
    assert!(feed.try_recv().is_err(), "nothing more on the feed");
}

fn entry(id: &str, version: i64, processing_type: ProcessingType) -> DataEntryDocument {
    DataEntryDocument::from_event(&DataEntryEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "DataEntryUpdated".into(),
        version,
        occurred_at: Timestamp::now(),
        data_entry: DataEntry {
            entry_type: "request".into(),
            entry_id: id.into(),
            type_name: "Purchase request".into(),
            application_name: "shop".into(),
            name: format!("Request {id}"),
            description: None,
            state: DataEntryState {
                processing_type,
                state: "any".into(),
            },
            payload: Payload::default(),
            correlations: vec![],
            authorized_users: ["kermit".to_string()].into(),
            authorized_groups: Default::default(),
            form_key: None,
            protocol: vec![],
            deleted: false,
        },
    })
}

#[test]
fn a_finished_data_entry_leaves_memory_and_its_duplicates_change_nothing() {
    let view = EmbeddedView::new();
    view.write_entries(&[&entry("r1", 1, ProcessingType::InProgress)]);
    view.write_entries(&[&entry("r2", 1, ProcessingType::InProgress)]);
    assert_eq!(view.data_entry_count(), 2);
    for (version, finish) in [
        (2, ProcessingType::Completed),
        (3, ProcessingType::Cancelled),
    ] {
        let id = if version == 2 { "r1" } else { "r2" };
        assert_eq!(view.write_entries(&[&entry(id, version, finish)]).stale, 0);
    }
    assert_eq!(view.data_entry_count(), 0, "finished entries are not held");
    let late = entry("r1", 1, ProcessingType::InProgress);
    assert_eq!(view.write_entries(&[&late]).stale, 1);
    assert_eq!(view.data_entry_count(), 0);
    // Taken up again (a newer version in progress), it is held again.
    view.write_entries(&[&entry("r1", 4, ProcessingType::InProgress)]);
    assert_eq!(view.data_entry_count(), 1);
}

#[test]
fn the_versions_kept_of_finished_tasks_are_bounded() {
    let view = EmbeddedView::new();
    let count = FINISHED_REMEMBERED + 10;
    for n in 0..count {
        view.write_tasks(&[&task(&format!("t{n}"), 2, TaskState::Deleted)]);
    }
    let documents = view.read();
    assert_eq!(documents.finished_tasks.versions.len(), FINISHED_REMEMBERED);
    assert_eq!(documents.finished_tasks.order.len(), FINISHED_REMEMBERED);
    assert_eq!(
        documents.finished_tasks.version("t0"),
        None,
        "the oldest is forgotten"
    );
    assert_eq!(
        documents.finished_tasks.version(&format!("t{}", count - 1)),
        Some(2)
    );
}
