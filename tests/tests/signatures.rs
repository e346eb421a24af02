//! Receipts carry a legal digital signature: an enveloped XML Signature under the
//! collector's X.509 certificate, which the independent tool `xmlsec1` verifies against the
//! trust anchor. Forgeries are refused, bad certificates never sign (the payment waits with
//! the reason), certificates rotate without a restart, and keys can live in a PKCS#11 token
//! (SoftHSM2).

use chrono::Utc;
use feepay_domain::receipt::VerifyError;
use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_runtime::pki::provision::{self, KeyType};
use feepay_runtime::pki::testca::{self, TestCa};
use feepay_runtime::pki::verify::verify_receipt;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::pki::{issue_pkcs12, sample_reference, test_pki, trust, years_ago, years_ahead};
use feepay_tests::process::Env;
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn clock() -> Arc<dyn feepay_runtime::clock::Clock> {
    Arc::new(feepay_runtime::clock::SystemClock)
}

/// (document, status, key id) of the receipts of a payment, by number.
async fn documents_of(db: &TestDb, payment_id: &str) -> Vec<(String, String, String)> {
    db.db
        .query_all(feepay_runtime::sql::stmt(
            "SELECT document, status, key_id FROM receipts WHERE payment_id = $1 ORDER BY number",
            vec![payment_id.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (r.try_get("", "document").unwrap(), r.try_get("", "status").unwrap(), r.try_get("", "key_id").unwrap())
        })
        .collect()
}

fn between<'a>(doc: &'a str, open: &str, close: &str) -> &'a str {
    doc.split(open).nth(1).and_then(|s| s.split(close).next()).unwrap_or_else(|| panic!("{open} in {doc}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_of_every_kind_verify_with_xmlsec1_and_forgeries_are_refused() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let p = producer();
    let now = wall_clock();
    let u = unique();
    let plain = format!("PG-{u}-plain");
    produce(&p, &topics.payments_succeeded, &plain, &gplx_payment(&plain, now), BodyFormat::Protobuf).await;
    // A waiver in force whatever the date of the run: half the driving-licence charge online.
    let mut files = feepay_runtime::refdata::ReferenceFiles::read_dir(&repo_root().join("deploy/reference")).unwrap();
    files.waivers.1.push_str(
        "\n[[rule]]\nid = \"test-gplx-online-50\"\ndocument_number = \"01/2026/TT-TEST\"\nissuing_body = \"Bộ Tài chính\"\nsigned_on = \"2020-01-01\"\n\
         description = \"Giảm 50% lệ phí cấp giấy phép lái xe khi nộp trực tuyến\"\nvalid_from = \"2020-01-01\"\n\
         priority = 30\nscope = { fee_codes = [\"LP-GPLX\"] }\nconditions = { channels = [\"fully_online\"] }\n\
         effect = { kind = \"percent_off\", percent = 50 }\n",
    );
    feepay_runtime::refdata::store(&db.db, &files, "test").await.expect("the waiver loads");
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock()).await;
    let waived = format!("PG-{u}-waived");
    let w = payment(
        &waived,
        "BN.TTPVHCC",
        v1::Channel::FullyOnline,
        vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 67_500)],
        now,
    );
    produce(&p, &topics.payments_succeeded, &waived, &w, BodyFormat::Json).await;
    let refunded = format!("PG-{u}-refunded");
    produce(&p, &topics.payments_succeeded, &refunded, &gplx_payment(&refunded, now), BodyFormat::Protobuf).await;
    let replaced = format!("PG-{u}-replaced");
    let two_lines = payment(
        &replaced,
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![
            line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 28_000),
            line("P-CHUNGTHUC", v1::FeeKind::Phi, 5, 7_000),
        ],
        now,
    );
    produce(&p, &topics.payments_succeeded, &replaced, &two_lines, BodyFormat::Protobuf).await;
    eventually(WAIT, "five receipts", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 5).then_some(())
    })
    .await;
    // A refund is recorded against its receipt, which stays as signed (Circular 91 has no
    // cancellation); a wrong personal ID gets a replacement.
    produce(
        &p,
        &topics.payments_refunded,
        &refunded,
        &refund(&format!("RF-{refunded}"), &refunded, vec![], now),
        BodyFormat::Protobuf,
    )
    .await;
    let wrong_id: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT lookup_code FROM receipts WHERE payment_id = $1 ORDER BY number LIMIT 1",
            vec![replaced.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "lookup_code")
        .unwrap();
    let run = receiptctl(
        db,
        topics,
        None,
        &[
            "receipts",
            "replace",
            &wrong_id,
            "--reason",
            "Sai số định danh người nộp",
            "--payer-id",
            "027190001235",
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    eventually(WAIT, "a refund recorded and a replacement", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM refunds WHERE status = 'applied' AND allocation IS NOT NULL")
            .await
            == 1
            && count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts WHERE status = 'replaced'").await == 1
            && count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 6)
            .then_some(())
    })
    .await;

    // Every kind, judged by xmlsec1 against the trust anchor.
    let plain_doc = documents_of(db, &plain).await.remove(0).0;
    let waived_doc = documents_of(db, &waived).await.remove(0).0;
    assert!(
        waived_doc.contains("<TTruong>MienGiam.VanBan</TTruong>"),
        "the waived line names its legal basis: {waived_doc}"
    );
    let refunded_docs = documents_of(db, &refunded).await;
    assert_eq!(refunded_docs[0].1, "issued", "a refund leaves its receipt as it is");
    let replaced_docs = documents_of(db, &replaced).await;
    let replacement =
        replaced_docs.iter().find(|d| d.1 == "issued" && d.0.contains("BLThayThe.SCTu")).expect("replacement");
    for (kind, doc) in [
        ("plain", &plain_doc),
        ("waived", &waived_doc),
        ("refunded", &refunded_docs[0].0),
        ("replaced", &replaced_docs.iter().find(|d| d.1 == "replaced").expect("the replaced receipt").0),
        ("replacement", &replacement.0),
    ] {
        xmlsec_verify(doc).unwrap_or_else(|e| panic!("{kind}: xmlsec1 refuses it: {e}\n{doc}"));
        feepay_tests::pki::xsd_validate_all(std::slice::from_ref(doc))
            .unwrap_or_else(|e| panic!("{kind}: not valid against the XSD: {e}\n{doc}"));
        let v = verify_receipt(doc, &trust(), |_| None).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(v.document.version, "2.0.0");
    }
    assert_eq!(verify_all_series(db, keys).await, 6);

    // Forgeries. Any byte of the data part: xmlsec1 and our verifier refuse.
    let amount = plain_doc.replacen("<TgTien>135000</TgTien>", "<TgTien>13500</TgTien>", 1);
    let name = plain_doc.replacen("Nguyễn Văn An", "Nguyễn Văn Ân", 1);
    assert_ne!(name, plain_doc);
    for forged in [&amount, &name] {
        assert!(xmlsec_verify(forged).is_err(), "xmlsec1 accepts a forged receipt");
        assert!(matches!(verify_receipt(forged, &trust(), |_| None), Err(VerifyError::Digest(_))));
    }
    // Another agency's certificate (same CA) put in place of the signer's.
    let cert = |d: &str| between(d, "<X509Certificate>", "</X509Certificate>").to_string();
    let other = &replaced_docs[0].0;
    assert_ne!(cert(&plain_doc), cert(other));
    let swapped = plain_doc.replacen(&cert(&plain_doc), &cert(other), 1);
    assert!(xmlsec_verify(&swapped).is_err(), "xmlsec1 accepts a swapped certificate");
    assert_eq!(verify_receipt(&swapped, &trust(), |_| None).unwrap_err(), VerifyError::BadSignature);
    // Wrapping: the signed data moved aside, a forged data part in its place.
    let start = plain_doc.find("<DLBLai").unwrap();
    let end = plain_doc.find("</DLBLai>").unwrap() + "</DLBLai>".len();
    let signed = &plain_doc[start..end];
    let forged_part =
        signed.replace("<TgTien>135000</TgTien>", "<TgTien>1</TgTien>").replace("Id=\"data\"", "Id=\"x\"");
    let wrapped = plain_doc.replacen(signed, &format!("{forged_part}<TTKhac>{signed}</TTKhac>"), 1);
    assert!(verify_receipt(&wrapped, &trust(), |_| None).is_err(), "a wrapped receipt verifies");
    // The signature moved out of the collector's entry in DSCKS.
    let sig_start = plain_doc.find("<Signature ").unwrap();
    let sig_end = plain_doc.find("</Signature>").unwrap() + "</Signature>".len();
    let signature = &plain_doc[sig_start..sig_end];
    let moved = plain_doc.replacen(signature, "", 1).replacen("</BLai>", &format!("{signature}</BLai>"), 1);
    assert!(verify_receipt(&moved, &trust(), |_| None).is_err(), "a moved signature verifies");
    // A certificate from a CA nobody trusts.
    let stranger_dir = std::env::temp_dir().join(format!("feepay-stranger-{}", unique()));
    let stranger = TestCa::create("Not a licensed CA", years_ago(1), years_ahead(1)).unwrap();
    stranger.save(&stranger_dir).unwrap();
    let foreign = {
        let a = &sample_reference().agencies["BN.TTPVHCC"];
        let signers = std::env::temp_dir().join(format!("feepay-stranger-signers-{}", unique()));
        let (path, _) =
            provision::write_pkcs12(&signers, &stranger, a, None, KeyType::Rsa, years_ago(1), years_ahead(1)).unwrap();
        let set = feepay_runtime::pki::signers::SignerSet::load_dir(path.parent().unwrap(), 1).unwrap();
        let s = set.for_agency("BN.TTPVHCC")[0].clone();
        let mut content = feepay_tests::pki::sample_content();
        content.agency.tax_code = a.tax_code.clone();
        content.seal(s.signer.as_ref()).unwrap().document
    };
    assert!(xmlsec_verify_with(&foreign, &stranger_dir.join("ca.pem")).is_ok(), "well-formed under its own CA");
    assert!(xmlsec_verify(&foreign).is_err(), "xmlsec1 trusts a stranger's CA");
    assert!(matches!(verify_receipt(&foreign, &trust(), |_| None), Err(VerifyError::Certificate(_))));
    issuer.stop().await;
}

