//! Given/when/then tests of the data-entry rules: every command, every rejection. No database.

use taskpool_core::domain::data_entry::*;
use taskpool_schemas::{DataEntry, DataEntryState, Payload, ProcessingType, Timestamp};

const NOW: Timestamp = Timestamp(42);

fn content(state: &str) -> Box<DataEntryContent> {
    Box::new(DataEntryContent {
        type_name: "Order".into(),
        application_name: "shop".into(),
        name: "Order 1".into(),
        description: None,
        state: DataEntryState {
            processing_type: ProcessingType::InProgress,
            state: state.into(),
        },
        payload: Payload::default(),
        correlations: vec![],
        authorized_users: ["kermit".to_string()].into(),
        authorized_groups: ["muppets".to_string()].into(),
        form_key: None,
    })
}

fn note(message: &str) -> ProtocolNote {
    ProtocolNote {
        username: Some("kermit".into()),
        log_message: Some(message.into()),
        log_details: None,
    }
}

struct Given {
    entry: Option<DataEntry>,
}

fn given_no_entry() -> Given {
    Given { entry: None }
}

fn given_entry() -> Given {
    given_no_entry().and(DataEntryCommand::CreateOrUpdate {
        content: content("Submitted"),
        notes: vec![note("created")],
    })
}

fn given_deleted_entry() -> Given {
    given_entry().and(DataEntryCommand::Delete { note: None })
}

impl Given {
    fn and(self, command: DataEntryCommand) -> Given {
        let change = decide(self.entry.as_ref(), "io.shop.Order", "1", &command, NOW)
            .expect("given command accepted")
            .expect("given command changes the entry");
        Given {
            entry: Some(change.data_entry),
        }
    }

    fn when(
        self,
        command: DataEntryCommand,
    ) -> Result<Option<DataEntryChange>, DataEntryRejection> {
        decide(self.entry.as_ref(), "io.shop.Order", "1", &command, NOW)
    }
}

fn event(result: Result<Option<DataEntryChange>, DataEntryRejection>) -> DataEntryChange {
    result.expect("accepted").expect("an event")
}

#[test]
fn create_or_update_creates_a_missing_entry_with_a_protocol_entry() {
    let change = event(given_no_entry().when(DataEntryCommand::CreateOrUpdate {
        content: content("Submitted"),
        notes: vec![note("created")],
    }));
    assert_eq!(change.event_type, DataEntryEventType::Created);
    let entry = change.data_entry;
    assert_eq!(
        (entry.entry_type.as_str(), entry.entry_id.as_str()),
        ("io.shop.Order", "1")
    );
    assert_eq!(entry.name, "Order 1");
    assert!(!entry.deleted);
    assert_eq!(entry.protocol.len(), 1);
    assert_eq!(entry.protocol[0].time, NOW);
    assert_eq!(entry.protocol[0].state, "Submitted");
    assert_eq!(entry.protocol[0].log_message.as_deref(), Some("created"));
}

#[test]
fn create_or_update_updates_an_existing_entry_and_appends_to_its_protocol() {
    let change = event(given_entry().when(DataEntryCommand::CreateOrUpdate {
        content: content("Approved"),
        notes: vec![note("approved")],
    }));
    assert_eq!(change.event_type, DataEntryEventType::Updated);
    assert_eq!(change.data_entry.state.state, "Approved");
    let messages: Vec<_> = change
        .data_entry
        .protocol
        .iter()
        .map(|p| p.log_message.as_deref().unwrap())
        .collect();
    assert_eq!(messages, ["created", "approved"]);
}

#[test]
fn create_or_update_with_identical_content_and_no_note_changes_nothing() {
    assert_eq!(
        given_entry().when(DataEntryCommand::CreateOrUpdate {
            content: content("Submitted"),
            notes: vec![],
        }),
        Ok(None)
    );
}

