//! The running service: MongoDB, the stream hub (change stream first), the projection and the
//! HTTP server, started together, tracked, and stopped together. [`serve_api`] is the API part
//! alone, over any view: the single-node mode serves it over the embedded view.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use taskpool_service::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::actions::outcomes::{self, OutcomeFeed, Waiters};
use crate::actions::sink::{KafkaSink, SharedSink};
use crate::config::{Config, HttpConfig, StreamConfig};
use crate::http::{AppState, admin_router, default_max_connections, router, serve};
use crate::identity::Authenticator;
use crate::identity::dev::DevSignIn;
use crate::metrics::Metrics;
use crate::projection;
use crate::store::Store;
use crate::stream::Hub;
use crate::view::SharedView;

/// A started service: its parts run until shutdown is requested.
#[derive(Debug)]
pub struct Running {
    pub metrics: Arc<Metrics>,
    /// Where `/metrics` is served when it has an admin port of its own.
    pub admin_address: Option<std::net::SocketAddr>,
    /// Every task of the service: the connection loop, the projection, the stream hub's.
    tasks: TaskTracker,
    /// Reports a part that stopped for good while the service runs.
    failures: mpsc::Receiver<Failure>,
}

/// A part of the service that stopped for good: the process cannot do its job any more.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("the projection stopped: its Kafka consumer cannot run")]
    Projection(#[source] rdkafka::error::KafkaError),
}

impl Running {
    /// Resolves when a part stopped for good (never, while all is well).
    pub async fn failure(&mut self) -> Failure {
        match self.failures.recv().await {
            Some(failure) => failure,
            None => std::future::pending().await,
        }
    }

    /// Waits until every task has ended (they end once shutdown is requested).
    pub async fn stopped(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration")]
    Configuration(#[from] taskpool_service::config::ConfigError),
    #[error("identity settings")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the change feed")]
    View(#[from] crate::view::ViewError),
    #[error("cannot listen on the admin address {address}")]
    Admin {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot create the Kafka producer for actions")]
    Actions(#[from] rdkafka::error::KafkaError),
}

/// Connections the admin port serves at once (scrapers and probes).
const ADMIN_CONNECTIONS: usize = 64;

/// Starts everything; returns once the change stream is open and the listener serves.
pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    config.check_serving()?;
    let dev_sign_in = config
        .dev_sign_in
        .as_ref()
        .map(|dev| DevSignIn::new(crate::identity::dev::users_from(dev)));
    let identity = match &dev_sign_in {
        Some(dev) => {
            tracing::warn!(
                "development sign-in is on: anyone who can reach this service may act as any of its users"
            );
            dev.identity_config()
        }
        None => config.identity.clone(),
    };
    let auth = Authenticator::new(&identity)?;
    auth.load_keys().await;
    let metrics = Arc::new(Metrics::default());
    let store = Store::connect(&config.mongodb, metrics.clone()).await?;
    store.ensure_indexes().await?;
    // Creating the indexes wrote to MongoDB: available until a write says otherwise (an idle
    // instance would otherwise report it unavailable until its first batch).
    metrics.mongo_available.set(1);
    let tasks = TaskTracker::new();
    let api = Api {
        view: Arc::new(store.clone()),
        auth,
        metrics: metrics.clone(),
        stream: config.stream.clone(),
        http: config.http.clone(),
        dev_sign_in,
        actions: Some(Arc::new(KafkaSink::new(&config.kafka)?)),
        outcomes: Some(OutcomeFeed::Kafka(
            Box::new(config.kafka.clone()),
            store.clone(),
        )),
    };
    let admin_address = serve_api(api, listener, &tasks, shutdown.clone()).await?;

    let (report, failures) = mpsc::channel(1);
    tasks.spawn(
        projection::run(config.kafka.clone(), store, metrics.clone(), shutdown).map(
            move |result| {
                if let Err(error) = result {
                    let _ = report.try_send(Failure::Projection(error));
                }
            },
        ),
    );
    info!("tasklist-api started");
    Ok(Running {
        metrics,
        admin_address,
        tasks,
        failures,
    })
}

/// The tasklist API over a view, whatever feeds it.
#[derive(Debug)]
pub struct Api {
    pub view: SharedView,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub stream: StreamConfig,
    pub http: HttpConfig,
    /// Development sign-in for these users, if on (never in the distributed mode's binary).
    pub dev_sign_in: Option<DevSignIn>,
    /// Where actions go, if this deployment offers them.
    pub actions: Option<SharedSink>,
    /// Where their outcomes come from, if anywhere.
    pub outcomes: Option<OutcomeFeed>,
}

/// Serves the API: opens the view's change feed and starts the stream hub, then serves HTTP on
/// `listener` (and `/metrics` and health on the admin port, when one is configured, whose
/// address it returns). Everything runs on `tasks` until shutdown.
pub async fn serve_api(
    api: Api,
    listener: TcpListener,
    tasks: &TaskTracker,
    shutdown: Shutdown,
) -> Result<Option<SocketAddr>, StartError> {
    let hub = Hub::start(
        api.view.clone(),
        api.stream.clone(),
        api.metrics.clone(),
        tasks,
        shutdown.clone(),
    )
    .await?;
    let state = AppState {
        store: api.view,
        hub,
        auth: api.auth,
        metrics: api.metrics,
        stream: api.stream,
        dev_sign_in: api.dev_sign_in.map(Arc::new),
        actions: api.actions,
        waiters: Waiters::default(),
    };
    if let Some(feed) = api.outcomes {
        tasks.spawn(outcomes::follow(
            feed,
            state.hub.clone(),
            state.waiters.clone(),
            shutdown.clone(),
        ));
    }
    let admin_address = match &api.http.admin_listen {
        Some(address) => {
            let admin = TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Admin {
                    address: address.clone(),
                    source,
                })?;
            let bound = admin.local_addr().ok();
            info!(address = ?bound, "serving /metrics and health on the admin port");
            tasks.spawn(serve(
                admin,
                admin_router(state.clone()),
                ADMIN_CONNECTIONS,
                shutdown.clone(),
            ));
            bound
        }
        None => None,
    };
    let max_connections = api
        .http
        .max_connections
        .unwrap_or_else(default_max_connections);
    info!(max_connections, "serving HTTP");
    tasks.spawn(serve(
        listener,
        router(
            state,
            &api.http.cors_allowed_origins,
            admin_address.is_none(),
            api.http.web_tasklist,
        ),
        max_connections,
        shutdown,
    ));
    Ok(admin_address)
}
