//! How every Kafka client of taskpool connects: brokers, TLS, SASL and free-form librdkafka
//! overrides, turned into client properties in one place so that producers, consumers and
//! admin clients of both binaries reach a secured cluster the same way.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;

/// `security.protocol`: how the connection to the brokers is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn property(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism`: the ones librdkafka supports without Kerberos libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn property(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The `[kafka.security]` section: TLS and SASL towards the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// Required with `SASL_PLAINTEXT` and `SASL_SSL`.
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<SecretString>,
    /// PEM file of the certificate authorities to trust; the system's store when unset.
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key (PEM files), for clusters that authenticate clients by TLS.
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<SecretString>,
    /// Check that the broker's certificate names the host connected to.
    pub ssl_verify_hostname: bool,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        KafkaSecurity {
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            ssl_verify_hostname: true,
        }
    }
}

impl KafkaSecurity {
    /// The combinations librdkafka would only refuse at the first connection.
    pub fn check(&self) -> Result<(), String> {
        let sasl_settings = self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some();
        if self.protocol.uses_sasl() {
            if self.sasl_mechanism.is_none()
                || self.sasl_username.is_none()
                || self.sasl_password.is_none()
            {
                return Err(
                    "kafka.security: SASL protocols need sasl_mechanism, sasl_username and sasl_password"
                        .into(),
                );
            }
        } else if sasl_settings {
            return Err(
                "kafka.security: SASL settings need protocol SASL_PLAINTEXT or SASL_SSL".into(),
            );
        }
        let tls_settings = self.ssl_ca_location.is_some()
            || self.ssl_certificate_location.is_some()
            || self.ssl_key_location.is_some();
        if tls_settings && !self.protocol.uses_tls() {
            return Err("kafka.security: ssl_* settings need protocol SSL or SASL_SSL".into());
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(
                "kafka.security: ssl_certificate_location and ssl_key_location go together".into(),
            );
        }
        Ok(())
    }

    fn apply(&self, client: &mut ClientConfig) {
        client.set("security.protocol", self.protocol.property());
        if let Some(mechanism) = self.sasl_mechanism {
            client.set("sasl.mechanism", mechanism.property());
        }
        if let Some(username) = &self.sasl_username {
            client.set("sasl.username", username);
        }
        if let Some(password) = &self.sasl_password {
            client.set("sasl.password", password.expose_secret());
        }
        if let Some(location) = &self.ssl_ca_location {
            client.set("ssl.ca.location", location);
        }
        if let Some(location) = &self.ssl_certificate_location {
            client.set("ssl.certificate.location", location);
        }
        if let Some(location) = &self.ssl_key_location {
            client.set("ssl.key.location", location);
        }
        if let Some(password) = &self.ssl_key_password {
            client.set("ssl.key.password", password.expose_secret());
        }
        if self.protocol.uses_tls() {
            let algorithm = if self.ssl_verify_hostname {
                "https"
            } else {
                "none"
            };
            client.set("ssl.endpoint.identification.algorithm", algorithm);
        }
    }
}

/// `compression.type` of a producer. lz4 and snappy are built into librdkafka; gzip and zstd
/// come from zlib and libzstd, linked in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn property(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Extra librdkafka properties an operator sets (`kafka.producer`, `kafka.consumer`). They may
/// hold credentials (`sasl.password`), so `Debug` shows the keys only.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Overrides(pub BTreeMap<String, String>);

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A librdkafka client configuration for `bootstrap_servers` with `security` applied, then
/// `settings` (the caller's fixed properties), then the operator's `overrides`. Override keys
/// may use `_` for `.` (`linger_ms` is `linger.ms`), because environment variable names cannot
/// hold dots; librdkafka property names never contain `_`.
pub fn client_config(
    bootstrap_servers: &str,
    security: &KafkaSecurity,
    settings: &[(&str, &str)],
    overrides: &Overrides,
) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap_servers);
    security.apply(&mut client);
    for (key, value) in settings {
        client.set(*key, *value);
    }
    for (key, value) in &overrides.0 {
        client.set(key.replace('_', "."), value);
    }
    client
}

