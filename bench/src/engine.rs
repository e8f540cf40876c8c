//! The real engine (Operaton, `ENGINE_REST_URL` on `ENGINE_DATABASE_URL`) with taskpool's
//! capture:
//!
//! 1. What the capture costs the engine: its own REST calls (start a process, complete its
//!    first task) timed in rounds with the capture installed and uninstalled, alternating,
//!    with the capture queue drained between rounds or all along as the relay would; and the
//!    same procedure with no capture in either arm (a control: what this machine's noise alone
//!    shows as a ratio).
//! 2. Engine commit to tasklist stream (`engine_stream`).

use std::time::{Duration, Instant};

use serde_json::json;
use taskpool_capture::camunda;
use taskpool_capture::drain::drain_once;
use taskpool_service::shutdown::{self, Shutdown};
use taskpool_testkit::operaton::{Engine, People, installation};

use crate::Options;
use crate::engine_stream::{StreamLatency, stream_latency};
use crate::setup::BenchResult;
use crate::stats::Samples;
use crate::topics::{delete_topics, unique_prefix};

/// Untimed purchases before the first round (the engine's JIT and caches warm up), and
/// after each switch.
const WARM_UP: u64 = 300;

pub async fn run(options: &Options) -> BenchResult<()> {
    // Many short ABBA pairs rather than few long ones: this machine's slow phases last
    // seconds, and a pair short enough to sit inside one cancels it out. 96 pairs: with 48,
    // the control's ratio still strayed up to 4 % from 1.
    let rounds = options.number("rounds", 96)?;
    let iterations = options.number("iterations", 10)?;
    let rate = options.number("rate", 50)?.max(1);
    let seconds = options.number("seconds", 20)?;
    // After a switch each of the engine's pooled sessions (ten) compiles and plans the
    // capture's functions once: untimed purchases so that the timed ones mostly find them
    // planned (a session that has not yet counts against the capture).
    let settle = options.number("settle", 20)?;
    let engine = Engine::ready().await;
    let people = People::unique();

    let mut untimed = Calls::default();
    for i in 0..WARM_UP {
        let key = format!("warm-{i}");
        untimed.measure(&engine, &people, &key).await?;
    }
    let procedure = (rounds, iterations, settle);
    let apart = compare(&engine, &people, procedure, Arm::Captured).await?;
    let alongside = compare(&engine, &people, procedure, Arm::CapturedDrainAlongside).await?;
    let control = compare(&engine, &people, procedure, Arm::Control).await?;
    camunda::install(&engine.pool, &installation())
        .await
        .map_err(|e| e.to_string())?;
    drain_queue(&engine.pool).await?;
    println!("the engine's REST calls, {rounds} rounds of {iterations} each way, alternating");
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "call", "without p50", "with p50", "ratio"
    );
    let ratio = apart.print("queue drained between rounds");
    let ratio_alongside = alongside.print("drain running alongside");
    // What the procedure itself gives on this machine when nothing differs between the arms.
    let ratio_control = control.print("control: no capture in either arm");

    let prefix = unique_prefix("engine");
    let latency = stream_latency(&engine, &prefix, rate, seconds).await;
    delete_topics(&prefix).await;
    let StreamLatency {
        samples,
        expected,
        slowest: (slowest, started_at),
    } = latency?;
    println!(
        "engine commit -> tasklist stream at {rate} tasks/s for {seconds} s: {} of {expected} \
         tasks arrived, p50 {:.1} ms, p99 {:.1} ms; slowest {:.1} ms, started {:.1} s in",
        samples.count(),
        samples.percentile_ms(50.0),
        samples.percentile_ms(99.0),
        slowest.as_secs_f64() * 1000.0,
        started_at.as_secs_f64()
    );
    if samples.count() < expected {
        return Err(format!(
            "{} tasks never reached the stream",
            expected - samples.count()
        ));
    }
    println!(
        "RESULT engine_capture_ratio={ratio:.3} engine_capture_ratio_drain_alongside={ratio_alongside:.3} \
         engine_capture_ratio_control={ratio_control:.3} engine_e2e_p50_ms={:.1} engine_e2e_p99_ms={:.1}",
        samples.percentile_ms(50.0),
        samples.percentile_ms(99.0)
    );
    Ok(())
}

/// The arm of a comparison that is not "without the capture".
#[derive(Clone, Copy, PartialEq)]
enum Arm {
    /// The capture installed; its queue drained between rounds, so the figures are the
    /// engine's own.
    Captured,
    /// The capture installed and its queue drained all along, as a relay on the same machine
    /// would.
    CapturedDrainAlongside,
    /// No capture here either, with the same switches and settling: the ratio the procedure
    /// shows when nothing differs (this machine's noise).
    Control,
}