#[test]
fn create_or_update_recreates_a_deleted_entry_keeping_its_protocol() {
    let change = event(
        given_deleted_entry().when(DataEntryCommand::CreateOrUpdate {
            content: content("Resubmitted"),
            notes: vec![note("again")],
        }),
    );
    assert_eq!(change.event_type, DataEntryEventType::Created);
    assert!(!change.data_entry.deleted);
    assert_eq!(change.data_entry.protocol.len(), 2);
}

#[test]
fn update_changes_an_existing_entry() {
    let change = event(given_entry().when(DataEntryCommand::Update {
        content: content("Approved"),
        notes: vec![],
    }));
    assert_eq!(change.event_type, DataEntryEventType::Updated);
    assert_eq!(change.data_entry.state.state, "Approved");
}

#[test]
fn update_rejects_a_missing_entry() {
    assert_eq!(
        given_no_entry().when(DataEntryCommand::Update {
            content: content("Approved"),
            notes: vec![],
        }),
        Err(DataEntryRejection::NotFound("io.shop.Order:1".into()))
    );
}

#[test]
fn update_rejects_a_deleted_entry() {
    assert_eq!(
        given_deleted_entry().when(DataEntryCommand::Update {
            content: content("Approved"),
            notes: vec![],
        }),
        Err(DataEntryRejection::Deleted("io.shop.Order:1".into()))
    );
}

#[test]
fn delete_marks_the_entry_deleted_with_a_protocol_entry() {
    let change = event(given_entry().when(DataEntryCommand::Delete {
        note: Some(note("withdrawn")),
    }));
    assert_eq!(change.event_type, DataEntryEventType::Deleted);
    assert!(change.data_entry.deleted);
    assert_eq!(
        change
            .data_entry
            .protocol
            .last()
            .unwrap()
            .log_message
            .as_deref(),
        Some("withdrawn")
    );
}

#[test]
fn delete_rejects_a_missing_entry() {
    assert_eq!(
        given_no_entry().when(DataEntryCommand::Delete { note: None }),
        Err(DataEntryRejection::NotFound("io.shop.Order:1".into()))
    );
}

#[test]
fn delete_rejects_an_already_deleted_entry() {
    assert_eq!(
        given_deleted_entry().when(DataEntryCommand::Delete { note: None }),
        Err(DataEntryRejection::Deleted("io.shop.Order:1".into()))
    );
}

#[test]
fn commands_reject_empty_or_ambiguous_identities() {
    let command = DataEntryCommand::CreateOrUpdate {
        content: content("Submitted"),
        notes: vec![],
    };
    assert_eq!(
        decide(None, "", "1", &command, NOW),
        Err(DataEntryRejection::EmptyField("entry type"))
    );
    assert_eq!(
        decide(None, "io.shop.Order", " ", &command, NOW),
        Err(DataEntryRejection::EmptyField("entry id"))
    );
    assert_eq!(
        decide(None, "shop:Order", "1", &command, NOW),
        Err(DataEntryRejection::InvalidEntryType("shop:Order".into()))
    );
}

#[test]
fn create_or_update_and_update_reject_each_empty_required_field() {
    type Blank = fn(&mut DataEntryContent);
    let cases: [(&str, Blank); 5] = [
        ("type", |c| c.type_name.clear()),
        ("application name", |c| c.application_name.clear()),
        ("name", |c| c.name.clear()),
        ("authorized user", |c| {
            c.authorized_users.insert(String::new());
        }),
        ("authorized group", |c| {
            c.authorized_groups.insert(" ".into());
        }),
    ];
    for (field, blank) in cases {
        let mut bad = content("Submitted");
        blank(&mut bad);
        assert_eq!(
            given_no_entry().when(DataEntryCommand::CreateOrUpdate {
                content: bad.clone(),
                notes: vec![],
            }),
            Err(DataEntryRejection::EmptyField(field))
        );
        assert_eq!(
            given_entry().when(DataEntryCommand::Update {
                content: bad,
                notes: vec![],
            }),
            Err(DataEntryRejection::EmptyField(field))
        );
    }
}

#[test]
fn aggregate_id_joins_type_and_id() {
    assert_eq!(aggregate_id("io.shop.Order", "1:2"), "io.shop.Order:1:2");
}
