//! OpenTelemetry trace export (OTLP over HTTP, JSON encoding), off unless `log.otlp_endpoint`
//! is set. Only spans that continue an event's trace are exported: spans made with
//! [`event_span`], whose `trace_id` and `parent_span_id` come from the event's W3C
//! `traceparent`. So an engine's trace continues through the relay and tasklist-api without
//! an OpenTelemetry SDK in the binaries (decision 0023).
//!
//! Spans go to a bounded queue and a thread of their own, which posts them in batches; when the
//! collector is slow or away, spans are dropped, never the service's work.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error_chain::error_chain;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

const QUEUE: usize = 8_192;
const BATCH: usize = 512;
/// A span waits at most this long before it is sent.
const BATCH_WAIT: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(5);

/// A span for work on one event, continuing its `traceparent` (exported when export is on).
/// Without a valid traceparent it is an ordinary span that is not exported.
#[macro_export]
macro_rules! event_span {
    ($name:expr, $traceparent:expr, $($field:tt)*) => {{
        let (trace_id, parent_span_id) = $crate::otlp::trace_ids($traceparent);
        tracing::info_span!($name, trace_id, parent_span_id, $($field)*)
    }};
}
pub use event_span;

/// The trace id and parent span id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_ids(traceparent: Option<&str>) -> (Option<&str>, Option<&str>) {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    match traceparent
        .map(|t| t.split('-').collect::<Vec<_>>())
        .as_deref()
    {
        Some(["00", trace, parent, flags])
            if hex(trace, 32) && hex(parent, 16) && hex(flags, 2) =>
        {
            (Some(trace), Some(parent))
        }
        _ => (None, None),
    }
}

/// Where spans are posted: `http://host:port` (the path `/v1/traces` is added) or a full URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    host: String,
    path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "log.otlp_endpoint {url:?} must be an http:// URL (send to a collector agent next \
                 to the service; it forwards over TLS)"
            )
        })?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || !host.contains(':') {
            return Err(format!("log.otlp_endpoint {url:?} needs a host and a port"));
        }
        let path = match path.trim_end_matches('/') {
            "" => "/v1/traces".to_string(),
            path => format!("/{path}"),
        };
        Ok(Endpoint {
            host: host.to_string(),
            path,
        })
    }
}

/// The layer that hands finished event spans to the export thread.
#[derive(Debug)]
pub struct OtlpLayer {
    spans: SyncSender<FinishedSpan>,
}

impl OtlpLayer {
    /// Starts the export thread for `service` (the OTLP `service.name`).
    pub fn start(endpoint: Endpoint, service: &str) -> std::io::Result<OtlpLayer> {
        let (spans, queue) = sync_channel(QUEUE);
        let service = service.to_string();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export(queue, &endpoint, &service))?;
        Ok(OtlpLayer { spans })
    }
}

#[derive(Debug)]
struct OpenSpan {
    name: &'static str,
    trace_id: String,
    parent_span_id: Option<String>,
    span_id: String,
    start: SystemTime,
    attributes: Vec<(String, String)>,
}

#[derive(Debug)]
struct FinishedSpan {
    open: OpenSpan,
    end: SystemTime,
}

#[derive(Default)]
struct Fields {
    trace_id: Option<String>,
    parent_span_id: Option<String>,
    attributes: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "trace_id" => self.trace_id = Some(value.to_string()),
            "parent_span_id" => self.parent_span_id = Some(value.to_string()),
            name => self.attributes.push((name.to_string(), value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let (Some(trace_id), Some(span)) = (fields.trace_id, context.span(id)) else {
            return;
        };
        span.extensions_mut().insert(OpenSpan {
            name: attributes.metadata().name(),
            trace_id,
            parent_span_id: fields.parent_span_id,
            span_id: format!("{:016x}", fastrand::u64(1..)),
            start: SystemTime::now(),
            attributes: fields.attributes,
        });
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        if let Some(open) = span.extensions_mut().remove::<OpenSpan>() {
            // A full queue drops the span: tracing never slows the service down.
            let _ = self.spans.try_send(FinishedSpan {
                open,
                end: SystemTime::now(),
            });
        }
    }
}

fn export(queue: Receiver<FinishedSpan>, endpoint: &Endpoint, service: &str) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + BATCH_WAIT;
        let mut open = true;
        while batch.len() < BATCH {
            match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(span) => batch.push(span),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if let Err(error) = post(endpoint, &body(service, &batch)) {
            tracing::warn!(
                error = error_chain(&error),
                spans = batch.len(),
                "OTLP export failed; spans dropped"
            );
        }
        if !open {
            return;
        }
    }
}

