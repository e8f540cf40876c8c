//! taskpool-bench: the project's benchmarks in one place.
//!
//! Every benchmark takes its servers from the environment (`DATABASE_URL`, ...; see
//! `scripts/services.sh env`), measures the system and a raw baseline alternately in one run,
//! prints a table and ends with one `RESULT name=value ...` line.

/// The allocator the tasklist-api binary uses, so the in-process service measures the same.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod actions;
mod e2e;
mod engine;
mod engine_stream;
mod held_open;
mod horizon_stress;
mod horizon_writers;
mod outbox;
mod rebuild;
mod receipts;
mod relay;
mod setup;
mod single_node;
mod soak;
mod stats;
mod tasklist;
mod tasklist_service;
mod tasklist_setup;
mod topics;

use std::process::ExitCode;

const USAGE: &str = "usage: taskpool-bench <benchmark> [--name value ...]

benchmarks:
  outbox          engine transaction latency without/with recording a task event, and events/s
                  options: --iterations N (2000) --workers N (4) --seconds N (5) --notify on|off (off)
  relay           the relay draining pre-filled outbox events to Kafka vs a raw producer
                  options: --events N (100000) --rounds N (3) --batch-size N --in-flight N
                  --horizon outbox-writers|all-transactions (outbox-writers)
                  --compression none|gzip|snappy|lz4|zstd (the relay's default) --tls (the
                  broker's SSL listener)
  relay-latency   commit-to-delivery latency at a steady rate
                  options: --rate N (500 per second) --seconds N (30) --horizon (as relay)
                  --long-tx: writing transactions held open all along, in another database
                  and on another table of the engine's database
  horizon-stress  writers of every kind (create-only, updates, isolation levels, savepoints,
                  prepared transactions, rollbacks) against the relay's reader polling back to
                  back: every committed event read once, in version order
                  options: --secs N (60) --writers N (10)
  projection      task events from Kafka into MongoDB vs the same bulk upserts done directly
                  options: --events N (100000)
  fanout          stream clients all receiving one change: latency and server memory
                  options: --clients N (10000) --processes N (4, one 127.0.0.x each)
  e2e             the demo on PostgreSQL through relay, broker, tasklist-api and MongoDB to
                  stream clients: latency per stage and in total
                  options: --rate N (200 events per second) --seconds N (20)
                  --batch-wait-ms N --fetch-wait-ms N --relay-poll-max-ms N (tuning experiments)
  rebuild         a history projected incrementally by the projection vs rebuilt by
                  `tasklist-api rebuild` (folded in memory), on the same servers
                  options: --events N (200000) --versions N (5 per task)
  actions         claims through the distributed pipeline at a steady rate: request to the
                  caller's stream showing the claim (demo engine on PostgreSQL, relay, broker,
                  tasklist-api on MongoDB)
                  options: --rate N (50 per second) --seconds N (20)
  single-node     the demo engine at a steady rate: commit to stream receipt in one process,
                  then doubled rates to find the highest with p99 under 250 ms
                  options: --rate N (200 events per second) --seconds N (20) --probe-seconds N (5)
  soak            single-node with the demo at a steady rate for many minutes: resident
                  memory each minute, after the warm-up and at the end
                  options: --minutes N (30) --warm-minutes N (5) --rate N (100 events/s)
  engine          the real engine (Operaton): its REST calls with and without the capture
                  installed, alternating rounds, and engine commit to tasklist stream through
                  the capture, relay, broker and tasklist-api at a steady rate
                  options: --rounds N (16 each way) --iterations N (30 per round)
                  --settle N (40 untimed after each switch) --rate N (50 processes per
                  second) --seconds N (20)";

/// `--name value` options after the benchmark name.
#[derive(Debug, Default)]
pub struct Options(Vec<(String, String)>);

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Vec::new();
        let mut rest = args.iter();
        while let Some(name) = rest.next() {
            let name = name
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {name}"))?;
            // A name without a value (the end, or another name next) is a switch.
            let value = match rest.clone().next() {
                Some(value) if !value.starts_with("--") => {
                    rest.next();
                    value.clone()
                }
                _ => "on".to_string(),
            };
            options.push((name.to_string(), value));
        }
        Ok(Options(options))
    }

    /// An option's text, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a switch (`--name`, or `--name on|off`) is on.
    pub fn switch(&self, name: &str) -> Result<bool, String> {
        match self.text(name) {
            None | Some("off") => Ok(false),
            Some("on") => Ok(true),
            Some(other) => Err(format!("--{name} is a switch (on or off), got {other}")),
        }
    }

    /// A numeric option, or its default.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.0.iter().rev().find(|(n, _)| n == name) {
            Some((_, value)) => value
                .parse()
                .map_err(|_| format!("--{name} must be a number, got {value}")),
            None => Ok(default),
        }
    }
}

/// A required environment variable, with a hint on how to set it.
pub fn server_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| {
        format!(
            "{name} is not set: start the servers with scripts/services.sh start and \
             eval \"$(scripts/services.sh env)\""
        )
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(benchmark) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match Options::parse(&args[1..]) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The fan-out clients run single-threaded: their processes share the cores with the
    // server under test, and one thread per process keeps them cheap.
    let runtime = if benchmark == "fanout-clients" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match benchmark.as_str() {
        "outbox" => runtime.block_on(outbox::run(&options)),
        "relay" => runtime.block_on(relay::throughput(&options)),
        "relay-latency" => runtime.block_on(relay::latency(&options)),
        "horizon-stress" => runtime.block_on(horizon_stress::run(&options)),
        "projection" => runtime.block_on(tasklist::projection(&options)),
        "fanout" => runtime.block_on(tasklist::fanout(&options)),
        "fanout-clients" => runtime.block_on(tasklist::fanout_clients(&options)),
        "single-node" => runtime.block_on(single_node::run(&options)),
        "soak" => runtime.block_on(soak::run(&options)),
        "e2e" => runtime.block_on(e2e::run(&options)),
        "rebuild" => runtime.block_on(rebuild::run(&options)),
        "actions" => runtime.block_on(actions::run(&options)),
        "engine" => runtime.block_on(engine::run(&options)),
        other => {
            eprintln!("unknown benchmark {other}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}
