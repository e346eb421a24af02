//! The real broker from a test's side: settings, topics, producing and reading events.

use crate::*;
use feepay_proto::{EventType, Message};
use feepay_runtime::envelope::{self, BodyFormat};
use feepay_runtime::settings::{BatchSettings, KafkaSettings, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use serde::Serialize;
use std::time::Duration;

/// Kafka settings for a test group.
pub fn kafka(group: &str) -> KafkaSettings {
    let mut k = KafkaSettings::from_env(group).expect("kafka settings");
    k.brokers = brokers();
    k.group_id = group.to_string();
    k.client_id = group.to_string();
    k.session_timeout_ms = 6000;
    k.partitions = 4;
    k
}

/// Topic names unique to one test.
pub fn topics() -> Topics {
    Topics::with_prefix(&format!("t{}.", unique()))
}

/// Small batches with a short linger, as in production.
pub fn batch() -> BatchSettings {
    BatchSettings { max_events: 500, linger: Duration::from_millis(5), stall_after: Duration::from_secs(60) }
}

/// A plain producer.
pub fn producer() -> FutureProducer {
    feepay_runtime::kafka::producer(&kafka("test-producer")).expect("producer")
}

/// Produces an event as CloudEvents binary mode.
pub async fn produce<T: Message + Serialize + EventType>(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    msg: &T,
    format: BodyFormat,
) {
    let id = unique();
    let headers = envelope::headers_for::<T>(&id, "/tests", wall_clock(), format);
    let body = envelope::encode_body(msg, format);
    p.send(FutureRecord::to(topic).key(key).payload(&body).headers(headers), Duration::from_secs(10))
        .await
        .expect("produced");
}

/// Produces raw bytes with the given headers (for hostile input).
pub async fn produce_raw(p: &FutureProducer, topic: &str, key: &str, body: &[u8], headers: &[(&str, &str)]) {
    let mut h = rdkafka::message::OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(rdkafka::message::Header { key: k, value: Some(*v) });
    }
    p.send(FutureRecord::to(topic).key(key).payload(body).headers(h), Duration::from_secs(10)).await.expect("produced");
}

/// Reads every record of a topic from the beginning until `want` records were read or the
/// timeout passed, decoding each body with `decode`.
pub async fn read_topic<T>(
    topic: &str,
    want: usize,
    timeout: Duration,
    decode: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let mut k = kafka(&format!("reader-{}", unique()));
    k.session_timeout_ms = 6000;
    let c: StreamConsumer = feepay_runtime::kafka::client_config(&k)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "2000")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < want {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(m)) => out.push(decode(&m)),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// Decodes a record with the CloudEvents envelope.
pub fn decode_event<T: Message + Default + serde::de::DeserializeOwned + EventType>(
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> T {
    envelope::decode(m.headers(), m.payload()).expect("a valid event")
}
