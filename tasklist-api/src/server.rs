//! The running service: MongoDB, the API over it (the tasklist library's [`serve_api`]), the
//! command topic and outcome reader for actions, and the projection, started together,
//! tracked, and stopped together.

use std::sync::Arc;

use futures::FutureExt;
use taskpool_service::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::info;

use taskpool_tasklist::actions::ActionTarget;
use taskpool_tasklist::identity::Authenticator;
use taskpool_tasklist::identity::dev::{DevSignIn, users_from};
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::serve::{Api, ServeError, serve_api};

use crate::config::Config;
use crate::kafka::command_sender::KafkaSink;
use crate::kafka::outcome_reader::KafkaOutcomes;
use crate::kafka::projection;
use crate::mongo::keys::MongoKeys;
use crate::mongo::store::MongoStore;

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
    Identity(#[from] taskpool_tasklist::identity::IdentityError),
    #[error("MongoDB")]
    Mongo(#[from] mongodb::error::Error),
    #[error("the API")]
    Serve(#[from] ServeError),
    #[error("cannot create the Kafka producer for actions")]
    Actions(#[from] rdkafka::error::KafkaError),
}

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
        .map(|dev| DevSignIn::new(users_from(&dev.users)));
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
    let store = MongoStore::connect(&config.mongodb, metrics.clone()).await?;
    store.ensure_indexes().await?;
    let keys = MongoKeys::new(store.clone());
    keys.ensure_index().await?;
    // Creating the indexes wrote to MongoDB: available until a write says otherwise (an idle
    // instance would otherwise report it unavailable until its first batch).
    metrics.view_available.set(1);
    let tasks = TaskTracker::new();
    let api = Api {
        view: Arc::new(store.clone()),
        auth,
        metrics: metrics.clone(),
        stream: config.stream.clone(),
        http: http_settings(&config),
        action_rules: config.actions.clone(),
        dev_sign_in,
        actions: Some(ActionTarget {
            sink: Arc::new(KafkaSink::new(&config.kafka)?),
            keys: Arc::new(keys),
        }),
        outcomes: Some(Box::new(KafkaOutcomes {
            config: config.kafka.clone(),
            store: store.clone(),
        })),
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

/// The HTTP settings, with no per-address cap by default where identities come from a proxy's
/// headers: every connection then has the proxy's address.
fn http_settings(config: &Config) -> taskpool_tasklist::settings::HttpConfig {
    let mut http = config.http.clone();
    if config.identity.trusted_headers && http.max_connections_per_address.is_none() {
        http.max_connections_per_address = Some(0);
    }
    http
}
