//! Schema history: every version reads data written with the earlier ones.
//!
//! Two mechanisms back this up:
//! - the Avro resolution rules, checked pairwise over each family's history;
//! - golden samples: `avro/<family>/samples/v<n>.avro` holds an event written with version n.
//!   Each is decoded with the current reader. When a new version is published, run this test
//!   once with `TASKPOOL_WRITE_SAMPLES=1` to record its sample, and commit the file.

use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use taskpool_schemas::compatibility::check_history;
use taskpool_schemas::*;

fn sample_path(family: SchemaFamily, version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("avro")
        .join(family.folder())
        .join("samples")
        .join(format!("v{version}.avro"))
}

fn sample_task_event() -> TaskEvent {
    TaskEvent {
        event_id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        event_type: "TaskCreated".into(),
        version: 1,
        occurred_at: Timestamp(1_700_000_000_000),
        task: Task {
            id: "task-1".into(),
            source_reference: SourceReference {
                process_instance_id: "pi-1".into(),
                execution_id: "ex-1".into(),
                process_definition_id: "order:1:abc".into(),
                process_definition_key: "order".into(),
                process_name: "Order approval".into(),
                application_name: "shop".into(),
                tenant_id: None,
            },
            task_definition_key: "approve".into(),
            name: "Approve order".into(),
            description: Some("Check the order".into()),
            form_key: Some("approve-form".into()),
            priority: 50,
            create_time: Timestamp(1_700_000_000_000),
            due_date: Some(Timestamp(1_700_086_400_000)),
            follow_up_date: None,
            assignee: Some("kermit".into()),
            owner: None,
            candidate_users: ["piggy".to_string()].into(),
            candidate_groups: ["muppets".to_string()].into(),
            business_key: Some("order-4711".into()),
            payload: Payload::from_value(serde_json::json!({"amount": 12.5, "items": [1, 2]}))
                .unwrap(),
            correlations: vec![DataEntryReference {
                entry_type: "io.shop.Order".into(),
                entry_id: "4711".into(),
            }],
            state: TaskState::Active,
            delete_reason: None,
        },
    }
}

fn sample_data_entry_event() -> DataEntryEvent {
    DataEntryEvent {
        event_id: uuid::Uuid::from_u128(0xfedc_ba98_7654_3210_fedc_ba98_7654_3210),
        event_type: "DataEntryCreated".into(),
        version: 1,
        occurred_at: Timestamp(1_700_000_000_000),
        data_entry: DataEntry {
            entry_type: "io.shop.Order".into(),
            entry_id: "4711".into(),
            type_name: "Order".into(),
            application_name: "shop".into(),
            name: "Order 4711".into(),
            description: None,
            state: DataEntryState {
                processing_type: ProcessingType::InProgress,
                state: "Submitted".into(),
            },
            payload: Payload::from_value(serde_json::json!({"amount": 12.5})).unwrap(),
            correlations: vec![],
            authorized_users: ["kermit".to_string()].into(),
            authorized_groups: ["muppets".to_string()].into(),
            form_key: None,
            protocol: vec![ProtocolEntry {
                time: Timestamp(1_700_000_000_000),
                processing_type: ProcessingType::InProgress,
                state: "Submitted".into(),
                username: Some("kermit".into()),
                log_message: Some("created".into()),
                log_details: None,
            }],
            deleted: false,
        },
    }
}

fn sample_task_command() -> TaskCommand {
    TaskCommand {
        command_id: uuid::Uuid::from_u128(0x0fed_cba9_8765_4321_0fed_cba9_8765_4321),
        action: TaskAction::Complete,
        task_id: "task-1".into(),
        application: "purchasing".into(),
        issued_by: "kermit".into(),
        issued_at: Timestamp(1_700_000_000_000),
        task_version: Some(3),
        assignee: None,
        follow_up_date: None,
        variables: Payload::from_value(serde_json::json!({"approved": true})).unwrap(),
    }
}

fn sample_command_outcome() -> CommandOutcome {
    CommandOutcome {
        command_id: uuid::Uuid::from_u128(0x0fed_cba9_8765_4321_0fed_cba9_8765_4321),
        task_id: "task-1".into(),
        application: "purchasing".into(),
        issued_by: "kermit".into(),
        result: OutcomeResult::Rejected,
        reason: Some("the task is assigned to piggy".into()),
        task_version: None,
        decided_at: Timestamp(1_700_000_000_050),
    }
}

fn sample_bytes(family: SchemaFamily) -> Vec<u8> {
    match family {
        SchemaFamily::TaskEvent => encode(&sample_task_event()).unwrap(),
        SchemaFamily::DataEntryEvent => encode(&sample_data_entry_event()).unwrap(),
        SchemaFamily::TaskCommand => encode(&sample_task_command()).unwrap(),
        SchemaFamily::CommandOutcome => encode(&sample_command_outcome()).unwrap(),
    }
}

