//! The `tasklist-api` command. Exit codes: 0 after a requested shutdown, 1 on a failure, 2 on
//! bad configuration or usage.

use std::path::PathBuf;

/// jemalloc: a stream fan-out allocates and frees per client and event from many threads;
/// measured with `taskpool-bench fanout` against the system allocator (see docs/decisions).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tasklist_api::config::Config;
use taskpool_service::{logging, shutdown, startup};

#[derive(Debug, Parser)]
#[command(
    name = "tasklist-api",
    version,
    about = "Projects taskpool's Kafka topics into MongoDB and serves each user's tasks and their changes.",
    after_help = "Configuration: a TOML file (--config) and TASKPOOL_TASKLIST__<SECTION>__<KEY> \
                  environment variables, which win. See tasklist-api/tasklist.example.toml."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "TASKPOOL_TASKLIST_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume, project and serve until SIGTERM or SIGINT.
    Run,
    /// Load and validate the configuration (file and environment; unknown keys are errors),
    /// then exit: 0 if it is valid, 2 with the reason if not.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, runtime) = match startup::prepare::<Config>("tasklist-api", cli.config.as_deref())
    {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    if let Command::CheckConfig = cli.command {
        println!("tasklist-api: the configuration is valid");
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "tasklist-api failed");
            eprintln!("tasklist-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    logging::init(&config.log);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving HTTP");
    let (trigger, shutdown) = shutdown::channel();
    let mut running = tasklist_api::service::start(config, listener, shutdown).await?;
    let failure = tokio::select! {
        _ = shutdown::signal() => {
            tracing::info!("shutdown requested");
            None
        }
        failure = running.failure() => Some(failure),
    };
    trigger.trigger();
    running.stopped().await;
    match failure {
        // Exiting lets a supervisor restart the process or alert, instead of a service that
        // answers 503 forever.
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}
