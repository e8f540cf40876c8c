//! What the capture's tests on a database of their own share.

use sqlx::AssertSqlSafe;
use taskpool_core::{PgStore, Store};
use taskpool_testkit::PgTestDb;
use taskpool_testkit::operaton::Flavour;

/// A database of its own with the engine's tables (from the running engine's schema) and
/// taskpool's.
pub async fn engine_schema(flavour: Flavour) -> PgTestDb {
    let db = PgTestDb::new().await;
    let schema_sql = std::fs::read_to_string(flavour.schema_sql()).unwrap();
    // The dump names the public schema; here the engine's tables go into the test's schema.
    let schema_sql = schema_sql.replace("public.", "").replace(
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "",
    );
    sqlx::raw_sql(AssertSqlSafe(schema_sql))
        .execute(&db.pool)
        .await
        .expect("the engine's tables");
    PgStore::migrate(&db.pool).await.unwrap();
    db
}
