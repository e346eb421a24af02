//! `make bench`: runs the whole pipeline (issuer with its outbox relay, notifier to the
//! local SMTP sink) as release processes against the local stack, offers realistic payment
//! events, and measures throughput, latency, memory and the machine's ceilings. It checks
//! its own results: a fast wrong answer fails the run.

#![allow(clippy::print_stdout)]

mod gen;
mod report;
mod signing;
mod smtp;

use anyhow::{bail, Context};
use clap::Parser;
use feepay_proto::Message;
use feepay_runtime::envelope::{self, BodyFormat};
use feepay_runtime::kafka::access::{self, Role};
use feepay_runtime::settings::{DatabaseSettings, KafkaSettings, Secret, Topics};
use feepay_runtime::sql::{raw, stmt};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// End-to-end benchmark of feepay on this machine.
#[derive(Debug, Parser)]
#[command(name = "feepay-bench")]
struct Args {
    /// Payments offered at the fixed rate (phase 1).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds of the fixed-rate phase.
    #[arg(long, default_value_t = 30)]
    fixed_secs: u32,
    /// Payments offered all at once to find saturation (phase 2).
    #[arg(long, default_value_t = 30_000)]
    burst: u32,
    /// Percentage of invalid events mixed in.
    #[arg(long, default_value_t = 1)]
    invalid_pct: u32,
    /// Percentage of payments refunded afterwards.
    #[arg(long, default_value_t = 2)]
    refund_pct: u32,
    /// Send emails through the SMTP sink (127.0.0.1:1025) and wait for all of them.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    emails: bool,
    /// Results folder.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Directory of the release binaries.
    #[arg(long, default_value = "target/release")]
    bin: PathBuf,
    /// PostgreSQL server URL (a throw-away database is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg: String,
    /// Connection parameters added to the database URL (TLS costs CPU on loopback).
    #[arg(long, default_value = "sslmode=disable")]
    pg_params: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The broker users' password files (`<user>.password`; `admin` creates the run's
    /// topics and ACLs, `feepay-centre` publishes, each service runs as its own user).
    #[arg(long, default_value = ".local/kafka/users")]
    kafka_users: PathBuf,
    /// The broker's pid file, to report its CPU time and memory (the local stack's).
    #[arg(long, default_value = ".local/run/broker.pid")]
    broker_pid_file: PathBuf,
    /// Keep the run's topics and ACLs on the broker afterwards (deleted by default).
    #[arg(long)]
    keep_topics: bool,
    /// Key type of the agencies' certificates: `rsa` (RSA-2048, what Vietnamese CAs issue
    /// most) or `ec` (ECDSA P-256).
    #[arg(long, default_value = "rsa", value_parser = ["rsa", "ec"])]
    key: String,
}

struct Service {
    name: &'static str,
    child: Child,
    peak_rss_kib: u64,
    /// Where its output goes.
    logs: PathBuf,
}

impl Service {
    /// Samples the peak resident memory; fails when the process has exited.
    fn watch(&mut self) -> anyhow::Result<()> {
        self.sample_rss();
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "feepay-{} exited ({status}); see {}",
                self.name,
                self.logs.join(format!("{}.err.log", self.name)).display()
            );
        }
        Ok(())
    }

    fn sample_rss(&mut self) {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("VmHWM:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    self.peak_rss_kib = self.peak_rss_kib.max(kib);
                }
            }
        }
    }

    fn stop(&mut self) {
        self.sample_rss();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn progress(msg: &str) {
    println!("[bench] {msg}");
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = crate::wall_clock().format("%Y%m%d-%H%M%S").to_string();
    let work = std::env::temp_dir().join(format!("feepay-bench-{run}"));
    std::fs::create_dir_all(&work)?;
    // The PKCS#11 module reads its configuration when it loads: set it while this is the
    // only thread.
    std::env::set_var("SOFTHSM2_CONF", signing::softhsm_conf(&work)?);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(args, run, work))
}

