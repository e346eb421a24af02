//! Kafka clients configured from [`KafkaSettings`] and topic creation. Consuming is in
//! [`crate::consumer`], dead letters in [`crate::dead_letter`].

use crate::settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
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

/// Creates missing topics (an existing topic is fine).
pub async fn ensure_topics(s: &KafkaSettings, topics: &[String], partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(s).create()?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results =
        admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))).await?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(%topic, ?code, "topic creation failed"));
            }
        }
    }
    Ok(())
}
