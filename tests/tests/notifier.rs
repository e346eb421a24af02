//! The notifier against the real broker, PostgreSQL and SMTP server (maildev).

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn address(tag: &str) -> String {
    format!("{tag}.{}@example.vn", unique())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_arrives_in_vietnamese_with_its_document_and_qr_code() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let sink = Maildev::shared();
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier =
        spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port)).await;
    let p = producer();
    let to = address("an");
    let id = format!("PG-{}", unique());
    let mut pay = gplx_payment(&id, wall_clock());
    pay.payer.as_mut().unwrap().email = to.clone();
    pay.payer.as_mut().unwrap().full_name = "Nguyễn Thị Ánh Tuyết".into();
    produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;

    let emails =
        eventually(WAIT, "the email", || async { Some(sink.emails_to(&to).await).filter(|e| !e.is_empty()) }).await;
    assert_eq!(emails.len(), 1);
    let e = &emails[0];
    let subject = e["subject"].as_str().unwrap();
    assert!(subject.starts_with("Biên lai điện tử số 0000"), "{subject}");
    assert!(subject.contains("Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"), "{subject}");
    let html = e["html"].as_str().unwrap();
    let text = e["text"].as_str().unwrap();
    for part in [html, text] {
        assert!(part.contains("Nguyễn Thị Ánh Tuyết"));
        assert!(part.contains("Lệ phí cấp giấy phép lái xe"));
        assert!(part.contains("135.000"));
        assert!(part.contains("Một trăm ba mươi lăm nghìn đồng"));
        assert!(part.contains("có chữ ký số của đơn vị thu"), "a signed receipt is called signed: {part}");
    }
    let attachments = e["attachments"].as_array().unwrap();
    let xml = attachments
        .iter()
        .find(|a| a["contentType"].as_str().unwrap_or("").starts_with("application/xml"))
        .expect("the signed receipt");
    assert!(xml["filename"].as_str().unwrap().starts_with("bien-lai-EBL01-"));
    let qr = attachments.iter().find(|a| a["contentType"] == "image/png").expect("the QR code");
    assert_eq!(qr["contentId"], "qr-tra-cuu");
    let source = sink.source(e["id"].as_str().unwrap()).await;
    assert!(source.contains("Subject: =?utf-8?"), "subject is RFC 2047 encoded");
    assert!(source.contains("Message-ID: <receipt-issued."), "stable message id");
    assert!(
        source.contains("src=3D\"cid:qr-tra-cuu\"") || source.contains("src=\"cid:qr-tra-cuu\""),
        "the HTML shows the inline QR image"
    );
    assert!(source.contains("Content-ID: <qr-tra-cuu>"), "{source}");
    assert!(
        source.contains("<DSCKS>")
            || source.contains("PERTQ0tTPg")
            || source.contains("Content-Disposition: attachment"),
        "attachment present"
    );

    let sent: Vec<v1::NotificationSent> = read_topic(&topics.notifications_sent, 1, WAIT, decode_event).await;
    assert_eq!(sent[0].payment_id, id);
    let m = notifier.metrics().await;
    assert_eq!(metric_value(&m, "feepay_notifier_emails_total", &[("outcome", "sent")]), 1.0, "{m}");
    notifier.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_send_nothing_and_hostile_names_are_harmless() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let sink = Maildev::shared();
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier =
        spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port)).await;
    let p = producer();
    let to = address("hostile");
    let id = format!("PG-{}", unique());
    let mut pay = gplx_payment(&id, wall_clock());
    pay.payer.as_mut().unwrap().email = to.clone();
    pay.payer.as_mut().unwrap().full_name = format!("<script>alert('x')</script> Lê \"Văn\" & Co {}", "Đ".repeat(150));
    pay.payer.as_mut().unwrap().address = "<img src=x onerror=alert(1)> Bắc Ninh".into();
    produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    let emails =
        eventually(WAIT, "the email", || async { Some(sink.emails_to(&to).await).filter(|e| !e.is_empty()) }).await;
    let html = emails[0]["html"].as_str().unwrap();
    assert!(!html.contains("<script>"), "payer text is escaped");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<img src=x"), "address escaped");
    assert_eq!(emails[0]["to"].as_array().unwrap().len(), 1);

    // Replay the receipt event itself: the delivery log recognises it.
    let issued: Vec<v1::ReceiptIssued> = read_topic(&topics.receipts_issued, 1, WAIT, decode_event).await;
    for _ in 0..3 {
        produce(&p, &topics.receipts_issued, &id, &issued[0], BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "duplicates to be seen", || async {
        let m = notifier.metrics().await;
        (metric_value(&m, "feepay_notifier_events_processed_total", &[("outcome", "duplicate")]) >= 3.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.emails_to(&to).await.len(), 1, "exactly one email");

    // A name with CR/LF can never reach a header: the issuer refuses such an event, and
    // the composer strips control characters anyway.
    let mailbox = feepay_notifier::compose::recipient(&v1::Payer {
        full_name: "Trần Văn D\r\nBcc: victim@example.com".into(),
        email: "d@example.vn".into(),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    assert_eq!(mailbox.name.as_deref(), Some("Trần Văn DBcc: victim@example.com"));
    notifier.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_missing_addresses_are_recorded_not_sent() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let sink = Maildev::shared();
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier =
        spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port)).await;
    let p = producer();
    let u = unique();
    let mut bad = gplx_payment(&format!("PG-{u}-bad"), wall_clock());
    bad.payer.as_mut().unwrap().email = "not an address".into();
    let mut none = gplx_payment(&format!("PG-{u}-none"), wall_clock());
    none.payer.as_mut().unwrap().email = String::new();
    produce(&p, &topics.payments_succeeded, &bad.payment_id, &bad, BodyFormat::Protobuf).await;
    produce(&p, &topics.payments_succeeded, &none.payment_id, &none, BodyFormat::Protobuf).await;
    let failed: Vec<v1::NotificationFailed> = read_topic(&topics.notifications_failed, 1, WAIT, decode_event).await;
    assert_eq!(failed[0].payment_id, bad.payment_id);
    assert!(failed[0].error.contains("invalid mailbox"), "{}", failed[0].error);
    let statuses = eventually(WAIT, "two deliveries", || async {
        let rows = db
            .db
            .query_all(feepay_runtime::sql::raw("SELECT payment_id, status FROM deliveries ORDER BY payment_id"))
            .await
            .unwrap();
        (rows.len() == 2).then(|| rows.iter().map(|r| r.try_get::<String>("", "status").unwrap()).collect::<Vec<_>>())
    })
    .await;
    assert_eq!(statuses, vec!["failed", "skipped"]);
    notifier.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_only_delays_and_every_email_arrives_once() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let mut sink = Maildev::private().await;
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier =
        spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port)).await;
    let p = producer();
    let u = unique();
    sink.stop();
    let n = 12;
    for i in 0..n {
        let id = format!("PG-{u}-{i:02}");
        let mut pay = if i % 3 == 0 {
            payment(
                &id,
                "BN.TTPVHCC",
                v1::Channel::Counter,
                vec![
                    line("BN-P-THAMDINH-GCN", v1::FeeKind::Phi, 1, 500_000),
                    line("BN-LP-GCN", v1::FeeKind::LePhi, 1, 100_000),
                ],
                wall_clock(),
            )
        } else {
            gplx_payment(&id, wall_clock())
        };
        pay.payer.as_mut().unwrap().email = format!("outage.{u}.{i}@example.vn");
        produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    }
    let refunded = format!("PG-{u}-00");
    produce(
        &p,
        &topics.payments_refunded,
        &refunded,
        &refund(&format!("RF-{u}"), &refunded, vec![], wall_clock()),
        BodyFormat::Protobuf,
    )
    .await;
    eventually(WAIT, "retries while the server is down", || async {
        let m = notifier.metrics().await;
        (metric_value(&m, "feepay_notifier_emails_total", &[("outcome", "retrying")]) >= 4.0).then_some(())
    })
    .await;
    sink.start().await;
    // 12 payments, 4 of them with two receipts = 16 receipts, plus the refund's confirmation
    // (its two receipts stay as issued).
    let expected = 16 + 1;
    let emails = eventually(WAIT, "every email after the outage", || async {
        let e = sink.emails().await;
        (e.len() >= expected).then_some(e)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails_after = sink.emails().await;
    assert_eq!(emails_after.len(), expected, "no duplicates after recovery");
    let mut ids: Vec<String> =
        emails.iter().map(|e| e["headers"]["message-id"].as_str().unwrap_or_default().to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected, "one email per receipt event");
    assert!(emails.iter().any(|e| e["subject"].as_str().unwrap().starts_with("Xác nhận hoàn trả 600.000 đồng")));
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM deliveries WHERE status = 'sent'").await,
        expected as i64
    );
    notifier.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fully_waived_payment_gets_a_waiver_notice_and_no_receipt() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let sink = Maildev::shared();
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier =
        spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port)).await;
    let p = producer();
    let to = address("mienphi");
    let id = format!("PG-{}", unique());
    let mut pay = payment(
        &id,
        "BN.KINHBAC",
        v1::Channel::FullyOnline,
        vec![line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 0)],
        wall_clock(),
    );
    pay.payer.as_mut().unwrap().email = to.clone();
    pay.payer.as_mut().unwrap().categories = vec![v1::BeneficiaryCategory::MeritoriousService as i32];
    produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Json).await;
    let emails =
        eventually(WAIT, "the waiver notice", || async { Some(sink.emails_to(&to).await).filter(|e| !e.is_empty()) })
            .await;
    assert!(emails[0]["subject"].as_str().unwrap().starts_with("Thông báo miễn, giảm phí, lệ phí hồ sơ"));
    let text = emails[0]["text"].as_str().unwrap();
    assert!(text.contains("60/2014/QH13") && text.contains("Điều 11 Luật Hộ tịch"), "{text}");
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 0);
    notifier.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_failed_emails_and_resends_one() {
    use clap::Parser;
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let mut sink = Maildev::private().await;
    sink.stop();
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let mut ns = notifier_settings(db, topics, &format!("notifier-{}", unique()), sink.smtp_port);
    ns.retry_schedule = vec![Duration::from_millis(300)];
    let notifier = spawn_notifier(ns).await;
    let p = producer();
    let id = format!("PG-{}", unique());
    let mut pay = gplx_payment(&id, wall_clock());
    pay.payer.as_mut().unwrap().email = "resend@example.vn".into();
    produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    let failed: Vec<v1::NotificationFailed> = read_topic(&topics.notifications_failed, 1, WAIT, decode_event).await;
    assert_eq!(failed[0].attempts, 2, "first attempt and one retry");
    assert!(failed[0].error.contains("SMTP unavailable"), "{}", failed[0].error);

    let cli = |args: &[&str]| {
        let mut v = vec!["receiptctl", "--database-url", &db.url, "--operator", "test-operator"];
        v.extend_from_slice(args);
        receiptctl::Cli::parse_from(v)
    };
    let code = receiptctl::run(cli(&["deliveries", "list", "--status", "failed"])).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    sink.start().await;
    let code =
        receiptctl::run(cli(&["deliveries", "resend", &id, "--reason", "máy chủ thư đã hoạt động lại", "--yes"]))
            .await
            .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let emails = eventually(WAIT, "the resent email", || async {
        Some(sink.emails_to("resend@example.vn").await).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(emails.len(), 1);
    let audit = db
        .db
        .query_one(feepay_runtime::sql::raw("SELECT actor, reason FROM audit_log WHERE action = 'delivery.resend'"))
        .await
        .unwrap()
        .expect("the resend is audited");
    assert_eq!(audit.try_get::<String>("", "actor").unwrap(), "test-operator");
    let code = receiptctl::run(cli(&["deliveries", "resend", "NO-SUCH-ID", "--reason", "x", "--yes"])).await.unwrap();
    assert_eq!(code, std::process::ExitCode::from(2));
    notifier.stop().await;
    issuer.stop().await;
}

/// A slow mail server (aiosmtpd, each DATA accepted after a delay) that logs the Message-ID
/// of every message it accepts.
struct SlowSmtp {
    child: tokio::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl SlowSmtp {
    async fn start(delay_secs: f64) -> SlowSmtp {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("slow-smtp-{}.log", unique()));
        let mut child = tokio::process::Command::new(repo_root().join(".tools/venv-smtp/bin/python"))
            .arg(repo_root().join("tests/support/slow_smtp.py"))
            .args([port.to_string(), delay_secs.to_string(), log.display().to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("aiosmtpd (make up installs it in .tools/venv-smtp)");
        use tokio::io::AsyncBufReadExt;
        let mut ready = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(WAIT, ready.next_line()).await.expect("the server starts").expect("stdout");
        assert_eq!(line.as_deref(), Some("ready"));
        SlowSmtp { child, port, log }
    }

    /// How many times each Message-ID was accepted.
    fn accepted(&self) -> std::collections::BTreeMap<String, usize> {
        let mut n = std::collections::BTreeMap::new();
        for id in std::fs::read_to_string(&self.log).unwrap_or_default().lines() {
            *n.entry(id.to_string()).or_insert(0) += 1;
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_notifiers_and_a_slow_mail_server_send_every_email_once() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    // Each message takes 0.2 s to be accepted; four in flight per notifier: a pass of a few
    // hundred emails outlasts the 12 s lease, which must be renewed for the other notifier
    // not to take the same rows and send them again. The SMTP timeout (3 s) is far above
    // the server's delay: a message whose acceptance the client stops waiting for may have
    // been delivered, and its retry would be a second copy that no lease can prevent.
    let mut smtp = SlowSmtp::start(0.2).await;
    let group = format!("notifier-{}", unique());
    let settings = |port: u16| {
        let mut s = notifier_settings(db, topics, &group, port);
        s.smtp.timeout = Duration::from_secs(3);
        s.lease = Duration::from_secs(12);
        s
    };
    // The receipts first, so that the notifiers find them all at once and their first
    // passes claim many rows each.
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let p = producer();
    let u = unique();
    let n = 300;
    for i in 0..n {
        let id = format!("PG-{u}-{i:03}");
        let mut pay = gplx_payment(&id, wall_clock());
        pay.payer.as_mut().unwrap().email = format!("slow.{u}.{i}@example.vn");
        produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    }
    eventually(Duration::from_secs(300), "every receipt issued", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == n).then_some(())
    })
    .await;
    let first = spawn_notifier(settings(smtp.port)).await;
    let second = spawn_notifier(settings(smtp.port)).await;
    let sent = eventually(Duration::from_secs(300), "every email recorded as sent", || async {
        let sent = count(&db.db, "SELECT count(*)::BIGINT AS n FROM deliveries WHERE status = 'sent'").await;
        (sent == n).then_some(sent)
    })
    .await;
    // A pass outlived the lease and kept its rows by renewing it.
    let (m1, m2) = (first.metrics().await, second.metrics().await);
    let both = |name: &str, labels: &[(&str, &str)]| metric_value(&m1, name, labels) + metric_value(&m2, name, labels);
    let renewals = both("feepay_notifier_lease_renewals_total", &[("outcome", "renewed")]);
    assert!(renewals >= 1.0, "no pass lasted longer than a third of its lease: the test proves nothing");
    let why = format!(
        "retried after an SMTP error: {}, taken over: {}",
        both("feepay_notifier_emails_total", &[("kind", "receipt_issued"), ("outcome", "retrying")]),
        both("feepay_notifier_lease_renewals_total", &[("outcome", "taken_over")]),
    );
    // Both stop after finishing what they hold: whatever either sent is in the log now.
    first.stop().await;
    second.stop().await;
    let accepted = smtp.accepted();
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "emails sent more than once ({why}): {twice:?}");
    assert_eq!(accepted.len() as i64, sent, "one accepted message per delivery");
    issuer.stop().await;
    let _ = smtp.child.kill().await;
    let _ = std::fs::remove_file(&smtp.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_naming_the_address_is_kept_and_published_masked() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let smtp = SlowSmtp::start(0.0).await;
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let notifier = spawn_notifier(notifier_settings(db, topics, &format!("notifier-{}", unique()), smtp.port)).await;
    let id = format!("PG-{}", unique());
    let address = format!("refuse.nguyen.{}@example.vn", unique());
    let mut pay = gplx_payment(&id, wall_clock());
    pay.payer.as_mut().unwrap().email = address.clone();
    produce(&producer(), &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    let error = eventually(WAIT, "the refused email recorded as failed", || async {
        let row = db
            .db
            .query_one(feepay_runtime::sql::raw(format!(
                "SELECT last_error FROM deliveries WHERE payment_id = '{id}' AND status = 'failed'"
            )))
            .await
            .unwrap()?;
        row.try_get::<Option<String>>("", "last_error").unwrap()
    })
    .await;
    assert!(error.contains("550") && error.contains("re***@example.vn"), "{error}");
    assert!(!error.contains(&address), "the full address is kept: {error}");
    let failed: Vec<v1::NotificationFailed> = read_topic(&topics.notifications_failed, 1, WAIT, decode_event).await;
    let published = failed.iter().find(|f| f.payment_id == id).expect("notifications.failed");
    assert!(!published.error.contains(&address) && published.error.contains("re***@example.vn"), "{}", published.error);
    notifier.stop().await;
    issuer.stop().await;
}
