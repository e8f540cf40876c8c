//! Wiring: MongoDB, the hub (change stream first), the projection and the HTTP server.

use std::sync::Arc;

use taskpool_service::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::config::Config;
use crate::http::{AppState, router, serve};
use crate::hub::Hub;
use crate::identity::Authenticator;
use crate::metrics::Metrics;
use crate::projection;
use crate::store::Store;

/// A started service: its parts run until shutdown is requested.
#[derive(Debug)]
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub http: JoinHandle<()>,
    pub projection: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("identity settings")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
}

/// Starts everything; returns once the change stream is open and the listener serves.
pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    let auth = Authenticator::new(&config.identity)?;
    auth.load_keys().await;
    let metrics = Arc::new(Metrics::default());
    let store = Store::connect(&config.mongodb, metrics.clone()).await?;
    store.ensure_indexes().await?;
    let hub = Hub::start(
        store.clone(),
        config.stream.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await?;

    let projection = {
        let store = store.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let kafka = config.kafka.clone();
        tokio::spawn(async move {
            if let Err(e) = projection::run(kafka, store, metrics, shutdown).await {
                error!(error = %e, "the projection stopped");
            }
        })
    };

    let state = AppState {
        store,
        hub,
        auth,
        metrics: metrics.clone(),
        stream: config.stream.clone(),
    };
    let http = tokio::spawn(serve(
        listener,
        router(state, &config.http.cors_allowed_origins),
        shutdown,
    ));
    info!("tasklist-api started");
    Ok(Running {
        metrics,
        http,
        projection,
    })
}
