//! The engine's side of the command topic: reading it from its beginning, and a stand-in
//! engine that answers claims.

use super::*;

/// Reads the command topic from its beginning.
pub(crate) fn command_reader(world: &World) -> BaseConsumer {
    let properties = client_properties(&world.security);
    let topic = Topics::new(&world.prefix).commands;
    taskpool_testkit::kafka_topics::reader_from_beginning(&world.bootstrap, &properties, &topic)
}

/// Every command on the topic until one with `id` arrived (or the deadline passed).
pub(crate) fn commands_until(reader: &BaseConsumer, id: &str) -> Vec<(TaskCommand, String)> {
    let give_up = std::time::Instant::now() + DEADLINE;
    let mut read = Vec::new();
    while !read
        .iter()
        .any(|(c, _): &(TaskCommand, String)| c.command_id.to_string() == id)
    {
        assert!(
            std::time::Instant::now() < give_up,
            "command {id} not on the topic: {read:?}"
        );
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            let message = message.expect("read the command topic");
            let application = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "application"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let command = decode_as::<TaskCommand>(message.payload().unwrap()).unwrap();
            read.push((command, application));
        }
    }
    read
}

/// Stands in for the owning engine on the real broker: the first claim wins; it answers with
/// the outcome *before* the task's new version is published, the worst case for reading one's
/// own writes.
pub(crate) fn answer_claims(world: &World, reader: BaseConsumer, commands: usize) {
    let producer: rdkafka::producer::BaseProducer = world.kafka_client().create().unwrap();
    let topics = Topics::new(&world.prefix);
    let mut assignee: Option<String> = None;
    let mut answered = 0;
    let give_up = std::time::Instant::now() + DEADLINE;
    while answered < commands && std::time::Instant::now() < give_up {
        let Some(message) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        let command = decode_as::<TaskCommand>(message.unwrap().payload().unwrap()).unwrap();
        let (result, reason, version) = match &assignee {
            Some(holder) => (
                taskpool_schemas::OutcomeResult::Rejected,
                Some(format!("already claimed by {holder}")),
                None,
            ),
            None => {
                assignee = Some(command.issued_by.clone());
                (taskpool_schemas::OutcomeResult::Applied, None, Some(2))
            }
        };
        let outcome = taskpool_schemas::CommandOutcome::of(&command, result, reason, version);
        let key = outcome.command_id.to_string();
        let payload = taskpool_schemas::encode(&outcome).unwrap();
        producer
            .send(
                rdkafka::producer::BaseRecord::to(&topics.outcomes)
                    .key(&key)
                    .payload(&payload),
            )
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        if version.is_some() {
            let event = task_event(
                "race",
                2,
                assignee.as_deref(),
                &["muppets"],
                TaskState::Active,
            );
            let payload = taskpool_schemas::encode(&event).unwrap();
            producer
                .send(
                    rdkafka::producer::BaseRecord::to(&topics.tasks)
                        .key("race")
                        .payload(&payload),
                )
                .unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
        answered += 1;
    }
}
