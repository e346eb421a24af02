//! The law in force since 1 July 2026 (Decree 254/2026/NĐ-CP, Circular 91/2026/TT-BTC)
//! against the real broker, PostgreSQL and the independent tools: the receipts of a day go
//! to the tax authority signed on the summaries 01/TH-BLĐT of who issued them; an error is
//! notified (04/SS-CTĐT) or the receipt replaced; a delegate's receipt names it; the year
//! turns with its rules and symbols at midnight in Vietnam.

use chrono::{DateTime, TimeZone, Utc};
use feepay_proto::v1;
use feepay_runtime::clock::FixedClock;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment};
use feepay_tests::pki::{summary_schema, xmlsec_verify_document, xsd_validate_with};
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    feepay_domain::numbering::gmt7().with_ymd_and_hms(y, m, d, h, min, s).unwrap().with_timezone(&Utc)
}

/// The daily summaries signed so far: (sender, day, number, supplement, document).
async fn summaries(db: &TestDb) -> Vec<(String, String, i32, i32, String)> {
    db.db
        .query_all(feepay_runtime::sql::raw(
            "SELECT agency_code, period, sequence, supplement, document FROM tax_documents \
             WHERE kind = 'daily_summary' ORDER BY agency_code, period, sequence",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "agency_code").unwrap(),
                r.try_get("", "period").unwrap(),
                r.try_get("", "sequence").unwrap(),
                r.try_get("", "supplement").unwrap(),
                r.try_get("", "document").unwrap(),
            )
        })
        .collect()
}

/// The rows of a summary: (symbol, number, status, related number).
fn rows(doc: &str) -> Vec<(String, String, String, String)> {
    let field = |s: &str, tag: &str| {
        s.split(&format!("<{tag}>")).nth(1).map(|x| x.split('<').next().unwrap().to_string()).unwrap_or_default()
    };
    doc.split("<DLieu>")
        .skip(1)
        .map(|r| (field(r, "KHCTu"), field(r, "SCTu"), field(r, "TThai"), field(r, "SCTuLQuan")))
        .collect()
}