fn write_p12_with(
    dir: &Path,
    stem: &str,
    ca: &TestCa,
    subject: testca::Subject,
    from: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
    signing: bool,
) {
    let key = testca::rsa_key().unwrap();
    let public = openssl::pkey::PKey::public_key_from_der(&key.public_key_to_der().unwrap()).unwrap();
    let cert = ca.issue_with_usage(&public, &subject, from, until, signing).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    testca::write_private(&dir.join(format!("{stem}.p12.password")), b"secret").unwrap();
    testca::write_private(&dir.join(format!("{stem}.p12")), &ca.pkcs12(&key, &cert, stem, "secret").unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_never_sign_and_the_payments_wait_with_the_reason() {
    let db = TestDb::new().await;
    let topics = topics();
    let reference = sample_reference();
    let subject = |code: &str| provision::subject_of(&reference.agencies[code]);
    let ca = &test_pki().ca;
    let signers = std::env::temp_dir().join(format!("feepay-signers-{}", unique()));
    // Expired; another body's tax code; an unknown CA; a key for encryption only; and one
    // agency with a good certificate, which goes on issuing.
    write_p12_with(&signers, "BN.TTPVHCC", ca, subject("BN.TTPVHCC"), years_ago(6), years_ago(5), true);
    write_p12_with(&signers, "BN.KINHBAC", ca, subject("BN.TUSON"), years_ago(1), years_ahead(1), true);
    let stranger = TestCa::create("Not a licensed CA", years_ago(1), years_ahead(1)).unwrap();
    write_p12_with(&signers, "BN.TUSON", &stranger, subject("BN.TUSON"), years_ago(1), years_ahead(1), true);
    write_p12_with(&signers, "BN.TIENDU", ca, subject("BN.TIENDU"), years_ago(1), years_ahead(1), false);
    issue_pkcs12(&signers, "HP.TTPVHCC", None, KeyType::Rsa, years_ago(1), years_ahead(1));
    let issuer = spawn_issuer(issuer_settings(&db, &topics, &signers, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    let now = wall_clock();
    let gplx = |id: &str, agency: &str| {
        payment(id, agency, v1::Channel::Counter, vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)], now)
    };
    let agencies = ["BN.TTPVHCC", "BN.KINHBAC", "BN.TUSON", "BN.TIENDU", "HP.TTPVHCC"];
    for a in agencies {
        let id = format!("PG-{u}-{a}");
        produce(&p, &topics.payments_succeeded, &id, &gplx(&id, a), BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "the good certificate's receipt", || async {
        (count(&db.db, &format!("SELECT count(*)::BIGINT AS n FROM receipts WHERE payment_id = 'PG-{u}-HP.TTPVHCC'"))
            .await
            == 1)
            .then_some(())
    })
    .await;
    let parked = eventually(WAIT, "four payments parked", || async {
        let list = feepay_runtime::parking::list(&db.db, false, 100).await.unwrap();
        (list.len() == 4).then_some(list)
    })
    .await;
    let reason = |a: &str| {
        let p = parked.iter().find(|p| p.subject == format!("payment:PG-{u}-{a}")).expect("parked");
        assert_eq!(p.reason_code, "certificate_invalid", "{a}: {}", p.reason);
        p.reason.clone()
    };
    assert!(reason("BN.TTPVHCC").contains("expired on"), "{}", reason("BN.TTPVHCC"));
    let kinhbac = reason("BN.KINHBAC");
    assert!(kinhbac.contains("is for tax code 2300413185, not for the collector's"), "{kinhbac}");
    assert!(reason("BN.TUSON").contains("does not chain to a trusted CA"), "{}", reason("BN.TUSON"));
    assert!(reason("BN.TIENDU").contains("key usage does not allow signing"), "{}", reason("BN.TIENDU"));
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await,
        1,
        "nothing signed by a bad certificate"
    );
    let m = eventually(WAIT, "the parked gauge", || async {
        let m = issuer.metrics().await;
        (metric_value(&m, "feepay_issuer_parked_events", &[("reason", "certificate_invalid")]) == 4.0).then_some(m)
    })
    .await;
    assert!(metric_value(&m, "feepay_issuer_certificate_expiry_seconds", &[("agency", "BN.TTPVHCC")]) < 0.0);

    // The centre gets its renewed certificate: added beside the expired one, no restart.
    issue_pkcs12(&signers, "BN.TTPVHCC", Some("2026"), KeyType::Rsa, years_ago(1), years_ahead(1));
    let id = parked.iter().find(|p| p.subject == format!("payment:PG-{u}-BN.TTPVHCC")).unwrap().id;
    let run =
        receiptctl(&db, &topics, None, &["parked", "retry", &id.to_string(), "--reason", "chứng thư số mới"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let docs = eventually(WAIT, "the renewed certificate signs", || async {
        let d = documents_of(&db, &format!("PG-{u}-BN.TTPVHCC")).await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    xmlsec_verify(&docs[0].0).unwrap();
    let registered = feepay_runtime::pki::registry::get(&db.db, &docs[0].2).await.unwrap().expect("registered");
    assert_eq!(registered.agency_code, "BN.TTPVHCC");
    assert!(registered.not_after > now, "signed with the renewed certificate, not the expired one");
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotates_without_a_restart_and_expiry_is_warned_30_days_ahead() {
    let db = TestDb::new().await;
    let topics = topics();
    let signers = std::env::temp_dir().join(format!("feepay-signers-{}", unique()));
    // The current certificate expires in ten days.
    issue_pkcs12(&signers, "BN.TTPVHCC", None, KeyType::Rsa, years_ago(1), wall_clock() + chrono::Duration::days(10));
    let issuer = spawn_issuer(issuer_settings(&db, &topics, &signers, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;
    let m = issuer.metrics().await;
    let left = metric_value(&m, "feepay_issuer_certificate_expiry_seconds", &[("agency", "BN.TTPVHCC")]);
    assert!(left > 9.0 * 86_400.0 && left <= 10.0 * 86_400.0, "{left}");
    let anchors = test_pki().anchors();
    let list = |dir: &Path| {
        let dir = dir.to_path_buf();
        let anchors = anchors.clone();
        let db = &db;
        let topics = &topics;
        async move {
            receiptctl(
                db,
                topics,
                None,
                &["keys", "list", "--signers", dir.to_str().unwrap(), "--trust-anchors", anchors.to_str().unwrap()],
            )
            .await
        }
    };
    let before = list(&signers).await;
    assert_eq!(before.code, 3, "{before:?}");
    assert!(before.stdout.contains("EXPIRES in 9 day(s)"), "{before:?}");

    let p = producer();
    let u = unique();
    let first = format!("PG-{u}-1");
    produce(&p, &topics.payments_succeeded, &first, &gplx_payment(&first, wall_clock()), BodyFormat::Protobuf).await;
    let old = eventually(WAIT, "a receipt", || async { documents_of(&db, &first).await.pop() }).await;

    // The renewed certificate is added while the old one is still valid.
    issue_pkcs12(&signers, "BN.TTPVHCC", Some("renewed"), KeyType::Ec, years_ago(0), years_ahead(2));
    let second = format!("PG-{u}-2");
    produce(&p, &topics.payments_succeeded, &second, &gplx_payment(&second, wall_clock()), BodyFormat::Protobuf).await;
    let new = eventually(WAIT, "a second receipt", || async { documents_of(&db, &second).await.pop() }).await;
    assert_ne!(old.2, new.2, "the newest valid certificate signs");
    assert!(new.0.contains("ecdsa-sha256"), "the renewed certificate has an EC key");
    for doc in [&old.0, &new.0] {
        xmlsec_verify(doc).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(verify_all_series(&db, &signers).await, 2, "one series, chain intact across the rotation");
    let registered = feepay_runtime::pki::registry::list(&db.db).await.unwrap();
    assert_eq!(registered.len(), 2, "both certificates registered: {registered:?}");
    let after = list(&signers).await;
    assert!(after.stdout.lines().any(|l| l.contains("BN.TTPVHCC+renewed.p12") && l.ends_with("ok")), "{after:?}");

    // What to declare to the tax authority.
    let reg = receiptctl(&db, &topics, None, &["keys", "registration", "--signers", signers.to_str().unwrap()]).await;
    assert_eq!(reg.code, 0, "{reg:?}");
    assert!(reg.stdout.contains("01/ĐKTĐ-CTĐT"), "{reg:?}");
    for r in &registered {
        assert!(reg.stdout.contains(&r.serial), "{} in {reg:?}", r.serial);
    }
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_softhsm2_token_signs_receipts_that_xmlsec1_verifies() {
    let db = TestDb::new().await;
    let topics = topics();
    let work = std::env::temp_dir().join(format!("feepay-hsm-{}", unique()));
    let token = feepay_tests::pki::SoftHsm::new(&work);
    let token_label = "feepay-test";
    // The key is generated inside the token; the certificate comes from the test CA.
    let (pin, signers) = token.with_agency_key(&work, token_label);
    assert!(signers.join("BN.TTPVHCC.pkcs11.toml").exists());
    assert!(!std::fs::read_dir(&signers).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".p12")));
    // The private key is sensitive and never extractable.
    let objects = token.objects(token_label, &pin);
    assert!(objects.contains("Private Key Object; RSA"), "{objects}");
    assert!(objects.contains("never extractable"), "{objects}");

    let ops: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut vars: Vec<(String, String)> = vec![
        ("FEEPAY_KAFKA_BROKERS".into(), brokers()),
        ("FEEPAY_DATABASE_URL".into(), db.url.clone()),
        ("FEEPAY_LOG_FORMAT".into(), "text".into()),
        ("FEEPAY_KAFKA_GROUP_ID".into(), format!("issuer-{}", unique())),
        ("FEEPAY_ISSUER_HTTP_ADDR".into(), ops.to_string()),
        ("SOFTHSM2_CONF".into(), token.conf.display().to_string()),
    ];
    vars.extend(feepay_tests::pki::signer_env(&signers));
    vars.extend(topics.to_env().into_iter().map(|(k, v)| (k.to_string(), v)));
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let env = Env { vars, logs: logs.clone(), topics: topics.names() };
    let mut issuer = env.spawn("feepay-issuer", "issuer", &[]);
    let p = producer();
    let u = unique();
    let ids: Vec<String> = (0..5).map(|i| format!("PG-{u}-{i}")).collect();
    for id in &ids {
        produce(&p, &topics.payments_succeeded, id, &gplx_payment(id, wall_clock()), BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "five receipts signed in the token", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 5).then_some(())
    })
    .await;
    for id in &ids {
        let (doc, _, key_id) = documents_of(&db, id).await.remove(0);
        xmlsec_verify(&doc).unwrap_or_else(|e| panic!("{e}"));
        let registered = feepay_runtime::pki::registry::get(&db.db, &key_id).await.unwrap().expect("registered");
        assert_eq!(registered.key_store, "pkcs11");
    }
    assert_eq!(verify_all_series(&db, &signers).await, 5);
    assert!(issuer.alive(), "see {}", logs.display());
    issuer.term();
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_lost_its_sessions_signs_again_and_one_that_is_gone_is_transient() {
    use cryptoki::session::UserType;
    let work = std::env::temp_dir().join(format!("feepay-hsm-reopen-{}", unique()));
    let token = feepay_tests::pki::SoftHsm::new(&work);
    let label = "feepay-reopen";
    let (pin, signers) = token.with_agency_key(&work, label);
    // This test process is the token's application: the module reads the test's store.
    std::env::set_var("SOFTHSM2_CONF", &token.conf);
    let set = feepay_runtime::pki::signers::SignerSet::load_dir(&signers, 2).expect("signers load");
    let signer = set.for_agency("BN.TTPVHCC").first().expect("the token's signer").signer.clone();
    let cert = openssl::x509::X509::from_der(&signer.certificates()[0]).unwrap();
    let verifies = |sig: &[u8], data: &[u8]| {
        let key = cert.public_key().unwrap();
        let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
        v.update(data).unwrap();
        v.verify(sig).unwrap()
    };
    assert!(verifies(&signer.sign(b"before").expect("signs"), b"before"));

    // Logging out of the token from any session logs every session of the application
    // out, as a token restart does: each session finds itself lost and is reopened.
    let p11 =
        feepay_runtime::pki::signers::module_handle(Path::new(feepay_runtime::pki::signers::DEFAULT_PKCS11_MODULE))
            .unwrap();
    let slot = p11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| p11.get_token_info(*s).unwrap().label().trim() == label)
        .unwrap();
    let other = p11.open_ro_session(slot).unwrap();
    other.logout().expect("the application was logged in");
    for i in 0..4 {
        let data = format!("after {i}");
        let sig = signer.sign(data.as_bytes()).unwrap_or_else(|e| panic!("signature {i} after the logout: {e}"));
        assert!(verifies(&sig, data.as_bytes()));
    }

    // The token's sessions gone and the token with them: not a key problem, a transient one.
    other.login(UserType::User, Some(&cryptoki::types::AuthPin::new(pin.clone()))).ok();
    drop(other);
    let deleted = token.command("softhsm2-util").args(["--delete-token", "--token", label]).output().unwrap();
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let other = p11.open_ro_session(slot);
    if let Ok(o) = &other {
        let _ = o.logout();
    }
    let e = signer.sign(b"gone").expect_err("no token, no signature");
    assert!(e.transient, "{e}");
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_signs_nothing_more_and_its_signatures_after_the_revocation_are_refused() {
    let db = TestDb::new().await;
    let topics = topics();
    let signers = std::env::temp_dir().join(format!("feepay-signers-{}", unique()));
    for agency in ["BN.TTPVHCC", "HP.TTPVHCC"] {
        issue_pkcs12(&signers, agency, None, KeyType::Rsa, years_ago(1), years_ahead(1));
    }
    let issuer = spawn_issuer(issuer_settings(&db, &topics, &signers, &format!("issuer-{}", unique())), clock()).await;
    issuer.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    let pay = |id: &str, agency: &str| {
        payment(id, agency, v1::Channel::Counter, vec![line("LP-GPLX", v1::FeeKind::LePhi, 1, 135_000)], wall_clock())
    };
    let (bn, hp, later) = (format!("PG-{u}-bn"), format!("PG-{u}-hp"), format!("PG-{u}-bn-later"));
    for (id, agency) in [(&bn, "BN.TTPVHCC"), (&hp, "HP.TTPVHCC")] {
        produce(&p, &topics.payments_succeeded, id, &pay(id, agency), BodyFormat::Protobuf).await;
    }
    let signed = |id: String| {
        let db = &db;
        async move { eventually(WAIT, "the receipt", || async { documents_of(db, &id).await.into_iter().next() }).await }
    };
    let (bn_doc, _, bn_cert) = signed(bn.clone()).await;
    let (hp_doc, _, hp_cert) = signed(hp.clone()).await;

    // Bắc Ninh's key is compromised from now on; Hải Phòng's since an hour ago, before its
    // receipt was signed.
    let revoke = |fingerprint: String, since: Option<String>| {
        let (db, topics) = (&db, &topics);
        async move {
            let mut args = vec![
                "certificates",
                "revoke",
                &fingerprint,
                "--reason",
                "key_compromise",
                "--note",
                "lộ khóa",
                "--yes",
            ];
            if let Some(s) = since.as_deref() {
                args.extend(["--since", s]);
            }
            receiptctl(db, topics, None, &args).await
        }
    };
    let now_revoked = revoke(bn_cert.clone(), None).await;
    assert_eq!(now_revoked.code, 0, "{now_revoked:?}");
    assert!(now_revoked.stdout.contains("no receipt was signed with it"), "{now_revoked:?}");
    let backdated = revoke(hp_cert.clone(), Some((wall_clock() - chrono::Duration::hours(1)).to_rfc3339())).await;
    assert_eq!(backdated.code, 0, "{backdated:?}");
    assert!(backdated.stdout.contains("1 receipt(s) were signed with it"), "{backdated:?}");
    let again = revoke(hp_cert.clone(), None).await;
    assert_eq!(again.code, 2, "a revocation is final and recorded once: {again:?}");
    let future = revoke(bn_cert.clone(), Some((wall_clock() + chrono::Duration::hours(1)).to_rfc3339())).await;
    assert_ne!(future.code, 0, "{future:?}");
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'certificates.revoke'").await,
        2
    );

    // The issuer signs nothing more with the revoked certificate: the payment waits.
    produce(&p, &topics.payments_succeeded, &later, &pay(&later, "BN.TTPVHCC"), BodyFormat::Protobuf).await;
    let parked = eventually(WAIT, "the later payment parked", || async {
        let list = feepay_runtime::parking::list(&db.db, false, 100).await.unwrap();
        list.into_iter().find(|p| p.subject == format!("payment:{later}"))
    })
    .await;
    assert_eq!(parked.reason_code, "certificate_invalid", "{}", parked.reason);
    assert!(
        parked.reason.contains("was revoked from") && parked.reason.contains("key_compromise"),
        "{}",
        parked.reason
    );
    assert!(documents_of(&db, &later).await.is_empty());

    // The lookup service: a receipt on record signed before the revocation stays authentic
    // and says so; one signed after it is refused.
    let lookup = spawn_lookup(lookup_settings(&db)).await;
    let verify = |doc: String| {
        let base = lookup.base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/api/v1/verify"))
                .header("content-type", "application/xml")
                .body(doc)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let before = eventually(WAIT, "the lookup reads the revocation", || async {
        let v = verify(bn_doc.clone()).await;
        v.get("certificateRevoked").is_some().then_some(v)
    })
    .await;
    assert_eq!(before["authentic"], true, "{before}");
    assert_eq!(before["certificateRevoked"]["signedAfter"], false, "{before}");
    assert_eq!(before["certificateRevoked"]["reason"], "key_compromise", "{before}");
    assert!(before["summary"].as_str().unwrap().contains("trước khi chứng thư số bị thu hồi"), "{before}");
    let after = verify(hp_doc.clone()).await;
    assert_eq!(after["authentic"], false, "{after}");
    assert_eq!(after["signatureValid"], false, "{after}");
    assert_eq!(after["certificateRevoked"]["signedAfter"], true, "{after}");
    assert!(after["signatureError"].as_str().unwrap().contains("revoked"), "{after}");
    xmlsec_verify(&hp_doc).expect("the signature itself still verifies: only the revocation makes it invalid");
    let keys: serde_json::Value =
        reqwest::get(format!("{}/api/v1/keys", lookup.base)).await.unwrap().json().await.unwrap();
    let listed = keys["certificates"].as_array().unwrap();
    let of = |fp: &str| listed.iter().find(|c| c["fingerprint"] == fp).cloned().unwrap();
    assert_eq!(of(&bn_cert)["revoked"]["reason"], "key_compromise");
    let list = receiptctl(&db, &topics, None, &["certificates", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout.matches("revoked from").count(), 2, "{list:?}");
    lookup.running.stop().await;
    issuer.stop().await;
    let _ = std::fs::remove_dir_all(&signers);
}