/// Decodes a golden sample of `family` and checks a field or two of it.
fn check_sample(family: SchemaFamily, bytes: &[u8], path: &std::path::Path) {
    let fail = |e: DecodeError| -> ! { panic!("{}: {e}", path.display()) };
    match family {
        SchemaFamily::TaskEvent | SchemaFamily::DataEntryEvent => {
            match (family, decode(bytes).unwrap_or_else(|e| fail(e))) {
                (SchemaFamily::TaskEvent, DecodedEvent::Task(event)) => {
                    assert_eq!(event.task.id, "task-1");
                    assert_eq!(event.version, 1);
                }
                (SchemaFamily::DataEntryEvent, DecodedEvent::DataEntry(event)) => {
                    assert_eq!(event.data_entry.entry_id, "4711");
                    assert_eq!(event.version, 1);
                }
                (family, other) => panic!("{family:?} sample decoded as {other:?}"),
            }
        }
        SchemaFamily::TaskCommand => {
            let command: TaskCommand = decode_as(bytes).unwrap_or_else(|e| fail(e));
            assert_eq!(command.action, TaskAction::Complete);
            assert_eq!(command.variables.0["approved"], true);
            // Not an event: a reader of event topics refuses it with a reason.
            assert!(matches!(decode(bytes), Err(DecodeError::NotAnEvent { .. })));
        }
        SchemaFamily::CommandOutcome => {
            let outcome: CommandOutcome = decode_as(bytes).unwrap_or_else(|e| fail(e));
            assert_eq!(outcome.result, OutcomeResult::Rejected);
            assert_eq!(outcome.issued_by, "kermit");
        }
    }
}

#[test]
fn every_published_schema_version_reads_all_earlier_versions() {
    for family in SchemaFamily::ALL {
        let history: Vec<(u32, &Schema)> = registry()
            .versions_of(family)
            .iter()
            .map(|v| (v.version, &v.schema))
            .collect();
        check_history(&history).unwrap_or_else(|e| panic!("{}: {e}", family.folder()));
    }
}

#[test]
fn a_golden_sample_of_every_published_version_decodes_with_the_current_reader() {
    let write = std::env::var_os("TASKPOOL_WRITE_SAMPLES").is_some();
    for family in SchemaFamily::ALL {
        let current = registry().current(family).version;
        for version in registry().versions_of(family) {
            let path = sample_path(family, version.version);
            if write && version.version == current && !path.exists() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, sample_bytes(family)).unwrap();
            }
            let bytes = std::fs::read(&path).unwrap_or_else(|_| {
                panic!(
                    "missing golden sample {}; record it with TASKPOOL_WRITE_SAMPLES=1",
                    path.display()
                )
            });
            assert_eq!(
                codec::fingerprint(&bytes).unwrap(),
                version.fingerprint,
                "{} was not written with v{}",
                path.display(),
                version.version
            );
            check_sample(family, &bytes, &path);
        }
    }
}

#[test]
fn the_current_sample_matches_its_golden_bytes() {
    // If the Rust types drift from the current schema, this catches it before anything ships.
    for family in SchemaFamily::ALL {
        let path = sample_path(family, registry().current(family).version);
        let golden = std::fs::read(&path).unwrap();
        assert_eq!(sample_bytes(family), golden, "{}", path.display());
    }
}

#[test]
fn encoded_events_are_plain_avro_readable_without_the_rust_types() {
    let bytes = encode(&sample_task_event()).unwrap();
    let schema = &registry().current(SchemaFamily::TaskEvent).schema;
    let value = GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(&mut &bytes[10..])
        .unwrap();
    let Value::Record(fields) = value else {
        panic!("not a record: {value:?}")
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        field("eventType"),
        Some(Value::String("TaskCreated".into()))
    );
    assert_eq!(field("version"), Some(Value::Long(1)));
    assert_eq!(
        field("occurredAt"),
        Some(Value::TimestampMillis(1_700_000_000_000))
    );
}

// A synthetic history shows the checks have teeth: a compatible change passes and really
// reads old data; an incompatible one is refused.
const V1: &str = r#"{"type":"record","name":"E","fields":[{"name":"id","type":"string"}]}"#;
const V2_WITH_DEFAULT: &str = r#"{"type":"record","name":"E","fields":[
    {"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}]}"#;
const V2_WITHOUT_DEFAULT: &str = r#"{"type":"record","name":"E","fields":[
    {"name":"id","type":"string"},{"name":"note","type":"string"}]}"#;
const V2_CHANGED_TYPE: &str =
    r#"{"type":"record","name":"E","fields":[{"name":"id","type":"int"}]}"#;

#[test]
fn adding_a_field_with_a_default_is_compatible_and_reads_old_data() {
    let v1 = Schema::parse_str(V1).unwrap();
    let v2 = Schema::parse_str(V2_WITH_DEFAULT).unwrap();
    check_history(&[(1, &v1), (2, &v2)]).unwrap();

    let written = GenericDatumWriter::builder(&v1)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(vec![(
            "id".into(),
            Value::String("a".into()),
        )]))
        .unwrap();
    let read = GenericDatumReader::builder(&v1)
        .reader_schema(&v2)
        .build()
        .unwrap()
        .read_value(&mut written.as_slice())
        .unwrap();
    assert_eq!(
        read,
        Value::Record(vec![
            ("id".into(), Value::String("a".into())),
            ("note".into(), Value::Union(0, Box::new(Value::Null))),
        ])
    );
}

#[test]
fn adding_a_field_without_a_default_is_refused() {
    let v1 = Schema::parse_str(V1).unwrap();
    let v2 = Schema::parse_str(V2_WITHOUT_DEFAULT).unwrap();
    let error = check_history(&[(1, &v1), (2, &v2)]).unwrap_err();
    assert_eq!((error.writer, error.reader), (1, 2));
}

#[test]
fn changing_a_field_type_incompatibly_is_refused_even_against_an_older_version() {
    let v1 = Schema::parse_str(V1).unwrap();
    let v2 = Schema::parse_str(V2_WITH_DEFAULT).unwrap();
    let v3 = Schema::parse_str(V2_CHANGED_TYPE).unwrap();
    let error = check_history(&[(1, &v1), (2, &v2), (3, &v3)]).unwrap_err();
    assert_eq!(error.reader, 3);
}
