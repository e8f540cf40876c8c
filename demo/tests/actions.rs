//! The `taskpool-demo` binary in the distributed setup takes tasklist actions from Kafka: its
//! own rules decide, in its PostgreSQL transaction, and the outcome goes back on the outcome
//! topic.

use std::process::Stdio;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use taskpool_core::PgStore;
use taskpool_demo::process::APPLICATION;
use taskpool_demo::{Demo, DemoConfig, DemoDb};
use taskpool_schemas::{
    CommandOutcome, OutcomeResult, Payload, TaskAction, TaskCommand, Timestamp, Topics, decode_as,
    encode,
};
use taskpool_testkit::kafka_topics;
use taskpool_testkit::{PgTestDb, required_env};

const DEADLINE: Duration = Duration::from_secs(60);

fn claim(task_id: &str, user: &str) -> TaskCommand {
    TaskCommand {
        command_id: uuid::Uuid::new_v4(),
        action: TaskAction::Claim,
        task_id: task_id.into(),
        application: APPLICATION.into(),
        issued_by: user.into(),
        issued_at: Timestamp::now(),
        task_version: Some(1),
        assignee: None,
        follow_up_date: None,
        variables: Payload::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_binary_decides_claims_from_kafka_by_its_own_rules() {
    let db = PgTestDb::new().await;
    let bootstrap = required_env("KAFKA_BOOTSTRAP");
    let prefix = kafka_topics::unique_prefix('d');
    let topics = Topics::new(&prefix);
    kafka_topics::create_topics(&bootstrap, &[], &[&topics.commands, &topics.outcomes]).await;

    let mut binary = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskpool-demo"))
        .arg("run")
        .env("TASKPOOL_DEMO__DATABASE__URL", db.url())
        .env("TASKPOOL_DEMO__DEMO__RATE", "0.01")
        .env("TASKPOOL_DEMO__HTTP__LISTEN", "127.0.0.1:0")
        .env("TASKPOOL_DEMO__COMMANDS__BOOTSTRAP_SERVERS", &bootstrap)
        .env("TASKPOOL_DEMO__COMMANDS__TOPIC_PREFIX", &prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("taskpool-demo starts");
    // Its first step comes at once (a request of its own); the next in 100 s. After the first,
    // a request whose approval task kermit may take (he is an approver and a manager).
    taskpool_testkit::wait_for("the binary's first step", DEADLINE, || async {
        let requests: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM demo_requests")
            .fetch_one(&db.pool)
            .await
            .ok();
        (requests >= Some(1)).then_some(())
    })
    .await;
    let mut demo = Demo::<PgStore>::prepare(db.pool.clone(), DemoConfig::default())
        .await
        .unwrap();
    let (_, task) = demo.submit_request().await.unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (kermit, piggy) = (claim(&task, "kermit"), claim(&task, "piggy"));
    // Piggy, a candidate too, cannot take kermit's claimed task by assigning it either.
    let piggy_assigns = TaskCommand {
        action: TaskAction::Assign,
        assignee: Some("piggy".into()),
        ..claim(&task, "piggy")
    };
    for command in [&kermit, &piggy, &piggy_assigns] {
        let payload = encode(command).unwrap();
        producer
            .send(
                FutureRecord::to(&topics.commands)
                    .key(&task)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let reader = kafka_topics::reader_from_beginning(&bootstrap, &[], &topics.outcomes);
    let give_up = std::time::Instant::now() + DEADLINE;
    let mut outcomes: Vec<CommandOutcome> = Vec::new();
    while outcomes.len() < 3 {
        assert!(
            std::time::Instant::now() < give_up,
            "outcomes: {outcomes:?}"
        );
        let polled = tokio::task::block_in_place(|| reader.poll(Duration::from_millis(200)));
        if let Some(message) = polled {
            outcomes.push(decode_as(message.unwrap().payload().unwrap()).unwrap());
        }
    }
    let of = |command: &TaskCommand| {
        outcomes
            .iter()
            .find(|o| o.command_id == command.command_id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of(&kermit).result,
        OutcomeResult::Applied,
        "{:?}",
        of(&kermit)
    );
    assert_eq!(of(&kermit).task_version, Some(2));
    assert_eq!(of(&piggy).result, OutcomeResult::Rejected);
    assert_eq!(
        of(&piggy).reason.as_deref(),
        Some("already claimed by kermit")
    );
    assert_eq!(of(&piggy_assigns).result, OutcomeResult::Rejected);
    assert_eq!(
        of(&piggy_assigns).reason.as_deref(),
        Some("claimed by kermit; only they can hand it on")
    );
    let row = PgStore::all_tasks(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == task)
        .unwrap();
    assert_eq!(row.assignee.as_deref(), Some("kermit"));
    binary.kill().await.unwrap();
}
