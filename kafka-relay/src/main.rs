//! The `kafka-relay` command.
//!
//! Exit codes: 0 after a requested shutdown, 1 on a failure, 2 on bad configuration or usage,
//! 3 when halted on a message that can never be published (`on_permanent_failure = halt`),
//! 4 when `status` finds a given limit exceeded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kafka_relay::config::Config;
use kafka_relay::metrics::Metrics;
use kafka_relay::{Exit, Relay, http, status};
use taskpool_service::{ExposeSecret, logging, shutdown, startup};

#[derive(Debug, Parser)]
#[command(
    name = "kafka-relay",
    version,
    about = "Publishes taskpool's committed outbox events to Kafka, at least once and in order.",
    after_help = "Configuration: a TOML file (--config) and TASKPOOL_RELAY__<SECTION>__<KEY> \
                  environment variables, which win. See the kafka-relay README."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "TASKPOOL_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish until SIGTERM or SIGINT (several processes may run; one publishes).
    Run,
    /// Print position, lag, leader and dead letters, then exit: 0, or 4 when a given limit
    /// is exceeded (a monitoring probe).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Exit 4 when more committed events than this wait to be published.
        #[arg(long)]
        max_lag_events: Option<i64>,
        /// Exit 4 when the oldest waiting event waits longer than this (seconds).
        #[arg(long)]
        max_lag_seconds: Option<f64>,
        /// Exit 4 when more events than this are in the dead letters.
        #[arg(long)]
        max_dead_letters: Option<i64>,
    },
    /// Load and validate the configuration (file and environment; unknown keys are errors),
    /// then exit: 0 if it is valid, 2 with the reason if not.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, runtime) = match startup::prepare::<Config>("kafka-relay", cli.config.as_deref()) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let outcome = match cli.command {
        Command::Run => runtime.block_on(run(config)),
        Command::Status {
            json,
            max_lag_events,
            max_lag_seconds,
            max_dead_letters,
        } => {
            let limits = status::Thresholds {
                max_lag_events,
                max_lag_seconds,
                max_dead_letters,
            };
            match runtime.block_on(print_status(config, json, limits)) {
                Ok(true) => Ok(None),
                Ok(false) => return ExitCode::from(4),
                Err(error) => Err(error),
            }
        }
        Command::CheckConfig => {
            println!("kafka-relay: the configuration is valid");
            Ok(None)
        }
    };
    match outcome {
        Ok(None) | Ok(Some(Exit::Shutdown)) => ExitCode::SUCCESS,
        Ok(Some(Exit::Halted { .. })) => ExitCode::from(3),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "kafka-relay failed");
            eprintln!("kafka-relay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<Option<Exit>> {
    logging::init(&config.log);
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /health");
    let (trigger, shutdown) = shutdown::channel();
    let mut http_shutdown = shutdown.clone();
    let server = tokio::spawn(
        axum::serve(
            listener,
            http::router(
                metrics.clone(),
                Duration::from_secs(config.relay.stalled_after_secs),
            ),
        )
        .with_graceful_shutdown(async move { http_shutdown.requested().await })
        .into_future(),
    );
    let relay = Relay::connect(config, metrics).await?;
    let run = relay.run(shutdown);
    tokio::pin!(run);
    let exit = tokio::select! {
        exit = &mut run => exit,
        _ = shutdown::signal() => {
            tracing::info!("shutdown requested: finishing in-flight batches");
            trigger.trigger();
            run.await
        }
    };
    // Also after a halt: the HTTP server stops, and is waited for.
    trigger.trigger();
    let _ = server.await;
    Ok(Some(exit?))
}

/// Prints the status; false when a limit is exceeded (said on stderr).
async fn print_status(
    config: Config,
    json: bool,
    limits: status::Thresholds,
) -> anyhow::Result<bool> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(config.database.url.expose_secret())
        .await
        .context("cannot connect to PostgreSQL")?;
    let status = status::read(&pool, &config.relay.name)
        .await
        .context("cannot read the relay's status (has it run against this database?)")?;
    if json {
        println!("{}", status.to_json());
    } else {
        println!("{status}");
    }
    let exceeded = status.exceeded(&limits);
    for what in &exceeded {
        eprintln!("kafka-relay status: {what}");
    }
    Ok(exceeded.is_empty())
}
