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
    /// Send retained outbox events again, selected by position range, aggregate id and/or time
    /// range, to their topics or a named one. Safe: consumers apply events by version, so an
    /// event they already have changes nothing. At least one selection is required.
    Republish {
        /// First position (inclusive).
        #[arg(long)]
        from_position: Option<i64>,
        /// Last position (inclusive).
        #[arg(long)]
        to_position: Option<i64>,
        /// Only this aggregate's events (a task id, or `<entry type>:<entry id>`).
        #[arg(long)]
        aggregate: Option<String>,
        /// Events written at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Events written before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Send to this topic instead of each event's own.
        #[arg(long)]
        topic: Option<String>,
        /// Only count what would be sent.
        #[arg(long)]
        dry_run: bool,
    },
    /// Events that could not be published: list, show, retry after fixing the cause, discard.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Capture a Camunda 7 or Operaton engine's task changes in its own transactions:
    /// triggers on its tables in the database of `database.url` (decision 0027). Run the
    /// relay with `capture.enabled = true` to publish them.
    Capture {
        #[command(subcommand)]
        action: CaptureAction,
    },
}

#[derive(Debug, Subcommand)]
enum CaptureAction {
    /// Install or update the triggers (idempotent); tasks the engine has are captured now.
    /// Needs CREATE on the schema and TRIGGER on the engine's act_ru_* tables.
    Install {
        /// The application name of the engine's tasks (tasklist actions are addressed to it).
        #[arg(long)]
        application: String,
        /// The zone the engine writes its times in (its JVM's default zone).
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Process variables that become the payload of a process's tasks:
        /// `<process definition key>:<variable>,<variable>...`, repeatable.
        #[arg(long = "variables")]
        variables: Vec<String>,
    },
    /// Remove everything `install` added.
    Uninstall,
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// One line per dead letter: position, time, event, aggregate and version, topic, reason.
    List {
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one dead letter, as JSON (headers included, payload size).
    Show { position: i64 },
    /// Publish dead letters again, in position order; each acknowledged one is removed, one
    /// refused again stays with the new reason. Safe: consumers apply events by version.
    Retry {
        /// Positions to retry.
        positions: Vec<i64>,
        /// Retry every dead letter of this relay.
        #[arg(long, conflicts_with = "positions")]
        all: bool,
    },
    /// Remove dead letters for good (each is logged with what it was).
    Discard {
        #[arg(required = true)]
        positions: Vec<i64>,
    },
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
        Command::Capture { action } => {
            logging::init(&config.log);
            runtime.block_on(capture(config, action)).map(|()| None)
        }
        Command::DeadLetters { action } => {
            logging::init(&config.log);
            runtime
                .block_on(dead_letters(config, action))
                .map(|()| None)
        }
        Command::Republish {
            from_position,
            to_position,
            aggregate,
            since,
            until,
            topic,
            dry_run,
        } => {
            let selection = kafka_relay::republish::Selection {
                from_position,
                to_position,
                aggregate_id: aggregate,
                since,
                until,
            };
            if selection.is_empty() {
                eprintln!(
                    "kafka-relay republish: select events with --from-position, --to-position, --aggregate, --since or --until"
                );
                return ExitCode::from(2);
            }
            logging::init(&config.log);
            runtime
                .block_on(republish(config, selection, topic, dry_run))
                .map(|()| None)
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

async fn capture(config: Config, action: CaptureAction) -> anyhow::Result<()> {
    use taskpool_capture::camunda;
    use taskpool_core::{PgStore, Store};
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(config.database.url.expose_secret())
        .await
        .context("cannot connect to PostgreSQL")?;
    match action {
        CaptureAction::Install {
            application,
            time_zone,
            variables,
        } => {
            let mut allowed = Vec::new();
            for spec in &variables {
                let (key, names) = spec.split_once(':').with_context(|| {
                    format!("--variables {spec}: expected <key>:<variable>,...")
                })?;
                allowed.extend(names.split(',').map(|n| (key.to_string(), n.to_string())));
            }
            PgStore::migrate(&pool).await?;
            let installation = camunda::Installation {
                application,
                time_zone,
                variables: allowed,
            };
            let captured = camunda::install(&pool, &installation).await?;
            println!("capture installed; {captured} existing tasks captured");
        }
        CaptureAction::Uninstall => {
            camunda::uninstall(&pool).await?;
            println!("capture removed");
        }
    }
    Ok(())
}

async fn republish(
    config: Config,
    selection: kafka_relay::republish::Selection,
    topic: Option<String>,
    dry_run: bool,
) -> anyhow::Result<()> {
    use kafka_relay::republish;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(config.database.url.expose_secret())
        .await
        .context("cannot connect to PostgreSQL")?;
    let selected = republish::count(&pool, &selection)
        .await
        .context("cannot select the events")?;
    if dry_run {
        println!("would republish {selected} events");
        return Ok(());
    }
    let publisher =
        kafka_relay::publisher::Publisher::new(&config.kafka).context("Kafka producer")?;
    let sent = republish::republish(&pool, &publisher, &selection, topic.as_deref()).await?;
    tracing::info!(sent, ?selection, "events republished");
    println!("republished {sent} events");
    Ok(())
}

async fn dead_letters(config: Config, action: DeadLetterAction) -> anyhow::Result<()> {
    use kafka_relay::dead_letters;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(config.database.url.expose_secret())
        .await
        .context("cannot connect to PostgreSQL")?;
    let relay = &config.relay.name;
    match action {
        DeadLetterAction::List { json } => {
            let letters = dead_letters::list(&pool, relay, None).await?;
            for letter in &letters {
                if json {
                    println!("{}", letter.to_json());
                } else {
                    println!("{}", letter.line());
                }
            }
            if !json {
                eprintln!("{} dead letters for relay {relay}", letters.len());
            }
        }
        DeadLetterAction::Show { position } => {
            let letters = dead_letters::list(&pool, relay, Some(&[position])).await?;
            let letter = letters
                .first()
                .with_context(|| format!("no dead letter at position {position}"))?;
            println!("{:#}", letter.to_json());
        }
        DeadLetterAction::Retry { positions, all } => {
            if positions.is_empty() && !all {
                anyhow::bail!("name the positions to retry, or --all");
            }
            let publisher =
                kafka_relay::publisher::Publisher::new(&config.kafka).context("Kafka producer")?;
            let selected = (!all).then_some(positions.as_slice());
            let retried = dead_letters::retry(&pool, relay, &publisher, selected).await?;
            println!(
                "published again and removed: {}; refused again: {}",
                retried.published.len(),
                retried.refused.len()
            );
            for (position, reason) in &retried.refused {
                println!("  {position}: {reason}");
            }
            if !retried.refused.is_empty() {
                anyhow::bail!("{} dead letters were refused again", retried.refused.len());
            }
        }
        DeadLetterAction::Discard { positions } => {
            let discarded = dead_letters::discard(&pool, relay, &positions).await?;
            println!("discarded: {discarded:?}");
            if discarded.len() < positions.len() {
                anyhow::bail!("some positions had no dead letter");
            }
        }
    }
    Ok(())
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
    let status = status::read(&pool, &config.relay.name, config.relay.horizon)
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
