//! Kafka clients configured from [`KafkaSettings`], and the check that a service's topics
//! exist. Consuming is in [`crate::consumer`], dead letters in [`crate::dead_letter`], who
//! may do what on the broker in [`access`]. Services never create topics: an administrator
//! does (`receiptctl broker setup`, or the deployment's own tooling).

pub mod access;

use crate::settings::KafkaSettings;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use std::time::Duration;

/// Base client configuration: brokers, security, client id.
pub fn client_config(s: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers)
        .set("client.id", &s.client_id)
        .set("security.protocol", &s.security_protocol);
    if let Some(m) = &s.sasl_mechanism {
        c.set("sasl.mechanism", m);
    }
    if let Some(u) = &s.sasl_username {
        c.set("sasl.username", u);
    }
    if !s.sasl_password.is_empty() {
        c.set("sasl.password", s.sasl_password.expose());
    }
    if let Some(v) = &s.ssl_ca_location {
        c.set("ssl.ca.location", v);
    }
    if let Some(v) = &s.ssl_certificate_location {
        c.set("ssl.certificate.location", v);
    }
    if let Some(v) = &s.ssl_key_location {
        c.set("ssl.key.location", v);
    }
    c
}

/// An idempotent producer that waits for all replicas.
pub fn producer(s: &KafkaSettings) -> Result<FutureProducer, KafkaError> {
    client_config(s)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.kbytes", "32768")
        .set("message.max.bytes", s.message_max_bytes.to_string())
        .create()
}

/// The topics of `wanted` this client cannot see: missing, or not allowed to describe.
pub async fn missing_topics(s: &KafkaSettings, wanted: &[String]) -> Result<Vec<String>, KafkaError> {
    let s = s.clone();
    let wanted = wanted.to_vec();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = client_config(&s).create()?;
        let md = client.fetch_metadata(None, Duration::from_secs(10))?;
        let present: std::collections::HashSet<&str> =
            md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
        Ok(wanted.into_iter().filter(|t| !present.contains(t.as_str())).collect())
    })
    .await
    .unwrap_or_else(|e| {
        Err(KafkaError::Canceled).inspect_err(|_| tracing::error!(error = %e, "metadata thread failed"))
    })
}
