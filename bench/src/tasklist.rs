//! `projection` and `fanout`: the tasklist service against its raw baselines, on the broker
//! of `KAFKA_BOOTSTRAP` and the MongoDB-wire server of `MONGODB_URI`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tasklist_api::config::{MongoConfig, WriteConcern};
use tasklist_api::mongo::store::MongoStore;
use taskpool_schemas::TaskEvent;
use taskpool_service::shutdown;
use taskpool_tasklist::documents::TaskDocument;
use taskpool_tasklist::metrics::Metrics;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

use crate::setup::BenchResult;
use crate::stats::Samples;
use crate::tasklist_setup::{
    PARTITIONS, config, create_topics, drop_database, produce, project, task_event, unique,
};
use crate::topics::delete_topics;
use crate::{Options, server_env};

pub async fn projection(options: &Options) -> BenchResult<()> {
    let events = options.number("events", 100_000)?;
    let prefix = unique("projection");
    create_topics(&prefix).await?;
    let outcome = measure_projection(&prefix, events).await;
    delete_topics(&prefix).await;
    outcome
}

async fn measure_projection(prefix: &str, events: u64) -> BenchResult<()> {
    eprintln!("producing {events} task events ...");
    let produced: Vec<TaskEvent> = (0..events)
        .map(|n| task_event(&format!("task-{n}"), 1, &["approvers"]))
        .collect();
    let documents: Vec<TaskDocument> = produced.iter().map(TaskDocument::from_event).collect();
    produce(prefix, &produced).await?;

    // The projection: consume everything into a fresh database.
    let (projection_rate, first_batch) = project(prefix, events).await?;
    let service_config = config(&unique("settings"), prefix, false)?;

    // The raw baseline: the same documents, the same version-guarded bulk upserts, the same
    // batch size, straight into a fresh database of the same server.
    let raw_store = MongoStore::connect(
        &MongoConfig {
            uri: server_env("MONGODB_URI")?.into(),
            database: unique("raw"),
            write_concern: WriteConcern::Named("majority".into()),
            operation_timeout_ms: 60_000,
        },
        Arc::new(Metrics::default()),
    )
    .await
    .map_err(|e| e.to_string())?;
    raw_store
        .ensure_indexes()
        .await
        .map_err(|e| e.to_string())?;
    let batch = service_config.kafka.batch_size;
    let started = Instant::now();
    for chunk in documents[first_batch as usize..].chunks(batch) {
        let upserts: Vec<(String, i64, &TaskDocument)> =
            chunk.iter().map(|d| (d.id.clone(), d.version, d)).collect();
        raw_store
            .upsert_versioned(&raw_store.tasks_collection(), &upserts)
            .await
            .map_err(|e| e.to_string())?;
    }
    let raw_rate = (events - first_batch) as f64 / started.elapsed().as_secs_f64();
    drop_database(&raw_store).await;

    println!(
        "projection benchmark: {events} task events, {PARTITIONS} partitions, batches of {batch}"
    );
    println!("{:<52} {:>12}", "", "events/s");
    println!(
        "{:<52} {projection_rate:>12.0}",
        "projection: Kafka -> decode -> bulk upserts"
    );
    println!(
        "{:<52} {raw_rate:>12.0}",
        "raw: the same bulk upserts of the same documents"
    );
    println!(
        "RESULT projection_events_per_s={projection_rate:.0} raw_bulk_upserts_per_s={raw_rate:.0} projection_vs_raw_ratio={:.3}",
        projection_rate / raw_rate
    );
    Ok(())
}

pub(crate) fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory once the allocator has returned what connecting left behind: sampled
/// until it stops shrinking (at most 5 s).
async fn settled_rss() -> u64 {
    let mut last = rss_kib();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib();
        if now + now / 200 >= last {
            return now.min(last);
        }
        last = now;
    }
    last
}

