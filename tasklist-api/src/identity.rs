//! Who is calling: a verified bearer token (HS256 or RS256), or, only when configured, headers
//! set by a trusted gateway. No identity, no access.

use std::collections::HashMap;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::Value;

use taskpool_service::ExposeSecret;

use crate::config::IdentityConfig;
use crate::documents::{group_principal, user_principal};

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
    keys: Vec<(DecodingKey, Validation)>,
    user_claim: String,
    groups_claim: String,
    trusted_headers: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("trusted_headers", &self.trusted_headers)
            .finish()
    }
}

impl Authenticator {
    pub fn new(config: &IdentityConfig) -> Result<Authenticator, String> {
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.required_spec_claims = ["exp".to_string()].into();
            if let Some(issuer) = &config.issuer {
                validation.set_issuer(&[issuer]);
            }
            match &config.audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            validation
        };
        let mut keys = Vec::new();
        if let Some(secret) = &config.hs256_secret {
            keys.push((
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(pem) = &config.rs256_public_key_pem {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("identity.rs256_public_key_pem: {e}"))?;
            keys.push((key, validation(Algorithm::RS256)));
        }
        Ok(Authenticator {
            keys,
            user_claim: config.user_claim.clone(),
            groups_claim: config.groups_claim.clone(),
            trusted_headers: config.trusted_headers,
        })
    }

    /// The caller of a request, from its headers.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, Unauthenticated> {
        if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .ok_or(Unauthenticated::Invalid)?;
            return self.verify(token.trim());
        }
        if self.trusted_headers {
            let user = headers
                .get(USER_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or(Unauthenticated::Missing)?;
            let groups = headers
                .get(GROUPS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
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

    fn verify(&self, token: &str) -> Result<Caller, Unauthenticated> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Unauthenticated::Invalid)?;
        let (key, validation) = self
            .keys
            .iter()
            .find(|(_, validation)| validation.algorithms.contains(&header.alg))
            .ok_or(Unauthenticated::Invalid)?;
        let claims = decode::<HashMap<String, Value>>(token, key, validation)
            .map_err(|_| Unauthenticated::Invalid)?
            .claims;
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(Unauthenticated::NoUser)?;
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|g| !g.is_empty())
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

    #[test]
    fn a_valid_token_gives_the_user_and_groups() {
        let auth = Authenticator::new(&config()).unwrap();
        let token = token(
            SECRET,
            serde_json::json!({"sub": "kermit", "groups": ["muppets"], "exp": in_an_hour()}),
        );
        let caller = auth.caller(&bearer(&token)).unwrap();
        assert_eq!(caller.user, "kermit");
        assert_eq!(caller.principals(), ["user:kermit", "group:muppets"]);
    }

    #[test]
    fn missing_forged_expired_and_userless_tokens_are_refused() {
        let auth = Authenticator::new(&config()).unwrap();
        assert_eq!(
            auth.caller(&HeaderMap::new()),
            Err(Unauthenticated::Missing)
        );
        let forged = token(
            "another-secret-another-secret-xx",
            serde_json::json!({"sub": "kermit", "exp": in_an_hour()}),
        );
        assert_eq!(auth.caller(&bearer(&forged)), Err(Unauthenticated::Invalid));
        let expired = token(SECRET, serde_json::json!({"sub": "kermit", "exp": 1_000}));
        assert_eq!(
            auth.caller(&bearer(&expired)),
            Err(Unauthenticated::Invalid)
        );
        let userless = token(SECRET, serde_json::json!({"exp": in_an_hour()}));
        assert_eq!(
            auth.caller(&bearer(&userless)),
            Err(Unauthenticated::NoUser)
        );
        assert_eq!(
            auth.caller(&bearer("not.a.jwt")),
            Err(Unauthenticated::Invalid)
        );
    }

    #[test]
    fn rs256_tokens_are_verified_with_the_public_key() {
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
        assert_eq!(auth.caller(&bearer(&signed)).unwrap().user, "kermit");
        // An HS256 token is refused when only RS256 is configured.
        let hs = token(
            SECRET,
            serde_json::json!({"sub": "kermit", "exp": in_an_hour()}),
        );
        assert_eq!(auth.caller(&bearer(&hs)), Err(Unauthenticated::Invalid));
        assert!(
            Authenticator::new(&IdentityConfig {
                rs256_public_key_pem: Some("not a key".into()),
                ..config()
            })
            .is_err()
        );
    }

    #[test]
    fn gateway_headers_count_only_when_trusted() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_HEADER, "kermit".parse().unwrap());
        headers.insert(GROUPS_HEADER, "muppets, frogs".parse().unwrap());
        let strict = Authenticator::new(&config()).unwrap();
        assert_eq!(strict.caller(&headers), Err(Unauthenticated::Missing));
        let trusting = Authenticator::new(&IdentityConfig {
            trusted_headers: true,
            ..config()
        })
        .unwrap();
        assert_eq!(
            trusting.caller(&headers).unwrap().groups,
            ["muppets", "frogs"]
        );
    }
}
