//! Embedded SQL migrations, one folder per database kind (`core/migrations/<kind>/`), and the
//! one helper every taskpool component runs its embedded migrations with.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Where taskpool records its applied migrations: apart from `_sqlx_migrations`, which the
/// engine's own application may use in the same database.
pub const MIGRATIONS_TABLE: &str = "taskpool_migrations";

/// A migrator for core's own tables (recorded in [`MIGRATIONS_TABLE`]).
pub fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    migrator_recording_in(migrations, MIGRATIONS_TABLE)
}

/// A migrator for `(version, description, sql)` migrations embedded in a binary, recording
/// what it applied in `table`, so that each component's migrations are versioned apart.
pub fn migrator_recording_in(
    migrations: &[(i64, &'static str, &'static str)],
    table: &'static str,
) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    migrator.dangerous_set_table_name(table);
    migrator
}
