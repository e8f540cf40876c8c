//! A librdkafka client context that logs what librdkafka reports about its connections and
//! remembers an authentication failure, so a client that cannot reach the cluster can say why
//! (wrong SASL credentials) instead of a bare "broker transport failure".

use std::sync::{Arc, Mutex};

use crate::logging::error_chain;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Clones share what they saw: keep one to ask the client's context later (a producer's own
/// context is not reachable through it).
#[derive(Debug, Default, Clone)]
pub struct ReportingContext {
    authentication: Arc<Mutex<Option<String>>>,
}

impl ReportingContext {
    /// librdkafka's reason for the last authentication failure, if the brokers refused the
    /// client's credentials.
    pub fn authentication_failure(&self) -> Option<String> {
        self.authentication
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ClientContext for ReportingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            *self
                .authentication
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason.to_string());
        }
        tracing::warn!(error = error_chain(&error), reason, "Kafka client error");
    }
}