fn epoch_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub async fn fanout(options: &Options) -> BenchResult<()> {
    let clients = options.number("clients", 10_000)?;
    let processes = options.number("processes", 4)?.clamp(1, 64);
    let prefix = unique("fanout");
    create_topics(&prefix).await?;
    let outcome = measure_fanout(&prefix, clients, processes).await;
    delete_topics(&prefix).await;
    outcome
}

async fn measure_fanout(prefix: &str, clients: u64, processes: u64) -> BenchResult<()> {
    let database = unique("db");
    let service_config = config(&database, prefix, true)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (trigger, stop) = shutdown::channel();
    let running = tasklist_api::server::start(service_config.clone(), listener, stop)
        .await
        .map_err(|e| e.to_string())?;
    let store = MongoStore::connect(&service_config.mongodb, Arc::new(Metrics::default()))
        .await
        .map_err(|e| e.to_string())?;
    let rss_before = settled_rss().await;

    // Client processes, each from its own 127.0.0.x source address.
    let executable = std::env::current_exe().map_err(|e| e.to_string())?;
    let per_process = clients.div_ceil(processes);
    let mut children = Vec::new();
    for index in 0..processes {
        let count = per_process.min(clients - index * per_process);
        let mut child = tokio::process::Command::new(&executable)
            .args([
                "fanout-clients",
                "--port",
                &port.to_string(),
                "--count",
                &count.to_string(),
                "--source",
                &format!("127.0.0.{}", 2 + index),
                "--first",
                &(index * per_process).to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a client process: {e}"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        children.push((child, stdout.lines()));
    }
    let connecting = Instant::now();
    // Every client connects within this time, or the benchmark fails saying so (instead of
    // waiting forever when the server or the machine cannot take that many connections).
    let connect_deadline = Duration::from_secs(60 + clients / 100);
    eprintln!("connecting {clients} stream clients (at most {connect_deadline:?})");
    for (_, lines) in children.iter_mut() {
        let left = connect_deadline.saturating_sub(connecting.elapsed());
        match tokio::time::timeout(left, lines.next_line()).await {
            Ok(Ok(Some(line))) if line == "ready" => {}
            Ok(other) => {
                return Err(format!(
                    "a client process failed ({other:?}); its error is above"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "not every one of {clients} clients had its snapshot within {connect_deadline:?}; the server's open streams: {}",
                    running.metrics.open_streams.get()
                ));
            }
        }
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let rss_connected = settled_rss().await;
    // The gauge is refreshed once a second: wait until it counts every client (at most 5 s).
    let counted = Instant::now() + Duration::from_secs(5);
    let mut open = running.metrics.open_streams.get();
    while u64::try_from(open).unwrap_or(0) < clients && Instant::now() < counted {
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = running.metrics.open_streams.get();
    }

    // The change: one task for everyone, written where the projection writes.
    let event = task_event("for-everyone", 1, &["everyone"]);
    let document = TaskDocument::from_event(&event);
    let written_at = epoch_micros();
    store
        .upsert_versioned(
            &store.tasks_collection(),
            &[(document.id.clone(), document.version, &document)],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut samples = Samples::default();
    let mut received = 0u64;
    let delivery_deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for (child, lines) in children.iter_mut() {
        while let Some(line) = tokio::time::timeout_at(delivery_deadline, lines.next_line())
            .await
            .map_err(|_| {
                format!("only {received} of {clients} clients got the change within 120 s")
            })?
            .map_err(|e| e.to_string())?
        {
            if line == "done" {
                break;
            }
            let at: u64 = line
                .parse()
                .map_err(|_| format!("bad client output {line}"))?;
            samples.push(Duration::from_micros(at.saturating_sub(written_at)));
            received += 1;
        }
        let _ = child.wait().await;
    }
    let rss_delivered = rss_kib();
    trigger.trigger();
    running.stopped().await;
    let _ = store.database().drop().await;

    if received != clients {
        return Err(format!(
            "only {received} of {clients} clients received the change"
        ));
    }
    let per_client = rss_connected.saturating_sub(rss_before) as f64 / clients as f64;
    let p50 = samples.percentile_ms(50.0);
    let p99 = samples.percentile_ms(99.0);
    println!(
        "fanout benchmark: {clients} SSE clients from {processes} source addresses ({open} streams open), one change for all"
    );
    println!("connecting all clients (snapshot, marker): {connect_seconds:.1} s");
    println!(
        "delivery, write to receipt: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        samples.percentile_ms(100.0)
    );
    println!(
        "server memory: {rss_before} KiB before, {rss_connected} KiB connected, {rss_delivered} KiB after delivery: {per_client:.1} KiB per client"
    );
    println!(
        "RESULT fanout_clients={clients} fanout_p99_ms={p99:.1} server_kib_per_client={per_client:.1}"
    );
    Ok(())
}

/// The client side of `fanout` (a child process): opens `count` streams from `source`,
/// prints `ready` once every snapshot arrived, then the receipt time (epoch µs) of the change
/// on each stream, then `done`.
pub async fn fanout_clients(options: &Options) -> BenchResult<()> {
    let port = options.number("port", 0)?;
    let count = options.number("count", 0)?;
    let first = options.number("first", 0)?;
    let source: std::net::IpAddr = options
        .text("source")
        .unwrap_or("127.0.0.1")
        .parse()
        .map_err(|_| "bad --source".to_string())?;
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|_| "bad --port".to_string())?;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let connects = Arc::new(tokio::sync::Semaphore::new(64));
    for n in first..first + count {
        let (ready_tx, done_tx, connects) = (ready_tx.clone(), done_tx.clone(), connects.clone());
        tokio::spawn(async move {
            let outcome: Result<(), String> = async {
                let permit = connects.acquire().await.map_err(|e| e.to_string())?;
                let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket
                    .bind(std::net::SocketAddr::new(source, 0))
                    .map_err(|e| e.to_string())?;
                let mut stream = socket.connect(server).await.map_err(|e| e.to_string())?;
                let request = format!(
                    "GET /api/tasks/stream HTTP/1.1\r\nHost: bench\r\nX-Taskpool-User: user-{n}\r\nX-Taskpool-Groups: everyone\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.map_err(|e| e.to_string())?;
                if !line.starts_with("HTTP/1.1 200") {
                    let status = line.trim();
                    return Err(if status.contains(" 503 ") {
                        format!("refused ({status}): the server's connection cap is reached; lower --clients or raise http.max_connections and the file-descriptor limit")
                    } else {
                        format!("the server answered {status:?}")
                    });
                }
                // Headers, then the chunked body: wait for the marker, then the change.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                        return Err("closed before the marker".into());
                    }
                    if line.starts_with("event: marker") {
                        break;
                    }
                }
                drop(permit);
                let _ = ready_tx.send(());
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                        return Err("closed before the change".into());
                    }
                    if line.starts_with("event: upsert") {
                        // The connection stays open until every client has the change: real
                        // clients do not hang up on receipt, and hang-ups would load the server
                        // while it is still delivering.
                        let _ = done_tx.send((epoch_micros(), reader));
                        return Ok(());
                    }
                }
            }
            .await;
            if let Err(error) = outcome {
                eprintln!("client {n}: {error}");
                std::process::exit(1);
            }
        });
    }
    drop(ready_tx);
    drop(done_tx);
    let mut ready = 0;
    while ready < count {
        if ready_rx.recv().await.is_none() {
            return Err("clients failed".into());
        }
        ready += 1;
    }
    println!("ready");
    let mut times = Vec::new();
    let mut open_streams = Vec::new();
    while let Some((at, stream)) = done_rx.recv().await {
        times.push(at);
        open_streams.push(stream);
        if times.len() as u64 == count {
            break;
        }
    }
    let mut out = String::new();
    for at in times {
        out.push_str(&format!("{at}\n"));
    }
    out.push_str("done");
    println!("{out}");
    drop(open_streams);
    Ok(())
}
