//! The issuer against the real broker and PostgreSQL.

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use feepay_proto::v1;
use feepay_runtime::clock::{FixedClock, SystemClock};
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// (key, how to spoil a valid payment, text the dead letter's reason must contain)
type HostileCase = (&'static str, Box<dyn Fn(&mut v1::PaymentSucceeded)>, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_become_signed_gapless_receipts_and_events() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let now = wall_clock();
    for i in 0..20 {
        let format = if i % 2 == 0 { BodyFormat::Protobuf } else { BodyFormat::Json };
        let id = format!("PG-{}-{i:03}", unique());
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, now), format).await;
    }
    // One payment with phí and lệ phí: two receipts in two series.
    let mixed = format!("PG-{}-mixed", unique());
    let m = payment(
        &mixed,
        "BN.TTPVHCC",
        v1::Channel::Counter,
        vec![
            line("BN-P-THAMDINH-GCN", v1::FeeKind::Phi, 1, 500_000),
            line("BN-LP-GCN", v1::FeeKind::LePhi, 1, 100_000),
        ],
        now,
    );
    produce(&p, &topics.payments_succeeded, &mixed, &m, BodyFormat::Json).await;

    eventually(WAIT, "22 receipts", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 22).then_some(())
    })
    .await;
    let mixed_receipts = receipts_of(db, &mixed).await;
    assert_eq!(mixed_receipts.len(), 2, "{mixed_receipts:?}");
    assert!(mixed_receipts.iter().all(|r| r.0 == "EBL01"), "one series, the current form: {mixed_receipts:?}");
    assert_ne!(mixed_receipts[0].2, mixed_receipts[1].2, "phí and lệ phí on separate receipts, separate numbers");
    assert_eq!(verify_all_series(db, keys).await, 22);

    let events: Vec<v1::ReceiptIssued> = read_topic(&topics.receipts_issued, 22, WAIT, decode_event).await;
    assert_eq!(events.len(), 22, "every receipt is published");
    let r = events
        .iter()
        .find_map(|e| e.receipt.as_ref().filter(|r| r.payment_id == mixed && r.total == "100000"))
        .unwrap();
    assert_eq!(r.total, "100000");
    assert_eq!(r.total_in_words, "Một trăm nghìn đồng");
    assert_eq!(r.number.len(), 7);
    assert!(events.iter().all(|e| e.signed_document.contains("<DSCKS>")));
    eventually(WAIT, "outbox drained", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM outbox").await == 0).then_some(())
    })
    .await;
    let metrics = issuer.metrics().await;
    assert!(metrics.contains("feepay_issuer_receipts_issued_total{agency=\"BN.TTPVHCC\""), "{metrics}");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_do_nothing_and_conflicts_are_rejected() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let id = format!("PG-{}", unique());
    let original = gplx_payment(&id, wall_clock());
    produce(&p, &topics.payments_succeeded, &id, &original, BodyFormat::Protobuf).await;
    produce(&p, &topics.payments_succeeded, &id, &original, BodyFormat::Json).await; // same event, other encoding
    produce(&p, &topics.payments_succeeded, &id, &original, BodyFormat::Protobuf).await;
    let mut changed = original.clone();
    changed.payer.as_mut().unwrap().full_name = "Trần Thị Bình".into();
    produce(&p, &topics.payments_succeeded, &id, &changed, BodyFormat::Protobuf).await;

    let rejected: Vec<v1::PaymentRejected> = read_topic(&topics.payments_rejected, 1, WAIT, decode_event).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, v1::RejectionReason::ConflictingDuplicate as i32);
    assert_eq!(receipts_of(db, &id).await.len(), 1, "one receipt whatever the redeliveries");
    let metrics = eventually(WAIT, "processed counters", || async {
        let m = issuer.metrics().await;
        (metric_value(&m, "feepay_issuer_events_processed_total", &[("outcome", "duplicate")]) == 2.0).then_some(m)
    })
    .await;
    assert!(metrics.contains("feepay_issuer_conflicting_duplicates_total{kind=\"payment\"} 1"), "{metrics}");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_go_to_the_dead_letter_topic_and_the_consumer_keeps_going() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let t = &topics.payments_succeeded;
    let pb = [("ce_type", "feepay.v1.PaymentSucceeded"), ("content-type", "application/protobuf")];
    produce_raw(&p, t, "bad-1", b"\xff\xfe garbage", &pb).await;
    produce_raw(&p, t, "bad-2", b"{}", &[("content-type", "text/plain")]).await;
    let mut invalid = gplx_payment("PG-bad-3", wall_clock());
    invalid.payer.as_mut().unwrap().personal_id = "12345".into();
    invalid.payer.as_mut().unwrap().full_name = "Lê Văn C\r\nBcc: attacker@example.com".into();
    invalid.lines[0].amount = "135000.5".into();
    produce(&p, t, "bad-3", &invalid, BodyFormat::Json).await;
    let mut negative = gplx_payment("PG-bad-4", wall_clock());
    negative.total_paid = "-135000".into();
    produce(&p, t, "bad-4", &negative, BodyFormat::Protobuf).await;
    let good = format!("PG-{}", unique());
    produce(&p, t, &good, &gplx_payment(&good, wall_clock()), BodyFormat::Protobuf).await;

    let dead: Vec<v1::DeadLetter> = read_topic(&format!("{t}.dlq"), 4, WAIT, decode_event).await;
    assert_eq!(dead.len(), 4);
    let reason = |key: &str| {
        dead.iter()
            .find(|d| d.original_key == key.as_bytes())
            .map(|d| (d.reason_code.clone(), d.reason.clone()))
            .unwrap()
    };
    assert_eq!(reason("bad-1").0, "undecodable");
    assert_eq!(reason("bad-2").0, "unsupported_content_type");
    let (code, text) = reason("bad-3");
    assert_eq!(code, "invalid");
    assert!(text.contains("payer.personal_id: personal ID must be exactly 12 digits"), "{text}");
    assert!(text.contains("payer.full_name: contains control characters"), "{text}");
    assert!(text.contains("lines[0].amount: amount \"135000.5\" has a fractional part"), "{text}");
    assert!(reason("bad-4").1.contains("total_paid: amount \"-135000\" is negative"));
    let bad1 = dead.iter().find(|d| d.original_key == b"bad-1").unwrap();
    assert_eq!(bad1.original_value, b"\xff\xfe garbage", "original bytes kept");
    assert!(bad1.original_headers.iter().any(|h| h.key == "ce_type"), "original headers kept");

    eventually(WAIT, "the good payment after the bad ones", || async {
        (!receipts_of(db, &good).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 1);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_path_publishes_its_reason() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let now = wall_clock();
    let u = unique();
    let mut cases = Vec::new();
    let mut mismatch = gplx_payment(&format!("PG-{u}-mismatch"), now);
    mismatch.lines[0].amount = "115000".into();
    mismatch.total_paid = "115000".into();
    cases.push((mismatch, v1::RejectionReason::AmountMismatch, "paid 115000 đồng but 135000 đồng is due"));
    let mut agency = gplx_payment(&format!("PG-{u}-agency"), now);
    agency.agency_code = "XX.NOWHERE".into();
    cases.push((agency, v1::RejectionReason::UnknownAgency, "agency XX.NOWHERE is not in the reference data"));
    let mut fee = gplx_payment(&format!("PG-{u}-fee"), now);
    fee.lines[0].fee_code = "LP-KHONG-CO".into();
    cases.push((fee, v1::RejectionReason::UnknownFee, "fee LP-KHONG-CO is not in the fee schedule"));
    let mut series = gplx_payment(&format!("PG-{u}-series"), now);
    series.agency_code = "BN".into();
    cases.push((series, v1::RejectionReason::NoSeries, "agency BN has no receipt series for le_phi"));
    let mut kind = gplx_payment(&format!("PG-{u}-kind"), now);
    kind.lines[0].kind = v1::FeeKind::Phi as i32;
    cases.push((kind, v1::RejectionReason::KindMismatch, "fee LP-GPLX is a le_phi but was paid as phi"));
    for (c, _, _) in &cases {
        produce(&p, &topics.payments_succeeded, &c.payment_id, c, BodyFormat::Protobuf).await;
    }
    let rejected: Vec<v1::PaymentRejected> =
        read_topic(&topics.payments_rejected, cases.len(), WAIT, decode_event).await;
    for (c, reason, detail) in &cases {
        let r = rejected
            .iter()
            .find(|r| r.payment_id == c.payment_id)
            .unwrap_or_else(|| panic!("no rejection for {}", c.payment_id));
        assert_eq!(r.reason, *reason as i32, "{}", r.detail);
        assert!(r.detail.contains(detail), "{} does not contain {detail}", r.detail);
    }
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await,
        0,
        "no receipt for a rejected payment"
    );
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM series_counters WHERE last_number > 0").await,
        0,
        "no number used"
    );
    let metrics = issuer.metrics().await;
    assert!(metrics.contains("feepay_issuer_payments_rejected_total{reason=\"amount_mismatch\"} 1"), "{metrics}");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_restarts_at_midnight_on_new_years_eve_gmt7() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let gmt7 = feepay_domain::numbering::gmt7();
    let clock = Arc::new(FixedClock::new(gmt7.with_ymd_and_hms(2026, 12, 31, 23, 59, 58).unwrap().with_timezone(&Utc)));
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock.clone()).await;
    let p = producer();
    let u = unique();
    for i in 0..3 {
        let id = format!("PG-{u}-2026-{i}");
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, wall_clock()), BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "three receipts of 2026", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 3).then_some(())
    })
    .await;
    clock.set(gmt7.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap().with_timezone(&Utc));
    for i in 0..2 {
        let id = format!("PG-{u}-2027-{i}");
        produce(
            &p,
            &topics.payments_succeeded,
            &id,
            &gplx_payment(&id, wall_clock() + ChronoDuration::seconds(1)),
            BodyFormat::Protobuf,
        )
        .await;
    }
    eventually(WAIT, "two receipts of 2027", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 5).then_some(())
    })
    .await;
    let rows = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT symbol, year, number FROM receipts ORDER BY year, number"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get::<String>("", "symbol").unwrap(),
                r.try_get::<i32>("", "year").unwrap(),
                r.try_get::<i32>("", "number").unwrap(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            ("26TAA".into(), 2026, 1),
            ("26TAA".into(), 2026, 2),
            ("26TAA".into(), 2026, 3),
            ("27TAA".into(), 2027, 1),
            ("27TAA".into(), 2027, 2)
        ]
    );
    assert_eq!(verify_all_series(db, keys).await, 5);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_offset_commit_issues_nothing_twice() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let group = format!("issuer-{}", unique());
    let p = producer();
    let u = unique();
    let ids: Vec<String> = (0..10).map(|i| format!("PG-{u}-{i}")).collect();
    for id in &ids {
        produce(&p, &topics.payments_succeeded, id, &gplx_payment(id, wall_clock()), BodyFormat::Protobuf).await;
    }
    // A first issuer commits the receipts in PostgreSQL and "crashes" before committing
    // offsets: it reads the batch with the group's consumer and processes it, but never
    // commits the offsets.
    {
        let settings = issuer_settings(db, topics, keys, &group);
        grant(feepay_runtime::kafka::access::Role::Issuer, topics, &group).await;
        let state = Arc::new(feepay_runtime::consumer::ConsumerState::new(Duration::from_secs(60)));
        let consumer = feepay_runtime::consumer::group_consumer(&settings.kafka, &[&topics.payments_succeeded], state)
            .unwrap()
            .get();
        let issuer = Arc::new(feepay_issuer::issue::Issuer::new(
            db.db.clone(),
            feepay_tests::pki::signing(keys),
            Arc::new(SystemClock),
            feepay_issuer::metrics::IssuerMetrics::new(),
            topics.names(),
            BodyFormat::Protobuf,
            "/tests".into(),
        ));
        let mut items = Vec::new();
        while items.len() < 10 {
            let m = consumer.recv().await.unwrap();
            items.push(feepay_issuer::handler::decode(topics, &feepay_runtime::consumer::Record::of(&m)).unwrap());
        }
        let outcome = issuer.process(&items).await.unwrap().outcome;
        assert_eq!(outcome.receipts_issued, 10);
        drop(consumer); // crash: no offset commit
    }
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &group), Arc::new(SystemClock)).await;
    let metrics = eventually(WAIT, "the redelivered batch", || async {
        let m = issuer.metrics().await;
        (metric_value(&m, "feepay_issuer_events_processed_total", &[("outcome", "duplicate")]) == 10.0).then_some(m)
    })
    .await;
    assert_eq!(
        metric_value(&metrics, "feepay_issuer_events_processed_total", &[("outcome", "issued")]),
        0.0,
        "{metrics}"
    );
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 10);
    assert_eq!(verify_all_series(db, keys).await, 10);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_issuers_and_a_rebalance_keep_numbers_gapless() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let group = format!("issuer-{}", unique());
    let a = spawn_issuer(issuer_settings(db, topics, keys, &group), Arc::new(SystemClock)).await;
    let b = spawn_issuer(issuer_settings(db, topics, keys, &group), Arc::new(SystemClock)).await;
    a.wait_ready(WAIT).await;
    b.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    let agencies = ["BN.TTPVHCC", "BN.KINHBAC", "BN.TUSON", "HP.TTPVHCC"];
    let total = 600;
    let mut stopped_a = None;
    let mut a = Some(a);
    for i in 0..total {
        let id = format!("PG-{u}-{i:05}");
        let agency = agencies[i % agencies.len()];
        let mut pay = gplx_payment(&id, wall_clock());
        pay.agency_code = agency.into();
        produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
        if i == total / 2 {
            // Stop one instance mid-stream: its partitions move to the other.
            stopped_a = Some(tokio::spawn(a.take().unwrap().stop()));
        }
    }
    stopped_a.unwrap().await.unwrap();
    eventually(Duration::from_secs(120), "every payment to have its receipt", || async {
        let n = count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments").await;
        (n == total as i64).then_some(())
    })
    .await;
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, total as i64);
    assert_eq!(count(&db.db, "SELECT count(DISTINCT payment_id)::BIGINT AS n FROM receipts").await, total as i64);
    assert_eq!(verify_all_series(db, keys).await, total);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_moments_lose_nothing_and_skip_no_number() {
    use rand::Rng;
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let group = format!("issuer-{}", unique());
    let p = producer();
    let u = unique();
    let total = 3000usize;
    let agencies = ["BN.TTPVHCC", "BN.KINHBAC", "HP.TTPVHCC", "HP.HAIDUONG"];
    let producing = {
        let p = p.clone();
        let topic = topics.payments_succeeded.clone();
        let u = u.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let id = format!("PG-{u}-{i:05}");
                let mut pay = gplx_payment(&id, wall_clock());
                pay.agency_code = agencies[i % agencies.len()].into();
                produce(&p, &topic, &id, &pay, BodyFormat::Protobuf).await;
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    // Abort the issuer mid-flight at random moments: the task is dropped wherever it is
    // (inside a transaction, between commit and offset commit, while relaying).
    let mut crashes = 0;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    while crashes < 4 {
        let issuer = spawn_issuer(issuer_settings(db, topics, keys, &group), Arc::new(SystemClock)).await;
        issuer.wait_ready(WAIT).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1500))).await;
        issuer.crash().await;
        crashes += 1;
    }
    producing.await.unwrap();
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &group), Arc::new(SystemClock)).await;
    eventually(Duration::from_secs(120), "every payment after the crashes", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments").await == total as i64).then_some(())
    })
    .await;
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await,
        total as i64,
        "one receipt per payment"
    );
    assert_eq!(verify_all_series(db, keys).await, total, "numbers gapless, chain and signatures intact");
    eventually(WAIT, "outbox drained", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM outbox").await == 0).then_some(())
    })
    .await;
    let issued: Vec<v1::ReceiptIssued> =
        read_topic(&topics.receipts_issued, total * 2, Duration::from_secs(20), decode_event).await;
    let distinct: std::collections::BTreeSet<String> =
        issued.iter().filter_map(|e| e.receipt.as_ref().map(|r| r.receipt_id.clone())).collect();
    assert_eq!(distinct.len(), total, "every receipt event published (at least once, stable ids)");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_hostile_events_ends_in_dead_letters_or_rejections_and_valid_traffic_flows() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let t = topics.payments_succeeded.clone();
    let u = unique();
    let now = wall_clock();
    let pb = [("ce_type", "feepay.v1.PaymentSucceeded"), ("content-type", "application/protobuf")];
    // (key, expected dead-letter reason code, expected text in the reason)
    let mut dead: Vec<(String, &str, &str)> = Vec::new();
    let mut valid = Vec::new();
    let mut send_valid = |i: usize| {
        let id = format!("PG-{u}-ok-{i}");
        valid.push(id.clone());
        id
    };
    let hostile = |f: &dyn Fn(&mut v1::PaymentSucceeded), key: &str| {
        let mut pay = gplx_payment(&format!("PG-{u}-{key}"), now);
        f(&mut pay);
        pay
    };
    let id = send_valid(0);
    produce(&p, &t, &id, &gplx_payment(&id, now), BodyFormat::Protobuf).await;
    produce_raw(&p, &t, "garbage", &[0xff, 0x00, 0x13, 0x37, 0x42], &pb).await;
    dead.push(("garbage".into(), "undecodable", "protobuf"));
    produce_raw(&p, &t, "xml", b"<PaymentSucceeded/>", &[("content-type", "application/xml")]).await;
    dead.push(("xml".into(), "unsupported_content_type", "application/xml"));
    produce_raw(
        &p,
        &t,
        "wrongtype",
        b"",
        &[("ce_type", "feepay.v1.ReceiptIssued"), ("content-type", "application/protobuf")],
    )
    .await;
    dead.push(("wrongtype".into(), "wrong_type", "feepay.v1.ReceiptIssued"));
    let cases: Vec<HostileCase> = vec![
        ("nopayer", Box::new(|p| p.payer = None), "payer: is required"),
        (
            "crlf",
            Box::new(|p| p.payer.as_mut().unwrap().full_name = "Lê Văn C\r\nBcc: x@y".into()),
            "payer.full_name: contains control characters",
        ),
        (
            "negative",
            Box::new(|p| p.lines[0].amount = "-135000".into()),
            "lines[0].amount: amount \"-135000\" is negative",
        ),
        ("fraction", Box::new(|p| p.lines[0].amount = "134999.99".into()), "has a fractional part"),
        (
            "exponent",
            Box::new(|p| p.total_paid = "1.35e5".into()),
            "total_paid: amount \"1.35e5\" is not a decimal number",
        ),
        (
            "cccd",
            Box::new(|p| p.payer.as_mut().unwrap().personal_id = "02709000123A".into()),
            "payer.personal_id: personal ID must be exactly 12 digits",
        ),
        (
            "mst",
            Box::new(|p| {
                let payer = p.payer.as_mut().unwrap();
                payer.personal_id.clear();
                payer.tax_code = "0100100078".into();
            }),
            "payer.tax_code: tax code check digit is wrong",
        ),
        ("nochannel", Box::new(|p| p.channel = 0), "channel: must be"),
        ("usd", Box::new(|p| p.currency = "USD".into()), "currency: must be \"VND\""),
        (
            "nolines",
            Box::new(|p| {
                p.lines.clear();
                p.total_paid = "0".into();
            }),
            "lines: at least one fee line is required",
        ),
        ("zeroqty", Box::new(|p| p.lines[0].quantity = 0), "lines[0].quantity: must be at least 1"),
        (
            "mismatch-total",
            Box::new(|p| p.total_paid = "1".into()),
            "total_paid: 1 is not the sum of the lines (135000)",
        ),
    ];
    for (i, (key, f, reason)) in cases.iter().enumerate() {
        produce(
            &p,
            &t,
            key,
            &hostile(f.as_ref(), key),
            if i % 2 == 0 { BodyFormat::Json } else { BodyFormat::Protobuf },
        )
        .await;
        dead.push((key.to_string(), "invalid", reason));
        let id = send_valid(i + 1);
        produce(&p, &t, &id, &gplx_payment(&id, now), BodyFormat::Protobuf).await;
    }
    // Well formed and paid, but over a business limit: rejections with the field named,
    // never dead letters.
    let over_limits = [
        (
            hostile(&|p| p.payer.as_mut().unwrap().full_name = "Ă".repeat(10_000), "hugename"),
            "payer.full_name: is 10000 characters long",
        ),
        (
            hostile(
                &|p| {
                    p.lines[0].amount = "9".repeat(40);
                    p.total_paid = "9".repeat(40);
                },
                "astronomic",
            ),
            "exceeds the limit of 10^15 đồng",
        ),
        (
            hostile(
                &|p| {
                    p.lines[0].quantity = 20_000;
                    p.lines[0].amount = "2700000000".into();
                    p.total_paid = "2700000000".into();
                },
                "hugeqty",
            ),
            "lines[0].quantity: 20000 units, at most 10000",
        ),
    ];
    for (pay, _) in &over_limits {
        produce(&p, &t, &pay.payment_id, pay, BodyFormat::Json).await;
    }
    // Valid in shape, refused by the rules: rejections, not dead letters.
    let unknown_agency = hostile(&|p| p.agency_code = "ZZ.NOWHERE".into(), "agency");
    let unknown_fee = hostile(&|p| p.lines[0].fee_code = "LP-KHONG-TON-TAI".into(), "fee");
    let first = gplx_payment(&format!("PG-{u}-dup"), now);
    let mut second = first.clone();
    second.payer.as_mut().unwrap().address = "Địa chỉ khác".into();
    for pay in [&unknown_agency, &unknown_fee, &first, &second] {
        produce(&p, &t, &pay.payment_id, pay, BodyFormat::Protobuf).await;
    }

    let letters: Vec<v1::DeadLetter> = read_topic(&format!("{t}.dlq"), dead.len(), WAIT, decode_event).await;
    assert_eq!(letters.len(), dead.len());
    for (key, code, text) in &dead {
        let dl = letters
            .iter()
            .find(|d| d.original_key == key.as_bytes())
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(dl.reason_code, *code, "{key}: {}", dl.reason);
        assert!(dl.reason.contains(text), "{key}: {:?} does not contain {text:?}", dl.reason);
    }
    let rejected: Vec<v1::PaymentRejected> =
        read_topic(&topics.payments_rejected, 3 + over_limits.len(), WAIT, decode_event).await;
    let reason_of = |id: &str| rejected.iter().find(|r| r.payment_id == id).map(|r| r.reason).unwrap_or_default();
    for (pay, detail) in &over_limits {
        let r =
            rejected.iter().find(|r| r.payment_id == pay.payment_id).expect("a rejection for each over-limit payment");
        assert_eq!(r.reason, v1::RejectionReason::LimitExceeded as i32);
        assert!(r.detail.contains(detail), "{:?} does not contain {detail:?}", r.detail);
    }
    assert_eq!(
        count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM payments WHERE payment_id LIKE 'PG-{u}-%' AND reason = 'limit_exceeded'")).await,
        3,
        "each over-limit payment recorded once, as rejected"
    );
    assert_eq!(reason_of(&unknown_agency.payment_id), v1::RejectionReason::UnknownAgency as i32);
    assert_eq!(reason_of(&unknown_fee.payment_id), v1::RejectionReason::UnknownFee as i32);
    assert_eq!(reason_of(&first.payment_id), v1::RejectionReason::ConflictingDuplicate as i32);
    eventually(WAIT, "the valid payments around the hostile ones", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == valid.len() as i64 + 1).then_some(())
    })
    .await;
    let hostile_receipts = count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id NOT LIKE 'PG-{u}-ok-%' AND payment_id <> 'PG-{u}-dup'")).await;
    assert_eq!(hostile_receipts, 0, "no receipt for any hostile event");
    assert_eq!(verify_all_series(db, keys).await, valid.len() + 1);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_split_into_concurrent_transactions_keeps_every_series_gapless() {
    let db = TestDb::new().await;
    let keys = test_keys();
    let issuer = Arc::new(
        feepay_issuer::issue::Issuer::new(
            db.db.clone(),
            feepay_tests::pki::signing(&keys),
            Arc::new(SystemClock),
            feepay_issuer::metrics::IssuerMetrics::new(),
            feepay_runtime::settings::Topics::default_names(),
            BodyFormat::Protobuf,
            "/tests".into(),
        )
        .with_workers(4),
    );
    let agencies = ["BN.TTPVHCC", "BN.KINHBAC", "BN.TUSON", "BN.TIENDU", "HP.TTPVHCC", "HP.HAIDUONG", "HP.HONGBANG"];
    let now = wall_clock();
    let u = unique();
    let pay = |id: &str, agency: &str| {
        let raw = payment(id, agency, v1::Channel::Counter, vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)], now);
        let Ok(feepay_runtime::convert::ParsedPayment::Valid(p)) = feepay_runtime::convert::parse_payment(&raw) else {
            panic!("a valid payment")
        };
        feepay_issuer::issue::Incoming::payment(p, &raw)
    };
    let refund_of = |rid: &str, pid: &str| {
        let raw = refund(rid, pid, vec![], now);
        let Ok(feepay_runtime::convert::ParsedRefund::Valid(r)) = feepay_runtime::convert::parse_refund(&raw) else {
            panic!("a valid refund")
        };
        feepay_issuer::issue::Incoming::refund(r, raw)
    };
    // A refund whose payment comes in the next batch stays pending until then.
    let early = format!("PS-{u}-early");
    let first = issuer.process(&[refund_of(&format!("RF-{u}-early"), &early)]).await.unwrap().outcome;
    assert_eq!(first.refunds_pending, 1, "{first:?}");

    let ids: Vec<String> = (0..210).map(|i| format!("PS-{u}-{i:03}")).collect();
    let mut batch: Vec<_> = ids.iter().enumerate().map(|(i, id)| pay(id, agencies[i % agencies.len()])).collect();
    batch.push(pay(&early, "HP.HAIDUONG"));
    batch.push(pay(&ids[0], agencies[0])); // the same event again
    batch.push(pay(&ids[1], "HP.HAIDUONG")); // same id, other agency: another group's transaction
    batch.push(refund_of(&format!("RF-{u}-002"), &ids[2])); // refund of a payment of this batch
    let outcome = issuer.process(&batch).await.unwrap().outcome;
    assert_eq!(
        (
            outcome.receipts_issued,
            outcome.duplicates,
            outcome.conflicts,
            outcome.refunds_applied,
            outcome.receipts_cancelled
        ),
        (211, 1, 1, 2, 0),
        "{outcome:?}: refunds are recorded, nothing is cancelled"
    );
    // A retry of the whole batch (as after a failure in one group) issues nothing again.
    let again = issuer.process(&batch).await.unwrap().outcome;
    assert_eq!((again.receipts_issued, again.duplicates, again.conflicts), (0, 213, 1), "{again:?}");
    assert_eq!(receipts_of(&db, &ids[2]).await.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["issued"]);
    assert_eq!(receipts_of(&db, &early).await.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["issued"]);
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM refunds WHERE status = 'applied' AND allocation IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        count(&db.db, "SELECT count(DISTINCT (agency_code, template, symbol))::BIGINT AS n FROM receipts").await,
        7
    );
    assert_eq!(verify_all_series(&db, &keys).await, 211);
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM series_counters WHERE last_number > 0").await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_parked_because_its_token_was_unreachable_is_tried_again_by_itself() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    // As the issuer parks a payment whose token did not answer (see the token tests in
    // `signatures`): no operator asks for its retry.
    let id = format!("PG-{}", unique());
    let event = gplx_payment(&id, wall_clock());
    let headers = feepay_runtime::envelope::headers_for::<v1::PaymentSucceeded>(
        &unique(),
        "/tests",
        wall_clock(),
        BodyFormat::Json,
    );
    use rdkafka::message::Headers;
    let parked = feepay_runtime::parking::NewParked {
        service: feepay_runtime::service::ISSUER.into(),
        topic: topics.payments_succeeded.clone(),
        partition: 0,
        offset: 0,
        key: id.clone().into_bytes(),
        headers: headers.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect(),
        payload: feepay_runtime::envelope::encode_body(&event, BodyFormat::Json),
        subject: format!("payment:{id}"),
        agency: Some("BN.TTPVHCC".into()),
    };
    let reason = feepay_runtime::parking::ParkReason::new(
        feepay_runtime::parking::SIGNER_UNAVAILABLE,
        "token \"BN.TTPVHCC\" unavailable: no token labelled \"BN.TTPVHCC\"",
    );
    feepay_runtime::parking::park(&db.db, &parked, &reason, wall_clock()).await.unwrap();
    let status = eventually(WAIT, "the parked payment retried without anyone asking", || async {
        let row = db
            .db
            .query_one(feepay_runtime::sql::raw(format!(
                "SELECT status, retry_requested_by FROM parked_events WHERE subject = 'payment:{id}'"
            )))
            .await
            .unwrap()?;
        let status: String = row.try_get("", "status").unwrap();
        (status == "resolved").then(|| (status, row.try_get::<Option<String>>("", "retry_requested_by").unwrap()))
    })
    .await;
    assert_eq!(status.1.as_deref(), Some("(automatic)"));
    let receipts =
        count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id = '{id}'")).await;
    assert_eq!(receipts, 1);
    issuer.stop().await;
}
