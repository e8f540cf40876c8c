//! The `tasklist-api` command. Exit codes: 0 after a requested shutdown, 1 on a failure, 2 on
//! bad configuration or usage, 4 when `status` finds a given limit exceeded, 130 when a rebuild
//! was interrupted (before its switch: nothing changed).

use std::path::PathBuf;

/// jemalloc: a stream fan-out allocates and frees per client and event from many threads;
/// measured with `taskpool-bench fanout` against the system allocator (see docs/decisions).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tasklist_api::config::Config;
use tasklist_api::kafka::status;
use tasklist_api::mongo::rebuild::RebuildError;
use tasklist_api::mongo::rebuild::source::Start;
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
    /// Print the projection's consumer lag and dead-letter count, then exit: 0, or 4 when a
    /// given limit is exceeded (a monitoring probe).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Exit 4 when more events than this are not yet projected.
        #[arg(long)]
        max_lag_events: Option<i64>,
        /// Exit 4 when more messages than this are in the dead letters.
        #[arg(long)]
        max_dead_letters: Option<u64>,
    },
    /// Build the projection again from the topics into new collections while the service keeps
    /// serving, then switch every instance to them and drop the old ones. Stream clients
    /// resync once. Ctrl-C before the switch leaves the live view untouched.
    Rebuild {
        /// Start at the first event at or after this time (RFC 3339, e.g.
        /// 2026-11-01T00:00:00Z) instead of the oldest retained one. Tasks whose last event is
        /// older are then not in the rebuilt view.
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Seconds the old collections stay after the switch, for every instance to move off
        /// them (they check every second).
        #[arg(long, default_value_t = 10)]
        switch_grace_secs: u64,
    },
    /// Messages the projection could not apply: list, show, retry after fixing the cause, discard.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// One line per dead letter: id, topic[partition]@offset, key, reason.
    List {
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter as JSON.
    Show { id: String },
    /// Decode and apply dead letters again; each applied one is removed, one failing again
    /// stays with the new reason (and the command exits 1). Safe: documents are version-guarded.
    Retry {
        ids: Vec<String>,
        /// Retry every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Remove dead letters for good (each is logged with what it was).
    Discard {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, runtime) = match startup::prepare::<Config>("tasklist-api", cli.config.as_deref())
    {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let serving = matches!(cli.command, Command::Run | Command::CheckConfig);
    if let (true, Err(error)) = (serving, config.check_serving()) {
        eprintln!("tasklist-api: configuration: {error}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::CheckConfig => {
            println!("tasklist-api: the configuration is valid");
            return ExitCode::SUCCESS;
        }
        Command::Status {
            json,
            max_lag_events,
            max_dead_letters,
        } => {
            let limits = status::Thresholds {
                max_lag_events,
                max_dead_letters,
            };
            return match runtime.block_on(print_status(config, json, limits)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(4),
                Err(error) => {
                    eprintln!("tasklist-api status: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Rebuild {
            since,
            switch_grace_secs,
        } => {
            logging::init(&config.log);
            let options = tasklist_api::mongo::rebuild::Options {
                start: since.map_or(Start::Earliest, Start::Time),
                switch_grace: std::time::Duration::from_secs(switch_grace_secs),
            };
            return match runtime.block_on(rebuild(config, options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("tasklist-api rebuild: {error:#}");
                    match error.downcast_ref::<RebuildError>() {
                        Some(RebuildError::Interrupted) => ExitCode::from(130),
                        _ => ExitCode::FAILURE,
                    }
                }
            };
        }
        Command::DeadLetters { action } => {
            logging::init(&config.log);
            return match runtime.block_on(dead_letters(config, action)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("tasklist-api dead-letters: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Run => {}
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

async fn dead_letters(config: Config, action: DeadLetterAction) -> anyhow::Result<()> {
    use tasklist_api::mongo::dead_letters;
    let metrics = std::sync::Arc::new(taskpool_tasklist::metrics::Metrics::default());
    let store = tasklist_api::mongo::store::MongoStore::connect(&config.mongodb, metrics)
        .await
        .context("cannot connect to MongoDB")?;
    match action {
        DeadLetterAction::List { json } => {
            let letters = dead_letters::list(&store, None).await?;
            for letter in &letters {
                if json {
                    println!("{}", letter.to_json());
                } else {
                    println!("{}", letter.line());
                }
            }
            if !json {
                eprintln!("{} dead letters", letters.len());
            }
        }
        DeadLetterAction::Show { id } => {
            let letters = dead_letters::list(&store, Some(std::slice::from_ref(&id))).await?;
            let letter = letters
                .first()
                .with_context(|| format!("no dead letter {id}"))?;
            println!("{:#}", letter.to_json());
        }
        DeadLetterAction::Retry { ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name the dead letters to retry, or --all");
            }
            let retried = dead_letters::retry(&store, (!all).then_some(ids.as_slice())).await?;
            println!(
                "applied and removed: {}; failed again: {}",
                retried.applied.len(),
                retried.refused.len()
            );
            for (id, reason) in &retried.refused {
                println!("  {id}: {reason}");
            }
            if !retried.refused.is_empty() {
                anyhow::bail!("{} dead letters failed again", retried.refused.len());
            }
        }
        DeadLetterAction::Discard { ids } => {
            let discarded = dead_letters::discard(&store, &ids).await?;
            println!("discarded: {discarded:?}");
            if discarded.len() < ids.len() {
                anyhow::bail!("some ids had no dead letter");
            }
        }
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|error| format!("not an RFC 3339 time ({error})"))
}

async fn rebuild(
    config: Config,
    options: tasklist_api::mongo::rebuild::Options,
) -> anyhow::Result<()> {
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        shutdown::signal().await;
        trigger.trigger();
    });
    let mut progress = tasklist_api::mongo::rebuild::Progress::stderr();
    let report =
        tasklist_api::mongo::rebuild::run(&config, &options, &mut progress, shutdown).await?;
    println!(
        "rebuilt: generation {} replaces {}; {} events read in {:.1} s ({:.0} events/s), {} more \
         caught up after the switch; {} documents written; {} unreadable messages and {} refused \
         documents skipped (see dead-letters)",
        report.to,
        report.from,
        report.events,
        report.build_seconds,
        report.events as f64 / report.build_seconds.max(0.001),
        report.caught_up,
        report.documents,
        report.unreadable,
        report.refused,
    );
    Ok(())
}

/// Prints the status; false when a limit is exceeded (said on stderr).
async fn print_status(
    config: Config,
    json: bool,
    limits: status::Thresholds,
) -> anyhow::Result<bool> {
    let status = status::read(&config)
        .await
        .context("cannot read the projection's status")?;
    if json {
        println!("{}", status.to_json());
    } else {
        println!("{status}");
    }
    let exceeded = status.exceeded(&limits);
    for what in &exceeded {
        eprintln!("tasklist-api status: {what}");
    }
    Ok(exceeded.is_empty())
}

async fn run(config: Config) -> anyhow::Result<()> {
    logging::init(&config.log);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving HTTP");
    let (trigger, shutdown) = shutdown::channel();
    let mut running = tasklist_api::server::start(config, listener, shutdown).await?;
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
