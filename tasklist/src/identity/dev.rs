//! Development sign-in: for a first run and the demo, the service itself issues tokens for a
//! fixed list of users, signed with a secret made at start. Anyone who can reach the port can
//! act as any of these users, so it is off unless a deployment turns it on (the single-node
//! mode does, for its demo users, and says so in its log and on the page).

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;
use serde_json::json;
use taskpool_service::SecretString;

/// A user the development sign-in offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevUser {
    pub name: String,
    pub groups: Vec<String>,
}

/// Issues tokens for [`DevUser`]s; the [`crate::identity::Authenticator`] must accept
/// [`DevSignIn::secret`] (HS256).
#[derive(Clone)]
pub struct DevSignIn {
    users: Vec<DevUser>,
    secret: SecretString,
    key: EncodingKey,
}

impl std::fmt::Debug for DevSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSignIn")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

/// The users of a `dev_sign_in` configuration (`name:group+group` entries).
pub fn users_from(entries: &[String]) -> Vec<DevUser> {
    entries
        .iter()
        .map(|entry| {
            let (name, groups) = entry.split_once(':').unwrap_or((entry, ""));
            DevUser {
                name: name.trim().to_string(),
                groups: groups
                    .split('+')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect(),
            }
        })
        .collect()
}

/// How long an issued token is valid.
const TOKEN_HOURS: u64 = 12;

impl DevSignIn {
    /// A sign-in for `users` with a fresh random secret (tokens from an earlier start are no
    /// longer accepted; the page signs in again).
    pub fn new(users: Vec<DevUser>) -> DevSignIn {
        let secret: String = (0..2)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let key = EncodingKey::from_secret(secret.as_bytes());
        DevSignIn {
            users,
            secret: SecretString::from(secret),
            key,
        }
    }

    /// The secret the authenticator must accept.
    pub fn secret(&self) -> SecretString {
        self.secret.clone()
    }

    pub fn users(&self) -> &[DevUser] {
        &self.users
    }

    /// Each user with a fresh token.
    pub fn tokens(&self) -> Vec<serde_json::Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.users
            .iter()
            .filter_map(|user| {
                let claims = json!({
                    "sub": user.name,
                    "groups": user.groups,
                    "iat": now,
                    "exp": now + TOKEN_HOURS * 3600,
                });
                let token = encode(&Header::default(), &claims, &self.key).ok()?;
                Some(json!({ "user": user.name, "groups": user.groups, "token": token }))
            })
            .collect()
    }

    /// Settings for an authenticator that accepts these tokens.
    pub fn identity_config(&self) -> crate::settings::IdentityConfig {
        crate::settings::IdentityConfig::hs256(self.secret.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Authenticator;
    use axum::http::{HeaderMap, HeaderValue, header};

    #[tokio::test]
    async fn issued_tokens_sign_their_users_in_with_their_groups() {
        let sign_in = DevSignIn::new(vec![DevUser {
            name: "kermit".into(),
            groups: vec!["approvers".into()],
        }]);
        let auth = Authenticator::new(&sign_in.identity_config()).unwrap();
        let tokens = sign_in.tokens();
        let token = tokens[0]["token"].as_str().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let caller = auth.caller(&headers).await.unwrap();
        assert_eq!(caller.user, "kermit");
        assert_eq!(caller.groups, ["approvers"]);
        // Another start's tokens are refused.
        let other = DevSignIn::new(sign_in.users().to_vec());
        let auth = Authenticator::new(&other.identity_config()).unwrap();
        assert!(auth.caller(&headers).await.is_err());
    }
}
