//! The fault suite: a stream of at least 20 000 payments through real processes while the
//! issuer is killed with SIGKILL, PostgreSQL restarts, the SMTP server goes away, one of
//! two issuers stops, the connection to the brokers is cut, a broker is killed with SIGKILL,
//! another is restarted and the controller quorum's leader is killed. Then every count must
//! be exact.
//!
//! Everything here is private to the test: a PostgreSQL cluster, a three-node Apache Kafka
//! cluster (replication 3, `min.insync.replicas` 2; the producers use `acks=all` and
//! idempotence) whose client listeners are advertised behind fault-injecting TCP proxies,
//! an SMTP sink, and the services as processes with their own broker users and ACLs.
//! `make chaos` runs it alone; `make test` runs it with the rest.

#![allow(clippy::print_stdout)]

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::kafka::access::Role;
use feepay_tests::fixtures::gplx_payment;
use feepay_tests::process::{Env, PrivatePg, Proc};
use feepay_tests::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// At least this many payments; the stream goes on until the last fault is over.
const PAYMENTS: usize = 20_000;
/// One payment in this many is invalid (a dead letter).
const INVALID_EVERY: usize = 1001;

fn say(msg: &str) {
    println!("[faults {:>7.1}s] {msg}", START.get_or_init(Instant::now).elapsed().as_secs_f64());
}
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Forwards the broker's advertised port to its real one; `cut` drops every connection and
/// refuses new ones until restored.
struct Proxy {
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Proxy {
    async fn start(listen: u16, target: u16) -> Proxy {
        let cut = Arc::new(AtomicBool::new(false));
        let (tx, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(tx);
        let listener = TcpListener::bind(("127.0.0.1", listen)).await.expect("proxy binds");
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut killed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        Proxy { cut, generation }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn ready(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Waits until the live issuers (their operations addresses) hold every partition of the
/// consumed topics between them, each some and none twice: the group has formed with
/// exactly the live members.
async fn group_formed(live: &[SocketAddr], partitions: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut held: Vec<Vec<String>> = Vec::new();
        for addr in live {
            let parts = match reqwest::get(format!("http://{addr}/readyz")).await {
                Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| {
                    v["partitions"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
                }),
                Err(_) => None,
            };
            held.push(parts.unwrap_or_default());
        }
        let all: std::collections::BTreeSet<&String> = held.iter().flatten().collect();
        let total: usize = held.iter().map(Vec::len).sum();
        if held.iter().all(|h| !h.is_empty()) && all.len() == partitions && total == partitions {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the group did not form with {live:?} within {timeout:?}; they held {held:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    for _ in 0..50 {
        if let Ok(Some(r)) = db.query_one(feepay_runtime::sql::raw(sql)).await {
            return r.try_get::<i64>("", "n").expect("n");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("query failed: {sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_payments_survive_service_kills_outages_and_broker_failures() {
    START.get_or_init(Instant::now);
    let smtp_bin = repo_root().join(".tools/venv-smtp/bin/aiosmtpd");
    assert!(smtp_bin.exists(), "aiosmtpd installed by make up");

    // The private stack: three brokers, each advertised behind a proxy of its own.
    let pg = PrivatePg::start();
    let proxy_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut cluster = feepay_tests::kafka::PrivateKafka::start(3, "384m", |i| Some(proxy_ports[i]));
    let mut proxies = Vec::new();
    for (node, port) in cluster.nodes.iter().zip(&proxy_ports) {
        proxies.push(Proxy::start(*port, node.client_port).await);
    }
    let logs = std::env::temp_dir().join(format!("feepay-faults-{}", unique()));
    std::fs::create_dir_all(&logs).expect("logs dir");
    let topics = feepay_runtime::settings::Topics::default_names();
    let admin = cluster.admin();
    let spec = feepay_broker_admin::TopicSpec {
        partitions: 4,
        replication: 3,
        min_insync_replicas: Some(2),
        retention_ms: None,
    };
    feepay_broker_admin::create_topics(&admin, &topics.all(), &spec).await.expect("topics");
    cluster.wait_in_sync(&topics.all(), 3, Duration::from_secs(60));
    let smtp_port = free_port();
    let start_smtp = || Proc {
        child: Command::new(&smtp_bin)
            .args(["-n", "-l", &format!("127.0.0.1:{smtp_port}"), "-c", "aiosmtpd.handlers.Sink"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts"),
        name: "smtp".into(),
    };
    let mut smtp = start_smtp();
    let brokers = cluster.bootstrap();
    say(&format!(
        "private stack up: PostgreSQL :{}, Kafka {} behind proxies {brokers}, SMTP :{smtp_port}; logs in {} and {}",
        pg.port,
        cluster.direct(),
        logs.display(),
        cluster.dir.display()
    ));

    // Reference data and keys.
    let settings = feepay_runtime::settings::DatabaseSettings::new(pg.url(), 4);
    let db = feepay_runtime::db::connect(&settings).await.expect("private PostgreSQL");
    feepay_runtime::db::migrate(&db).await.expect("migrations");
    let files =
        feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference")).expect("files");
    feepay_runtime::refdata::store(&db, &files, "faults").await.expect("reference");
    feepay_tests::stack::register_every_series(&db).await;
    let keys = test_keys();

    let mut vars: Vec<(String, String)> = vec![
        ("FEEPAY_KAFKA_BROKERS".into(), brokers.clone()),
        ("FEEPAY_DATABASE_URL".into(), pg.url()),
        ("FEEPAY_LOG_FORMAT".into(), "text".into()),
        ("RUST_LOG".into(), "info".into()),
        ("FEEPAY_KAFKA_PARTITIONS".into(), "4".into()),
        ("FEEPAY_SMTP_PORT".into(), smtp_port.to_string()),
        ("FEEPAY_NOTIFIER_RETRY_SCHEDULE".into(), "1s,2s,3s,5s,5s,5s,10s,10s,10s,10s,10s,10s".into()),
        ("FEEPAY_ISSUER_SELF_CHECK_SECS".into(), "5".into()),
        ("FEEPAY_NOTIFIER_CONCURRENCY".into(), "32".into()),
        ("FEEPAY_SMTP_POOL_SIZE".into(), "16".into()),
        ("FEEPAY_SHUTDOWN_DEADLINE_SECS".into(), "10".into()),
    ];
    vars.extend(feepay_tests::pki::signer_env(&keys));
    vars.extend(topics.to_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    let env = Env { vars, logs: logs.clone(), topics: topics.clone() };
    let (a_addr, b_addr, n_addr): (SocketAddr, SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
    );
    // Static membership (KIP-345): a restarted issuer rejoins as itself and gets its
    // partitions back without a rebalance of the others.
    let issuer = |name: &str, addr: SocketAddr| {
        env.spawn(
            "feepay-issuer",
            name,
            &[("FEEPAY_ISSUER_HTTP_ADDR", addr.to_string()), ("FEEPAY_KAFKA_GROUP_INSTANCE_ID", name.to_string())],
        )
    };
    let mut a = issuer("issuer-a", a_addr);
    let mut b = issuer("issuer-b", b_addr);
    let _notifier = env.spawn("feepay-notifier", "notifier", &[("FEEPAY_NOTIFIER_HTTP_ADDR", n_addr.to_string())]);
    for addr in [a_addr, b_addr, n_addr] {
        assert!(ready(addr, Duration::from_secs(90)).await, "{addr} ready; see {}", logs.display());
    }
    // Two topics of 4 partitions each between the issuers.
    const PARTITIONS: usize = 8;
    if let Err(e) = group_formed(&[a_addr, b_addr], PARTITIONS, Duration::from_secs(120)).await {
        panic!("{e}; see {}", logs.display());
    }
    say("two issuers and a notifier ready, their group formed");

    // The stream, published as a centre would (its own broker user): at least 20 000
    // payments at about 200 a second, one in 1 001 invalid, until the last fault is over.
    feepay_broker_admin::grant(
        &admin,
        &feepay_runtime::kafka::access::grants(Role::Centre, Role::Centre.default_user(), &topics, "feepay-centre"),
    )
    .await
    .expect("the centre's ACLs");
    let mut k = service_kafka(Role::Centre, "faults-producer");
    k.brokers = brokers.clone();
    let producer: FutureProducer = feepay_runtime::kafka::producer(&k).expect("producer");
    let run = unique();
    let faults_over = Arc::new(AtomicBool::new(false));
    let stream = {
        let producer = producer.clone();
        let topic = topics.payments_succeeded.clone();
        let faults_over = faults_over.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sends = Vec::new();
            let mut invalid = 0usize;
            let mut i = 0usize;
            while i < PAYMENTS || !faults_over.load(Ordering::SeqCst) {
                let id = format!("PG-{run}-{i:06}");
                let mut p = gplx_payment(&id, wall_clock());
                if i % INVALID_EVERY == 7 {
                    p.payer.as_mut().expect("payer").personal_id = "12345".into();
                    invalid += 1;
                }
                let headers = feepay_runtime::envelope::headers_for::<v1::PaymentSucceeded>(
                    &format!("ce-{id}"),
                    "/faults",
                    wall_clock(),
                    BodyFormat::Protobuf,
                );
                let body = feepay_runtime::envelope::encode_body(&p, BodyFormat::Protobuf);
                let producer = producer.clone();
                let topic = topic.clone();
                sends.push(tokio::spawn(async move {
                    loop {
                        let r = producer
                            .send(
                                FutureRecord::to(&topic).key(&id).payload(&body).headers(headers.clone()),
                                Duration::from_secs(60),
                            )
                            .await;
                        if r.is_ok() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }));
                i += 1;
                let due = started + Duration::from_micros(5000 * i as u64);
                tokio::time::sleep_until(due.into()).await;
            }
            for s in sends {
                s.await.expect("send task");
            }
            (i - invalid, invalid)
        })
    };
    // Progress as a condition: `n` more receipts committed than when called.
    let receipts_grow = |n: i64, what: &'static str| {
        let db = db.clone();
        let logs = logs.clone();
        async move {
            let from = scalar(&db, "SELECT count(*) AS n FROM receipts").await;
            let deadline = Instant::now() + Duration::from_secs(180);
            while scalar(&db, "SELECT count(*) AS n FROM receipts").await < from + n {
                assert!(Instant::now() < deadline, "no {n} receipts within 3 minutes {what}; see {}", logs.display());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // The faults, one after another while the stream flows. The services wait for nothing
    // but Kafka's own behaviour: static membership brings a restarted issuer its partitions
    // back, cooperative rebalancing moves only what changes owner.
    receipts_grow(500, "before the first fault").await;
    for round in 1..=3 {
        say(&format!("kill -9 issuer A ({round}/3)"));
        a.kill9();
        a = issuer("issuer-a", a_addr);
        assert!(ready(a_addr, Duration::from_secs(90)).await, "issuer A back; see {}", logs.display());
        say("issuer A restarted and ready");
        match round {
            1 => {
                say("restart PostgreSQL (immediate shutdown)");
                pg.ctl("restart");
                say("PostgreSQL back");
            }
            2 => {
                say("stop issuer B (SIGTERM) mid-stream: A takes every partition");
                tokio::task::block_in_place(|| b.term());
                if let Err(e) = group_formed(&[a_addr], PARTITIONS, Duration::from_secs(120)).await {
                    panic!("{e}; see {}", logs.display());
                }
                say("issuer B gone, A holds the group alone");
                say("stop the SMTP server for 10 s");
                smtp.kill9();
                receipts_grow(500, "with the SMTP server down").await;
                tokio::time::sleep(Duration::from_secs(10)).await;
                smtp = start_smtp();
                say("SMTP server back");
            }
            _ => {
                say("cut the connections to every broker for 8 s");
                for p in &proxies {
                    p.cut();
                }
                tokio::time::sleep(Duration::from_secs(8)).await;
                for p in &proxies {
                    p.restore();
                }
                say("broker connections restored");
            }
        }
        receipts_grow(500, ["after round 1", "after round 2", "after round 3"][round - 1]).await;
    }

    // The brokers: one killed, another restarted, then the quorum's leader killed. With
    // replication 3 and min.insync.replicas 2 every acknowledged record survives each.
    let leader = cluster.controller_leader();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    say(&format!("kill -9 broker {} (the controller quorum's leader is {})", others[0] + 1, leader + 1));
    cluster.kill9(others[0]);
    receipts_grow(1000, "with a broker killed").await;
    cluster.start_node(others[0]);
    tokio::task::block_in_place(|| {
        cluster.wait_brokers(3, Duration::from_secs(180));
        cluster.wait_in_sync(&topics.all(), 3, Duration::from_secs(180));
    });
    say(&format!("broker {} back and in sync", others[0] + 1));
    say(&format!("restart broker {} (SIGTERM, then start)", others[1] + 1));
    tokio::task::block_in_place(|| cluster.stop(others[1]));
    cluster.start_node(others[1]);
    tokio::task::block_in_place(|| {
        cluster.wait_brokers(3, Duration::from_secs(180));
        cluster.wait_in_sync(&topics.all(), 3, Duration::from_secs(180));
    });
    receipts_grow(500, "after a broker restart").await;
    say(&format!("broker {} restarted and in sync", others[1] + 1));
    let leader = tokio::task::block_in_place(|| cluster.controller_leader());
    say(&format!("kill -9 broker {}, the controller quorum's leader", leader + 1));
    cluster.kill9(leader);
    receipts_grow(1000, "with the quorum's leader killed").await;
    cluster.start_node(leader);
    tokio::task::block_in_place(|| {
        cluster.wait_brokers(3, Duration::from_secs(180));
        cluster.wait_in_sync(&topics.all(), 3, Duration::from_secs(180));
    });
    say(&format!("broker {} back; the quorum's leader is now {}", leader + 1, cluster.controller_leader() + 1));
    faults_over.store(true, Ordering::SeqCst);
    let (valid, invalid_sent) = stream.await.expect("stream");
    say(&format!("stream produced: {valid} valid and {invalid_sent} invalid payments"));
    let broker_memory = cluster.rss_mib();

    // Drain: every payment turned into a receipt and an email, the outbox empty.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let issued = scalar(&db, "SELECT count(*) AS n FROM receipts").await;
        let sent =
            scalar(&db, "SELECT count(*) AS n FROM deliveries WHERE kind = 'receipt_issued' AND status = 'sent'").await;
        let outbox = scalar(&db, "SELECT count(*) AS n FROM outbox").await;
        say(&format!("receipts {issued}/{valid}, emails sent {sent}/{valid}, outbox {outbox}"));
        if issued as usize == valid && sent as usize == valid && outbox == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained within 10 minutes; see {}", logs.display());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    // The counts.
    let payments = scalar(&db, "SELECT count(*) AS n FROM payments").await;
    let issued_payments = scalar(&db, "SELECT count(*) AS n FROM payments WHERE status = 'issued'").await;
    let without_one = scalar(
        &db,
        "SELECT count(*) AS n FROM payments p WHERE (SELECT count(*) FROM receipts r WHERE r.payment_id = p.payment_id) <> 1",
    )
    .await;
    let gaps = scalar(
        &db,
        "SELECT COALESCE(SUM(max_n - (range_from - 1) - n), 0)::BIGINT AS n FROM (SELECT range_from, max(number) AS max_n, count(DISTINCT number) AS n FROM receipts GROUP BY agency_code, template, symbol, year, range_from) s",
    )
    .await;
    let repeats = scalar(
        &db,
        "SELECT COALESCE(SUM(c - 1), 0)::BIGINT AS n FROM (SELECT count(*) AS c FROM receipts GROUP BY agency_code, template, symbol, year, number) s",
    )
    .await;
    let counter_off = scalar(
        &db,
        "SELECT count(*) AS n FROM series_counters c WHERE c.last_number <> (SELECT COALESCE(max(number), c.range_from - 1) FROM receipts r WHERE (r.agency_code, r.template, r.symbol, r.year, r.range_from) = (c.agency, c.template, c.symbol, c.year, c.range_from))",
    )
    .await;
    let emails_per_receipt_off = scalar(
        &db,
        "SELECT count(*) AS n FROM receipts r WHERE (SELECT count(*) FROM deliveries d WHERE d.receipt_id = r.receipt_id::TEXT AND d.kind = 'receipt_issued' AND d.status = 'sent') <> 1",
    )
    .await;
    let failed = scalar(&db, "SELECT count(*) AS n FROM deliveries WHERE status = 'failed'").await;
    let outbox = scalar(&db, "SELECT count(*) AS n FROM outbox").await;
    let published: std::collections::HashSet<String> = {
        let mut k2 = kafka(&format!("faults-reader-{}", unique()));
        k2.brokers = brokers.clone();
        read_distinct(&k2, &topics.receipts_issued, valid).await
    };
    let dlq = feepay_runtime::settings::dlq_topic(&topics.payments_succeeded);
    let dead: Vec<String> = {
        let mut k2 = kafka(&format!("faults-dlq-{}", unique()));
        k2.brokers = brokers.clone();
        tokio::task::spawn_blocking(move || feepay_tests::read_all_partitions(&k2, &dlq))
            .await
            .expect("reader")
            .into_iter()
            .map(|(key, _)| String::from_utf8_lossy(&key).into_owned())
            .collect()
    };
    let dead_distinct: std::collections::HashSet<&String> = dead.iter().collect();
    // On record exactly once each, whatever the redeliveries.
    let on_record = scalar(&db, "SELECT count(*) AS n FROM dead_letters").await;
    let on_record_distinct = scalar(&db, "SELECT count(DISTINCT record_key) AS n FROM dead_letters").await;

    println!("\nfault suite results ({:.0} s)", START.get().expect("start").elapsed().as_secs_f64());
    println!("  payments recorded                 {payments} (valid sent {valid})");
    println!("  payments with a receipt           {issued_payments}");
    println!("  payments without exactly one      {without_one}");
    println!("  missing numbers in any series     {gaps}");
    println!("  repeated numbers                  {repeats}");
    println!("  counters out of step              {counter_off}");
    println!("  receipts without exactly 1 email  {emails_per_receipt_off}");
    println!("  failed deliveries                 {failed}");
    println!("  outbox rows left                  {outbox}");
    println!("  broker peak memory (MiB)          {broker_memory:?}");
    println!("  receipt events published          {} distinct", published.len());
    println!(
        "  dead letters                      {} ({} distinct payments; {invalid_sent} invalid sent; {on_record} on record)",
        dead.len(),
        dead_distinct.len()
    );

    assert_eq!(payments as usize, valid);
    assert_eq!(issued_payments as usize, valid);
    assert_eq!(without_one, 0);
    assert_eq!(gaps, 0);
    assert_eq!(repeats, 0);
    assert_eq!(counter_off, 0);
    assert_eq!(emails_per_receipt_off, 0);
    assert_eq!(failed, 0);
    assert_eq!(outbox, 0);
    assert_eq!(published.len(), valid);
    // At least once: a dead letter may be written twice if the issuer died between the
    // broker's acknowledgement and the offset commit; the set is exactly the invalid ones.
    assert_eq!(dead_distinct.len(), invalid_sent, "{dead_distinct:?}");
    assert_eq!((on_record, on_record_distinct), (invalid_sent as i64, invalid_sent as i64), "dead letters on record");
    let _ = std::fs::remove_dir_all(&logs);
    drop(smtp);
}

/// Distinct receipt ids on `topic`, reading until `want` are seen (or 2 minutes pass).
async fn read_distinct(
    k: &feepay_runtime::settings::KafkaSettings,
    topic: &str,
    want: usize,
) -> std::collections::HashSet<String> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let c: StreamConsumer = feepay_runtime::kafka::client_config(k)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(m)) => {
                let e: v1::ReceiptIssued = decode_event(&m);
                seen.insert(e.receipt.expect("receipt").receipt_id);
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    seen
}