fn nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn string_value(key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({ "key": key, "value": { "stringValue": value } })
}

/// An OTLP `ExportTraceServiceRequest` in its JSON encoding (ids as hex).
fn body(service: &str, spans: &[FinishedSpan]) -> String {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .map(|span| {
            let open = &span.open;
            let attributes: Vec<serde_json::Value> = open
                .attributes
                .iter()
                .map(|(key, value)| string_value(key, value))
                .collect();
            serde_json::json!({
                "traceId": open.trace_id,
                "spanId": open.span_id,
                "parentSpanId": open.parent_span_id.clone().unwrap_or_default(),
                "name": open.name,
                "kind": 1,
                "startTimeUnixNano": nanos(open.start),
                "endTimeUnixNano": nanos(span.end),
                "attributes": attributes,
            })
        })
        .collect();
    serde_json::json!({
        "resourceSpans": [{
            "resource": { "attributes": [string_value("service.name", service)] },
            "scopeSpans": [{ "scope": { "name": "taskpool" }, "spans": spans }],
        }]
    })
    .to_string()
}

/// One POST over a fresh connection: spans come in batches at most twice a second.
fn post(endpoint: &Endpoint, body: &str) -> std::io::Result<()> {
    let address = endpoint
        .host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the OTLP host resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        endpoint.path,
        endpoint.host,
        body.len()
    )?;
    let mut status = [0u8; 12];
    stream.read_exact(&mut status)?;
    match &status[9..12] {
        [b'2', _, _] => Ok(()),
        code => Err(std::io::Error::other(format!(
            "the collector answered {}",
            String::from_utf8_lossy(code)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_and_parent_ids() {
        let ids = trace_ids(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(
            ids,
            (
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                Some("00f067aa0ba902b7")
            )
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz-1-01",
        ] {
            assert_eq!(trace_ids(Some(bad)), (None, None), "{bad}");
        }
        assert_eq!(trace_ids(None), (None, None));
    }

    #[test]
    fn endpoints_get_the_traces_path_and_must_be_plain_http() {
        assert_eq!(
            Endpoint::parse("http://collector:4318").unwrap(),
            Endpoint {
                host: "collector:4318".into(),
                path: "/v1/traces".into()
            }
        );
        assert_eq!(
            Endpoint::parse("http://collector:4318/custom/traces")
                .unwrap()
                .path,
            "/custom/traces"
        );
        assert!(Endpoint::parse("https://collector:4318").is_err());
        assert!(Endpoint::parse("http://collector").is_err());
    }

    #[test]
    fn the_request_body_is_otlp_json() {
        let span = FinishedSpan {
            open: OpenSpan {
                name: "apply event",
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                parent_span_id: Some("00f067aa0ba902b7".into()),
                span_id: "1111111111111111".into(),
                start: UNIX_EPOCH + Duration::from_secs(1),
                attributes: vec![("event_id".into(), "e-1".into())],
            },
            end: UNIX_EPOCH + Duration::from_secs(2),
        };
        let body: serde_json::Value = serde_json::from_str(&body("tasklist-api", &[span])).unwrap();
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "tasklist-api"
        );
        let span = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["startTimeUnixNano"], "1000000000");
        assert_eq!(span["attributes"][0]["key"], "event_id");
    }
}
