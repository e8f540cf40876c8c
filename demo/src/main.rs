//! The `taskpool-demo` command: the demo engine on PostgreSQL, for the distributed setup (the
//! single-node binary runs it on SQLite itself). Exit codes: 0 after a requested shutdown, 1 on
//! a failure, 2 on bad configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{Parser, Subcommand};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use taskpool_core::PgStore;
use taskpool_demo::Demo;
use taskpool_demo::actions::DemoActions;
use taskpool_demo::process::APPLICATION;
use taskpool_demo::settings::{CommandSettings, Settings};
use taskpool_engine_commands::CommandStore;
use taskpool_engine_commands::consumer::{self, ConsumerConfig};
use taskpool_service::logging::error_chain;
use taskpool_service::{ExposeSecret, logging, shutdown, startup};

#[derive(Debug, Parser)]
#[command(
    name = "taskpool-demo",
    version,
    about = "A purchase-request process engine on PostgreSQL that reports its tasks through taskpool's collector.",
    after_help = "Configuration: a TOML file (--config) and TASKPOOL_DEMO__<SECTION>__<KEY> \
                  environment variables, which win (TASKPOOL_DEMO__DATABASE__URL, \
                  TASKPOOL_DEMO__DEMO__RATE, TASKPOOL_DEMO__HTTP__LISTEN, ...)."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "TASKPOOL_DEMO_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run process instances until SIGTERM or SIGINT.
    Run,
    /// Load and validate the configuration, then exit: 0 if valid, 2 with the reason if not.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, runtime) =
        match startup::prepare::<Settings>("taskpool-demo", cli.config.as_deref()) {
            Ok(prepared) => prepared,
            Err(code) => return code,
        };
    if let Command::CheckConfig = cli.command {
        println!("taskpool-demo: the configuration is valid");
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "taskpool-demo failed");
            eprintln!("taskpool-demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    logging::init(&settings.log);
    let pool = PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(settings.database.url.expose_secret())
        .await
        .context("cannot connect to the database")?;
    let demo = Demo::<PgStore>::prepare(pool.clone(), settings.demo.clone())
        .await
        .context("cannot prepare the demo's tables")?;
    let listener = tokio::net::TcpListener::bind(&settings.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
    let (trigger, stop) = shutdown::channel();
    let demo_pool = pool.clone();
    let health = health(pool);
    let mut serving = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, health)
            .with_graceful_shutdown(async move { serving.requested().await })
            .await
    });
    let actions = match &settings.commands {
        Some(commands) => Some(tokio::spawn(
            take_actions(commands.clone(), &settings, demo_pool.clone(), stop.clone()).await?,
        )),
        None => None,
    };
    tracing::info!(rate = settings.demo.rate, "demo engine running");
    let engine = tokio::spawn(demo.run(stop));
    shutdown::signal().await;
    tracing::info!("shutdown requested");
    trigger.trigger();
    let _ = engine.await;
    if let Some(actions) = actions {
        let _ = actions.await;
    }
    let _ = server.await;
    Ok(())
}

/// Tasklist actions from Kafka, decided by the demo's rules (a demo instance of their own).
async fn take_actions(
    commands: CommandSettings,
    settings: &Settings,
    pool: PgPool,
    stop: shutdown::Shutdown,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    PgStore::migrate_all(&pool)
        .await
        .context("cannot prepare the command tables")?;
    let engine = Demo::<PgStore>::prepare(pool.clone(), settings.demo.clone())
        .await
        .context("cannot prepare the demo's tables")?;
    let mut config = ConsumerConfig::new(
        &commands.bootstrap_servers,
        &commands.topic_prefix,
        APPLICATION,
    );
    config.security = commands.security;
    tracing::info!(application = APPLICATION, "taking tasklist actions");
    Ok(async move {
        if let Err(error) =
            consumer::run::<PgStore, _>(config, pool, DemoActions::new(engine), stop).await
        {
            tracing::error!(error = error_chain(&error), "cannot take tasklist actions");
        }
    })
}

/// `/health/live`, and `/health/ready` when the database answers.
fn health(pool: PgPool) -> Router {
    Router::new()
        .route("/health/live", get(|| async { StatusCode::OK }))
        .route(
            "/health/ready",
            get(move || {
                let pool = pool.clone();
                async move {
                    match sqlx::query("SELECT 1").execute(&pool).await {
                        Ok(_) => StatusCode::OK,
                        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                    }
                }
            }),
        )
}
