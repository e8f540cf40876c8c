//! What a token must satisfy beyond its signature and its times: the checks a mature verifier
//! adds. A header naming critical extensions (RFC 7515 §4.1.11: none is understood here), an
//! `iat` in the future (RFC 7519 §4.1.6: a wrong clock or a forgery), and a user or group id
//! that could not be logged or matched safely (empty, control characters, overlong).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The longest user or group id taken from a token.
pub const MAX_ID_BYTES: usize = 256;

/// Whether the token's header names critical extensions, or cannot be read as a JSON object:
/// either way the token is refused.
pub fn has_critical_extensions(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return true;
    };
    serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes)
        .map_or(true, |fields| fields.contains_key("crit"))
}

/// Whether `iat` lies further in the future than the allowed clock skew (or is not a number).
pub fn issued_in_the_future(claims: &HashMap<String, Value>, now: u64, leeway: u64) -> bool {
    match claims.get("iat") {
        None => false,
        // A NumericDate may have a fraction (RFC 7519 §2).
        Some(iat) => iat
            .as_f64()
            .is_none_or(|iat| iat > now.saturating_add(leeway) as f64),
    }
}

/// A user or group id fit to match and to log: not empty, not overlong, no control characters.
pub fn well_formed_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token_with_header(header: Value) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(header.to_string());
        format!("{encoded}.e30.sig")
    }

    #[test]
    fn a_header_with_crit_or_not_json_counts_as_critical() {
        assert!(!has_critical_extensions(&token_with_header(
            json!({"alg": "HS256", "typ": "JWT"})
        )));
        assert!(has_critical_extensions(&token_with_header(
            json!({"alg": "HS256", "crit": ["exp"], "exp": 1})
        )));
        assert!(has_critical_extensions("not base64!.e30.sig"));
        assert!(has_critical_extensions(&format!(
            "{}.e30.sig",
            URL_SAFE_NO_PAD.encode("[1]")
        )));
    }

    #[test]
    fn iat_beyond_the_leeway_is_in_the_future() {
        let claims = |iat: Value| HashMap::from([("iat".to_string(), iat)]);
        assert!(!issued_in_the_future(&HashMap::new(), 1_000, 30));
        assert!(!issued_in_the_future(&claims(json!(1_030)), 1_000, 30));
        assert!(issued_in_the_future(&claims(json!(1_031)), 1_000, 30));
        assert!(!issued_in_the_future(&claims(json!(1_000.5)), 1_000, 30));
        assert!(issued_in_the_future(&claims(json!(1_030.5)), 1_000, 30));
        assert!(issued_in_the_future(&claims(json!("soon")), 1_000, 30));
    }

    #[test]
    fn ids_with_control_characters_or_overlong_are_not_well_formed() {
        assert!(well_formed_id("kermit"));
        assert!(well_formed_id("Kérmit Ünïcode"));
        assert!(!well_formed_id(""));
        assert!(!well_formed_id("kermit\nadmin"));
        assert!(!well_formed_id("kermit\u{7f}"));
        assert!(!well_formed_id(&"k".repeat(MAX_ID_BYTES + 1)));
    }

    /// The checks as the authenticator applies them to signed tokens.
    mod verified {
        use axum::http::HeaderMap;
        use jsonwebtoken::{Algorithm, EncodingKey};

        use super::*;
        use crate::identity::{Authenticator, Unauthenticated};
        use crate::settings::IdentityConfig;

        const SECRET: &str = "0123456789abcdef0123456789abcdef";

        fn signed(header: Value, claims: Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256);
            format!("{input}.{}", signature.unwrap())
        }

        async fn caller(scheme: &str, token: &str) -> Result<String, Unauthenticated> {
            let auth = Authenticator::new(&IdentityConfig::hs256(SECRET.into())).unwrap();
            let mut headers = HeaderMap::new();
            let value = format!("{scheme} {token}").parse().unwrap();
            headers.insert(axum::http::header::AUTHORIZATION, value);
            auth.caller(&headers).await.map(|caller| caller.user)
        }

        fn now() -> u64 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        }

        #[tokio::test]
        async fn signed_tokens_failing_a_check_are_refused_and_the_scheme_is_any_case() {
            let header = json!({"alg": "HS256", "typ": "JWT"});
            let good = signed(header.clone(), json!({"sub": "kermit", "exp": now() + 600}));
            for scheme in ["Bearer", "bearer", "BEARER"] {
                assert_eq!(caller(scheme, &good).await, Ok("kermit".into()), "{scheme}");
            }
            assert_eq!(caller("Basic", &good).await, Err(Unauthenticated::Invalid));
            let critical = signed(
                json!({"alg": "HS256", "crit": ["x-taskpool"], "x-taskpool": 1}),
                json!({"sub": "kermit", "exp": now() + 600}),
            );
            let future = signed(
                header.clone(),
                json!({"sub": "kermit", "iat": now() + 3600, "exp": now() + 7200}),
            );
            let newline = signed(header, json!({"sub": "kermit\nadmin", "exp": now() + 600}));
            for (what, token) in [("crit", critical), ("iat", future), ("sub", newline)] {
                assert_eq!(
                    caller("Bearer", &token).await,
                    Err(Unauthenticated::Invalid),
                    "{what}"
                );
            }
        }
    }
}