/// Waits until the broker knows every topic, asking again with back-off ("waiting for topics
/// to be created" in the log). A consumer that subscribes first and sees the topics appear
/// later learns of them only from a later metadata refresh and a rebalance, which has been seen
/// to take a minute on a busy broker. False on shutdown.
pub async fn wait_for_topics<C>(consumer: &Arc<C>, names: &[&str], shutdown: &mut Shutdown) -> bool
where
    C: Consumer + Send + Sync + 'static,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let asked = consumer.clone();
        let all: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        // A metadata request blocks its thread, up to its timeout when the broker is down.
        let missing = tokio::task::spawn_blocking(move || {
            all.into_iter()
                .filter(|name| !topic_exists(&*asked, name))
                .collect::<Vec<_>>()
        })
        .await
        .expect("the metadata requests do not panic");
        if missing.is_empty() {
            return true;
        }
        let pause = backoff.next_pause();
        tracing::warn!(topics = ?missing, retry_in_ms = pause.as_millis() as u64, "waiting for topics to be created");
        if shutdown.sleep(pause).await {
            return false;
        }
    }
}

fn topic_exists<C: Consumer>(consumer: &C, name: &str) -> bool {
    match consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
        Ok(metadata) => metadata
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty()),
        Err(_) => false,
    }
}

/// The librdkafka features linked into this build, e.g. `gzip,snappy,ssl,sasl_scram,...`.
pub fn builtin_features() -> String {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|native| native.get("builtin.features"))
        .unwrap_or_default();
    format!("librdkafka {version}: {features}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(toml_text: &str) -> KafkaSecurity {
        config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn this_build_links_tls_sasl_and_every_compression_codec() {
        let features = builtin_features();
        for wanted in [
            "gzip",
            "snappy",
            "ssl",
            "sasl_plain",
            "sasl_scram",
            "lz4",
            "zstd",
        ] {
            assert!(features.contains(wanted), "{wanted} missing: {features}");
        }
    }

    #[test]
    fn a_managed_cluster_with_sasl_scram_over_tls_gets_its_properties() {
        let security = security(
            r#"
            protocol = "SASL_SSL"
            sasl_mechanism = "SCRAM-SHA-512"
            sasl_username = "taskpool"
            sasl_password = "s3cret-password"
            ssl_ca_location = "/etc/ssl/ca.pem"
            "#,
        );
        security.check().unwrap();
        let mut overrides = Overrides::default();
        overrides.0.insert(
            "sasl.oauthbearer.config".to_string(),
            "secret=abc".to_string(),
        );
        overrides
            .0
            .insert("linger_ms".to_string(), "10".to_string());
        assert!(!format!("{overrides:?}").contains("secret=abc"));
        let client = client_config("b:9093", &security, &[("acks", "all")], &overrides);
        for (key, value) in [
            ("bootstrap.servers", "b:9093"),
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "taskpool"),
            ("sasl.password", "s3cret-password"),
            ("ssl.ca.location", "/etc/ssl/ca.pem"),
            ("ssl.endpoint.identification.algorithm", "https"),
            ("acks", "all"),
            ("linger.ms", "10"),
        ] {
            assert_eq!(client.get(key), Some(value), "{key}");
        }
        assert!(!format!("{security:?}").contains("s3cret-password"));
    }

    #[test]
    fn incomplete_or_contradictory_security_settings_are_refused() {
        assert!(
            security("protocol = \"SASL_SSL\"\nsasl_mechanism = \"PLAIN\"")
                .check()
                .is_err()
        );
        assert!(security("sasl_username = \"u\"").check().is_err());
        assert!(
            security("protocol = \"PLAINTEXT\"\nssl_ca_location = \"/ca.pem\"")
                .check()
                .is_err()
        );
        assert!(
            security("protocol = \"SSL\"\nssl_certificate_location = \"/c.pem\"")
                .check()
                .is_err()
        );
        security("protocol = \"SSL\"").check().unwrap();
        KafkaSecurity::default().check().unwrap();
    }
}
