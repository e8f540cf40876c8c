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

use taskpool_service::http_client::Fetcher;

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

    /// The key with id `kid`. An unknown `kid` waits for the set to be fetched again (keys
    /// rotate). A known one is answered at once; if the set is old, this request fetches it
    /// again unless another one already does, so a slow provider delays one request per
    /// `min_interval`, not all of them.
    pub async fn key(&self, kid: &str) -> Option<SigningKey> {
        let (known, stale) = {
            let keys = self.keys.read().await;
            let stale = keys
                .fetched_at
                .is_none_or(|at| at.elapsed() >= self.max_age);
            (keys.by_id.get(kid).cloned(), stale)
        };
        match known {
            Some(key) if !stale => Some(key),
            Some(_) => {
                if let Ok(last_attempt) = self.last_attempt.try_lock() {
                    self.fetch_if_due(last_attempt).await;
                }
                // A fetched set without the key retired it; a failed fetch changed nothing.
                self.keys.read().await.by_id.get(kid).cloned()
            }
            None => {
                self.refresh().await;
                self.keys.read().await.by_id.get(kid).cloned()
            }
        }
    }

    /// Fetches the set unless that was tried less than `min_interval` ago. A failed fetch keeps
    /// the keys known so far: a provider outage must not lock every user out at once.
    pub async fn refresh(&self) {
        let last_attempt = self.last_attempt.lock().await;
        self.fetch_if_due(last_attempt).await;
    }

    async fn fetch_if_due(&self, mut last_attempt: tokio::sync::MutexGuard<'_, Option<Instant>>) {
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

/// The signing keys of a set, by `kid`; keys for encryption, without `kid`, of a kind this
/// service cannot verify with, or symmetric (a published shared secret lets anyone who reads
/// the set sign tokens) are left out.
fn usable_keys(set: &JwkSet) -> HashMap<String, SigningKey> {
    set.keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
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
        _ => Vec::new(),
    }
}
