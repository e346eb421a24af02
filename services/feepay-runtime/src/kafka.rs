//! Kafka clients configured from [`KafkaSettings`], topic creation, batch receiving with
//! manual offset commits, and dead-lettering.

use crate::envelope::{header, DecodeError};
use crate::settings::{dlq_topic, KafkaSettings};
use chrono::Utc;
use feepay_proto::v1::{DeadLetter, RecordHeader};
use feepay_proto::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
        .create()
}

/// A consumer in the service's group that never commits on its own: offsets are committed
/// by [`commit_batch`] only after the batch's effects are durable.
pub fn consumer(s: &KafkaSettings, topics: &[&str]) -> Result<StreamConsumer, KafkaError> {
    let c: StreamConsumer = client_config(s)
        .set("group.id", &s.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", s.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", (s.session_timeout_ms / 3).max(100).to_string())
        .set("partition.assignment.strategy", "range")
        .set("fetch.wait.max.ms", s.fetch_wait_ms.to_string())
        // Bound the prefetch buffer (librdkafka's default is 64 MiB per consumer).
        .set("queued.max.messages.kbytes", "8192")
        .create()?;
    c.subscribe(topics)?;
    Ok(c)
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

/// Receives up to `max` records: waits for the first (or cancellation), then takes whatever
/// arrives within `linger`.
pub async fn recv_batch<'a>(
    consumer: &'a StreamConsumer,
    max: usize,
    linger: Duration,
    shutdown: &CancellationToken,
) -> Result<Vec<BorrowedMessage<'a>>, KafkaError> {
    let mut batch = Vec::new();
    let first = tokio::select! {
        _ = shutdown.cancelled() => return Ok(batch),
        m = consumer.recv() => m?,
    };
    batch.push(first);
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "kafka error while filling a batch");
                break;
            }
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Commits, per partition, the offset after the last record of the batch. The commit is
/// asynchronous: it is only ever issued after the batch's effects are durable, and if it is
/// lost the batch is redelivered and deduplicated, so waiting for the broker's answer would
/// only add a round trip per batch.
pub fn commit_batch(consumer: &StreamConsumer, batch: &[BorrowedMessage<'_>]) -> Result<(), KafkaError> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next.entry((m.topic().to_string(), m.partition())).or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&tpl, CommitMode::Async)
}

/// The record as a dead letter with its reason.
pub fn dead_letter_of(m: &BorrowedMessage<'_>, err: &DecodeError, service: &str) -> DeadLetter {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| RecordHeader { key: h.key.to_string(), value: h.value.unwrap_or_default().to_vec() })
                .collect()
        })
        .unwrap_or_default();
    let now = Utc::now();
    DeadLetter {
        original_topic: m.topic().to_string(),
        original_partition: m.partition(),
        original_offset: m.offset(),
        original_key: m.key().unwrap_or_default().to_vec(),
        original_value: m.payload().unwrap_or_default().to_vec(),
        original_headers: headers,
        reason_code: err.code.to_string(),
        reason: err.detail.clone(),
        service: service.to_string(),
        dead_lettered_at: Some(feepay_proto::timestamp(now.timestamp(), now.timestamp_subsec_nanos() as i32)),
    }
}

/// Produces a dead letter to `<topic>.dlq` and waits until the broker has it. The value is
/// the `DeadLetter` protobuf; `dlq_reason` and `dlq_reason_code` headers make it readable
/// with any Kafka client.
pub async fn send_dead_letter(producer: &FutureProducer, dl: &DeadLetter) -> Result<(), KafkaError> {
    let topic = dlq_topic(&dl.original_topic);
    let id = format!("dlq:{}:{}:{}", dl.original_topic, dl.original_partition, dl.original_offset);
    let now = Utc::now();
    let headers: OwnedHeaders =
        crate::envelope::headers_for::<DeadLetter>(&id, &dl.service, now, crate::envelope::BodyFormat::Protobuf)
            .insert(Header { key: "dlq_reason_code", value: Some(dl.reason_code.as_str()) })
            .insert(Header { key: "dlq_reason", value: Some(dl.reason.as_str()) });
    let body = dl.encode_to_vec();
    let record = FutureRecord::to(&topic).key(&dl.original_key).payload(&body).headers(headers);
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
}

/// Sends a dead letter and retries with backoff until the broker acknowledges it. Returns
/// false when shutdown came first: the caller must then stop without committing offsets,
/// so the event is redelivered and dead-lettered again after the restart.
pub async fn dead_letter_durably(producer: &FutureProducer, dl: &DeadLetter, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match send_dead_letter(producer, dl).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, topic = %dl.original_topic, "dead letter not accepted by the broker, retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return false,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The CloudEvents id of a record, for logs.
pub fn ce_id<'a>(m: &'a BorrowedMessage<'_>) -> Option<&'a str> {
    header(m.headers(), "ce_id")
}
