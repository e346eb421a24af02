//! The real broker from a test's side: users and their ACLs, a test's own topics,
//! producing and reading events.
//!
//! The test itself acts as the broker's administrator (`admin`, a super user): it creates
//! a test's topics and grants each service exactly the ACLs of its role
//! ([`feepay_runtime::kafka::access`]) before starting it, so every test runs the
//! services with least privilege enforced by the broker.

use crate::*;
use feepay_proto::{EventType, Message};
use feepay_runtime::envelope::{self, BodyFormat};
use feepay_runtime::kafka::access::{self, Role};
use feepay_runtime::settings::{BatchSettings, KafkaSettings, Secret, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where the local broker's users keep their passwords (`make up` makes them).
pub fn kafka_users_dir() -> PathBuf {
    feepay_runtime::settings::opt(&feepay_runtime::settings::catalog::TEST_KAFKA_USERS_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/kafka/users"))
}

/// The password file of a broker user.
pub fn password_file(user: &str) -> PathBuf {
    kafka_users_dir().join(format!("{user}.password"))
}

fn with_user(mut k: KafkaSettings, user: &str) -> KafkaSettings {
    let file = password_file(user);
    let password = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (the local broker's users are made by make up)", file.display()));
    k.security_protocol = "sasl_plaintext".into();
    k.sasl_mechanism = Some("SCRAM-SHA-512".into());
    k.sasl_username = Some(user.to_string());
    k.sasl_password = Secret::new(password.trim().to_string());
    k
}

fn base(group: &str) -> KafkaSettings {
    let mut k = KafkaSettings::from_env(group).expect("kafka settings");
    k.brokers = brokers();
    k.group_id = group.to_string();
    k.client_id = group.to_string();
    k.session_timeout_ms = 6000;
    k.partitions = 4;
    k
}

/// Kafka settings of the test itself: the administrator, who creates topics and ACLs and
/// may produce and read anything (it plays the centres and inspects every topic).
pub fn kafka(group: &str) -> KafkaSettings {
    with_user(base(group), "admin")
}

/// Kafka settings of a service of `role`, with its own broker user.
pub fn service_kafka(role: Role, group: &str) -> KafkaSettings {
    with_user(base(group), role.default_user())
}

/// The variables that give a service process the broker user of `role`.
pub fn service_kafka_env(role: Role) -> Vec<(String, String)> {
    vec![
        ("FEEPAY_KAFKA_SECURITY_PROTOCOL".into(), "sasl_plaintext".into()),
        ("FEEPAY_KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
        ("FEEPAY_KAFKA_SASL_USERNAME".into(), role.default_user().into()),
        ("FEEPAY_KAFKA_SASL_PASSWORD_FILE".into(), password_file(role.default_user()).display().to_string()),
    ]
}

/// Grants `role` (as its default user) the ACLs of its role on `topics` and the consumer
/// groups starting with `group`.
pub async fn grant(role: Role, topics: &Topics, group: &str) {
    let grants = access::grants(role, role.default_user(), topics, group);
    remember_group(topics, group);
    feepay_broker_admin::grant(&kafka("test-admin"), &grants).await.unwrap_or_else(|e| panic!("granting {role}: {e}"));
}

/// Notes a consumer group granted on a test's topics, so its ACLs are revoked with them.
pub fn remember_group(topics: &Topics, group: &str) {
    GROUPS.lock().expect("groups").entry(topics.payments_succeeded.clone()).or_default().push(group.to_string());
}

/// The consumer groups granted on each test's topics (keyed by one of its topic names), so
/// the group ACLs go with the topics.
static GROUPS: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// A test's own topics (every topic of the contract, dead letters included, under a prefix
/// unique to the test), created on the broker. Dropping it deletes the topics and every
/// ACL on them, also when the test panics.
pub struct TestTopics {
    topics: Topics,
}

impl std::ops::Deref for TestTopics {
    type Target = Topics;
    fn deref(&self) -> &Topics {
        &self.topics
    }
}

impl TestTopics {
    /// The names, to keep or change.
    pub fn names(&self) -> Topics {
        self.topics.clone()
    }
}

/// Runs a future on a runtime of its own on another thread: creation and clean-up happen
/// outside the test's runtime (which may be a current-thread one, or gone while unwinding).
fn on_own_runtime<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
    })
    .join()
    .expect("broker administration thread")
}

/// Topic names unique to one test, created on the broker.
pub fn topics() -> TestTopics {
    let topics = Topics::with_prefix(&format!("t{}.", unique()));
    let names = topics.all();
    on_own_runtime(async move {
        feepay_broker_admin::create_topics(&kafka("test-admin"), &names, &feepay_broker_admin::TopicSpec::single(4))
            .await
            .unwrap_or_else(|e| panic!("creating the test's topics (make up): {e}"));
    });
    TestTopics { topics }
}

impl Drop for TestTopics {
    fn drop(&mut self) {
        let names = self.topics.all();
        let groups = GROUPS
            .lock()
            .map(|mut g| g.remove(&self.topics.payments_succeeded).unwrap_or_default())
            .unwrap_or_default();
        let _ = on_own_runtime(async move {
            let admin = kafka("test-admin");
            let acls = feepay_broker_admin::revoke_all_on(&admin, &names, &groups).await;
            let deleted = feepay_broker_admin::delete_topics(&admin, &names).await;
            (acls.is_ok(), deleted.is_ok())
        });
    }
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

/// Every record of `topic` from the low to the high watermark of each partition, read by
/// assignment (no group join), as `(key, value)`.
pub fn read_all_partitions(k: &KafkaSettings, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let c: BaseConsumer = feepay_runtime::kafka::client_config(k)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut want = std::collections::HashMap::new();
    for p in md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())) {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo)).expect("partition");
            want.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !want.is_empty() {
        assert!(std::time::Instant::now() < deadline, "{topic} not read within a minute");
        let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
        let m = m.expect("record");
        let Some(end) = want.get(&m.partition()).copied() else { continue };
        if m.offset() < end {
            out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
        }
        if m.offset() + 1 >= end {
            want.remove(&m.partition());
        }
    }
    out
}
