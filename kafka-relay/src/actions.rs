//! Taking the tasklist's commands for an engine reached through its REST API (Camunda 7,
//! Operaton) and carrying them out there (decision 0028). Every replica takes commands, not
//! only the leader: they share one Kafka consumer group.

use std::time::Duration;

use sqlx::PgPool;
use taskpool_core::PgStore;
use taskpool_engine_commands::Retention;
use taskpool_engine_commands::consumer::{self, ConsumerConfig};
use taskpool_engine_commands::rest::{EngineApi, RestApplier};
use taskpool_engine_commands::{CommandStore, EngineError};
use taskpool_service::http_client::FetchError;
use taskpool_service::logging::error_chain;
use taskpool_service::shutdown::Shutdown;
use tracing::error;

use crate::config::Config;

/// Why the actions could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error("migrating the processed-command tables")]
    Migration(#[from] EngineError),
    #[error("the engine's REST client")]
    Client(#[from] FetchError),
}

/// What carrying out actions needs, prepared at start so that a mistake stops the start.
#[derive(Debug)]
pub struct Actions {
    consumer: ConsumerConfig,
    applier: RestApplier,
}

impl Actions {
    /// `None` when `[actions]` is not enabled.
    pub async fn prepare(config: &Config, pool: &PgPool) -> Result<Option<Actions>, ActionsError> {
        let actions = &config.actions;
        if !actions.enabled {
            return Ok(None);
        }
        if config.database.migrate {
            <PgStore as CommandStore>::migrate_all(pool).await?;
        }
        let engine = EngineApi::new(&actions.endpoint())?;
        let retention = Retention::keeping(Duration::from_secs(actions.retention_hours * 3600));
        let applier = RestApplier::new(
            pool.clone(),
            engine,
            Duration::from_millis(actions.version_wait_ms),
            retention,
        );
        let kafka = &config.kafka;
        let mut consumer = ConsumerConfig::new(
            &kafka.bootstrap_servers,
            &kafka.topic_prefix,
            &actions.application,
        );
        consumer.security = kafka.security.clone();
        consumer.consumer = actions.consumer.clone();
        consumer.producer = kafka.producer.clone();
        consumer.retention = retention;
        if !actions.group_id.is_empty() {
            consumer.group_id = actions.group_id.clone();
        }
        Ok(Some(Actions { consumer, applier }))
    }

    /// Takes commands until shutdown.
    pub async fn take_commands(self, pool: PgPool, shutdown: Shutdown) {
        if let Err(e) =
            consumer::run_with::<PgStore, _>(self.consumer, pool, self.applier, shutdown).await
        {
            error!(error = %error_chain(&e), "cannot take the tasklist's commands");
        }
    }
}
