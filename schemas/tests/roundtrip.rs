//! Property: any valid task or data entry survives Avro encode/decode unchanged.

use std::collections::BTreeSet;

use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value};
use taskpool_schemas::*;
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including the empty string and characters that need escaping in JSON.
    any::<String>()
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:_./-]{1,40}"
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((text(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    vec((text(), json_value()), 0..5).prop_map(|entries| Payload(entries.into_iter().collect()))
}

fn principals() -> impl Strategy<Value = BTreeSet<String>> {
    btree_set(id(), 0..5)
}

fn references() -> impl Strategy<Value = Vec<DataEntryReference>> {
    vec(
        (id(), id()).prop_map(|(entry_type, entry_id)| DataEntryReference {
            entry_type,
            entry_id,
        }),
        0..4,
    )
}

fn source_reference() -> impl Strategy<Value = SourceReference> {
    (id(), id(), id(), id(), text(), id(), option::of(id())).prop_map(
        |(pi, ex, pd, pk, name, app, tenant)| SourceReference {
            process_instance_id: pi,
            execution_id: ex,
            process_definition_id: pd,
            process_definition_key: pk,
            process_name: name,
            application_name: app,
            tenant_id: tenant,
        },
    )
}

fn task() -> impl Strategy<Value = Task> {
    let identity = (
        id(),
        source_reference(),
        id(),
        text(),
        option::of(text()),
        option::of(id()),
    );
    let scheduling = (
        any::<i32>(),
        timestamp(),
        option::of(timestamp()),
        option::of(timestamp()),
    );
    let people = (
        option::of(id()),
        option::of(id()),
        principals(),
        principals(),
    );
    let data = (
        option::of(text()),
        payload(),
        references(),
        prop_oneof![
            Just(TaskState::Active),
            Just(TaskState::Completed),
            Just(TaskState::Deleted)
        ],
        option::of(text()),
    );
    (identity, scheduling, people, data).prop_map(
        |(
            (id, source_reference, task_definition_key, name, description, form_key),
            (priority, create_time, due_date, follow_up_date),
            (assignee, owner, candidate_users, candidate_groups),
            (business_key, payload, correlations, state, delete_reason),
        )| Task {
            id,
            source_reference,
            task_definition_key,
            name,
            description,
            form_key,
            priority,
            create_time,
            due_date,
            follow_up_date,
            assignee,
            owner,
            candidate_users,
            candidate_groups,
            business_key,
            payload,
            correlations,
            state,
            delete_reason,
        },
    )
}

fn processing_type() -> impl Strategy<Value = ProcessingType> {
    proptest::sample::select(ProcessingType::ALL.to_vec())
}

fn protocol_entry() -> impl Strategy<Value = ProtocolEntry> {
    (
        timestamp(),
        processing_type(),
        text(),
        option::of(id()),
        option::of(text()),
        option::of(text()),
    )
        .prop_map(
            |(time, processing_type, state, username, log_message, log_details)| ProtocolEntry {
                time,
                processing_type,
                state,
                username,
                log_message,
                log_details,
            },
        )
}

fn data_entry() -> impl Strategy<Value = DataEntry> {
    let identity = (id(), id(), text(), id(), text(), option::of(text()));
    let content = (
        (processing_type(), text()).prop_map(|(processing_type, state)| DataEntryState {
            processing_type,
            state,
        }),
        payload(),
        references(),
        principals(),
        principals(),
    );
    let rest = (option::of(id()), vec(protocol_entry(), 0..4), any::<bool>());
    (identity, content, rest).prop_map(
        |(
            (entry_type, entry_id, type_name, application_name, name, description),
            (state, payload, correlations, authorized_users, authorized_groups),
            (form_key, protocol, deleted),
        )| DataEntry {
            entry_type,
            entry_id,
            type_name,
            application_name,
            name,
            description,
            state,
            payload,
            correlations,
            authorized_users,
            authorized_groups,
            form_key,
            protocol,
            deleted,
        },
    )
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_task_event_survives_encode_and_decode(
        event_id in uuid(), version in 1i64.., occurred_at in timestamp(), task in task(),
        event_type in "Task[A-Za-z]{1,20}",
    ) {
        let event = TaskEvent { event_id, event_type, version, occurred_at, task };
        let bytes = encode(&event).unwrap();
        prop_assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        prop_assert_eq!(decode(&bytes).unwrap(), DecodedEvent::Task(event));
    }

    #[test]
    fn any_data_entry_event_survives_encode_and_decode(
        event_id in uuid(), version in 1i64.., occurred_at in timestamp(), data_entry in data_entry(),
        event_type in "DataEntry[A-Za-z]{1,20}",
    ) {
        let event = DataEntryEvent { event_id, event_type, version, occurred_at, data_entry };
        let bytes = encode(&event).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), DecodedEvent::DataEntry(event));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
    }
}

proptest! {
    #[test]
    fn a_known_header_with_an_arbitrary_body_is_an_error_not_a_panic(body in vec(any::<u8>(), 0..256)) {
        let mut bytes = vec![0xC3, 0x01];
        bytes.extend_from_slice(&registry().current(SchemaFamily::TaskEvent).fingerprint.to_le_bytes());
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }
}
