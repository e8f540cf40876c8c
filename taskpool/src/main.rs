//! The `taskpool` command: single-node taskpool with the demo engine and the web tasklist.
//! Exit codes: 0 after a requested shutdown, 1 on a failure, 2 on bad configuration or usage.

/// jemalloc, as tasklist-api: a process that runs for months must give back what bursts took,
/// and the `soak` benchmark measures single-node under it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use taskpool::config::Config;
use taskpool::{Options, SignIn, open_database, start};
use taskpool_core::SqliteStore;
use taskpool_demo::Demo;
use taskpool_demo::actions::DemoActions;
use taskpool_engine_commands::Retention;
use taskpool_service::{logging, shutdown, startup};

#[derive(Debug, Parser)]
#[command(
    name = "taskpool",
    version,
    about = "taskpool in one process, no servers: a demo process engine, its tasks in a live web tasklist, and the tasklist API.",
    after_help = "Configuration: a TOML file (--config) and TASKPOOL__<SECTION>__<KEY> environment \
                  variables, which win (e.g. TASKPOOL__HTTP__LISTEN=0.0.0.0:8080, \
                  TASKPOOL__DEMO__RATE=20, TASKPOOL__DEMO__ENABLED=false). See \
                  taskpool/taskpool.example.toml."
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "TASKPOOL_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, runtime) = match startup::prepare::<Config>("taskpool", cli.config.as_deref()) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "taskpool failed");
            eprintln!("taskpool: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    logging::init(&config.log);
    std::fs::create_dir_all(&config.data.dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data.dir.display()
        )
    })?;
    let database = config.data.dir.join("taskpool.sqlite");
    let pool = open_database(&database)
        .await
        .with_context(|| format!("cannot open {}", database.display()))?;
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let address = listener.local_addr()?;
    let sign_in = match &config.identity {
        Some(identity) => SignIn::Configured(identity.clone()),
        None => SignIn::demo_users(&config.demo.users),
    };
    let development = matches!(sign_in, SignIn::Development(_));
    let demo = if config.demo.enabled {
        Some(
            Demo::<SqliteStore>::prepare(pool.clone(), config.demo.demo_config())
                .await
                .context("cannot prepare the demo's tables")?,
        )
    } else {
        None
    };
    let (trigger, shutdown) = shutdown::channel();
    // Actions go to the demo engine (its own instance of it, under its own rules).
    let actions = match &demo {
        Some(_) => {
            let engine = Demo::<SqliteStore>::prepare(pool.clone(), config.demo.demo_config())
                .await
                .context("cannot prepare the demo's tables")?;
            Some(
                taskpool::actions::route(
                    pool.clone(),
                    DemoActions::new(engine),
                    Retention::keeping(Duration::from_secs(
                        config.data.command_retention_hours.saturating_mul(3600),
                    )),
                    shutdown.clone(),
                )
                .await
                .context("cannot prepare the command tables")?,
            )
        }
        None => None,
    };
    let options = Options {
        http: config.http.clone(),
        stream: config.stream.clone(),
        action_rules: config.actions.clone(),
        sign_in,
        actions,
    };
    let running = start(pool.clone(), options, listener, shutdown.clone()).await?;
    let demo = demo.map(|demo| {
        tracing::info!(rate = config.demo.rate, "demo engine running");
        tokio::spawn(demo.run(shutdown.clone()))
    });
    if development {
        tracing::warn!(
            "development sign-in is on: anyone who can reach this port may act as any demo user; configure [identity] for real use"
        );
    }
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        address.ip().to_string()
    };
    println!(
        "taskpool is running (data in {}). Open http://{host}:{}/ in a browser; Ctrl-C stops it.",
        config.data.dir.display(),
        address.port()
    );
    shutdown::signal().await;
    tracing::info!("shutdown requested");
    trigger.trigger();
    if let Some(demo) = demo {
        let _ = demo.await;
    }
    running.stopped().await;
    Ok(())
}
