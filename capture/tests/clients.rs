//! The SQL functions called from other languages' drivers, in the caller's transaction: Java
//! through JDBC, Python through psycopg (the programs in `tests/clients/`, also the README's
//! examples). What they commit reaches the outbox, what they roll back does not, and a bad
//! call reaches them as an error saying what is wrong.

use std::path::Path;
use std::process::Command;

use sqlx::Row;
use taskpool_capture::drain_once;
use taskpool_core::{PgStore, Store};
use taskpool_schemas::{DecodedEvent, decode};
use taskpool_testkit::{PgTestDb, required_env};

/// What the client prints of the bad call's error (JDBC puts "ERROR: " before the message).
const REFUSAL: &str = "taskpool: unknown task event kind \"finished\"";

fn connection_parts(db: &PgTestDb) -> (String, u16, String, String) {
    let options = &db.options;
    (
        options.get_host().to_string(),
        options.get_port(),
        options.get_database().unwrap_or("postgres").to_string(),
        options.get_username().to_string(),
    )
}

fn client(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test]
async fn java_records_through_jdbc() {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.expect("migrate");
    let (host, port, database, user) = connection_parts(&db);
    let url = format!(
        "jdbc:postgresql://{host}:{port}/{database}?user={user}&sslmode=disable\
         &options=-c%20search_path%3D{}",
        db.schema
    );
    run_and_check(
        &db,
        "java",
        vec![
            "-cp".into(),
            required_env("PGJDBC_JAR"),
            client("RecordTask.java"),
            url,
            "client".into(),
        ],
    )
    .await;
}

#[tokio::test]
async fn python_records_through_psycopg() {
    let db = PgTestDb::new().await;
    PgStore::migrate(&db.pool).await.expect("migrate");
    let (host, port, database, user) = connection_parts(&db);
    let conninfo = format!(
        "host={host} port={port} dbname={database} user={user} sslmode=disable \
         options='-c search_path={}'",
        db.schema
    );
    run_and_check(
        &db,
        &required_env("TASKPOOL_PYTHON"),
        vec![client("record_task.py"), conninfo, "client".into()],
    )
    .await;
}

/// Runs a client program, which records `<prefix>-committed` and `<prefix>-rolled-back` and
/// makes one bad call, then checks the database.
async fn run_and_check(db: &PgTestDb, program: &str, arguments: Vec<String>) {
    let output = Command::new(program)
        .args(&arguments)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} failed:\n{stdout}\n{stderr}"
    );
    let refusal = stdout.lines().find(|l| l.starts_with("error: "));
    assert!(
        refusal.is_some_and(|l| l.contains(REFUSAL)),
        "the bad call's error: {stdout}"
    );

    assert_eq!(drain_once(&db.pool, 100).await.unwrap().rows, 2);
    let rows = sqlx::query("SELECT aggregate_id, aggregate_version, payload FROM taskpool_outbox")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "only the committed task");
    let (id, version): (String, i64) = (rows[0].get(0), rows[0].get(1));
    assert_eq!((id.as_str(), version), ("client-committed", 1));
    let payload: Vec<u8> = rows[0].get(2);
    let Ok(DecodedEvent::Task(event)) = decode(&payload) else {
        panic!("not a task event");
    };
    assert_eq!(event.task.assignee.as_deref(), Some("kermit"));
    assert_eq!(event.task.candidate_groups.len(), 1);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM taskpool_capture")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
}
