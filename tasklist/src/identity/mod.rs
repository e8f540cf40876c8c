//! Who is calling: a verified bearer token (signed with a key of the identity provider's key
//! set, or with a configured HS256 secret or RS256 public key), or, only when configured,
//! headers set by a trusted gateway. No identity, no access.

mod claims;
pub mod dev;
mod jwks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::Value;

use taskpool_service::ExposeSecret;

use crate::documents::{group_principal, user_principal};
use crate::settings::IdentityConfig;
use jwks::KeySet;
pub use taskpool_service::http_client::FetchError;

pub const USER_HEADER: &str = "x-taskpool-user";
pub const GROUPS_HEADER: &str = "x-taskpool-groups";

/// A caller: a user and their groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
}

impl Caller {
    /// The principals a caller's tasks carry (`user:<id>`, `group:<id>`).
    pub fn principals(&self) -> Vec<String> {
        std::iter::once(user_principal(&self.user))
            .chain(self.groups.iter().map(|g| group_principal(g)))
            .collect()
    }
}

/// Why a request carries no usable identity. The text is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is invalid or expired")]
    Invalid,
    #[error("the bearer token has no user")]
    NoUser,
}

/// Verifies callers as configured.
#[derive(Clone)]
pub struct Authenticator {
    /// Keys configured directly, each with its validation rules; chosen by the token's `alg`.
    keys: Vec<(DecodingKey, Validation)>,
    /// The provider's key set, for tokens that name their key with `kid`.
    key_set: Option<Arc<KeySet>>,
    rules: Rules,
    user_claim: String,
    groups_claim: String,
    trusted_headers: bool,
}

/// What every token must satisfy besides its signature.
#[derive(Debug, Clone)]
struct Rules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

impl Rules {
    fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.required_spec_claims = ["exp".to_string()].into();
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        validation
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("key_set", &self.key_set)
            .field("trusted_headers", &self.trusted_headers)
            .finish()
    }
}

