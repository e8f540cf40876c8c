//! taskpool in one process, with no servers to install: an engine's collector writes the
//! SQLite outbox in its own transactions, an in-process reader keeps the embedded view, and the
//! tasklist API (the same routes, queries and stream as `tasklist-api`) and the web tasklist
//! serve it. Embed it in an engine's own process with [`start`], or run the `taskpool` binary,
//! which adds the demo engine.
//!
//! # Layout
//! - [`follow`]: the reader: rebuild the view from the committed state, then follow the outbox.
//! - [`actions`]: tasklist actions routed to the engine in this process; [`keys`]: their
//!   `Idempotency-Key` bindings in SQLite.
//! - [`config`]: the binary's settings.
//!
//! # Example
//! ```no_run
//! # async fn run(listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error>> {
//! use taskpool::{Options, SignIn, open_database, start};
//! let pool = open_database(std::path::Path::new("engine.sqlite")).await?;
//! // The engine records its events with `taskpool_collector::Collector` on this pool.
//! let (trigger, shutdown) = taskpool_service::shutdown::channel();
//! let options = Options { sign_in: SignIn::Development(vec![]), ..Options::default() };
//! let running = start(pool, options, listener, shutdown).await?;
//! // ... until the engine stops:
//! trigger.trigger();
//! running.stopped().await;
//! # Ok(())
//! # }
//! ```

pub mod actions;
pub mod config;
pub mod follow;
pub mod keys;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actions::ActionRoute;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use taskpool_core::{SqliteStore, Store};
use taskpool_demo::DemoUser;
use taskpool_service::shutdown::Shutdown;
use taskpool_tasklist::actions::ActionTarget;
use taskpool_tasklist::actions::outcomes::OutcomeSource;
use taskpool_tasklist::identity::Authenticator;
use taskpool_tasklist::identity::dev::{DevSignIn, DevUser};
use taskpool_tasklist::metrics::Metrics;
use taskpool_tasklist::serve::{Api, serve_api};
use taskpool_tasklist::settings::{ActionsConfig, HttpConfig, IdentityConfig, StreamConfig};
use taskpool_tasklist::view::EmbeddedView;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// How callers sign in.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// The server issues tokens for these users to anyone (a first run, a demo).
    Development(Vec<DevUser>),
    /// Bearer tokens as in `tasklist-api` (an identity provider's, or a shared secret).
    Configured(IdentityConfig),
}

impl SignIn {
    /// The demo's users, signed in by the development sign-in.
    pub fn demo_users(users: &[DemoUser]) -> SignIn {
        SignIn::Development(
            users
                .iter()
                .map(|user| DevUser {
                    name: user.name.clone(),
                    groups: user.groups.clone(),
                })
                .collect(),
        )
    }
}

/// How the single-node API is served.
#[derive(Debug)]
pub struct Options {
    pub http: HttpConfig,
    pub stream: StreamConfig,
    /// Who may do what beyond the tasks' candidates and assignees.
    pub action_rules: ActionsConfig,
    pub sign_in: SignIn,
    /// Where tasklist actions go (the engine in this process), if anywhere.
    pub actions: Option<ActionRoute>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            http: HttpConfig::default(),
            stream: StreamConfig::default(),
            action_rules: ActionsConfig::default(),
            sign_in: SignIn::Development(Vec::new()),
            actions: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("taskpool's tables in the SQLite database")]
    Store(#[from] taskpool_core::StoreError),
    #[error("the view")]
    Follow(#[from] follow::FollowError),
    #[error("identity settings")]
    Identity(#[from] taskpool_tasklist::identity::IdentityError),
    #[error("the tasklist API")]
    Api(#[from] taskpool_tasklist::serve::ServeError),
}

/// Each connection's page cache, in KiB. SQLite's default (2 MiB) filled slowly as the
/// outbox grew, on each of the pool's connections: memory that kept rising for hours. Pages
/// not cached are read from the operating system's cache.
const PAGE_CACHE_KIB: u32 = 256;

/// Opens (creating it if needed) a SQLite database for an engine and taskpool: write-ahead
/// log (readers never block the engine), and every commit synced to disk, so a committed
/// event survives a crash of the process or the machine.
pub async fn open_database(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", format!("-{PAGE_CACHE_KIB}"));
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
}

/// A started single node.
#[derive(Debug)]
pub struct Running {
    pub view: EmbeddedView,
    pub metrics: Arc<Metrics>,
    tasks: TaskTracker,
}

impl Running {
    /// Waits until everything has stopped (after shutdown was requested).
    pub async fn stopped(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Creates taskpool's tables if needed, rebuilds the view from the committed state, then
/// follows the outbox and serves the API on `listener` until shutdown.
pub async fn start(
    pool: SqlitePool,
    options: Options,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<Running, StartError> {
    SqliteStore::migrate(&pool).await?;
    follow::prepare(&pool).await?;
    let metrics = Arc::new(Metrics::default());
    let view = EmbeddedView::new();
    let position = follow::rebuild(&pool, &view, &metrics).await?;
    let (identity, dev_sign_in) = match options.sign_in {
        SignIn::Development(users) => {
            let sign_in = DevSignIn::new(users);
            (sign_in.identity_config(), Some(sign_in))
        }
        SignIn::Configured(identity) => (identity, None),
    };
    let auth = Authenticator::new(&identity)?;
    auth.load_keys().await;
    let tasks = TaskTracker::new();
    let api = Api {
        view: Arc::new(view.clone()),
        auth,
        metrics: metrics.clone(),
        stream: options.stream,
        action_rules: options.action_rules,
        http: options.http,
        dev_sign_in,
        actions: options.actions.as_ref().map(|route| ActionTarget {
            sink: route.sink.clone(),
            keys: route.keys.clone(),
        }),
        outcomes: options
            .actions
            .map(|route| Box::new(route.outcomes) as Box<dyn OutcomeSource>),
    };
    serve_api(api, listener, &tasks, shutdown.clone()).await?;
    tasks.spawn(follow::follow(
        pool,
        view.clone(),
        position,
        metrics.clone(),
        shutdown,
    ));
    Ok(Running {
        view,
        metrics,
        tasks,
    })
}
