//! A test's world: its engine database, topics and Kafka clients, the engine's consumer
//! running, and a reader of the outcomes.

use super::*;
use taskpool_testkit::kafka_topics;

/// One test's engine database, topics and Kafka clients.
pub(crate) struct World {
    pub(crate) db: PgTestDb,
    pub(crate) bootstrap: String,
    pub(crate) prefix: String,
    pub(crate) topics: Topics,
    pub(crate) producer: FutureProducer,
}

impl World {
    pub(crate) async fn new() -> World {
        let db = PgTestDb::new().await;
        PgStore::migrate_all(&db.pool).await.expect("migrate");
        sqlx::query("CREATE TABLE engine_tasks (task_id TEXT PRIMARY KEY, assignee TEXT)")
            .execute(&db.pool)
            .await
            .unwrap();
        let bootstrap = required_env("KAFKA_BOOTSTRAP");
        let prefix = kafka_topics::unique_prefix('c');
        let topics = Topics::new(&prefix);
        kafka_topics::create_topics(&bootstrap, &[], &[&topics.commands, &topics.outcomes]).await;
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "1")
            .create()
            .unwrap();
        World {
            db,
            bootstrap,
            prefix,
            topics,
            producer,
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// A task in the engine's table and in taskpool (version 1).
    pub(crate) async fn create_task(&self, task_id: &str) {
        let mut tx = self.pool().begin().await.unwrap();
        sqlx::query("INSERT INTO engine_tasks (task_id) VALUES ($1)")
            .bind(task_id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut collector = Collector::new();
        collector
            .record(EngineEvent::TaskCreated {
                task_id: task_id.into(),
                task: new_task("Approve"),
            })
            .unwrap();
        collector.flush::<PgStore>(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    pub(crate) async fn send_bytes(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topics.commands)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("command sent");
    }

    pub(crate) async fn send(&self, command: &TaskCommand) {
        self.send_bytes(&command.task_id, &encode(command).unwrap())
            .await;
    }

    pub(crate) fn start_engine(&self, engine: Engine) -> RunningEngine {
        let (trigger, shutdown) = shutdown::channel();
        let config = ConsumerConfig::new(&self.bootstrap, &self.prefix, APPLICATION);
        let pool = self.pool().clone();
        let task = tokio::spawn(async move {
            consumer::run::<PgStore, _>(config, pool, engine, shutdown)
                .await
                .expect("the command consumer runs");
        });
        RunningEngine { trigger, task }
    }

    pub(crate) fn outcome_reader(&self) -> OutcomeReader {
        let consumer =
            kafka_topics::reader_from_beginning(&self.bootstrap, &[], &self.topics.outcomes);
        OutcomeReader {
            consumer,
            received: Vec::new(),
        }
    }

    pub(crate) async fn outbox_versions(&self, task_id: &str) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT aggregate_version FROM taskpool_outbox WHERE aggregate_id = $1 ORDER BY 1",
        )
        .bind(task_id)
        .fetch_all(self.pool())
        .await
        .unwrap()
    }

    pub(crate) async fn assignee(&self, task_id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT assignee FROM engine_tasks WHERE task_id = $1")
            .bind(task_id)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

pub(crate) struct RunningEngine {
    pub(crate) trigger: ShutdownTrigger,
    pub(crate) task: JoinHandle<()>,
}

impl RunningEngine {
    pub(crate) async fn stop(self) {
        self.trigger.trigger();
        self.task.await.expect("the engine stops");
    }
}

pub(crate) struct OutcomeReader {
    pub(crate) consumer: BaseConsumer,
    pub(crate) received: Vec<CommandOutcome>,
}

impl OutcomeReader {
    /// Reads until `count` outcomes arrived, or fails after the deadline.
    pub(crate) async fn until(&mut self, count: usize) -> &[CommandOutcome] {
        let give_up = std::time::Instant::now() + DEADLINE;
        while self.received.len() < count {
            assert!(
                std::time::Instant::now() < give_up,
                "{} of {count} outcomes after {DEADLINE:?}: {:?}",
                self.received.len(),
                self.received
            );
            let polled = tokio::task::block_in_place(|| {
                self.consumer
                    .poll(Duration::from_millis(200))
                    .map(|m| m.map(|m| m.payload().map(decode_as::<CommandOutcome>)))
            });
            if let Some(message) = polled {
                let outcome = message.expect("outcome read").expect("a value");
                self.received.push(outcome.expect("an outcome decodes"));
            }
        }
        &self.received
    }

    pub(crate) fn of(&self, command: &TaskCommand) -> Vec<&CommandOutcome> {
        self.received
            .iter()
            .filter(|o| o.command_id == command.command_id)
            .collect()
    }
}
