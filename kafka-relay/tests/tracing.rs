//! One event's trace across the pipeline: the engine's trace context, recorded by the collector,
//! is the Kafka header's, the relay's span's and tasklist-api's spans' (applying the event and
//! delivering it to streams), as exported over OTLP to a receiver in this test.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tasklist_api::config::{Config as TasklistConfig, Layered as _};
use taskpool_collector::Collector;
use taskpool_core::{PgStore, TraceParent};
use taskpool_service::logging::{LogConfig, LogFormat};
use taskpool_service::shutdown;
use taskpool_testkit::required_env;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(60);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ENGINE_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver: keeps every span posted to it.
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = spans.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).await.unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.unwrap();
                let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for resource in request["resourceSpans"].as_array().unwrap() {
                    let service = &resource["resource"]["attributes"][0]["value"]["stringValue"];
                    for scope in resource["scopeSpans"].as_array().unwrap() {
                        for span in scope["spans"].as_array().unwrap() {
                            let mut span = span.clone();
                            span["service"] = service.clone();
                            kept.lock().unwrap().push(span);
                        }
                    }
                }
                let mut socket = reader.into_inner();
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .await;
            });
        }
    });
    (format!("http://{address}"), spans)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_keeps_its_trace_id_from_the_engine_to_the_stream() {
    let (endpoint, spans) = otlp_receiver().await;
    // tasklist-api runs in this process and exports under this process's name.
    taskpool_service::logging::init(&LogConfig {
        format: LogFormat::Json,
        level: "info".into(),
        otlp_endpoint: Some(endpoint.clone()),
    });
    let world = World::new().await;
    let mut env = world.relay_env();
    env.insert(
        format!("{}LOG__OTLP_ENDPOINT", kafka_relay::config::ENV_PREFIX),
        endpoint,
    );
    let relay = RelayProcess::spawn(&env);

    let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let tasklist_env = [
        ("MONGODB__URI", required_env("MONGODB_URI")),
        ("MONGODB__DATABASE", format!("trace{id}")),
        ("KAFKA__BOOTSTRAP_SERVERS", world.bootstrap.clone()),
        ("KAFKA__TOPIC_PREFIX", world.prefix.clone()),
        ("KAFKA__GROUP_ID", format!("trace{id}")),
        (
            "IDENTITY__HS256_SECRET",
            "tracing-test-secret-tracing-test-x".into(),
        ),
    ]
    .map(tasklist_api::config::Config::env_var);
    let config = TasklistConfig::from_sources("", tasklist_env).expect("tasklist configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, shutdown) = shutdown::channel();
    let running = tasklist_api::server::start(config, listener, shutdown)
        .await
        .expect("tasklist-api starts");

    // The engine's transaction, in the trace its caller started.
    let traceparent = format!("00-{TRACE}-{ENGINE_SPAN}-01");
    let mut tx = world.db.pool.begin().await.unwrap();
    let mut collector =
        Collector::new().with_traceparent(TraceParent::parse(&traceparent).unwrap());
    collector.record(created("traced")).unwrap();
    collector.flush::<PgStore>(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    let mut reader = world.reader().await;
    reader
        .read_until("the event", DEADLINE, |r| !r.is_empty())
        .await;
    let message = &reader.received[0];
    assert_eq!(message.headers["traceparent"], traceparent);
    let event_id = message.headers["event-id"].clone();

    let wanted = [
        ("kafka-relay", "publish event"),
        ("", "apply event"),
        ("", "deliver to streams"),
    ];
    let started = std::time::Instant::now();
    let found: Vec<Value> = loop {
        let received = spans.lock().unwrap().clone();
        let found: Vec<Value> = wanted
            .iter()
            .filter_map(|(service, name)| {
                received
                    .iter()
                    .find(|s| {
                        s["name"] == *name
                            && (service.is_empty() || s["service"] == *service)
                            && attribute(s, "aggregate_id") == Some("traced")
                    })
                    .cloned()
            })
            .collect();
        if found.len() == wanted.len() {
            break found;
        }
        let names: Vec<String> = received
            .iter()
            .map(|s| format!("{} {}", s["service"], s["name"]))
            .collect();
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting for the pipeline's spans; received: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for span in &found {
        assert_eq!(span["traceId"], TRACE, "{span:#}");
        assert_eq!(span["parentSpanId"], ENGINE_SPAN, "{span:#}");
        assert_eq!(attribute(span, "version"), Some("1"), "{span:#}");
        assert_ne!(span["spanId"], "", "{span:#}");
    }
    assert_eq!(attribute(&found[0], "event_id"), Some(event_id.as_str()));
    assert_eq!(attribute(&found[1], "event_id"), Some(event_id.as_str()));

    relay.signal("TERM");
    stop.trigger();
    running.stopped().await;
}
