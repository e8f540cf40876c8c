//! What every response of the tasklist API carries, served over the embedded view (no servers):
//! headers that keep browsers from sniffing, caching, framing or leaking it, and errors as JSON
//! even where the framework answered (a body over the limit, a path that is not UTF-8).

mod support;

use std::time::{Duration, Instant};

use support::{served, served_with, stop};
use taskpool_tasklist::settings::{HttpConfig, StreamConfig};
use taskpool_testkit::http::{Reply, StreamClient, get, request_with_body};
use taskpool_testkit::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(String::as_str)
}

fn assert_hardened(what: &str, reply: &Reply) {
    assert_eq!(
        header(reply, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(reply, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert!(
        header(reply, "content-security-policy")
            .is_some_and(|policy| policy.contains("frame-ancestors 'none'")),
        "{what}: {:?}",
        reply.headers
    );
}

fn assert_json_error(what: &str, reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(
        header(reply, "content-type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(reply.json()["error"], code, "{what}: {}", reply.body);
    assert_hardened(what, reply);
}

#[tokio::test]
async fn every_response_is_hardened_and_every_error_is_json() {
    let (address, trigger, tasks) = served(10).await;
    let users = get(&address, "/api/dev/users", None).await;
    assert_eq!(users.status, 200);
    assert_eq!(
        header(&users, "cache-control"),
        Some("no-store"),
        "tokens are never cached"
    );
    assert_hardened("dev users", &users);
    let token = users.json()["users"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();

    let list = get(&address, "/api/tasks", Some(&token)).await;
    assert_eq!(list.status, 200);
    assert_eq!(header(&list, "cache-control"), Some("no-store"));
    assert_hardened("task list", &list);

    let page = get(&address, "/", None).await;
    assert_eq!(page.status, 200);
    let policy = header(&page, "content-security-policy").unwrap_or_default();
    for part in [
        "default-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(policy.contains(part), "{part} in {policy}");
    }
    assert_hardened("page", &page);

    let bearer = format!("Bearer {token}");
    // Refused on its declared length, before any of it is read (none is sent).
    let length = (3 * 1024 * 1024).to_string();
    let too_large = request_with_body(
        &address,
        "POST",
        "/api/tasks/t1/claim",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
            ("Content-Length", length.as_str()),
            ("Connection", "close"),
        ],
        b"",
    )
    .await;
    assert_json_error(
        "a body over the limit",
        &too_large,
        413,
        "payload_too_large",
    );

    let not_utf8 = request_with_body(
        &address,
        "GET",
        "/api/tasks/%FF%FE",
        &[("Authorization", bearer.as_str()), ("Connection", "close")],
        b"",
    )
    .await;
    assert_json_error("a path that is not UTF-8", &not_utf8, 400, "bad_request");

    let unknown = get(&address, "/nowhere", None).await;
    assert_json_error("an unknown path", &unknown, 404, "not_found");
    stop(trigger, tasks).await;
}

/// What the server sends on `stream` until it closes it, or `None` if it is still open after
/// `limit`.
async fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_slow_head_and_a_slow_body_are_cut_off_at_the_read_deadline() {
    let (address, trigger, tasks) = served(1).await;

    // Half a request head, then nothing: disconnected once the deadline has passed.
    let started = Instant::now();
    let mut head = TcpStream::connect(&address).await.unwrap();
    head.write_all(b"GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let answer = answer_within(&mut head, Duration::from_secs(20)).await;
    assert!(answer.is_some(), "a slow head keeps its connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A body promised whole and sent a byte every 200 ms: 408 once the deadline has passed.
    let started = Instant::now();
    let mut body = TcpStream::connect(&address).await.unwrap();
    body.write_all(
        b"POST /api/tasks/t1/claim HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100000\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut reading, mut writing) = body.into_split();
    let trickle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        for _ in 0..100 {
            ticks.tick().await;
            if writing.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match reading.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "a slow body keeps its connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    trickle.abort();
    stop(trigger, tasks).await;
}

/// A request written as it is (`Connection: close`), and the whole answer.
async fn raw(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    answer_within(&mut stream, Duration::from_secs(20))
        .await
        .expect("an answer")
}

/// DNS rebinding: with the development sign-in on, only this machine's names are answered.
#[tokio::test]
async fn another_host_name_or_a_foreign_page_is_refused_by_the_development_sign_in() {
    let (address, trigger, tasks) = served(10).await;
    let port = address.rsplit_once(':').unwrap().1;
    let users = |host: &str| {
        format!("GET /api/dev/users HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let rebound = raw(&address, &users(&format!("attacker.example:{port}"))).await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(
        rebound.contains(r#""error":"misdirected_request""#),
        "{rebound}"
    );
    assert!(!rebound.contains("token"), "{rebound}");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let answer = raw(&address, &users(&host)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    // Probes and scrapers call health by service names.
    let health = raw(
        &address,
        "GET /health/live HTTP/1.1\r\nHost: tasklist-api:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A page of another origin cannot post an action (the browser would send its cookies or
    // let it read the answer); the tasklist's own page can.
    let post = |origin: &str| {
        format!(
            "POST /api/tasks/t1/claim HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: {origin}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let foreign = raw(&address, &post("https://attacker.example")).await;
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    let own = raw(&address, &post(&format!("http://localhost:{port}"))).await;
    assert!(
        own.starts_with("HTTP/1.1 401"),
        "no token, but not refused as foreign: {own}"
    );
    stop(trigger, tasks).await;
}

/// One user's streams beyond the cap are answered 429 at once; another user's stream and the
/// health endpoint are not affected, and a closed stream gives its slot back.
#[tokio::test]
async fn one_user_holds_at_most_the_per_user_cap_of_streams() {
    let stream = StreamConfig {
        max_per_user: 2,
        ..StreamConfig::default()
    };
    let (address, trigger, tasks) = served_with(HttpConfig::default(), stream).await;
    let users = get(&address, "/api/dev/users", None).await.json();
    let token = |n: usize| users["users"][n]["token"].as_str().unwrap().to_string();
    let (kermit, piggy) = (token(0), token(1));
    let path = "/api/tasks/stream";
    let mut first = StreamClient::open(&address, path, &kermit, None).await;
    let mut second = StreamClient::open(&address, path, &kermit, None).await;
    for client in [&mut first, &mut second] {
        let marker = tokio::time::timeout(Duration::from_secs(20), client.next()).await;
        assert!(matches!(marker, Ok(Some(_))), "kermit's stream serves");
    }
    let third = tokio::time::timeout(Duration::from_secs(20), get(&address, path, Some(&kermit)))
        .await
        .expect("the third stream is answered at once, not served");
    assert_eq!(third.status, 429, "{}", third.body);
    assert_eq!(header(&third, "retry-after"), Some("10"));
    assert_eq!(third.json()["error"], "too_many_requests");
    let mut others = StreamClient::open(&address, path, &piggy, None).await;
    let marker = tokio::time::timeout(Duration::from_secs(20), others.next()).await;
    assert!(matches!(marker, Ok(Some(_))), "piggy's stream serves");
    assert_eq!(get(&address, "/health/live", None).await.status, 200);
    drop(first);
    wait_for(
        "kermit's closed stream to give its slot back",
        Duration::from_secs(20),
        || {
            let (address, kermit) = (address.clone(), kermit.clone());
            async move {
                let mut again = StreamClient::open(&address, path, &kermit, None).await;
                if again.status != 200 {
                    return None;
                }
                let marker = tokio::time::timeout(Duration::from_secs(5), again.next()).await;
                matches!(marker, Ok(Some(_))).then_some(())
            }
        },
    )
    .await;
    stop(trigger, tasks).await;
}

/// At the connection cap, further connections are answered 503 at once, but a liveness probe
/// still hears that the process lives: an orchestrator must not restart a busy service.
#[tokio::test]
async fn at_the_connection_cap_liveness_still_answers() {
    let http = HttpConfig {
        max_connections: Some(2),
        ..HttpConfig::default()
    };
    let (address, trigger, tasks) = served_with(http, StreamConfig::default()).await;
    let users = get(&address, "/api/dev/users", None).await.json();
    let token = |n: usize| users["users"][n]["token"].as_str().unwrap().to_string();
    let path = "/api/tasks/stream";
    let mut held = Vec::new();
    for n in [0, 1] {
        let mut client = StreamClient::open(&address, path, &token(n), None).await;
        let marker = tokio::time::timeout(Duration::from_secs(20), client.next()).await;
        assert!(matches!(marker, Ok(Some(_))), "stream {n} serves");
        held.push(client);
    }
    let busy = raw(
        &address,
        "GET /api/tasks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    let live = raw(
        &address,
        "GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(live.ends_with(r#"{"status":"live"}"#), "{live}");
    drop(held);
    stop(trigger, tasks).await;
}

/// A request like [`raw`], sent from `local` (another loopback address is another client).
async fn raw_from(local: &str, address: &str, request: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    answer_within(&mut stream, Duration::from_secs(20))
        .await
        .expect("an answer")
}

/// One address holds at most its cap of connections: more from it are answered 429 at once
/// (liveness still 200), while another address is served as before.
#[tokio::test]
async fn one_address_holds_at_most_its_cap_of_connections() {
    let http = HttpConfig {
        max_connections_per_address: Some(2),
        ..HttpConfig::default()
    };
    let (address, trigger, tasks) = served_with(http, StreamConfig::default()).await;
    let users = "GET /api/dev/users HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let held = [
        TcpStream::connect(&address).await.unwrap(),
        TcpStream::connect(&address).await.unwrap(),
    ];
    let refused = raw_from("127.0.0.1", &address, users).await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("Retry-After: 10"), "{refused}");
    assert!(
        refused.contains(r#""error":"too_many_requests""#),
        "{refused}"
    );
    let live = "GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let alive = raw_from("127.0.0.1", &address, live).await;
    assert!(alive.starts_with("HTTP/1.1 200"), "{alive}");
    let other = raw_from("127.0.0.2", &address, users).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");

    // Closed connections give their places back.
    drop(held);
    wait_for(
        "the address to be served again",
        Duration::from_secs(20),
        || async {
            raw_from("127.0.0.1", &address, users)
                .await
                .starts_with("HTTP/1.1 200")
                .then_some(())
        },
    )
    .await;
    stop(trigger, tasks).await;
}
