//! Documents for the tax authority under the rules before 1 July 2026 (Decree 123/2020 as
//! amended, Circular 32/2025): once a quarter closed the issuer signed the usage report
//! BC26/BLĐT of every collector (zero reports included), a cancelled receipt got its notice
//! 04/SS-CTĐT, and both went to `tax.documents` as well as the database. Circular
//! 91/2026/TT-BTC has no BC26/BLĐT: no quarter after June 2026 gets one (the day's receipts
//! go on the summaries 01/TH-BLĐT, `tests/law.rs`).

use chrono::{TimeZone, Utc};
use feepay_proto::v1;
use feepay_runtime::clock::FixedClock;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::pki::xmlsec_verify_document;
use feepay_tests::*;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

async fn report(db: &TestDb, agency: &str, period: &str) -> Option<String> {
    use sea_orm::ConnectionTrait;
    db.db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT document FROM tax_documents WHERE kind = 'usage_report' AND agency_code = $1 AND period = $2",
            vec![agency.into(), period.into()],
        ))
        .await
        .unwrap()
        .map(|r| r.try_get("", "document").unwrap())
}

/// The `DLieu` rows of a report: (TLoai, KHMCTu, KHCTu, SLuong, TgTien).
fn rows(doc: &str) -> Vec<(String, String, String, String, String)> {
    let field =
        |s: &str, tag: &str| s.split(&format!("<{tag}>")).nth(1).unwrap().split('<').next().unwrap().to_string();
    doc.split("<DLieu>")
        .skip(1)
        .map(|r| (field(r, "TLoai"), field(r, "KHMCTu"), field(r, "KHCTu"), field(r, "SLuong"), field(r, "TgTien")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_june_2026_a_closed_quarter_got_its_usage_reports_and_a_cancellation_its_notice() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let gmt7 = feepay_domain::numbering::gmt7();
    let august = gmt7.with_ymd_and_hms(2026, 5, 15, 10, 0, 0).unwrap().with_timezone(&Utc);
    let clock = Arc::new(FixedClock::new(august));
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock.clone()).await;
    issuer.wait_ready(WAIT).await;
    // In May, the quarter that closed last is the first: a zero report for each collector.
    let q1 =
        eventually(WAIT, "the zero reports of 2026-Q1", || async { report(db, "BN.TUSON", "2026-Q1").await }).await;
    assert_eq!(rows(&q1), [("1".into(), "EBL01".into(), "26T".into(), "0".into(), "0".into())]);

    let p = producer();
    let u = unique();
    for i in 0..3 {
        let id = format!("PG-{u}-{i}");
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, august), BodyFormat::Protobuf).await;
    }
    let ward = format!("PG-{u}-ward");
    let two = payment(
        &ward,
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![
            line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 28_000),
            line("P-CHUNGTHUC", v1::FeeKind::Phi, 5, 7_000),
        ],
        august,
    );
    produce(&p, &topics.payments_succeeded, &ward, &two, BodyFormat::Json).await;
    eventually(WAIT, "five receipts", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 5).then_some(())
    })
    .await;
    // One driving-licence payment is refunded: its receipt is cancelled, with a notice.
    let refunded = format!("PG-{u}-0");
    produce(
        &p,
        &topics.payments_refunded,
        &refunded,
        &refund(&format!("RF-{u}"), &refunded, vec![], august),
        BodyFormat::Protobuf,
    )
    .await;
    let notice = eventually(WAIT, "the notice of the cancelled receipt", || async {
        use sea_orm::ConnectionTrait;
        db.db
            .query_one(feepay_runtime::sql::raw("SELECT document FROM tax_documents WHERE kind = 'error_notice'"))
            .await
            .unwrap()
            .map(|r| r.try_get::<String>("", "document").unwrap())
    })
    .await;
    assert!(
        notice.contains("<MSo>04/SS-CTĐT</MSo>") && notice.contains("<LDo>Hồ sơ bị từ chối, hoàn trả lệ phí</LDo>"),
        "{notice}"
    );
    assert!(
        notice.contains("<MCQT>23100</MCQT><TCQT>Thuế thành phố Bắc Ninh</TCQT>"),
        "the tax office of the province: {notice}"
    );
    assert!(notice.contains("<NLap>2026-05-15</NLap>"), "{notice}");
    assert!(notice.contains("<LCTDT>3</LCTDT><TCTBao>1</TCTBao>"), "a fee receipt, cancelled: {notice}");
    xmlsec_verify_document(&notice, "DLTBao").unwrap_or_else(|e| panic!("xmlsec1 refuses the notice: {e}"));

    // The quarter closes.
    clock.set(gmt7.with_ymd_and_hms(2026, 7, 2, 8, 0, 0).unwrap().with_timezone(&Utc));
    let centre =
        eventually(WAIT, "the centre's report of 2026-Q2", || async { report(db, "BN.TTPVHCC", "2026-Q2").await })
            .await;
    // Three receipts numbered; the cancelled one's amount no longer counts.
    assert_eq!(rows(&centre), [("1".into(), "EBL01".into(), "26T".into(), "3".into(), "270000".into())]);
    assert!(
        centre.contains("<MSo>BC26/BLĐT</MSo>")
            && centre.contains("<TNgay>2026-04-01</TNgay><DNgay>2026-06-30</DNgay>"),
        "{centre}"
    );
    assert!(centre.contains("<MST>2300290832</MST>"), "{centre}");
    xmlsec_verify_document(&centre, "DLBCTHSDBLai").unwrap_or_else(|e| panic!("xmlsec1 refuses the report: {e}"));
    let kinhbac = eventually(WAIT, "the ward's report", || async { report(db, "BN.KINHBAC", "2026-Q2").await }).await;
    assert_eq!(rows(&kinhbac), [("1".into(), "EBL01".into(), "26T".into(), "2".into(), "35000".into())]);
    let tuson = eventually(WAIT, "a zero report", || async { report(db, "BN.TUSON", "2026-Q2").await }).await;
    assert_eq!(rows(&tuson)[0].3, "0");
    // The former Hải Dương centre ceased before the quarter: no report.
    assert!(report(db, "HD.TTPVHCC", "2026-Q2").await.is_none());

    // Everything went to tax.documents too, byte for byte.
    let expected = count(&db.db, "SELECT count(*)::BIGINT AS n FROM tax_documents").await as usize;
    let events: Vec<v1::TaxDocumentIssued> = read_topic(&topics.tax_documents, expected, WAIT, decode_event).await;
    assert_eq!(events.len(), expected);
    let e = events
        .iter()
        .find(|e| e.period == "2026-Q2" && e.agency.as_ref().unwrap().code == "BN.TTPVHCC")
        .expect("the report's event");
    assert_eq!(e.document, centre);
    assert_eq!(e.kind, v1::TaxDocumentKind::UsageReport as i32);
    // A second pass makes nothing twice, and no quarter from July 2026 has a report.
    let before = count(&db.db, "SELECT count(*)::BIGINT AS n FROM tax_documents").await;
    clock.set(gmt7.with_ymd_and_hms(2026, 10, 2, 8, 0, 0).unwrap().with_timezone(&Utc));
    let direct = feepay_issuer::issue::Issuer::new(
        db.db.clone(),
        feepay_tests::pki::signing(keys),
        clock.clone(),
        feepay_issuer::metrics::IssuerMetrics::new(),
        topics.names(),
        BodyFormat::Protobuf,
        "/tests".into(),
    );
    assert_eq!(direct.produce_usage_reports(false).await.unwrap(), 0, "Circular 91 has no BC26/BLĐT");
    clock.set(gmt7.with_ymd_and_hms(2026, 7, 3, 8, 0, 0).unwrap().with_timezone(&Utc));
    assert_eq!(direct.produce_usage_reports(false).await.unwrap(), 0, "2026-Q2's reports exist already");
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM tax_documents").await, before);
    issuer.stop().await;
}