async fn lookup_code(db: &TestDb, payment_id: &str) -> String {
    db.db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT lookup_code FROM receipts WHERE payment_id = $1 ORDER BY number LIMIT 1",
            vec![payment_id.into()],
        ))
        .await
        .unwrap()
        .expect("a receipt")
        .try_get("", "lookup_code")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_receipts_goes_out_signed_on_the_summaries_of_who_issued_them() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let morning = at(2026, 12, 2, 10, 0, 0);
    let clock = Arc::new(FixedClock::new(morning));
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock.clone()).await;
    issuer.wait_ready(WAIT).await;
    let p = producer();
    let u = unique();
    // The centre: three driving licences in its own series; a passport it issues for the
    // police under their delegation (the police's series, the desk's numbers).
    for i in 0..3 {
        let id = format!("PG-{u}-gplx-{i}");
        produce(&p, &topics.payments_succeeded, &id, &gplx_payment(&id, morning), BodyFormat::Protobuf).await;
    }
    let passport = format!("PG-{u}-passport");
    let pp = payment(
        &passport,
        "BN.TTPVHCC",
        v1::Channel::Counter,
        vec![line("LP-HOCHIEU-CAPMOI", v1::FeeKind::LePhi, 1, 100_000)],
        morning,
    );
    produce(&p, &topics.payments_succeeded, &passport, &pp, BodyFormat::Protobuf).await;
    // A ward: a civil-status correction and certified pages, a lệ phí and a phí receipt.
    let ward = format!("PG-{u}-ward");
    let two = payment(
        &ward,
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![
            line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 28_000),
            line("P-CHUNGTHUC", v1::FeeKind::Phi, 5, 7_000),
        ],
        morning,
    );
    produce(&p, &topics.payments_succeeded, &ward, &two, BodyFormat::Json).await;
    eventually(WAIT, "six receipts", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 6).then_some(())
    })
    .await;

    // The delegate's receipt: the police as collector, the desk named with its address,
    // numbered in the desk's range, signed by the desk.
    let doc: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT document FROM receipts WHERE payment_id = $1",
            vec![passport.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "document")
        .unwrap();
    assert!(doc.contains("<KHCTu>26TCA</KHCTu><SCTu>0500000</SCTu>"), "the police's series, the desk's range: {doc}");
    assert!(doc.contains("<DVThu><Ten>Công an thành phố Bắc Ninh</Ten><MST>2300119176</MST>"), "{doc}");
    assert!(doc.contains("<TTruong>UyNhiem.Ten</TTruong><KDLieu>string</KDLieu><DLieu>Trung tâm Phục vụ hành chính công thành phố Bắc Ninh</DLieu>"), "{doc}");
    assert!(
        doc.contains("<TTruong>UyNhiem.DChi</TTruong><KDLieu>string</KDLieu><DLieu>Số 11 đường Lý Thái Tổ"),
        "{doc}"
    );
    let v = feepay_runtime::pki::verify::verify_receipt(&doc, &pki::trust(), |_| None).expect("verifies");
    assert_eq!(v.document.signer_tax_code, "2300290832", "the delegate's certificate signed");
    let lookup = spawn_lookup(lookup_settings(db)).await;
    let code = lookup_code(db, &passport).await;
    let dom = chromium_dom(&format!("{}/tra-cuu/{code}", lookup.base)).await;
    assert!(
        dom.contains("Đơn vị nhận ủy nhiệm lập biên lai: Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"),
        "{dom}"
    );
    assert!(dom.contains("Số 11 đường Lý Thái Tổ"), "{dom}");
    assert!(dom.contains("(đơn vị nhận ủy nhiệm)"), "the page says who signed: {dom}");

    // A wrong personal ID on one licence: a replacement. A wrong address on the ward's
    // receipt: a notice (04/SS-CTĐT, a fee receipt without face value is type 3).
    let wrong_id = lookup_code(db, &format!("PG-{u}-gplx-1")).await;
    // Payments on different keys may be issued in any order: read the number it got.
    let wrong_number: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT lpad(number::TEXT, 7, '0') AS n FROM receipts WHERE lookup_code = $1",
            vec![wrong_id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "n")
        .unwrap();
    let run = receiptctl(
        db,
        topics,
        None,
        &[
            "receipts",
            "correct",
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
    assert!(run.stdout.contains("replaced by EBL01 26TAA 0000004"), "{run:?}");
    let wrong_address = lookup_code(db, &ward).await;
    let run = receiptctl(
        db,
        topics,
        None,
        &[
            "receipts",
            "notify",
            &wrong_address,
            "--reason",
            "Sai địa chỉ người nộp",
            "--payer-address",
            "Phường Kinh Bắc",
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let notice: String = db
        .db
        .query_one(feepay_runtime::sql::raw("SELECT document FROM tax_documents WHERE kind = 'error_notice'"))
        .await
        .unwrap()
        .expect("one notice")
        .try_get("", "document")
        .unwrap();
    assert!(notice.contains("<LCTDT>3</LCTDT><TCTBao>1</TCTBao><LDo>Sai địa chỉ người nộp</LDo>"), "{notice}");
    assert!(notice.contains("<TNNT>Ủy ban nhân dân phường Kinh Bắc</TNNT>"), "{notice}");
    xmlsec_verify_document(&notice, "DLTBao").unwrap_or_else(|e| panic!("xmlsec1 refuses the notice: {e}"));
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM tax_documents WHERE kind = 'error_notice'").await, 1);

    // Before the cut-off nothing is sent: a pass made now (the running issuer's loop makes
    // the same every second) signs nothing.
    let direct = feepay_issuer::issue::Issuer::new(
        db.db.clone(),
        feepay_tests::pki::signing(keys),
        clock.clone(),
        feepay_issuer::metrics::IssuerMetrics::new(),
        topics.names(),
        BodyFormat::Protobuf,
        "/tests".into(),
    );
    assert_eq!(direct.produce_daily_summaries().await.unwrap(), 0, "nothing before 23:00");
    assert!(summaries(db).await.is_empty());
    let passes = |m: &str| metric_value(m, "feepay_issuer_tax_documents_total", &[("kind", "daily_summary")]);

    // 23:00 in Hà Nội: two senders, two signed summaries.
    clock.set(at(2026, 12, 2, 23, 0, 5));
    let sent = eventually(WAIT, "the day's summaries", || async {
        let s = summaries(db).await;
        (s.len() == 2).then_some(s)
    })
    .await;
    let (centre, kinhbac) = (&sent[0], &sent[1]);
    assert_eq!(
        (centre.0.as_str(), centre.1.as_str(), centre.2, centre.3),
        ("BN.KINHBAC", "2026-12-02", 1, 0),
        "sorted by sender"
    );
    let (kinhbac, centre) = (centre, kinhbac);
    assert_eq!((centre.0.as_str(), centre.2, centre.3), ("BN.TTPVHCC", 1, 0));
    let mut centre_rows = rows(&centre.4);
    centre_rows.sort();
    assert_eq!(
        centre_rows,
        [
            ("26TAA".into(), "0000001".into(), "1".into(), String::new()),
            ("26TAA".into(), "0000002".into(), "1".into(), String::new()),
            ("26TAA".into(), "0000003".into(), "1".into(), String::new()),
            ("26TAA".into(), "0000004".into(), "3".into(), wrong_number.clone()),
            ("26TCA".into(), "0500000".into(), "1".into(), String::new()),
        ],
        "the desk sends its own receipts, the police receipt it issued, and the replacement with the receipt it replaces"
    );
    assert_eq!(rows(&kinhbac.4).len(), 2);
    for s in [centre, kinhbac] {
        assert!(
            s.4.contains("<MSo>01/TH-BLĐT</MSo>")
                && s.4.contains("<LKDLieu>N</LKDLieu><KDLieu>02/12/2026</KDLieu><LDau>1</LDau>"),
            "{}",
            s.4
        );
        xmlsec_verify_document(&s.4, "DLBTHop").unwrap_or_else(|e| panic!("xmlsec1 refuses the summary: {e}"));
    }
    assert!(centre
        .4
        .contains("<TNNT>Trung tâm Phục vụ hành chính công thành phố Bắc Ninh</TNNT><MST>2300290832</MST>"));
    xsd_validate_with(&[centre.4.clone(), kinhbac.4.clone()], &summary_schema())
        .unwrap_or_else(|e| panic!("a summary does not match the shipped schema: {e}"));
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts WHERE summary_id IS NULL").await, 0);

    // A receipt issued after the cut-off goes out as the day's first supplement, at the
    // next pass, still on the day.
    clock.set(at(2026, 12, 2, 23, 30, 0));
    let late = format!("PG-{u}-late");
    produce(
        &p,
        &topics.payments_succeeded,
        &late,
        &gplx_payment(&late, at(2026, 12, 2, 23, 29, 0)),
        BodyFormat::Protobuf,
    )
    .await;
    let all = eventually(WAIT, "the supplement", || async {
        let s = summaries(db).await;
        (s.len() == 3).then_some(s)
    })
    .await;
    let supplement = all.iter().find(|s| s.0 == "BN.TTPVHCC" && s.2 == 2).expect("the centre's second document");
    assert_eq!(supplement.3, 1, "BSLThu 1");
    assert!(supplement.4.contains("<LDau>0</LDau><BSLThu>1</BSLThu>"), "{}", supplement.4);
    assert_eq!(rows(&supplement.4), [("26TAA".into(), "0000005".into(), "1".into(), String::new())]);

    // Each went to tax.documents too, byte for byte, and nothing is sent twice.
    let events: Vec<v1::TaxDocumentIssued> = read_topic(&topics.tax_documents, 4, WAIT, decode_event).await;
    let summary_events: Vec<_> = events.iter().filter(|e| e.kind == v1::TaxDocumentKind::DailySummary as i32).collect();
    assert_eq!(summary_events.len(), 3, "{events:?}");
    assert!(summary_events
        .iter()
        .any(|e| e.document == centre.4 && e.sequence == 1 && e.rows == 5 && e.period == "2026-12-02"));
    clock.set(at(2026, 12, 3, 8, 0, 0));
    let m = eventually(WAIT, "a pass on the next day", || async {
        let m = issuer.metrics().await;
        m.contains("feepay_issuer_receipts_unsummarized_past_day 0").then_some(m)
    })
    .await;
    assert_eq!(passes(&m), 3.0);
    assert_eq!(summaries(db).await.len(), 3, "a day's summary is never sent twice");
    lookup.running.stop().await;
    issuer.stop().await;
}

/// 31 December 2026 23:59 and 1 January 2027 00:01 in Hà Nội: the rules of each year
/// (Circular 64/2025's half rate ends with 2026) and each year's symbol and first number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_year_turns_with_its_rules_and_symbols_at_midnight_in_vietnam() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let before = at(2026, 12, 31, 23, 59, 0);
    let clock = Arc::new(FixedClock::new(before));
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock.clone()).await;
    let p = producer();
    let u = unique();
    let passport = |id: &str, amount: i64, when| {
        payment(
            id,
            "BN.TTPVHCC",
            v1::Channel::Counter,
            vec![line("LP-HOCHIEU-CAPMOI", v1::FeeKind::LePhi, 1, amount)],
            when,
        )
    };
    let old = format!("PG-{u}-2026");
    produce(&p, &topics.payments_succeeded, &old, &passport(&old, 100_000, before), BodyFormat::Protobuf).await;
    eventually(WAIT, "the 2026 receipt", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 1).then_some(())
    })
    .await;
    let after = at(2027, 1, 1, 0, 1, 0);
    clock.set(after);
    // At the 2026 rate on 1 January 2027: refused with what is due now.
    let stale = format!("PG-{u}-stale");
    produce(&p, &topics.payments_succeeded, &stale, &passport(&stale, 100_000, after), BodyFormat::Protobuf).await;
    let new = format!("PG-{u}-2027");
    produce(&p, &topics.payments_succeeded, &new, &passport(&new, 200_000, after), BodyFormat::Protobuf).await;
    eventually(WAIT, "the 2027 receipt", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await == 2).then_some(())
    })
    .await;
    let rejected: Vec<v1::PaymentRejected> = read_topic(&topics.payments_rejected, 1, WAIT, decode_event).await;
    assert_eq!(rejected[0].payment_id, stale);
    assert!(rejected[0].detail.contains("paid 100000 đồng but 200000 đồng is due"), "{}", rejected[0].detail);
    let receipts: Vec<(String, i32, i32, i64)> = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT symbol, year, number, total FROM receipts ORDER BY year"))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "symbol").unwrap(),
                r.try_get("", "year").unwrap(),
                r.try_get("", "number").unwrap(),
                r.try_get("", "total").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        receipts,
        [("26TCA".into(), 2026, 500_000, 100_000), ("27TCA".into(), 2027, 500_000, 200_000)],
        "each year's symbol, the desk's range starting again"
    );
    assert_eq!(verify_all_series(db, keys).await, 2);
    issuer.stop().await;
}