/// Why the identity settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity.rs256_public_key_pem is not a PEM public key")]
    PublicKey(#[source] jsonwebtoken::errors::Error),
    #[error("identity.jwks_ca_location")]
    KeySetAuthority(#[source] FetchError),
    #[error("identity.jwks_url must be https (plain http only to this machine): {0}")]
    InsecureKeySetUrl(String),
}

/// Keys decide who anyone is: they come over TLS, or from this machine (a sidecar, a test).
fn key_set_url_is_safe(url: &str) -> bool {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return false;
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => true,
        (Some("http"), Some(host)) => {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

impl Authenticator {
    pub fn new(config: &IdentityConfig) -> Result<Authenticator, IdentityError> {
        let rules = Rules {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        };
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            keys.push((
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                rules.validation(&[Algorithm::HS256]),
            ));
        }
        if let Some(pem) = &config.rs256_public_key_pem {
            let key =
                DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(IdentityError::PublicKey)?;
            keys.push((key, rules.validation(&[Algorithm::RS256])));
        }
        let key_set = match &config.jwks_url {
            Some(url) => {
                if !key_set_url_is_safe(url) {
                    return Err(IdentityError::InsecureKeySetUrl(url.clone()));
                }
                let fetcher = taskpool_service::http_client::Fetcher::new(
                    config.jwks_ca_location.as_deref(),
                    Duration::from_secs(10),
                )
                .map_err(IdentityError::KeySetAuthority)?;
                Some(Arc::new(KeySet::new(
                    url.clone(),
                    fetcher,
                    Duration::from_secs(config.jwks_refresh_secs),
                    Duration::from_millis(config.jwks_min_refresh_ms),
                )))
            }
            None => None,
        };
        Ok(Authenticator {
            keys,
            key_set,
            rules,
            user_claim: config.user_claim.clone(),
            groups_claim: config.groups_claim.clone(),
            trusted_headers: config.trusted_headers,
        })
    }

    /// Loads the provider's key set, if one is configured (a failure is logged; the next token
    /// tries again).
    pub async fn load_keys(&self) {
        if let Some(key_set) = &self.key_set {
            key_set.refresh().await;
        }
    }

    /// The caller of a request, from its headers.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Unauthenticated> {
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            // The scheme's name is case-insensitive (RFC 9110 §11.1).
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token)
                .ok_or(Unauthenticated::Invalid)?;
            return self.verify(token.trim()).await;
        }
        if self.trusted_headers {
            let user = headers
                .get(USER_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or(Unauthenticated::Missing)?;
            if !claims::well_formed_id(user) {
                return Err(Unauthenticated::Invalid);
            }
            let groups = headers
                .get(GROUPS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|g| claims::well_formed_id(g))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Caller {
                user: user.to_string(),
                groups,
            });
        }
        Err(Unauthenticated::Missing)
    }

    async fn verify(&self, token: &str) -> Result<Caller, Unauthenticated> {
        if claims::has_critical_extensions(token) {
            return Err(Unauthenticated::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Unauthenticated::Invalid)?;
        let claims = match (&header.kid, &self.key_set) {
            (Some(kid), Some(key_set)) => {
                let signing = key_set.key(kid).await.ok_or(Unauthenticated::Invalid)?;
                let validation = self.rules.validation(&signing.algorithms);
                decode::<HashMap<String, Value>>(token, &signing.key, &validation)
            }
            _ => {
                let (key, validation) = self
                    .keys
                    .iter()
                    .find(|(_, validation)| validation.algorithms.contains(&header.alg))
                    .ok_or(Unauthenticated::Invalid)?;
                decode::<HashMap<String, Value>>(token, key, validation)
            }
        }
        .map_err(|_| Unauthenticated::Invalid)?
        .claims;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if claims::issued_in_the_future(&claims, now, self.rules.leeway_secs) {
            return Err(Unauthenticated::Invalid);
        }
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(Unauthenticated::NoUser)?;
        if !claims::well_formed_id(user) {
            return Err(Unauthenticated::Invalid);
        }
        // A group id that could not be matched or logged safely is left out, not trusted.
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|g| claims::well_formed_id(g))
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Caller {
            user: user.to_string(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> IdentityConfig {
        IdentityConfig {
            hs256_secret: Some(SECRET.into()),
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            ..IdentityConfig::default()
        }
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    fn in_an_hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    #[tokio::test]
    async fn a_valid_token_gives_the_user_and_groups() {
        let auth = Authenticator::new(&config()).unwrap();
        let token = token(
            SECRET,
            serde_json::json!({"sub": "kermit", "groups": ["muppets"], "exp": in_an_hour()}),
        );
        let caller = auth.caller(&bearer(&token)).await.unwrap();
        assert_eq!(caller.user, "kermit");
        assert_eq!(caller.principals(), ["user:kermit", "group:muppets"]);
    }

    #[tokio::test]
    async fn missing_forged_expired_and_userless_tokens_are_refused() {
        let auth = Authenticator::new(&config()).unwrap();
        assert_eq!(
            auth.caller(&HeaderMap::new()).await,
            Err(Unauthenticated::Missing)
        );
        let forged = token(
            "another-secret-another-secret-xx",
            serde_json::json!({"sub": "kermit", "exp": in_an_hour()}),
        );
        assert_eq!(
            auth.caller(&bearer(&forged)).await,
            Err(Unauthenticated::Invalid)
        );
        let expired = token(SECRET, serde_json::json!({"sub": "kermit", "exp": 1_000}));
        assert_eq!(
            auth.caller(&bearer(&expired)).await,
            Err(Unauthenticated::Invalid)
        );
        let userless = token(SECRET, serde_json::json!({"exp": in_an_hour()}));
        assert_eq!(
            auth.caller(&bearer(&userless)).await,
            Err(Unauthenticated::NoUser)
        );
        assert_eq!(
            auth.caller(&bearer("not.a.jwt")).await,
            Err(Unauthenticated::Invalid)
        );
    }

    #[tokio::test]
    async fn rs256_tokens_are_verified_with_the_public_key() {
        // A key pair made for this test only.
        let private = include_bytes!("testdata/rs256-test-private.pem");
        let public = include_str!("testdata/rs256-test-public.pem");
        let auth = Authenticator::new(&IdentityConfig {
            hs256_secret: None,
            rs256_public_key_pem: Some(public.into()),
            ..config()
        })
        .unwrap();
        let signed = encode(
            &Header::new(Algorithm::RS256),
            &serde_json::json!({"sub": "kermit", "groups": ["muppets"], "exp": in_an_hour()}),
            &EncodingKey::from_rsa_pem(private).unwrap(),
        )
        .unwrap();
        assert_eq!(auth.caller(&bearer(&signed)).await.unwrap().user, "kermit");
        // An HS256 token is refused when only RS256 is configured.
        let hs = token(
            SECRET,
            serde_json::json!({"sub": "kermit", "exp": in_an_hour()}),
        );
        assert_eq!(
            auth.caller(&bearer(&hs)).await,
            Err(Unauthenticated::Invalid)
        );
        assert!(
            Authenticator::new(&IdentityConfig {
                rs256_public_key_pem: Some("not a key".into()),
                ..config()
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn gateway_headers_count_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_HEADER, "kermit".parse().unwrap());
        headers.insert(GROUPS_HEADER, "muppets, frogs".parse().unwrap());
        let strict = Authenticator::new(&config()).unwrap();
        assert_eq!(strict.caller(&headers).await, Err(Unauthenticated::Missing));
        let trusting = Authenticator::new(&IdentityConfig {
            trusted_headers: true,
            ..config()
        })
        .unwrap();
        assert_eq!(
            trusting.caller(&headers).await.unwrap().groups,
            ["muppets", "frogs"]
        );
    }

    #[test]
    fn the_key_set_comes_over_tls_or_from_this_machine() {
        for safe in [
            "https://sso.example.com/realms/r/protocol/openid-connect/certs",
            "http://127.0.0.1:8081/certs",
            "http://localhost/certs",
            "http://[::1]:9000/certs",
        ] {
            assert!(key_set_url_is_safe(safe), "{safe}");
        }
        for unsafe_url in ["http://sso.example.com/certs", "ftp://x/certs", "not a url"] {
            assert!(!key_set_url_is_safe(unsafe_url), "{unsafe_url}");
        }
    }
}
