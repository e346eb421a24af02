//! The services in the test process (or as the binaries `make test` built), and the
//! operators' command line.

use crate::*;
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::kafka::access::Role;
use feepay_runtime::settings::{Secret, Topics};
use sea_orm::DatabaseConnection;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        kafka: service_kafka(Role::Issuer, group),
        topics: topics.clone(),
        database: db.settings(),
        batch: batch(),
        dead_letters: Default::default(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        signers_dir: keys.to_path_buf(),
        tax_report_monthly: false,
        summary_cutoff: chrono::NaiveTime::from_hms_opt(23, 0, 0).expect("time"),
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
    grant(Role::Issuer, &settings.topics, &settings.kafka.group_id).await;
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
            .query_one(feepay_runtime::sql::stmt(
                "SELECT lookup_code FROM receipts WHERE payment_id = $1",
                vec![id.clone().into()],
            ))
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

/// The lookup codes of the receipts of `payment_ids`, in their order, each waited for.
pub async fn lookup_codes(db: &TestDb, payment_ids: &[&str], timeout: Duration) -> Vec<String> {
    use sea_orm::ConnectionTrait;
    let mut codes = Vec::new();
    for id in payment_ids {
        let sql = format!("SELECT lookup_code FROM receipts WHERE payment_id = '{id}'");
        let code = eventually(timeout, "a receipt", || async {
            db.db
                .query_one(feepay_runtime::sql::raw(&sql))
                .await
                .expect("query")
                .map(|r| r.try_get::<String>("", "lookup_code").expect("lookup_code"))
        })
        .await;
        codes.push(code);
    }
    codes
}

/// Notifier settings for a test, against an SMTP sink on `smtp_port`.
pub fn notifier_settings(
    db: &TestDb,
    topics: &Topics,
    group: &str,
    smtp_port: u16,
) -> feepay_notifier::app::NotifierSettings {
    feepay_notifier::app::NotifierSettings {
        kafka: service_kafka(Role::Notifier, group),
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
        lease: Duration::from_secs(30),
        source: "/tests/notifier".into(),
        shutdown_deadline: Duration::from_secs(10),
    }
}

/// Starts a notifier.
pub async fn spawn_notifier(settings: feepay_notifier::app::NotifierSettings) -> Running {
    grant(Role::Notifier, &settings.topics, &settings.kafka.group_id).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_notifier::app::App::build(settings, shutdown.clone()).await.expect("notifier builds");
    let http_addr = app.http_addr;
    let handle = tokio::spawn(app.run());
    Running::new(shutdown, handle, http_addr)
}

/// Starts a fee assessor.
pub async fn spawn_assessor(db: &TestDb, topics: &Topics, group: &str) -> Running {
    let settings = feepay_assessor::app::AssessorSettings {
        kafka: service_kafka(Role::Assessor, group),
        topics: topics.clone(),
        database: db.settings(),
        batch: batch(),
        dead_letters: Default::default(),
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        source: "/tests/assessor".into(),
    };
    grant(Role::Assessor, &settings.topics, &settings.kafka.group_id).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = feepay_assessor::app::App::build(settings, shutdown.clone()).await.expect("assessor builds");
    let http_addr = app.http_addr;
    let handle = tokio::spawn(app.run());
    Running::new(shutdown, handle, http_addr)
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
    // Operators have no broker user: everything receiptctl shows is in PostgreSQL.
    let mut cmd = tokio::process::Command::new(bin("receiptctl"));
    cmd.args(args)
        .current_dir(repo_root())
        .env("FEEPAY_DATABASE_URL", url)
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
        max_uploads: 32,
        idle_timeout: Duration::from_secs(30),
        max_connections: 1024,
        max_connections_per_address: 32,
        verify_workers: 2,
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
