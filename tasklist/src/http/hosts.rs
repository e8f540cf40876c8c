//! DNS rebinding: a page on another site, whose name the attacker's resolver then points at
//! 127.0.0.1, reaches a service bound there and reads its answers, the development sign-in's
//! tokens among them. So only the host names the service is meant to be reached by are
//! answered (421 otherwise), and a state-changing request from a page of another origin is
//! refused (403). Health and metrics stay open to any name: they hold nothing of a user's, and
//! scrapers and probes call them by service names.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The names a development sign-in answers to when none are configured: this machine's.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Which host names (and origins) requests may carry.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// Lower-case host names without ports; `None`: any.
    hosts: Option<Arc<Vec<String>>>,
    /// Browser origins allowed to call across origins (CORS), besides the allowed hosts.
    origins: Arc<Vec<String>>,
}

impl HostPolicy {
    /// The configured names; none configured: this machine's names where `loopback_by_default`
    /// (the development sign-in), any name otherwise.
    pub fn new(allowed: &[String], loopback_by_default: bool, cors_origins: &[String]) -> Self {
        let hosts: Vec<String> = if allowed.is_empty() && loopback_by_default {
            LOOPBACK.iter().map(|name| name.to_string()).collect()
        } else {
            allowed
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect()
        };
        HostPolicy {
            hosts: (!hosts.is_empty()).then(|| Arc::new(hosts)),
            origins: Arc::new(cors_origins.to_vec()),
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        self.hosts
            .as_ref()
            .is_none_or(|hosts| hosts.contains(&name))
    }

    /// A page of this service itself (its origin names the host and port the request was
    /// sent to), or of an origin allowed to call across (CORS). `null` is neither.
    fn allows_origin(&self, origin: &str, host: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == origin)
            || origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
    }
}

/// `host[:port]` or `[v6]:port` without the port and brackets.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

/// Refuses requests for other host names (421) and state-changing requests from pages of
/// other origins (403).
pub async fn check(policy: HostPolicy, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path.starts_with("/health/") || path == "/metrics" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if !policy.allows_host(host) {
        return ApiError::MisdirectedRequest.into_response();
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    if changes_state && origin.is_some_and(|origin| !policy.allows_origin(origin, host)) {
        return ApiError::Forbidden("requests from pages of other origins are refused".into())
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_without_ports_or_case() {
        let loopback = HostPolicy::new(&[], true, &[]);
        for host in ["localhost:8080", "LOCALHOST", "127.0.0.1:1", "[::1]:8080"] {
            assert!(loopback.allows_host(host), "{host}");
        }
        for host in ["attacker.example", "attacker.example:8080", "127.0.0.2", ""] {
            assert!(!loopback.allows_host(host), "{host}");
        }
        let any = HostPolicy::new(&[], false, &[]);
        assert!(any.allows_host("attacker.example"));
        let named = HostPolicy::new(&["Tasks.Example.com".into()], true, &[]);
        assert!(named.allows_host("tasks.example.com:443"));
        assert!(!named.allows_host("localhost"));
    }

    #[test]
    fn origins_are_the_service_itself_or_cors_origins() {
        let cors = ["https://tasks.example.com".to_string()];
        // Whether hosts are restricted or not, the origin must be the request's own.
        for policy in [
            HostPolicy::new(&[], true, &cors),
            HostPolicy::new(&[], false, &cors),
        ] {
            let host = "localhost:8080";
            assert!(policy.allows_origin("http://localhost:8080", host));
            assert!(policy.allows_origin("https://tasks.example.com", host));
            assert!(!policy.allows_origin("http://localhost:3000", host));
            assert!(!policy.allows_origin("https://attacker.example", host));
            assert!(!policy.allows_origin("null", host));
        }
    }
}
