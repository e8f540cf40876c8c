//! A small HTTP/1.1 client for tests: whole responses, and streams (SSE) read event by event,
//! so a test sees exactly what a client would, with nothing in between.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A complete HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send_request(address: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    send(address, "GET", path, headers, b"").await
}

async fn send(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    stream
}

/// A POST with a JSON body (or none), whose whole response is read.
pub async fn post_json(
    address: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let length = body.map_or(0, str::len).to_string();
    let mut headers = vec![("Connection", "close"), ("Content-Length", length.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let stream = send(
        address,
        "POST",
        path,
        &headers,
        body.unwrap_or_default().as_bytes(),
    )
    .await;
    read_reply(stream).await
}

/// A GET whose whole response is read (`Connection: close`).
pub async fn get(address: &str, path: &str, bearer: Option<&str>) -> Reply {
    request(address, "GET", path, bearer).await
}

/// A bodiless request whose whole response is read (`Connection: close`).
pub async fn request(address: &str, method: &str, path: &str, bearer: Option<&str>) -> Reply {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Connection", "close"), ("Content-Length", "0")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    request_with(address, method, path, &headers).await
}

/// A request with exactly these headers, whose whole response is read (send
/// `Connection: close`).
pub async fn request_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    read_reply(send(address, method, path, headers, b"").await).await
}

/// A request with these headers and this body, whose whole response is read (send
/// `Connection: close`).
pub async fn request_with_body(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    read_reply(send(address, method, path, headers, body).await).await
}

/// Reads a whole response (the server closes the connection after it).
async fn read_reply(mut stream: TcpStream) -> Reply {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_lowercase(), v.to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A stream being read event by event.
#[derive(Debug)]
pub struct StreamClient {
    reader: BufReader<TcpStream>,
    pending: String,
    chunk_left: usize,
    pub status: u16,
    pub last_id: Option<String>,
}

impl StreamClient {
    pub async fn open(
        address: &str,
        path: &str,
        bearer: &str,
        last_event_id: Option<&str>,
    ) -> StreamClient {
        let auth = format!("Bearer {bearer}");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", "text/event-stream"),
        ];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        let stream = send_request(address, path, &headers).await;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        StreamClient {
            reader,
            pending: String::new(),
            chunk_left: 0,
            status,
            last_id: None,
        }
    }

    /// Reads more of the chunked body; false at its end.
    async fn fill(&mut self) -> bool {
        if self.chunk_left == 0 {
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                return false;
            }
            if size.trim().is_empty() {
                size.clear();
                if self.reader.read_line(&mut size).await.unwrap_or(0) == 0 {
                    return false;
                }
            }
            self.chunk_left = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if self.chunk_left == 0 {
                return false;
            }
        }
        let mut buffer = vec![0u8; self.chunk_left];
        let read = self.reader.read(&mut buffer).await.unwrap_or(0);
        if read == 0 {
            return false;
        }
        self.chunk_left -= read;
        self.pending
            .push_str(&String::from_utf8_lossy(&buffer[..read]));
        true
    }

    /// The next event (heartbeats skipped), or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut name = None;
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("event data is JSON"));
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    if id.is_some() {
                        self.last_id = id.clone();
                    }
                    return Some(SseEvent { name, id, data });
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next event within `deadline`, or a panic naming `what`.
    pub async fn expect(&mut self, what: &str, deadline: Duration) -> SseEvent {
        tokio::time::timeout(deadline, self.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
    }
}

/// A client-side view of a stream: the tasks it currently holds.
#[derive(Debug, Default)]
pub struct Tasklist {
    pub tasks: BTreeMap<String, Value>,
    pub resyncs: usize,
}

impl Tasklist {
    pub fn apply(&mut self, event: &SseEvent) {
        match event.name.as_str() {
            "upsert" => {
                let id = event.data["id"].as_str().unwrap().to_string();
                self.tasks.insert(id, event.data.clone());
            }
            "remove" => {
                self.tasks.remove(event.data["id"].as_str().unwrap());
            }
            "resync" => {
                self.tasks.clear();
                self.resyncs += 1;
            }
            _ => {}
        }
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.tasks.keys().cloned().collect()
    }
}