/// The same calls with the capture installed and uninstalled, in ABBA rounds (a drift in
/// the engine or the machine favours neither); each switch is followed by untimed calls (the
/// engine's connections plan their statements again after the triggers change).
async fn compare(
    engine: &Engine,
    people: &People,
    (rounds, iterations, settle): (u64, u64, u64),
    arm: Arm,
) -> BenchResult<Comparison> {
    let alongside = arm == Arm::CapturedDrainAlongside;
    let (stop_drain, draining) = shutdown::channel();
    let drain = alongside.then(|| tokio::spawn(drain_continuously(engine.pool.clone(), draining)));
    let mut comparison = Comparison::default();
    let mut untimed = Calls::default();
    for round in 0..rounds * 2 {
        // The arm of this round: "with" (the capture, unless this is the control) or without.
        let captured = (round % 2 == 0) == (round / 2 % 2 == 0);
        let switched = if captured && arm != Arm::Control {
            camunda::install(&engine.pool, &installation())
                .await
                .map(drop)
        } else {
            camunda::uninstall(&engine.pool).await
        };
        switched.map_err(|e| e.to_string())?;
        // What an install queues (the engine's open tasks) is not the calls' cost.
        drain_queue(&engine.pool).await?;
        for i in 0..settle {
            let key = format!("settle-{}-{round}-{i}", arm as u8);
            untimed.measure(engine, people, &key).await?;
        }
        let calls = if captured {
            &mut comparison.with
        } else {
            &mut comparison.without
        };
        let mut this_round = Samples::default();
        for i in 0..iterations {
            let key = format!("bench-{}-{round}-{i}", arm as u8);
            this_round.push(calls.measure(engine, people, &key).await?);
        }
        // Each ABBA pair's ratio, so that a drift between pairs cancels out.
        let p50 = this_round.percentile_ms(50.0);
        match comparison.open_pair.take() {
            None => comparison.open_pair = Some((captured, p50)),
            Some((true, with)) => comparison.pair_ratios.push(with / p50),
            Some((false, without)) => comparison.pair_ratios.push(p50 / without),
        }
        if !alongside {
            drain_queue(&engine.pool).await?;
        }
    }
    stop_drain.trigger();
    if let Some(drain) = drain {
        let _ = drain.await;
    }
    Ok(comparison)
}

#[derive(Default)]
struct Comparison {
    with: Calls,
    without: Calls,
    /// The first round of a pair: whether captured, and its p50 of one purchase.
    open_pair: Option<(bool, f64)>,
    /// Per pair of rounds: with p50 / without p50 of one purchase.
    pair_ratios: Vec<f64>,
}

impl Comparison {
    /// Prints the table's rows; returns the ratio of one purchase's p50s.
    fn print(&self, how: &str) -> f64 {
        let mut ratio = f64::NAN;
        for (name, without, with) in [
            ("start a process", &self.without.start, &self.with.start),
            (
                "complete a task",
                &self.without.complete,
                &self.with.complete,
            ),
            ("both (one purchase)", &self.without.both, &self.with.both),
        ] {
            ratio = with.percentile_ms(50.0) / without.percentile_ms(50.0);
            println!(
                "{:<44} {:>9.1} ms {:>9.1} ms {ratio:>8.3}",
                format!("{name}, {how}"),
                without.percentile_ms(50.0),
                with.percentile_ms(50.0)
            );
        }
        // How much the machine moved meanwhile: each ABBA pair's own ratio.
        let mut pairs = self.pair_ratios.clone();
        pairs.sort_by(f64::total_cmp);
        let shown: Vec<String> = pairs.iter().map(|r| format!("{r:.2}")).collect();
        let geometric_mean = (pairs.iter().map(|r| r.ln()).sum::<f64>() / pairs.len() as f64).exp();
        println!(
            "  {how}: ratio per pair of rounds {} (geometric mean {geometric_mean:.3})",
            shown.join(" ")
        );
        ratio
    }
}

/// Latencies of the engine's calls in one mode.
#[derive(Default)]
struct Calls {
    start: Samples,
    complete: Samples,
    both: Samples,
}

impl Calls {
    /// One purchase's calls, timed; returns their sum.
    async fn measure(
        &mut self,
        engine: &Engine,
        people: &People,
        key: &str,
    ) -> BenchResult<Duration> {
        let started = Instant::now();
        let instance = engine.start_purchase(key, people, false).await;
        let start = started.elapsed();
        let task = engine
            .tasks_of(&instance)
            .await
            .first()
            .map(|(_, id)| id.clone())
            .ok_or("the process has no task")?;
        let completing = Instant::now();
        let reply = engine
            .call("POST", &format!("/task/{task}/complete"), Some(json!({})))
            .await;
        let complete = completing.elapsed();
        if reply.status != 204 {
            return Err(format!("complete: {} {}", reply.status, reply.body));
        }
        // Untimed: the process goes, so that open tasks do not pile up (each install
        // captures every open task, and a bigger engine is a slower one in both modes).
        engine.cancel(&instance).await;
        self.start.push(start);
        self.complete.push(complete);
        self.both.push(start + complete);
        Ok(start + complete)
    }
}

/// Empties the capture queue once.
async fn drain_queue(pool: &sqlx::PgPool) -> BenchResult<()> {
    while drain_once(pool, 500).await.map_err(|e| e.to_string())?.rows > 0 {}
    Ok(())
}

/// Empties the capture queue as the relay's leader does, until shutdown.
async fn drain_continuously(pool: sqlx::PgPool, mut shutdown: Shutdown) {
    while !shutdown.is_requested() {
        let drained = drain_once(&pool, 500).await.map(|d| d.rows).unwrap_or(0);
        if drained == 0 && shutdown.sleep(Duration::from_millis(5)).await {
            return;
        }
    }
}
