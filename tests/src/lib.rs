//! Helpers for the cross-service tests: a throw-away database per test, topic names
//! unique per test, service spawning, producing and consuming over the real broker.
//!
//! The tests need the local stack (`make up`): broker on 127.0.0.1:9092, PostgreSQL on
//! 127.0.0.1:5432 and the SMTP sink on 127.0.0.1:1025 (web API on 1080).

#![allow(clippy::print_stdout)]

pub mod fixtures;
pub mod pki;
pub mod process;

pub use pki::{test_keys, xmlsec_verify, xmlsec_verify_with};

use feepay_proto::{EventType, Message};
use feepay_runtime::envelope::{self, BodyFormat};
use feepay_runtime::settings::{BatchSettings, DatabaseSettings, KafkaSettings, Secret, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use sea_orm::DatabaseConnection;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// The time outside the services (the payment platform's, the operator's): the system
/// clock, read through the runtime's one reader.
pub fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    use feepay_runtime::clock::Clock as _;
    feepay_runtime::clock::SystemClock.now()
}

/// Broker address used by the tests (`FEEPAY_KAFKA_BROKERS`, default 127.0.0.1:9092).
pub fn brokers() -> String {
    feepay_runtime::settings::get(&feepay_runtime::settings::catalog::KAFKA_BROKERS)
}

/// Server URL without database (`FEEPAY_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`).
pub fn pg_server() -> String {
    feepay_runtime::settings::get(&feepay_runtime::settings::catalog::TEST_PG)
}

/// A short unique id for names.
pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A fresh database, migrated and loaded with the sample reference data; dropped (the
/// database itself) when the value is, also when the test panics.
pub struct TestDb {
    pub url: String,
    pub db: DatabaseConnection,
}

impl TestDb {
    pub async fn new() -> TestDb {
        if feepay_runtime::settings::opt(&feepay_runtime::settings::catalog::TEST_LOG).is_some() {
            feepay_runtime::lifecycle::init_telemetry();
        }
        let url = format!("{}/feepay_t_{}", pg_server(), unique());
        let settings = DatabaseSettings::new(url.clone(), 8);
        let db = feepay_runtime::db::connect(&settings).await.expect("PostgreSQL reachable (make up)");
        feepay_runtime::db::migrate(&db).await.expect("migrations apply");
        let files = feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference"))
            .expect("sample files");
        feepay_runtime::refdata::store(&db, &files, "test").await.expect("sample reference data loads");
        TestDb { url, db }
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings::new(self.url.clone(), 8)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The test's runtime may be unwinding or already gone: a thread with a runtime of
        // its own drops the database (`WITH (FORCE)` ends the pool's connections).
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(feepay_runtime::db::drop_database(&url));
            }
        })
        .join();
    }
}

/// What a test needs: its own database (migrated, sample reference data), its own topics
/// and its own signers. Each part cleans up when dropped, also when the test panics; the
/// services a test starts stop with their [`Running`]. A test states only what is special
/// about it:
///
/// ```ignore
/// let stack = TestStack::new().await;
/// let issuer = stack.issuer().await;
/// let code = stack.issue_one_receipt(WAIT).await;
/// ```
pub struct TestStack {
    pub db: TestDb,
    pub topics: Topics,
    pub keys: pki::Signers,
}

impl TestStack {
    pub async fn new() -> TestStack {
        TestStack { db: TestDb::new().await, topics: topics(), keys: pki::test_keys() }
    }

    /// An issuer with the test defaults (a consumer group of its own, the system clock).
    pub async fn issuer(&self) -> Running {
        spawn_default_issuer(&self.db, &self.topics, &self.keys).await
    }

    /// Issuer settings for this stack, to change before [`spawn_issuer`].
    pub fn issuer_settings(&self) -> feepay_issuer::app::IssuerSettings {
        issuer_settings(&self.db, &self.topics, &self.keys, &format!("issuer-{}", unique()))
    }

    /// Publishes one payment and waits for its receipt; see [`issue_one_receipt`].
    pub async fn issue_one_receipt(&self, wait: Duration) -> String {
        issue_one_receipt(&self.db, &self.topics, wait).await
    }

