//! Decided commands are kept for the retention and then deleted; a command too old for its
//! record to be trusted is refused instead of applied.

use super::*;
use taskpool_engine_commands::retention::prune_once;
use taskpool_engine_commands::store::Pruned;

const DAY_MILLIS: i64 = 24 * 3600 * 1000;

async fn recorded(pool: &sqlx::SqlitePool, id: uuid::Uuid) -> bool {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM taskpool_processed_commands WHERE command_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(pool)
    .await
    .unwrap();
    count == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_older_than_half_the_retention_is_refused_unless_decided_before() {
    let db = SqliteTestDb::new().await;
    SqliteStore::migrate_all(&db.pool).await.expect("migrate");
    let mut tx = db.pool.begin().await.unwrap();
    let mut collector = Collector::new();
    collector
        .record(EngineEvent::TaskCreated {
            task_id: "t1".into(),
            task: new_task("Approve"),
        })
        .unwrap();
    collector.flush::<SqliteStore>(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let retention = Retention::keeping(Duration::from_secs(10 * 24 * 3600));
    let mut claim = command(TaskAction::Claim, "t1", "piggy");
    let applied = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &claim, retention)
        .await
        .unwrap();
    assert_eq!(applied.result, OutcomeResult::Applied);

    // The same command again, six days later: its decision is still on record.
    claim.issued_at = Timestamp(claim.issued_at.0 - 6 * DAY_MILLIS);
    let again = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &claim, retention)
        .await
        .unwrap();
    assert_eq!(again.result, OutcomeResult::Applied);

    // A command never seen, issued six days ago: refused, and nothing is written.
    let mut late = command(TaskAction::Claim, "t2", "piggy");
    late.issued_at = Timestamp(late.issued_at.0 - 6 * DAY_MILLIS);
    let refused = apply_once::<SqliteStore, _>(&db.pool, &Recorder, &late, retention)
        .await
        .unwrap();
    assert_eq!(refused.result, OutcomeResult::Rejected);
    assert_eq!(
        refused.reason.as_deref(),
        Some("the command expired: it was issued more than 5 days ago")
    );
    assert!(!recorded(&db.pool, late.command_id).await);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(events, 2, "the task's creation and the first claim");
}

/// Seeds three decided commands (two `$age` old), one `$age` old `pending` one and two dead
/// letters (one `$age` old), prunes with the default retention and checks that the old
/// decided ones and the old dead letter are gone, the rest stay, and a second pruning finds
/// nothing.
macro_rules! pruned_past_the_retention {
    ($store:ty, $pool:expr, $age:literal) => {{
        let ids: Vec<String> = (0..4).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        for (id, result) in ids
            .iter()
            .zip(["applied", "rejected", "applied", "pending"])
        {
            sqlx::query(
                "INSERT INTO taskpool_processed_commands (command_id, task_id, result) \
                 VALUES ($1, 't', $2)",
            )
            .bind(id)
            .bind(result)
            .execute($pool)
            .await
            .unwrap();
        }
        for offset in [1_i64, 2] {
            sqlx::query(
                "INSERT INTO taskpool_command_dead_letters \
                 (topic, partition, \"offset\", reason) VALUES ('commands', 0, $1, 'bad')",
            )
            .bind(offset)
            .execute($pool)
            .await
            .unwrap();
        }
        for id in [&ids[0], &ids[1], &ids[3]] {
            sqlx::query(concat!(
                "UPDATE taskpool_processed_commands SET processed_at = ",
                $age,
                " WHERE command_id = $1"
            ))
            .bind(id)
            .execute($pool)
            .await
            .unwrap();
        }
        sqlx::query(concat!(
            "UPDATE taskpool_command_dead_letters SET received_at = ",
            $age,
            " WHERE \"offset\" = 1"
        ))
        .execute($pool)
        .await
        .unwrap();

        let pruned = prune_once::<$store>($pool, Retention::default())
            .await
            .unwrap();
        assert_eq!(
            pruned,
            Pruned {
                commands: 2,
                dead_letters: 1
            }
        );
        let mut left: Vec<String> =
            sqlx::query_scalar("SELECT command_id FROM taskpool_processed_commands")
                .fetch_all($pool)
                .await
                .unwrap();
        left.sort();
        let mut expected = vec![ids[2].clone(), ids[3].clone()];
        expected.sort();
        assert_eq!(left, expected, "the fresh one and the pending one stay");
        let letters: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_command_dead_letters")
            .fetch_one($pool)
            .await
            .unwrap();
        assert_eq!(letters, 1);
        let again = prune_once::<$store>($pool, Retention::default())
            .await
            .unwrap();
        assert_eq!(again, Pruned::default());
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_decisions_past_the_retention_are_deleted_pending_ones_stay() {
    let db = PgTestDb::new().await;
    PgStore::migrate_all(&db.pool).await.expect("migrate");
    pruned_past_the_retention!(PgStore, &db.pool, "clock_timestamp() - INTERVAL '15 days'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_decisions_past_the_retention_are_deleted_pending_ones_stay() {
    let db = SqliteTestDb::new().await;
    SqliteStore::migrate_all(&db.pool).await.expect("migrate");
    pruned_past_the_retention!(
        SqliteStore,
        &db.pool,
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-15 days')"
    );
}
