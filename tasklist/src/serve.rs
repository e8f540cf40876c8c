//! The tasklist API over a view, whatever feeds it: the stream hub (change feed first), the
//! outcomes of actions, and HTTP (and the admin port, when configured). Each deployment starts
//! its view and feeds, then calls [`serve_api`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taskpool_service::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::actions::ActionTarget;
use crate::actions::outcomes::{Delivery, OutcomeSource, Waiters};
use crate::http::stream_slots::StreamSlots;
use crate::http::{AppState, Limits, admin_router, default_max_connections, router, serve};
use crate::identity::Authenticator;
use crate::identity::dev::DevSignIn;
use crate::metrics::Metrics;
use crate::settings::{ActionsConfig, HttpConfig, StreamConfig};
use crate::stream::Hub;
use crate::view::{SharedView, ViewError};

/// Connections the admin port serves at once (scrapers and probes).
const ADMIN_CONNECTIONS: usize = 64;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the change feed")]
    View(#[from] ViewError),
    #[error("cannot listen on the admin address {address}")]
    Admin {
        address: String,
        source: std::io::Error,
    },
}

/// Connections one remote address may hold where the settings name no cap.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: usize = 1000;

/// The tasklist API over a view, whatever feeds it.
#[derive(Debug)]
pub struct Api {
    pub view: SharedView,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub stream: StreamConfig,
    pub http: HttpConfig,
    /// Who may do what beyond the tasks' candidates and assignees.
    pub action_rules: ActionsConfig,
    /// Development sign-in for these users, if on (a try-out; never for real use).
    pub dev_sign_in: Option<DevSignIn>,
    /// Where actions go (and their idempotency keys are kept), if this deployment offers them.
    pub actions: Option<ActionTarget>,
    /// Where their outcomes come from, if anywhere.
    pub outcomes: Option<Box<dyn OutcomeSource>>,
}

/// Serves the API: opens the view's change feed and starts the stream hub, then serves HTTP on
/// `listener` (and `/metrics` and health on the admin port, when one is configured, whose
/// address it returns). Everything runs on `tasks` until shutdown.
pub async fn serve_api(
    api: Api,
    listener: TcpListener,
    tasks: &TaskTracker,
    shutdown: Shutdown,
) -> Result<Option<SocketAddr>, ServeError> {
    let hub = Hub::start(
        api.view.clone(),
        api.stream.clone(),
        api.metrics.clone(),
        tasks,
        shutdown.clone(),
    )
    .await?;
    let stream_slots = StreamSlots::new(api.stream.max_per_user);
    let state = AppState {
        store: api.view,
        hub,
        auth: api.auth,
        metrics: api.metrics,
        stream: api.stream,
        dev_sign_in: api.dev_sign_in.map(Arc::new),
        actions: api.actions,
        key_life: Duration::from_secs(api.http.idempotency_key_secs),
        hand_over_groups: Arc::new(api.action_rules.hand_over_groups),
        waiters: Waiters::default(),
        stream_slots,
    };
    if let Some(source) = api.outcomes {
        let delivery = Delivery {
            hub: state.hub.clone(),
            waiters: state.waiters.clone(),
        };
        tasks.spawn(source.follow(delivery, shutdown.clone()));
    }
    let read_deadline = Duration::from_secs(api.http.read_deadline_secs);
    let admin_address = match &api.http.admin_listen {
        Some(address) => {
            let admin = TcpListener::bind(address)
                .await
                .map_err(|source| ServeError::Admin {
                    address: address.clone(),
                    source,
                })?;
            let bound = admin.local_addr().ok();
            info!(address = ?bound, "serving /metrics and health on the admin port");
            tasks.spawn(serve(
                admin,
                admin_router(state.clone()),
                Limits {
                    connections: ADMIN_CONNECTIONS,
                    per_address: 0,
                    read_deadline,
                },
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
    let per_address = api
        .http
        .max_connections_per_address
        .unwrap_or(DEFAULT_CONNECTIONS_PER_ADDRESS);
    info!(max_connections, per_address, "serving HTTP");
    let limits = Limits {
        connections: max_connections,
        per_address,
        read_deadline,
    };
    tasks.spawn(serve(
        listener,
        router(state, &api.http, admin_address.is_none()),
        limits,
        shutdown,
    ));
    Ok(admin_address)
}
