//! Identity as an OIDC deployment uses it: keys from the provider's key set (rotated while the
//! service runs), `nbf` and `exp` with a leeway, and CORS for browser tasklists elsewhere.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use support::*;
use taskpool_tasklist::identity::{Authenticator, Unauthenticated};
use taskpool_tasklist::settings::IdentityConfig;

const FIRST_KEY: &[u8] =
    include_bytes!("../../tasklist/src/identity/testdata/rs256-test-private.pem");
const SECOND_KEY: &[u8] =
    include_bytes!("../../tasklist/src/identity/testdata/rs256-second-private.pem");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed(private_pem: &[u8], kid: Option<&str>, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
    .unwrap()
}

fn kermit(private_pem: &[u8], kid: &str) -> String {
    signed(
        private_pem,
        Some(kid),
        serde_json::json!({ "sub": "kermit", "exp": now() + 3600 }),
    )
}

fn public_jwk(private_pem: &[u8], kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
        Algorithm::RS256,
    )
    .unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    headers
}

/// An identity provider's key-set endpoint on a local port, counting its requests.
struct Provider {
    url: String,
    keys: Arc<Mutex<JwkSet>>,
    requests: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: Vec<Jwk>) -> Provider {
        let keys = Arc::new(Mutex::new(JwkSet { keys }));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), requests.clone());
        let app = axum::Router::new().route(
            "/realms/test/protocol/openid-connect/certs",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let set = served.lock().unwrap().clone();
                async move { axum::Json(set) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider {
            url: format!("http://{address}/realms/test/protocol/openid-connect/certs"),
            keys,
            requests,
        }
    }

    fn publish(&self, keys: Vec<Jwk>) {
        self.keys.lock().unwrap().keys = keys;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn with_key_set(url: &str, min_refresh_ms: u64) -> IdentityConfig {
    IdentityConfig {
        jwks_url: Some(url.to_string()),
        jwks_refresh_secs: 300,
        jwks_min_refresh_ms: min_refresh_ms,
        leeway_secs: 30,
        user_claim: "sub".into(),
        groups_claim: "groups".into(),
        ..IdentityConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotated_at_the_provider_are_picked_up_and_retired_ones_refused() {
    let provider = Provider::start(vec![public_jwk(FIRST_KEY, "first")]).await;
    let auth = Authenticator::new(&with_key_set(&provider.url, 0)).unwrap();
    auth.load_keys().await;

    let first = kermit(FIRST_KEY, "first");
    assert_eq!(auth.caller(&bearer(&first)).await.unwrap().user, "kermit");
    let unknown_kid_same_key = kermit(FIRST_KEY, "second");
    assert_eq!(
        auth.caller(&bearer(&unknown_kid_same_key)).await,
        Err(Unauthenticated::Invalid)
    );

    provider.publish(vec![public_jwk(SECOND_KEY, "second")]);
    let second = kermit(SECOND_KEY, "second");
    assert_eq!(auth.caller(&bearer(&second)).await.unwrap().user, "kermit");
    assert_eq!(
        auth.caller(&bearer(&first)).await,
        Err(Unauthenticated::Invalid),
        "a key the provider no longer publishes is refused once the set was fetched again"
    );
    let forged = kermit(FIRST_KEY, "second");
    assert_eq!(
        auth.caller(&bearer(&forged)).await,
        Err(Unauthenticated::Invalid),
        "a known kid with another key's signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_secret_published_in_the_key_set_is_never_used() {
    let secret = EncodingKey::from_secret(b"published-for-everyone-to-read-0123");
    let mut oct = Jwk::from_encoding_key(&secret, Algorithm::HS256).unwrap();
    oct.common.key_id = Some("shared".into());
    let provider = Provider::start(vec![oct]).await;
    let auth = Authenticator::new(&with_key_set(&provider.url, 0)).unwrap();
    auth.load_keys().await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("shared".into());
    let forged = encode(
        &header,
        &serde_json::json!({ "sub": "kermit", "exp": now() + 3600 }),
        &secret,
    )
    .unwrap();
    assert_eq!(
        auth.caller(&bearer(&forged)).await,
        Err(Unauthenticated::Invalid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_do_not_flood_the_provider_and_an_outage_keeps_the_known_keys() {
    let provider = Provider::start(vec![public_jwk(FIRST_KEY, "first")]).await;
    let auth = Authenticator::new(&with_key_set(&provider.url, 60_000)).unwrap();
    auth.load_keys().await;
    assert_eq!(provider.requests(), 1);
    for i in 0..20 {
        let token = kermit(FIRST_KEY, &format!("forged-{i}"));
        assert_eq!(
            auth.caller(&bearer(&token)).await,
            Err(Unauthenticated::Invalid)
        );
    }
    assert!(provider.requests() <= 2, "{} fetches", provider.requests());

    let unreachable = Authenticator::new(&with_key_set("http://127.0.0.1:9/certs", 0)).unwrap();
    unreachable.load_keys().await;
    assert_eq!(
        unreachable
            .caller(&bearer(&kermit(FIRST_KEY, "first")))
            .await,
        Err(Unauthenticated::Invalid)
    );
    let still_known = kermit(FIRST_KEY, "first");
    assert!(auth.caller(&bearer(&still_known)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_valid_is_refused_beyond_the_clock_skew_leeway() {
    let provider = Provider::start(vec![public_jwk(FIRST_KEY, "first")]).await;
    let auth = Authenticator::new(&with_key_set(&provider.url, 0)).unwrap();
    let claims = |nbf: u64| serde_json::json!({ "sub": "kermit", "exp": now() + 3600, "nbf": nbf });
    let later = signed(FIRST_KEY, Some("first"), claims(now() + 600));
    assert_eq!(
        auth.caller(&bearer(&later)).await,
        Err(Unauthenticated::Invalid)
    );
    let within_leeway = signed(FIRST_KEY, Some("first"), claims(now() + 10));
    assert!(auth.caller(&bearer(&within_leeway)).await.is_ok());
    let expired_beyond_leeway = signed(
        FIRST_KEY,
        Some("first"),
        serde_json::json!({ "sub": "kermit", "exp": now() - 120 }),
    );
    assert_eq!(
        auth.caller(&bearer(&expired_beyond_leeway)).await,
        Err(Unauthenticated::Invalid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tasklists_from_an_allowed_origin_get_cors_headers_and_others_none() {
    let world = World::new().await;
    let mut config = world.config();
    config.http.cors_allowed_origins = vec!["https://tasks.example.com".into()];
    let service = Service::start(config).await;
    let preflight = |origin: &'static str| {
        let address = service.address.clone();
        async move {
            let headers = [
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,last-event-id",
                ),
                ("Connection", "close"),
                ("Content-Length", "0"),
            ];
            request_with(&address, "OPTIONS", "/api/tasks", &headers).await
        }
    };
    let allowed = preflight("https://tasks.example.com").await;
    assert!(allowed.status < 300, "{}: {}", allowed.status, allowed.body);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://tasks.example.com"
    );
    let allowed_headers = allowed.headers["access-control-allow-headers"].to_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("last-event-id"));
    let other = preflight("https://evil.example.org").await;
    assert!(
        !other.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        other.headers
    );

    let token = token("kermit", &[]);
    let auth = format!("Bearer {token}");
    for (origin, expected) in [
        (
            "https://tasks.example.com",
            Some("https://tasks.example.com"),
        ),
        ("https://evil.example.org", None),
    ] {
        let headers = [
            ("Origin", origin),
            ("Authorization", auth.as_str()),
            ("Connection", "close"),
            ("Content-Length", "0"),
        ];
        let reply = request_with(&service.address, "GET", "/api/tasks", &headers).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply
                .headers
                .get("access-control-allow-origin")
                .map(String::as_str),
            expected,
            "{origin}"
        );
    }
    service.stop().await;
}

/// Serves one JSON document over TLS with the test servers' certificate (for localhost), to
/// any number of connections, one request each.
async fn serve_over_tls(body: String) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = std::path::PathBuf::from(taskpool_testkit::required_env("TASKPOOL_TLS_CA"));
    let directory = authority.parent().unwrap();
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(directory.join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(directory.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://localhost:{port}/realms/test/protocol/openid-connect/certs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_fetched_over_tls_from_an_authority_the_configuration_names() {
    let set = JwkSet {
        keys: vec![public_jwk(FIRST_KEY, "first")],
    };
    let url = serve_over_tls(serde_json::to_string(&set).unwrap()).await;
    let token = kermit(FIRST_KEY, "first");

    let trusting = Authenticator::new(&IdentityConfig {
        jwks_ca_location: Some(taskpool_testkit::required_env("TASKPOOL_TLS_CA")),
        ..with_key_set(&url, 0)
    })
    .unwrap();
    assert_eq!(
        trusting.caller(&bearer(&token)).await.unwrap().user,
        "kermit"
    );

    // Without the test authority the provider's certificate is not trusted: no keys, no entry.
    let strict = Authenticator::new(&with_key_set(&url, 0)).unwrap();
    assert_eq!(
        strict.caller(&bearer(&token)).await,
        Err(Unauthenticated::Invalid)
    );
}