    /// Counts rows of a query returning one BIGINT column `n`.
    pub async fn count(&self, sql: &str) -> i64 {
        count(&self.db.db, sql).await
    }
}

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

/// Polls `check` until it returns `Some` or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A service running in the test process; stopped (cancelled, then aborted) when dropped,
/// also when the test panics.
pub struct Running {
    pub shutdown: tokio_util::sync::CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http_addr: std::net::SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

impl Running {
    pub fn new(
        shutdown: tokio_util::sync::CancellationToken,
        handle: tokio::task::JoinHandle<anyhow::Result<()>>,
        http_addr: std::net::SocketAddr,
    ) -> Running {
        Running { shutdown, handle: Some(handle), http_addr }
    }

    /// Graceful stop (as SIGTERM would).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
    }

    /// Abrupt stop: the task is dropped mid-flight, nothing drains (a crash, as far as the
    /// broker and the database can tell).
    pub async fn crash(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
        // The main loop is gone mid-flight; stop the background health tasks too, which
        // still hold the consumer (a killed process's consumer would expire from the group).
        self.shutdown.cancel();
    }

    /// Waits until `/readyz` answers 200 (database, broker, partitions assigned).
    pub async fn wait_ready(&self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.http_addr);
        eventually(timeout, "the service to be ready", || async {
            match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => Some(()),
                _ => None,
            }
        })
        .await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.http_addr))
            .await
            .expect("metrics endpoint")
            .text()
            .await
            .expect("text")
    }
}

/// Issuer settings for a test.
pub fn issuer_settings(db: &TestDb, topics: &Topics, keys: &Path, group: &str) -> feepay_issuer::app::IssuerSettings {
    feepay_issuer::app::IssuerSettings {
        kafka: kafka(group),
        topics: topics.clone(),
        database: db.settings(),
        batch: batch(),
        dead_letters: Default::default(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        signers_dir: keys.to_path_buf(),
        tax_report_monthly: false,
        trust_anchors: pki::test_pki().anchors(),
        source: "/tests/issuer".into(),
        relay: true,
        shutdown_deadline: Duration::from_secs(10),
        self_check_every: Duration::from_secs(1),
        // More groups than the tests have agencies, so some transactions run side by side.
        workers: 3,
    }
}

/// Starts an issuer.
pub async fn spawn_issuer(
    settings: feepay_issuer::app::IssuerSettings,
    clock: std::sync::Arc<dyn feepay_runtime::clock::Clock>,
) -> Running {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_issuer::app::App::build(settings, clock, shutdown.clone()).await.expect("issuer builds");
    let http_addr = app.http_addr;
    let handle = tokio::spawn(app.run());
    Running::new(shutdown, handle, http_addr)
}

/// An issuer with the test defaults: a consumer group of its own, the system clock.
pub async fn spawn_default_issuer(db: &TestDb, topics: &Topics, keys: &Path) -> Running {
    let settings = issuer_settings(db, topics, keys, &format!("issuer-{}", unique()));
    spawn_issuer(settings, std::sync::Arc::new(feepay_runtime::clock::SystemClock)).await
}

/// Publishes one driving-licence payment and waits (up to `wait`) for its receipt, the only
/// one in the database; returns the receipt's lookup code.
pub async fn issue_one_receipt(db: &TestDb, topics: &Topics, wait: Duration) -> String {
    use sea_orm::ConnectionTrait;
    let id = format!("PG-{}", unique());
    let payment = fixtures::gplx_payment(&id, wall_clock());
    produce(&producer(), &topics.payments_succeeded, &id, &payment, BodyFormat::Protobuf).await;
    eventually(wait, "a receipt", || async {
        db.db
            .query_one(feepay_runtime::sql::raw("SELECT lookup_code FROM receipts"))
            .await
            .unwrap()
            .map(|r| r.try_get::<String>("", "lookup_code").unwrap())
    })
    .await
}

/// Counts rows of a query returning one BIGINT column `n`.
pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    db.query_one(feepay_runtime::sql::raw(sql)).await.expect("query").expect("row").try_get::<i64>("", "n").expect("n")
}

