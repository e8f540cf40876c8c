//! The projection against a real broker and a real MongoDB-wire server.

mod support;

use std::time::Duration;

use mongodb::bson::{Document, doc};
use support::*;
use taskpool_schemas::TaskState;
use taskpool_testkit::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_documents_and_duplicates_or_older_versions_change_nothing() {
    let world = World::new().await;
    let service = world.start().await;
    world
        .send_task(&task_event("t1", 1, Some("kermit"), &[], TaskState::Active))
        .await;
    world.wait_for_version("t1", 1).await;

    let v3 = task_event("t1", 3, Some("piggy"), &["muppets"], TaskState::Active);
    world.send_task(&v3).await;
    world
        .send_task(&task_event("t1", 2, Some("gonzo"), &[], TaskState::Active))
        .await;
    world.send_task(&v3).await;
    world
        .send_task(&task_event("t1-marker", 1, None, &[], TaskState::Active))
        .await;
    world.wait_for_version("t1-marker", 1).await;
    // The marker may sit in another partition than t1's messages: everything was consumed once
    // the service's committed offsets reach the ends of every partition.
    let ends = world.end_offsets().await;
    wait_for("every message consumed", DEADLINE, || async {
        (world.committed_offsets().await == ends).then_some(())
    })
    .await;

    let tasks = world.mongo().await.collection::<Document>("tasks");
    let stored = tasks.find_one(doc! { "_id": "t1" }).await.unwrap().unwrap();
    assert_eq!(integer(&stored, "version"), Some(3), "v3 then v2 leaves v3");
    assert_eq!(stored.get_str("assignee").unwrap(), "piggy");
    let principals: Vec<&str> = stored
        .get_array("principals")
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(principals, ["group:muppets", "user:piggy"]);
    assert_eq!(tasks.count_documents(doc! {}).await.unwrap(), 2);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_lands_in_the_dead_letter_collection_and_the_following_are_applied() {
    let world = World::new().await;
    let service = world.start().await;
    let topic = format!("{}.tasks", world.prefix);
    world.send(&topic, "bad", b"not avro at all".to_vec()).await;
    world
        .send_task(&task_event(
            "after",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("after", 1).await;

    let dead = world.mongo().await.collection::<Document>("dead_letters");
    let letter = wait_for("the dead letter", DEADLINE, || async {
        dead.find_one(doc! {}).await.ok().flatten()
    })
    .await;
    assert_eq!(letter.get_str("topic").unwrap(), topic);
    assert_eq!(letter.get_str("key").unwrap(), "bad");
    assert!(letter.get_i32("partition").is_ok());
    assert!(integer(&letter, "offset").is_some());
    assert_eq!(
        letter.get_binary_generic("payload").unwrap().as_slice(),
        b"not avro at all"
    );
    assert!(letter.get_str("reason").unwrap().contains("undecodable"));
    service.stop().await;
    let _ = Duration::ZERO;
}

async fn wait_for_retries(service: &Service, above: u64) {
    wait_for("the projection to retry its writes", DEADLINE, || async {
        let retries = service.running.metrics.write_retries.get();
        (retries > above).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_stopped_and_restarted_loses_nothing_and_offsets_never_run_ahead() {
    let mut mongo = PrivateMongo::start().await;
    let world = World::with_mongo(mongo.uri()).await;
    let service = world.start().await;
    world
        .send_task(&task_event(
            "before",
            1,
            Some("kermit"),
            &[],
            TaskState::Active,
        ))
        .await;
    world.wait_for_version("before", 1).await;

    // Down while the service runs: the consumer waits, then resumes where it was.
    mongo.kill().await;
    for n in 0..20 {
        world
            .send_task(&task_event(
                &format!("a-{n}"),
                1,
                Some("kermit"),
                &[],
                TaskState::Active,
            ))
            .await;
    }
    wait_for_retries(&service, 0).await;
    mongo.restart().await;
    for n in 0..20 {
        world.wait_for_version(&format!("a-{n}"), 1).await;
    }

    // Down again: while the writes fail, the group's committed offsets must stay before the
    // unwritten messages (or a restart would skip them).
    let before_b = world.end_offsets().await;
    let retries = service.running.metrics.write_retries.get();
    mongo.kill().await;
    for n in 0..20 {
        world
            .send_task(&task_event(
                &format!("b-{n}"),
                1,
                Some("kermit"),
                &[],
                TaskState::Active,
            ))
            .await;
    }
    // Several failed attempts span more than one auto-commit interval (1 s).
    wait_for_retries(&service, retries + 4).await;
    let committed = world.committed_offsets().await;
    for (partition, offset) in &committed {
        assert!(
            *offset <= before_b[partition],
            "partition {partition}: committed {offset}, but messages from {} on are not written",
            before_b[partition]
        );
    }
    mongo.restart().await;
    for n in 0..20 {
        world.wait_for_version(&format!("b-{n}"), 1).await;
    }
    let tasks = world.mongo().await.collection::<Document>("tasks");
    assert_eq!(tasks.count_documents(doc! {}).await.unwrap(), 41);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_waits_for_topics_that_do_not_exist_yet() {
    let world = World::new().await;
    let mut config = world.config();
    let prefix = format!("{}-later", world.prefix);
    config.kafka.topic_prefix = prefix.clone();
    let service = Service::start(config).await;
    let topics = [format!("{prefix}.tasks"), format!("{prefix}.data-entries")];
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    taskpool_testkit::kafka_topics::create_topics(&world.bootstrap, &[], &names).await;
    let event = task_event("late-topic", 1, Some("kermit"), &[], TaskState::Active);
    world
        .send(
            &topics[0],
            "late-topic",
            taskpool_schemas::encode(&event).unwrap(),
        )
        .await;
    world.wait_for_version("late-topic", 1).await;
    assert!(service.running.metrics.projection_running.get() == 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_consumes_compressed_events_from_a_broker_that_accepts_only_tls() {
    for codec in ["gzip", "lz4", "zstd", "snappy"] {
        let world = World::over_tls(codec).await;
        let service = world.start().await;
        world
            .send_task(&task_event("t1", 1, Some("kermit"), &[], TaskState::Active))
            .await;
        world
            .send_task(&task_event("t1", 2, Some("piggy"), &[], TaskState::Active))
            .await;
        world.wait_for_version("t1", 2).await;
        let tasks = world.mongo().await.collection::<Document>("tasks");
        let stored = tasks.find_one(doc! { "_id": "t1" }).await.unwrap().unwrap();
        assert_eq!(stored.get_str("assignee").unwrap(), "piggy", "{codec}");
        service.stop().await;
    }
}
