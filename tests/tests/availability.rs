//! One bad event, one bad agency or one late dependency never stops issuance for everyone
//! else: oversized events become dead letters that fit, events that fail on their own are
//! parked and retried after the fix, services wait for PostgreSQL, and work is counted once
//! even when a batch had to be retried.

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment};
use feepay_tests::process::{Env, PrivatePg};
use feepay_tests::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::{ConnectionTrait, TransactionTrait};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn clock() -> Arc<dyn feepay_runtime::clock::Clock> {
    Arc::new(feepay_runtime::clock::SystemClock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_a_dead_letter_that_fits_and_valid_payments_flow_past_it() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;

    // 2 MiB that lz4 shrinks to a few kilobytes: the broker takes the compressed batch, the
    // consumer reads the whole record, and its dead letter cannot carry it inline.
    let big_producer: FutureProducer = feepay_runtime::kafka::client_config(&kafka("big-producer"))
        .set("compression.type", "lz4")
        .set("message.max.bytes", "8000000")
        .create()
        .expect("producer");
    let body = vec![b'x'; 2 * 1024 * 1024];
    let sha = hex::encode(Sha256::digest(&body));
    big_producer
        .send(
            FutureRecord::to(&topics.payments_succeeded).key("huge").payload(&body).headers(
                feepay_runtime::envelope::headers_for::<v1::PaymentSucceeded>(
                    "huge",
                    "/tests",
                    wall_clock(),
                    BodyFormat::Json,
                ),
            ),
            Duration::from_secs(30),
        )
        .await
        .expect("the broker accepts the compressed record");
    let p = producer();
    let u = unique();
    let ids: Vec<String> = (0..20).map(|i| format!("PG-{u}-{i}")).collect();
    for id in &ids {
        produce(&p, &topics.payments_succeeded, id, &gplx_payment(id, wall_clock()), BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "receipts for the payments after the oversized event", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 20).then_some(())
    })
    .await;
    let letters: Vec<v1::DeadLetter> =
        read_topic(&format!("{}.dlq", topics.payments_succeeded), 1, WAIT, decode_event).await;
    let dl = letters.first().expect("a dead letter for the oversized event");
    assert_eq!(dl.reason_code, "too_large", "{}", dl.reason);
    assert!(dl.original_value.is_empty(), "the value is not carried inline");
    assert_eq!(dl.original_value_size, body.len() as u64);
    assert_eq!(dl.original_value_sha256, sha);
    assert_eq!(dl.original_value_ref, format!("postgres:dead_letter_payloads/{sha}"));
    let stored = feepay_runtime::dead_letter::load_payload(&db.db, &sha).await.unwrap().expect("stored");
    assert_eq!(stored, body, "the stored value is the original, byte for byte");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_a_thousand_headers_is_a_dead_letter_that_fits_and_its_partition_flows_on() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;

    // 990 headers of 1 KiB and a body that is not an event: the record is just under the
    // broker's limit, so a dead letter that copied its headers could never be produced.
    let wide_producer: FutureProducer = feepay_runtime::kafka::client_config(&kafka("wide-producer"))
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    let pad = "h".repeat(1024);
    let mut headers = rdkafka::message::OwnedHeaders::new();
    for i in 0..990 {
        headers = headers.insert(rdkafka::message::Header { key: &format!("x-pad-{i:03}"), value: Some(pad.as_str()) });
    }
    wide_producer
        .send(
            FutureRecord::to(&topics.payments_succeeded).partition(0).key("wide").payload("{not json").headers(headers),
            Duration::from_secs(30),
        )
        .await
        .expect("the broker accepts the record");
    // The payments after it, on the same partition.
    let p = producer();
    let u = unique();
    for i in 0..10 {
        let id = format!("PW-{u}-{i}");
        let pay = gplx_payment(&id, wall_clock());
        let headers = feepay_runtime::envelope::headers_for::<v1::PaymentSucceeded>(
            &id,
            "/tests",
            wall_clock(),
            BodyFormat::Protobuf,
        );
        let body = feepay_runtime::envelope::encode_body(&pay, BodyFormat::Protobuf);
        p.send(
            FutureRecord::to(&topics.payments_succeeded).partition(0).key(&id).payload(&body).headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    }
    eventually(WAIT, "receipts for the payments after the wide record", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 10).then_some(())
    })
    .await;
    let letters: Vec<v1::DeadLetter> =
        read_topic(&format!("{}.dlq", topics.payments_succeeded), 1, WAIT, decode_event).await;
    let dl = letters.first().expect("a dead letter for the wide record");
    assert_eq!((dl.original_partition, dl.original_key.as_slice()), (0, b"wide".as_slice()));
    assert_eq!(dl.original_value, b"{not json");
    assert!(dl.original_headers_truncated, "the dropped headers are flagged");
    let kept: usize = dl.original_headers.iter().map(|h| h.key.len() + h.value.len() + 8).sum();
    assert!(kept <= feepay_runtime::dead_letter::MAX_HEADERS_BYTES, "headers kept: {kept} bytes");
    assert!(!dl.original_headers.is_empty() && dl.original_headers[0].key == "x-pad-000", "in their order");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_without_a_key_and_an_exhausted_series_are_parked_and_retried_after_the_fix() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    // Bắc Ninh's Từ Sơn ward has lost its key; Tiên Du has used its last number of the year.
    let tuson_key = keys.join("BN.TUSON.p12");
    let tuson_password = keys.join("BN.TUSON.p12.password");
    let saved_key = std::fs::read(&tuson_key).expect("key file");
    let saved_password = std::fs::read(&tuson_password).expect("password file");
    std::fs::remove_file(&tuson_key).unwrap();
    std::fs::remove_file(&tuson_password).unwrap();
    let year = feepay_domain::numbering::year_gmt7(wall_clock());
    let tiendu = db
        .db
        .query_one(feepay_runtime::sql::raw("SELECT template, letters FROM series WHERE agency = 'BN.TIENDU'"))
        .await
        .unwrap()
        .expect("Tiên Du has a series");
    let (template, letters): (String, String) =
        (tiendu.try_get("", "template").unwrap(), tiendu.try_get("", "letters").unwrap());
    assert_eq!(letters, "TD", "the series' letters (Circular 91/2026/TT-BTC Appendix II.2.b)");
    let symbol = format!("{:02}T{letters}", year % 100);
    db.db
        .execute(feepay_runtime::sql::stmt(
            "INSERT INTO series_counters (agency, template, symbol, year, last_number, last_hash) VALUES ('BN.TIENDU', $1, $2, $3, 99999999, $4)",
            vec![template.clone().into(), symbol.clone().into(), year.into(), feepay_domain::numbering::GENESIS_HASH.into()],
        ))
        .await
        .unwrap();

    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    let now = wall_clock();
    let gplx = |id: &str, agency: &str| {
        payment(id, agency, v1::Channel::Counter, vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)], now)
    };
    let others: Vec<String> = (0..12).map(|i| format!("PG-{u}-ok-{i}")).collect();
    let agencies = ["BN.TTPVHCC", "BN.KINHBAC", "HP.TTPVHCC"];
    let no_key = format!("PG-{u}-tuson");
    let exhausted = format!("PG-{u}-tiendu");
    // One batch: the two culprits between valid payments of other agencies.
    for (i, id) in others.iter().enumerate() {
        produce(&p, &topics.payments_succeeded, id, &gplx(id, agencies[i % 3]), BodyFormat::Protobuf).await;
        if i == 3 {
            produce(&p, &topics.payments_succeeded, &no_key, &gplx(&no_key, "BN.TUSON"), BodyFormat::Protobuf).await;
        }
        if i == 7 {
            produce(&p, &topics.payments_succeeded, &exhausted, &gplx(&exhausted, "BN.TIENDU"), BodyFormat::Json).await;
        }
    }
    eventually(WAIT, "the other agencies' receipts", || async {
        (count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id LIKE 'PG-{u}-ok-%'"))
            .await
            == 12)
            .then_some(())
    })
    .await;
    let parked = eventually(WAIT, "both culprits parked", || async {
        let list = feepay_runtime::parking::list(&db.db, false, 100).await.unwrap();
        (list.len() == 2).then_some(list)
    })
    .await;
    let by_subject = |id: &str| parked.iter().find(|p| p.subject == format!("payment:{id}")).expect("parked").clone();
    let (a, b) = (by_subject(&no_key), by_subject(&exhausted));
    assert_eq!(
        (a.reason_code.as_str(), a.agency_code.as_deref()),
        ("no_signing_key", Some("BN.TUSON")),
        "{}",
        a.reason
    );
    assert_eq!(b.reason_code.as_str(), "series_exhausted", "{}", b.reason);
    assert!(b.reason.contains(&symbol), "{}", b.reason);
    assert_eq!(
        count(
            &db.db,
            &format!("SELECT count(*)::BIGINT AS n FROM payments WHERE payment_id IN ('{no_key}', '{exhausted}')")
        )
        .await,
        0,
        "a parked payment is not recorded, so its retry issues normally"
    );
    let metrics = eventually(WAIT, "the parked gauge", || async {
        let m = issuer.metrics().await;
        (metric_value(&m, "feepay_issuer_parked_events", &[]) == 2.0).then_some(m)
    })
    .await;
    assert_eq!(metric_value(&metrics, "feepay_issuer_parked_events", &[("reason", "no_signing_key")]), 1.0);
    assert_eq!(metric_value(&metrics, "feepay_issuer_events_parked_total", &[("reason", "series_exhausted")]), 1.0);
    let listed = receiptctl(db, topics, None, &["parked", "list"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed.stdout.contains("no_signing_key") && listed.stdout.contains("series_exhausted"),
        "{}",
        listed.stdout
    );

    // The fixes: the key file is back; Tiên Du gets a new series (reference data).
    std::fs::write(&tuson_password, saved_password).unwrap();
    std::fs::write(&tuson_key, saved_key).unwrap();
    let dir = repo_root().join("deploy/reference");
    let mut files = feepay_runtime::refdata::ReferenceFiles::read_dir(&dir).unwrap();
    // The fix: Tiên Du takes a new series (other letters) for the rest of the year...
    let old_series = "agency = \"BN.TIENDU\"\nform = \"EBL01\"\nletters = \"TD\"";
    assert!(files.agencies.1.contains(old_series), "the sample data names Tiên Du's series as expected");
    files.agencies.1 =
        files.agencies.1.replace(old_series, "agency = \"BN.TIENDU\"\nform = \"EBL01\"\nletters = \"TE\"");
    feepay_runtime::refdata::store(&db.db, &files, "test").await.expect("new series loads");
    for id in [a.id, b.id] {
        let run = receiptctl(db, topics, None, &["parked", "retry", &id.to_string(), "--reason", "đã khắc phục"]).await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    eventually(WAIT, "the key's payment issued", || async {
        let n =
            count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id = '{no_key}'")).await;
        (n == 1).then_some(())
    })
    .await;
    // ... but a series is used only once the tax authority accepted it (Circular 91 Art. 17).
    let waiting = eventually(WAIT, "the new series' payment parked again", || async {
        let list = feepay_runtime::parking::list(&db.db, false, 100).await.unwrap();
        list.into_iter().find(|p| p.subject == format!("payment:{exhausted}") && p.reason_code == "series_unregistered")
    })
    .await;
    assert!(waiting.reason.contains("receiptctl series register"), "{}", waiting.reason);
    let listed = receiptctl(db, topics, None, &["series", "list"]).await;
    assert!(listed.stdout.contains("NOT REGISTERED"), "{}", listed.stdout);
    let register = receiptctl(
        db,
        topics,
        None,
        &[
            "series",
            "register",
            "--agency",
            "BN.TIENDU",
            "--letters",
            "TE",
            "--notice",
            "01/TB-ĐKĐT số 77/TB-CT ngày 02/12/2026",
            "--accepted-on",
            "2026-01-01",
        ],
    )
    .await;
    assert_eq!(register.code, 0, "{register:?}");
    let run =
        receiptctl(db, topics, None, &["parked", "retry", &waiting.id.to_string(), "--reason", "đã đăng ký"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    eventually(WAIT, "both retried payments issued", || async {
        let n = count(
            &db.db,
            &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id IN ('{no_key}', '{exhausted}')"),
        )
        .await;
        (n == 2).then_some(())
    })
    .await;
    let resolved = feepay_runtime::parking::list(&db.db, true, 100).await.unwrap();
    assert!(resolved.iter().all(|p| p.status == feepay_runtime::parking::Status::Resolved), "{resolved:?}");
    let number = count(
        &db.db,
        &format!("SELECT number::BIGINT AS n FROM receipts WHERE payment_id = '{exhausted}' AND symbol LIKE '%TTE'"),
    )
    .await;
    assert_eq!(number, 1, "the new series starts at 1");
    // Every series gapless, chains and signatures intact, the old series still at its end.
    assert_eq!(verify_all_series(db, keys).await, 14);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_waits_for_a_late_postgresql_and_then_issues() {
    // A cluster created but not started: the issuer must wait, not exit.
    let pg = PrivatePg::create();
    let logs = std::env::temp_dir().join(format!("feepay-late-pg-{}", unique()));
    std::fs::create_dir_all(&logs).unwrap();
    let topics = topics();
    let keys = test_keys();
    let ops: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut vars: Vec<(String, String)> = vec![
        ("FEEPAY_KAFKA_BROKERS".into(), brokers()),
        ("FEEPAY_DATABASE_URL".into(), pg.url()),
        ("FEEPAY_LOG_FORMAT".into(), "text".into()),
        ("FEEPAY_KAFKA_GROUP_ID".into(), format!("issuer-{}", unique())),
        ("FEEPAY_ISSUER_HTTP_ADDR".into(), ops.to_string()),
    ];
    vars.extend(feepay_tests::pki::signer_env(&keys));
    vars.extend(topics.to_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    let env = Env { vars, logs: logs.clone(), topics: topics.names() };
    let mut issuer = env.spawn("feepay-issuer", "issuer", &[]);
    let log = logs.join("issuer.log");
    // Condition, not duration: it has tried and failed several times, and still runs.
    eventually(WAIT, "the issuer retrying PostgreSQL", || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.matches("PostgreSQL not reachable yet").count() >= 3).then_some(())
        }
    })
    .await;
    assert!(issuer.alive(), "the issuer exited instead of waiting");
    let ready = reqwest::get(format!("http://{ops}/readyz")).await.expect("ops port answers while waiting");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], false, "{body}");

    // PostgreSQL comes up; the migrator and the reference data follow.
    pg.ctl("start");
    let settings = feepay_runtime::settings::DatabaseSettings::new(pg.url(), 2);
    let db = feepay_runtime::db::connect(&settings).await.expect("private PostgreSQL");
    feepay_runtime::db::migrate(&db).await.unwrap();
    let files = feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference")).unwrap();
    feepay_runtime::refdata::store(&db, &files, "test").await.unwrap();
    feepay_tests::stack::register_every_series(&db).await;
    eventually(WAIT, "the issuer ready", || async {
        reqwest::get(format!("http://{ops}/readyz")).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    let id = format!("PG-{}", unique());
    produce(&producer(), &topics.payments_succeeded, &id, &gplx_payment(&id, wall_clock()), BodyFormat::Protobuf).await;
    eventually(WAIT, "a receipt", || async {
        use sea_orm::ConnectionTrait;
        let r = db.query_one(feepay_runtime::sql::raw("SELECT count(*)::BIGINT AS n FROM receipts")).await.ok()??;
        (r.try_get::<i64>("", "n").ok()? == 1).then_some(())
    })
    .await;
    issuer.term();
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_failed_once_is_counted_once_and_a_stalled_consumer_is_not_ready() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let logs = std::env::temp_dir().join(format!("feepay-once-{}", unique()));
    std::fs::create_dir_all(&logs).unwrap();
    let ops: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut vars: Vec<(String, String)> = vec![
        ("FEEPAY_KAFKA_BROKERS".into(), brokers()),
        ("FEEPAY_DATABASE_URL".into(), db.url.clone()),
        ("FEEPAY_LOG_FORMAT".into(), "json".into()),
        ("FEEPAY_KAFKA_GROUP_ID".into(), format!("issuer-{}", unique())),
        ("FEEPAY_ISSUER_HTTP_ADDR".into(), ops.to_string()),
        ("FEEPAY_DATABASE_LOCK_TIMEOUT_MS".into(), "500".into()),
        ("FEEPAY_CONSUMER_STALL_SECS".into(), "2".into()),
    ];
    vars.extend(feepay_tests::pki::signer_env(keys));
    vars.extend(topics.to_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    let env = Env { vars, logs: logs.clone(), topics: topics.names() };
    let mut issuer = env.spawn("feepay-issuer", "issuer", &[]);
    let metrics = || async { reqwest::get(format!("http://{ops}/metrics")).await.ok()?.text().await.ok() };
    eventually(WAIT, "the issuer ready", || async {
        reqwest::get(format!("http://{ops}/readyz")).await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;

    // An operator's session holds the outbox: every batch fails at its end (lock timeout),
    // after the receipts were numbered and signed, and is retried.
    let blocker = db.db.begin().await.unwrap();
    blocker.execute_unprepared("LOCK TABLE outbox IN EXCLUSIVE MODE").await.unwrap();
    let p = producer();
    let u = unique();
    let n = 25usize;
    for i in 0..n {
        let id = format!("PG-{u}-{i}");
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, wall_clock()), BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "a failed attempt and a stalled consumer", || async {
        let m = metrics().await?;
        let failed = metric_value(&m, "feepay_issuer_batch_failures_total", &[]) >= 2.0;
        let stalled = metric_value(&m, "feepay_issuer_consumer_stalled", &[]) == 1.0;
        let r = reqwest::get(format!("http://{ops}/readyz")).await.ok()?;
        (failed && stalled && r.status() == 503).then_some(())
    })
    .await;
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 0, "nothing committed while blocked");
    blocker.rollback().await.unwrap();

    eventually(WAIT, "every receipt after the block", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == n as i64).then_some(())
    })
    .await;
    let m = eventually(WAIT, "ready again", || async {
        let r = reqwest::get(format!("http://{ops}/readyz")).await.ok()?;
        let m = metrics().await?;
        (r.status().is_success() && metric_value(&m, "feepay_issuer_consumer_stalled", &[]) == 0.0).then_some(m)
    })
    .await;
    // Each payment counted once, whatever the attempts.
    let total: i64 = count(&db.db, "SELECT COALESCE(sum(total), 0)::BIGINT AS n FROM receipts").await;
    assert_eq!(metric_value(&m, "feepay_issuer_receipts_issued_total", &[]), n as f64, "{m}");
    assert_eq!(metric_value(&m, "feepay_issuer_amount_collected_dong_total", &[]), total as f64);
    assert_eq!(
        metric_value(&m, "feepay_issuer_events_processed_total", &[("outcome", "issued")]),
        n as f64,
        "processed counted after the commit only"
    );
    assert!(metric_value(&m, "feepay_issuer_batch_failures_total", &[]) >= 2.0);
    issuer.term();
    let log = std::fs::read_to_string(logs.join("issuer.log")).unwrap();
    let issued_lines = log.lines().filter(|l| l.contains("\"receipt issued\"")).count();
    assert_eq!(issued_lines, n, "one \"receipt issued\" line per receipt");
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_that_cannot_be_signed_now_waits_and_the_others_go_on() {
    use sea_orm::ConnectionTrait;
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let settings = || issuer_settings(db, topics, keys, &format!("issuer-{}", unique()));
    let issuer = spawn_issuer(settings(), clock()).await;
    issuer.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    let (tuson, centre) = (format!("PC-{u}-ts"), format!("PC-{u}-bn"));
    for (id, agency) in [(&tuson, "BN.TUSON"), (&centre, "BN.TTPVHCC")] {
        let pay = feepay_tests::fixtures::gplx_payment_to(id, agency, wall_clock());
        produce(&p, &topics.payments_succeeded, id, &pay, BodyFormat::Protobuf).await;
    }
    let codes = lookup_codes(db, &[&tuson, &centre], WAIT).await;
    let (tuson_code, centre_code) = (codes[0].clone(), codes[1].clone());
    issuer.stop().await;

    // Từ Sơn's key is gone when the corrections come: Từ Sơn's, filed first, cannot be
    // signed; the centre's, filed after it, is carried out all the same.
    let key = keys.join("BN.TUSON.p12");
    let password = keys.join("BN.TUSON.p12.password");
    let (saved_key, saved_password) = (std::fs::read(&key).unwrap(), std::fs::read(&password).unwrap());
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&password).unwrap();
    let issuer = spawn_issuer(settings(), clock()).await;
    issuer.wait_ready(WAIT).await;
    for code in [&tuson_code, &centre_code] {
        feepay_runtime::correction_requests::request(&db.db, code, "notify", "Sai địa chỉ", None, "op", wall_clock())
            .await
            .unwrap();
    }
    let state = |code: String| async move {
        let row = db
            .db
            .query_one(feepay_runtime::sql::raw(format!(
                "SELECT status, attempts, last_error FROM correction_requests WHERE receipt = '{code}'"
            )))
            .await
            .unwrap()
            .unwrap();
        (
            row.try_get::<String>("", "status").unwrap(),
            row.try_get::<i32>("", "attempts").unwrap(),
            row.try_get::<Option<String>>("", "last_error").unwrap(),
        )
    };
    eventually(WAIT, "the centre's correction carried out", || async {
        (state(centre_code.clone()).await.0 == "done").then_some(())
    })
    .await;
    let (status, _, error) = eventually(WAIT, "Từ Sơn's correction tried", || async {
        let s = state(tuson_code.clone()).await;
        (s.1 > 0).then_some(s)
    })
    .await;
    assert_eq!(status, "pending", "it waits, with its reason: {error:?}");
    assert!(error.is_some_and(|e| !e.is_empty()), "the reason is kept");

    // The key is back: the waiting correction is carried out at its next try.
    std::fs::write(&password, saved_password).unwrap();
    std::fs::write(&key, saved_key).unwrap();
    eventually(WAIT, "Từ Sơn's correction carried out after the fix", || async {
        (state(tuson_code.clone()).await.0 == "done").then_some(())
    })
    .await;
    issuer.stop().await;
}
