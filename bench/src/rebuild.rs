//! `rebuild`: the same history projected twice on the same servers: incrementally by the
//! projection (batch by batch, as it arrives), and by `tasklist-api rebuild` (folded per task in
//! memory, written once).

use std::sync::Arc;
use std::time::Duration;

use tasklist_api::mongo::rebuild::{self, Progress, source::Start};
use tasklist_api::mongo::store::MongoStore;
use taskpool_schemas::TaskEvent;
use taskpool_service::shutdown;
use taskpool_tasklist::metrics::Metrics;

use crate::Options;
use crate::setup::BenchResult;
use crate::tasklist_setup::{
    config, create_topics, drop_database, produce, project, task_event, unique,
};
use crate::topics::delete_topics;

pub async fn run(options: &Options) -> BenchResult<()> {
    let events = options.number("events", 200_000)?;
    let per_task = options.number("versions", 5)?.max(1);
    let prefix = unique("rebuild");
    create_topics(&prefix).await?;
    let outcome = measure(&prefix, events, per_task).await;
    delete_topics(&prefix).await;
    outcome
}

async fn measure(prefix: &str, events: u64, per_task: u64) -> BenchResult<()> {
    let tasks = events / per_task;
    eprintln!("producing {events} events: {tasks} tasks, {per_task} versions each ...");
    // Version after version across all tasks, as many engines working at once would write them:
    // a projection batch rarely holds two versions of one task.
    let history: Vec<TaskEvent> = (1..=per_task as i64)
        .flat_map(|version| {
            let groups: &[&str] = if version % 2 == 0 {
                &["approvers"]
            } else {
                &["buyers"]
            };
            (0..tasks).map(move |n| task_event(&format!("task-{n}"), version, groups))
        })
        .collect();
    produce(prefix, &history).await?;
    let events = history.len() as u64;

    eprintln!("projecting incrementally ...");
    let (projection_rate, _) = project(prefix, events).await?;
    eprintln!("rebuilding ...");
    let (rebuild_rate, newest) = rebuild(prefix, per_task as i64).await?;
    if newest != tasks {
        return Err(format!(
            "the rebuilt view holds {newest} tasks at their newest version, of {tasks}"
        ));
    }

    println!("rebuild benchmark: {events} task events, {tasks} tasks, {per_task} versions each");
    println!("{:<58} {:>12}", "", "events/s");
    println!(
        "{:<58} {projection_rate:>12.0}",
        "projection: consumer group, a version-guarded write per batch"
    );
    println!(
        "{:<58} {rebuild_rate:>12.0}",
        "rebuild: read, fold per task in memory, write once"
    );
    println!(
        "RESULT rebuild_events_per_s={rebuild_rate:.0} projection_events_per_s={projection_rate:.0} rebuild_vs_projection={:.2}",
        rebuild_rate / projection_rate
    );
    Ok(())
}

/// `tasklist-api rebuild` into a fresh database: events per second from planning to the
/// switch, and how many tasks the rebuilt view holds at version `newest`.
async fn rebuild(prefix: &str, newest: i64) -> BenchResult<(f64, u64)> {
    let settings = config(&unique("rebuilt"), prefix, false)?;
    let options = rebuild::Options {
        start: Start::Earliest,
        switch_grace: Duration::ZERO,
    };
    let (_trigger, stop) = shutdown::channel();
    let mut progress = Progress::stderr();
    let report = rebuild::run(&settings, &options, &mut progress, stop)
        .await
        .map_err(|e| taskpool_service::logging::error_chain(&e))?;
    eprintln!(
        "rebuild read {} events and wrote {} documents",
        report.events, report.documents
    );
    let store = MongoStore::connect(&settings.mongodb, Arc::new(Metrics::default()))
        .await
        .map_err(|e| e.to_string())?;
    let at_newest = store
        .tasks()
        .count_documents(mongodb::bson::doc! { "version": newest })
        .await
        .map_err(|e| e.to_string())?;
    drop_database(&store).await;
    Ok((report.events as f64 / report.build_seconds, at_newest))
}