/// Sum of the samples of metric `name` whose labels include every `label="value"` given.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Notifier settings for a test, against an SMTP sink on `smtp_port`.
pub fn notifier_settings(
    db: &TestDb,
    topics: &Topics,
    group: &str,
    smtp_port: u16,
) -> feepay_notifier::app::NotifierSettings {
    feepay_notifier::app::NotifierSettings {
        kafka: kafka(group),
        topics: topics.clone(),
        database: db.settings(),
        batch: batch(),
        dead_letters: Default::default(),
        smtp: feepay_notifier::smtp::SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            tls: feepay_notifier::smtp::TlsMode::None,
            username: None,
            password: Secret::default(),
            pool_size: 4,
            timeout: Duration::from_secs(5),
        },
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        retry_schedule: vec![
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(2),
            Duration::from_secs(3),
        ],
        from: "Biên lai điện tử <bienlai@feepay.local>".into(),
        reply_to: None,
        lookup_base_url: "http://127.0.0.1:8080/tra-cuu/".into(),
        message_id_domain: "feepay.test".into(),
        templates_dir: Some(repo_root().join("deploy/templates/email")),
        concurrency: 4,
        source: "/tests/notifier".into(),
        shutdown_deadline: Duration::from_secs(10),
    }
}

/// Starts a notifier.
pub async fn spawn_notifier(settings: feepay_notifier::app::NotifierSettings) -> Running {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_notifier::app::App::build(settings, shutdown.clone()).await.expect("notifier builds");
    let http_addr = app.http_addr;
    let handle = tokio::spawn(app.run());
    Running::new(shutdown, handle, http_addr)
}