async fn bench(args: Args, run: String, work: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let db_url = format!("{}/feepay_bench_{}?{}", args.pg, run.replace('-', "_"), args.pg_params);
    let prefix = format!("bench{}.", run.replace('-', ""));
    let topics = Topics::with_prefix(&prefix);
    let keys = work.join("signers");
    let pki = work.join("pki");
    std::fs::create_dir_all(&keys)?;

    progress(&format!("run {run}: database {db_url}, topic prefix {prefix}"));
    let db = feepay_runtime::db::connect(&DatabaseSettings::new(db_url.clone(), 4)).await?;
    feepay_runtime::db::migrate(&db).await?;
    let files = feepay_runtime::refdata::ReferenceFiles::read_dir(Path::new("deploy/reference"))?;
    feepay_runtime::refdata::store(&db, &files, "bench").await?;
    let (reference, rules) = files.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    // The tax authority's acceptance of every series (Circular 91/2026/TT-BTC Art. 17), as a
    // centre records it before it issues.
    for s in &reference.series {
        let acceptance = feepay_runtime::series_registrations::Acceptance {
            agency: &s.agency,
            template: &s.template,
            letters: &s.letters,
            notice: "01/TB-ĐKĐT (bench)",
            accepted_on: chrono::NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
        };
        feepay_runtime::series_registrations::record(&db, &acceptance, "bench", crate::wall_clock()).await?;
    }
    // RSA-2048 certificates with software keys (PKCS#12), from a CA of this run.
    let (ca, _) = feepay_runtime::pki::provision::ensure_ca(&pki, crate::wall_clock()).map_err(anyhow::Error::msg)?;
    for agency in feepay_runtime::pki::provision::agencies_without_signer(&reference, &keys) {
        let now = crate::wall_clock();
        feepay_runtime::pki::provision::write_pkcs12(
            &keys,
            &ca,
            agency,
            None,
            if args.key == "ec" {
                feepay_runtime::pki::provision::KeyType::Ec
            } else {
                feepay_runtime::pki::provision::KeyType::Rsa
            },
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(30),
        )
        .map_err(anyhow::Error::msg)?;
    }
    // The run's topics and its services' ACLs, made as the broker's administrator; the
    // payments are published as a centre would, with the centre's user.
    let users = Users { dir: args.kafka_users.clone(), brokers: args.brokers.clone() };
    let kafka = users.settings("admin")?;
    feepay_broker_admin::create_topics(&kafka, &topics.all(), &feepay_broker_admin::TopicSpec::single(4)).await?;
    let groups: Vec<String> = ["issuer", "notifier"].iter().map(|n| format!("{n}-{run}")).collect();
    for (role, group) in [(Role::Issuer, &groups[0]), (Role::Notifier, &groups[1])] {
        feepay_broker_admin::grant(&kafka, &access::grants(role, role.default_user(), &topics, group)).await?;
    }
    feepay_broker_admin::grant(
        &kafka,
        &access::grants(Role::Centre, Role::Centre.default_user(), &topics, "feepay-centre"),
    )
    .await?;
    let mut broker = BrokerWatch::new(&args.broker_pid_file);
    let producer: FutureProducer = feepay_runtime::kafka::client_config(&users.settings(Role::Centre.default_user())?)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()?;

    // The benchmark's SMTP server: Postfix's smtp-sink (`smtp`).
    let smtp_port = free_port();
    let smtp_sink = if args.emails { Some(smtp::Sink::start(smtp_port)?) } else { None };
    let env = |cmd: &mut Command, name: &str, port: u16| {
        let user = format!("feepay-{name}");
        cmd.env("FEEPAY_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
            .env("FEEPAY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("FEEPAY_KAFKA_SASL_USERNAME", &user)
            .env("FEEPAY_KAFKA_SASL_PASSWORD_FILE", users.password_file(&user));
        cmd.env("FEEPAY_DATABASE_URL", &db_url)
            .env("FEEPAY_KAFKA_BROKERS", &args.brokers)
            .env("FEEPAY_KAFKA_GROUP_ID", format!("{name}-{run}"))
            .env("FEEPAY_SIGNERS_DIR", &keys)
            .env("FEEPAY_TRUST_ANCHORS", pki.join("ca.pem"))
            .env("FEEPAY_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env(format!("FEEPAY_{}_HTTP_ADDR", name.to_uppercase()), format!("127.0.0.1:{port}"))
            .env("FEEPAY_NOTIFIER_RETRY_SCHEDULE", "1s,2s,5s,10s")
            .env("FEEPAY_NOTIFIER_CONCURRENCY", "32")
            .env("FEEPAY_SMTP_POOL_SIZE", "32")
            .env("FEEPAY_SMTP_PORT", smtp_port.to_string());
        for (k, v) in topics.to_env() {
            cmd.env(k, v);
        }
    };
    let log =
        |name: &str| -> anyhow::Result<std::fs::File> { Ok(std::fs::File::create(work.join(format!("{name}.log")))?) };
    let mut services = Vec::new();
    // Ports picked free: a second run (or anything else) on fixed ports would answer the
    // readiness checks for services that could not start.
    let mut ports = Vec::new();
    for (name, port) in [("issuer", free_port()), ("notifier", free_port())] {
        if !args.emails && name == "notifier" {
            continue;
        }
        let mut cmd = Command::new(args.bin.join(format!("feepay-{name}")));
        env(&mut cmd, name, port);
        cmd.stdout(log(name)?).stderr(log(&format!("{name}.err"))?);
        let child =
            cmd.spawn().with_context(|| format!("starting feepay-{name} (run `cargo build --release` first)"))?;
        services.push(Service { name, child, peak_rss_kib: 0, logs: work.clone() });
        ports.push(port);
    }
    progress("waiting for the services to join their consumer groups");
    for port in ports {
        wait_ready(port).await?;
    }

    let mut generator = gen::Generator::new(&reference, &rules, &run);
    let mut expected = Expected::default();

    // ---- phase 1: fixed offered load ---------------------------------------------------
    let total_fixed = args.rate * args.fixed_secs;
    progress(&format!("phase 1: {} payments at {} /s for {} s", total_fixed, args.rate, args.fixed_secs));
    let phase1_start = crate::wall_clock();
    broker.cpu_start = broker.cpu_seconds();
    let started = Instant::now();
    let mut sent = 0u32;
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate as f64 / 100.0).max(1.0);
    let mut carry = 0.0;
    while sent < total_fixed {
        carry += per_tick;
        let n = carry.floor() as u32;
        carry -= n as f64;
        for _ in 0..n.min(total_fixed - sent) {
            send(&producer, &topics, &mut generator, &mut expected, args.invalid_pct)?;
            sent += 1;
        }
        if sent % (args.rate * 5).max(1) < n {
            progress(&format!("  offered {sent}/{total_fixed}"));
        }
        let target = started + tick * ((sent as f64 / per_tick) as u32);
        tokio::time::sleep_until(tokio::time::Instant::from_std(target)).await;
    }
    producer.flush(Duration::from_secs(30))?;
    let offered_secs = started.elapsed().as_secs_f64();
    wait_for(&db, &expected, &mut services, &mut broker, "phase 1").await?;
    let phase1_end = crate::wall_clock();

    // ---- phase 2: saturation ---------------------------------------------------------
    progress(&format!("phase 2: {} payments offered at once (saturation)", args.burst));
    let burst_start = crate::wall_clock();
    for i in 0..args.burst {
        send(&producer, &topics, &mut generator, &mut expected, args.invalid_pct)?;
        if i % 20_000 == 19_999 {
            progress(&format!("  produced {}/{}", i + 1, args.burst));
        }
    }
    producer.flush(Duration::from_secs(60))?;
    progress(&format!(
        "  all produced in {:.1} s",
        (crate::wall_clock() - burst_start).num_milliseconds() as f64 / 1000.0
    ));
    wait_for(&db, &expected, &mut services, &mut broker, "phase 2").await?;

    // Refunds of some issued payments.
    let refunds = generator.refunds(args.refund_pct);
    for r in &refunds {
        let body = r.encode_to_vec();
        let headers = envelope::headers_for::<feepay_proto::v1::PaymentRefunded>(
            &r.refund_id,
            "/feepay/bench",
            crate::wall_clock(),
            BodyFormat::Protobuf,
        );
        producer
            .send_result(FutureRecord::to(&topics.payments_refunded).key(&r.payment_id).payload(&body).headers(headers))
            .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    expected.refunds = refunds.len() as i64;
    wait_for(&db, &expected, &mut services, &mut broker, "refunds").await?;
    if args.emails {
        wait_emails(&db, &mut services, &mut broker).await?;
    }
    let broker_figures = broker.figures(started.elapsed());
    for s in &mut services {
        s.sample_rss();
    }

    // ---- ceilings ----------------------------------------------------------------------
    progress("ceiling: a bare consumer reading the payments topic");
    let consumer_rate =
        report::bare_consumer_rate(&kafka, &topics.payments_succeeded, expected.produced as usize).await?;
    progress("ceiling: PostgreSQL accepting receipt rows in large batches");
    let pg_rate = report::pg_batch_rate(&db).await?;

    for s in &mut services {
        s.stop();
    }
    // Measured with the services stopped, so they do not share the cores.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    progress(&format!("ceiling: signatures/s with the agencies' software key ({}) on {cores} thread(s)", args.key));
    let sign_rate = signing::software(&keys, cores)?;
    progress(&format!("ceiling: RSA-2048 signatures/s in a SoftHSM2 token on {cores} session(s)"));
    let softhsm_rate = match signing::softhsm(&work, &ca, &reference.agencies["BN.TTPVHCC"], cores) {
        Ok(r) => Some(r),
        Err(e) => {
            progress(&format!("  SoftHSM2 not measured: {e}"));
            None
        }
    };
    let smtp_sink_rate = if args.emails {
        progress("ceiling: messages/s a fresh smtp-sink accepts from smtp-source");
        // 16 KiB: about a receipt email with its XML and QR code.
        Some(smtp::ceiling(free_port(), 20_000, 32, 16_384)?)
    } else {
        None
    };
    let dlq = feepay_runtime::settings::dlq_topic(&topics.payments_succeeded);
    let mut checks = report::check(&db, &expected, args.emails, &kafka, &dlq).await?;
    checks.smtp_accepted = smtp_sink.as_ref().map(|s| s.accepted() as i64);
    let figures =
        report::figures(&db, phase1_start, phase1_end, burst_start, offered_secs, total_fixed, args.emails).await?;
    let rss: Vec<(String, u64)> = services.iter().map(|s| (s.name.to_string(), s.peak_rss_kib)).collect();
    let result = report::Report {
        run: run.clone(),
        args: format!("{args:?}"),
        figures,
        consumer_rate,
        pg_rate,
        sign_rate,
        softhsm_rate,
        smtp_sink_rate,
        rss,
        broker: broker_figures,
        checks,
    };
    result.print();
    let json = args.out.join(format!("bench-{run}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(&result)?)?;
    let svg = args.out.join(format!("bench-{run}.svg"));
    std::fs::write(&svg, report::svg(&db, phase1_start).await?)?;
    progress(&format!("results: {} and {}", json.display(), svg.display()));
    db.close().await.ok();
    feepay_runtime::db::drop_database(&db_url).await.ok();
    if !args.keep_topics {
        feepay_broker_admin::revoke_all_on(&kafka, &topics.all(), &groups).await.ok();
        feepay_broker_admin::delete_topics(&kafka, &topics.all()).await.ok();
    }
    if !result.checks.ok() {
        bail!("the pipeline's results are wrong: see the checks above");
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()).unwrap_or(2525)).unwrap_or(2525)
}

/// What the pipeline must end with.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    pub produced: i64,
    pub payments: i64,
    pub invalid: i64,
    pub refunds: i64,
}

fn send(
    producer: &FutureProducer,
    topics: &Topics,
    g: &mut gen::Generator,
    e: &mut Expected,
    invalid_pct: u32,
) -> anyhow::Result<()> {
    let (key, body, headers, valid) = g.next(invalid_pct);
    e.produced += 1;
    if valid {
        e.payments += 1;
    } else {
        e.invalid += 1;
    }
    loop {
        match producer
            .send_result(FutureRecord::to(&topics.payments_succeeded).key(&key).payload(&body).headers(headers.clone()))
        {
            Ok(_) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(anyhow::anyhow!("producing: {e}")),
        }
    }
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest_get(port, "/readyz").await {
            if r {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("service on port {port} not ready after 90 s")
}

async fn reqwest_get(port: u16, path: &str) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"))
}

/// Waits until every valid payment (and refund) has its outcome recorded.
async fn wait_for(
    db: &DatabaseConnection,
    e: &Expected,
    services: &mut [Service],
    broker: &mut BrokerWatch,
    phase: &str,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = -1;
    loop {
        let row = db
            .query_one(raw(
                "SELECT (SELECT count(*) FROM payments)::BIGINT AS p, (SELECT count(*) FROM refunds WHERE status <> 'pending')::BIGINT AS r, \
                 (SELECT count(*) FROM outbox)::BIGINT AS o",
            ))
            .await?
            .context("no row")?;
        let (p, r, o): (i64, i64, i64) = (row.try_get("", "p")?, row.try_get("", "r")?, row.try_get("", "o")?);
        for s in services.iter_mut() {
            s.watch()?;
        }
        broker.sample();
        if p != last {
            progress(&format!(
                "  {phase}: {p}/{} payments recorded, {r}/{} refunds, outbox {o}",
                e.payments, e.refunds
            ));
            last = p;
        }
        if p >= e.payments && r >= e.refunds && o == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("{phase}: the pipeline did not finish within 10 minutes ({p}/{} payments)", e.payments);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

async fn wait_emails(
    db: &DatabaseConnection,
    services: &mut [Service],
    broker: &mut BrokerWatch,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = -1;
    loop {
        let row = db
            .query_one(raw(
                "SELECT (SELECT count(*) FROM deliveries WHERE status = 'queued')::BIGINT AS q, (SELECT count(*) FROM deliveries)::BIGINT AS d, \
                 (SELECT count(*) FROM receipts)::BIGINT + (SELECT count(*) FROM receipts WHERE status = 'cancelled')::BIGINT \
                 + (SELECT count(*) FROM payments WHERE waived_lines IS NOT NULL)::BIGINT \
                 + (SELECT count(*) FROM refunds WHERE allocation IS NOT NULL)::BIGINT AS want",
            ))
            .await?
            .context("no row")?;
        let (q, d, want): (i64, i64, i64) = (row.try_get("", "q")?, row.try_get("", "d")?, row.try_get("", "want")?);
        for s in services.iter_mut() {
            s.watch()?;
        }
        broker.sample();
        if q != last {
            progress(&format!("  emails: {d}/{want} recorded, {q} waiting"));
            last = q;
        }
        if q == 0 && d >= want {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(900) {
            bail!("emails did not settle within 15 minutes ({q} waiting)");
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// Used by report.rs.
pub fn stmt_for(sql: &str, v: Vec<sea_orm::Value>) -> sea_orm::Statement {
    stmt(sql, v)
}

/// The load generator's time: the system clock, read through the runtime's one reader.
fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    use feepay_runtime::clock::Clock as _;
    feepay_runtime::clock::SystemClock.now()
}

/// The broker users of the local stack, from their password files.
struct Users {
    dir: PathBuf,
    brokers: String,
}

impl Users {
    fn password_file(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.password"))
    }

    fn settings(&self, user: &str) -> anyhow::Result<KafkaSettings> {
        let file = self.password_file(user);
        let password = std::fs::read_to_string(&file)
            .with_context(|| format!("{} (the local broker's users are made by make up)", file.display()))?;
        let mut k = KafkaSettings::from_env("feepay-bench")?;
        k.brokers = self.brokers.clone();
        k.security_protocol = "sasl_plaintext".into();
        k.sasl_mechanism = Some("SCRAM-SHA-512".into());
        k.sasl_username = Some(user.to_string());
        k.sasl_password = Secret::new(password.trim().to_string());
        Ok(k)
    }
}

/// The broker's own CPU time and memory over the run, from /proc (the local stack's broker,
/// found by its pid file; absent figures when it runs elsewhere).
struct BrokerWatch {
    pid: Option<u32>,
    cpu_start: Option<f64>,
    peak_rss_kib: u64,
}

impl BrokerWatch {
    fn new(pid_file: &Path) -> Self {
        let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse().ok());
        let mut w = BrokerWatch { pid, cpu_start: None, peak_rss_kib: 0 };
        w.cpu_start = w.cpu_seconds();
        w.sample();
        w
    }

    /// utime + stime of the process, in seconds (Linux counts them in USER_HZ = 100 ticks).
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    fn sample(&mut self) {
        let Some(pid) = self.pid else { return };
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("VmRSS:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    self.peak_rss_kib = self.peak_rss_kib.max(kib);
                }
            }
        }
    }

    fn figures(&mut self, elapsed: Duration) -> Option<report::BrokerFigures> {
        self.sample();
        let cpu = self.cpu_seconds()? - self.cpu_start?;
        Some(report::BrokerFigures {
            cpu_seconds: cpu,
            cores_busy: cpu / elapsed.as_secs_f64().max(1e-3),
            peak_rss_kib: self.peak_rss_kib,
        })
    }
}
