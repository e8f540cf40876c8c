//! Embedded SQL migrations, one folder per database kind (`core/migrations/<kind>/`).

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// Where taskpool records its applied migrations: apart from `_sqlx_migrations`, which the
/// engine's own application may use in the same database.
pub const MIGRATIONS_TABLE: &str = "taskpool_migrations";

pub fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
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
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}