/// A maildev SMTP sink of the test's own (for outages), started from `.tools/`.
pub struct Maildev {
    pub smtp_port: u16,
    pub web_port: u16,
    child: Option<std::process::Child>,
}

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Maildev {
    /// The shared sink of the local stack (127.0.0.1:1025, web 1080).
    pub fn shared() -> Maildev {
        Maildev { smtp_port: 1025, web_port: 1080, child: None }
    }

    /// A private sink on free ports.
    pub async fn private() -> Maildev {
        let mut m = Maildev { smtp_port: free_port(), web_port: free_port(), child: None };
        m.start().await;
        m
    }

    pub async fn start(&mut self) {
        let bin = repo_root().join(".tools/node_modules/.bin/maildev");
        let child = std::process::Command::new(bin)
            .args(["--smtp", &self.smtp_port.to_string(), "--web", &self.web_port.to_string(), "--ip", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("maildev installed by make up");
        self.child = Some(child);
        let port = self.web_port;
        eventually(Duration::from_secs(20), "maildev to listen", || async move {
            reqwest::get(format!("http://127.0.0.1:{port}/api/email"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
    }

    /// Stops the server (SIGKILL): an SMTP outage.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every email received, as maildev's JSON.
    pub async fn emails(&self) -> Vec<serde_json::Value> {
        match reqwest::get(format!("http://127.0.0.1:{}/api/email", self.web_port)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Emails addressed to `address`.
    pub async fn emails_to(&self, address: &str) -> Vec<serde_json::Value> {
        self.emails()
            .await
            .into_iter()
            .filter(|e| e["to"].as_array().is_some_and(|to| to.iter().any(|t| t["address"].as_str() == Some(address))))
            .collect()
    }

    /// Raw source of an email.
    pub async fn source(&self, id: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/api/email/{id}/source", self.web_port))
            .await
            .expect("source")
            .text()
            .await
            .expect("text")
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a fee assessor.
pub async fn spawn_assessor(db: &TestDb, topics: &Topics, group: &str) -> Running {
    let settings = feepay_assessor::app::AssessorSettings {
        kafka: kafka(group),
        topics: topics.clone(),
        database: db.settings(),
        batch: batch(),
        dead_letters: Default::default(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        source: "/tests/assessor".into(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_assessor::app::App::build(settings, shutdown.clone()).await.expect("assessor builds");
    let http_addr = app.http_addr;
    let handle = tokio::spawn(app.run());
    Running::new(shutdown, handle, http_addr)
}

/// A real Prometheus server (Debian package `prometheus`) scraping test services every
/// second and evaluating `deploy/prometheus/alerts.yml`.
pub struct Prometheus {
    pub port: u16,
    child: std::process::Child,
    _dir: PathBuf,
}

impl Prometheus {
    /// `targets`: (job, address) pairs.
    pub async fn start(targets: &[(&str, std::net::SocketAddr)]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("feepay-prom-{}", unique()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::copy(repo_root().join("deploy/prometheus/alerts.yml"), dir.join("alerts.yml")).expect("alerts");
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            cfg.push_str(&format!("  - job_name: {job}\n    static_configs: [{{targets: [\"{addr}\"]}}]\n"));
        }
        std::fs::write(dir.join("prometheus.yml"), cfg).expect("config");
        let port = free_port();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus installed (deploy/check.sh installs the Debian package)");
        eventually(Duration::from_secs(30), "prometheus to listen", || async move {
            reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Prometheus { port, child, _dir: dir }
    }

    /// Evaluates a PromQL expression now: Err with Prometheus' message if it is invalid,
    /// else the number of series in the result.
    pub async fn query(&self, expr: &str) -> Result<usize, String> {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(v["error"].as_str().unwrap_or("unknown error").to_string());
        }
        Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
    }

    /// Names of the alerts currently firing.
    pub async fn firing(&self) -> Vec<String> {
        let v: serde_json::Value = match reqwest::get(format!("http://127.0.0.1:{}/api/v1/alerts", self.port)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["state"] == "firing")
                    .filter_map(|x| x["labels"]["alertname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Metric sample names in a Prometheus text exposition.
pub fn sample_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// A workspace binary built in debug mode. `make test` builds them (`cargo build --bins`)
/// before running the tests; no test builds anything itself.
/// They sit beside the test executable's `deps/` directory, wherever the target directory
/// is (`CARGO_TARGET_DIR` included).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --bins` first (make test does)", path.display());
    path
}

/// What a command-line run printed and returned.
#[derive(Debug)]
pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `receiptctl` as an operator would, against a test's database and topics.
pub async fn receiptctl(db: &TestDb, topics: &Topics, token: Option<&str>, args: &[&str]) -> CliRun {
    receiptctl_with(&db.url, topics, token, args).await
}

/// `receiptctl` connecting with another database URL (another login).
pub async fn receiptctl_as(topics: &Topics, url: &str, token: Option<&str>, args: &[&str]) -> CliRun {
    receiptctl_with(url, topics, token, args).await
}

async fn receiptctl_with(url: &str, topics: &Topics, token: Option<&str>, args: &[&str]) -> CliRun {
    let mut cmd = tokio::process::Command::new(bin("receiptctl"));
    cmd.args(args)
        .current_dir(repo_root())
        .env("FEEPAY_DATABASE_URL", url)
        .env("FEEPAY_KAFKA_BROKERS", brokers())
        .env("FEEPAY_OPERATOR", "test-operator")
        .env("FEEPAY_TRUST_ANCHORS", pki::test_pki().anchors())
        .env_remove("FEEPAY_SIGNERS_DIR")
        .env_remove("FEEPAY_OPERATOR_TOKEN")
        .stdin(std::process::Stdio::null());
    for (k, v) in topics.to_env() {
        cmd.env(k, v);
    }
    if let Some(t) = token {
        cmd.env("FEEPAY_OPERATOR_TOKEN", t);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("receiptctl finishes within 2 minutes")
        .expect("receiptctl runs");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Lookup service settings for a test: free ports, a generous rate limit.
pub fn lookup_settings(db: &TestDb) -> feepay_lookup::app::LookupSettings {
    feepay_lookup::app::LookupSettings {
        database: db.settings(),
        addr: "127.0.0.1:0".parse().expect("addr"),
        ops_addr: "127.0.0.1:0".parse().expect("addr"),
        public_url: "http://127.0.0.1:8080".into(),
        rate_per_minute: 100_000,
        burst: 10_000,
        min_response: Duration::from_millis(150),
        proxy_hops: 0,
        header_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(20),
        max_concurrent: 256,
        trust_anchors: pki::test_pki().anchors(),
    }
}

/// A running lookup service: its public address, and `http_addr` is the operations one.
pub struct Lookup {
    pub running: Running,
    pub base: String,
}

pub async fn spawn_lookup(settings: feepay_lookup::app::LookupSettings) -> Lookup {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_lookup::app::App::build(settings, shutdown.clone()).await.expect("lookup builds");
    let base = format!("http://{}", app.addr);
    let http_addr = app.ops_addr;
    let handle = tokio::spawn(app.run());
    Lookup { running: Running::new(shutdown, handle, http_addr), base }
}

/// Debian's Chromium, installed by `make up` (deploy/local/stack.sh).
pub fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("chromium is not installed: run `make up` (it installs Debian's chromium package)");
}

/// Runs headless Chromium with a throw-away profile and `args`, within 90 s.
async fn run_chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .output(),
    )
    .await
    .expect("chromium finishes")
    .expect("chromium runs")
}

/// Renders `url` in headless Chromium and returns the DOM after scripts ran.
pub async fn chromium_dom(url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("feepay-chromium-{}", unique()));
    let out = run_chromium(&dir, &["--virtual-time-budget=3000", "--dump-dom", url]).await;
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Renders `url` in headless Chromium to a PNG screenshot and returns its bytes.
pub async fn chromium_screenshot(url: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("feepay-chromium-{}", unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let png = dir.join("page.png");
    run_chromium(
        &dir.join("profile"),
        &["--hide-scrollbars", "--window-size=1000,1400", &format!("--screenshot={}", png.display()), url],
    )
    .await;
    let bytes = std::fs::read(&png).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// Walks every series of the database: numbers 1..n, hash chain, and every signature,
/// checked by the project's verifier and by `xmlsec1`, and every document against the
/// shipped XSD with `xmllint`.
pub async fn verify_all_series(db: &TestDb, _signers: &std::path::Path) -> usize {
    use sea_orm::ConnectionTrait;
    let trust = pki::trust();
    let series = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT DISTINCT agency_code, template, symbol FROM receipts"))
        .await
        .unwrap();
    let mut total = 0;
    let mut documents = Vec::new();
    for s in series {
        let (a, t, y): (String, String, String) = (
            s.try_get("", "agency_code").unwrap(),
            s.try_get("", "template").unwrap(),
            s.try_get("", "symbol").unwrap(),
        );
        let rows = db
            .db
            .query_all(feepay_runtime::sql::stmt(
                "SELECT number, document FROM receipts WHERE agency_code = $1 AND template = $2 AND symbol = $3 ORDER BY number",
                vec![a.clone().into(), t.clone().into(), y.clone().into()],
            ))
            .await
            .unwrap();
        let mut links = Vec::new();
        for r in rows {
            let doc: String = r.try_get("", "document").unwrap();
            let v = feepay_runtime::pki::verify::verify_receipt(&doc, &trust, |_| None)
                .unwrap_or_else(|e| panic!("{a} {t} {y}: {e}"))
                .document;
            documents.push(doc);
            links.push(feepay_domain::numbering::ChainLink {
                number: v.number.parse().unwrap(),
                previous_hash: v.previous_hash,
                document_hash: v.document_hash,
            });
        }
        feepay_domain::numbering::check_chain(&links).unwrap_or_else(|d| panic!("{a} {t} {y}: {d}"));
        total += links.len();
    }
    // The independent tools judge every document: the signature and the schema.
    pki::xmlsec_verify_all(&documents).unwrap_or_else(|e| panic!("xmlsec1 rejects a receipt: {e}"));
    pki::xsd_validate_all(&documents).unwrap_or_else(|e| panic!("a receipt does not match the XSD: {e}"));
    total
}
