//! An identity provider's published key set (JWKS, as Keycloak and other OIDC providers serve
//! it), looked up by the token's `kid`. Keys rotate: an unknown `kid` or a set older than
//! `max_age` makes the next lookup fetch the set again, at most once per `min_interval`, so
//! a flood of forged `kid`s cannot turn into a flood of requests to the provider.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use taskpool_service::logging::error_chain;
use tokio::sync::{Mutex, RwLock};
use tracing::{info, warn};

use super::fetch::Fetcher;

/// One usable key: what verifies a signature, and the algorithms it may be used with.
#[derive(Clone)]
pub struct SigningKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// The provider's keys by `kid`, refreshed as they rotate.
pub struct KeySet {
    url: String,
    fetcher: Fetcher,
    max_age: Duration,
    min_interval: Duration,
    keys: RwLock<Keys>,
    /// When the set was last requested; held while a fetch runs, so only one runs at a time.
    last_attempt: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, SigningKey>,
    fetched_at: Option<Instant>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("url", &self.url).finish()
    }
}

impl KeySet {
    pub fn new(url: String, fetcher: Fetcher, max_age: Duration, min_interval: Duration) -> Self {
        KeySet {
            url,
            fetcher,
            max_age,
            min_interval,
            keys: RwLock::new(Keys::default()),
            last_attempt: Mutex::new(None),
        }
    }

    /// The key with id `kid`, fetching the set again when it is unknown or the set is old.
    pub async fn key(&self, kid: &str) -> Option<SigningKey> {
        {
            let keys = self.keys.read().await;
            let fresh = keys
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.max_age);
            if let Some(key) = keys.by_id.get(kid).filter(|_| fresh) {
                return Some(key.clone());
            }
        }
        self.refresh().await;
        self.keys.read().await.by_id.get(kid).cloned()
    }

    /// Fetches the set unless that was tried less than `min_interval` ago. A failed fetch keeps
    /// the keys known so far: a provider outage must not lock every user out at once.
    pub async fn refresh(&self) {
        let mut last_attempt = self.last_attempt.lock().await;
        if last_attempt.is_some_and(|at| at.elapsed() < self.min_interval) {
            return;
        }
        *last_attempt = Some(Instant::now());
        let fetched = self
            .fetcher
            .get(&self.url)
            .await
            .map_err(|e| error_chain(&e));
        let parsed = fetched.and_then(|body| {
            serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("not a JWKS: {e}"))
        });
        match parsed {
            Ok(set) => {
                let by_id = usable_keys(&set);
                info!(url = %self.url, keys = by_id.len(), "identity provider keys loaded");
                *self.keys.write().await = Keys {
                    by_id,
                    fetched_at: Some(Instant::now()),
                };
            }
            Err(error) => {
                warn!(url = %self.url, %error, "cannot load the identity provider's keys; keeping the known ones");
            }
        }
    }
}

/// The signing keys of a set, by `kid`; keys for encryption, without `kid`, or of a kind this
/// service cannot verify with are left out.
fn usable_keys(set: &JwkSet) -> HashMap<String, SigningKey> {
    set.keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let algorithms = algorithms(jwk);
            (!algorithms.is_empty()).then_some((kid, SigningKey { key, algorithms }))
        })
        .collect()
}

/// The key's own `alg` when it names a signature algorithm; otherwise every signature
/// algorithm of its key type.
fn algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    if let Some(named) = jwk.common.key_algorithm {
        return Algorithm::from_str(&format!("{named:?}"))
            .map(|algorithm| vec![algorithm])
            .unwrap_or_default();
    }
    use Algorithm::*;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(_) => vec![ES256, ES384],
        AlgorithmParameters::OctetKeyPair(_) => vec![EdDSA],
        AlgorithmParameters::OctetKey(_) => vec![HS256, HS384, HS512],
        _ => Vec::new(),
    }
}
