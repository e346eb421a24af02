//! Citizens, auditors and operators against the running services: the lookup service in a
//! real browser, verification, the operator tool's corrections, reports, dead-letter replay
//! and operator scopes.

use feepay_proto::v1;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::gplx_payment;
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

async fn codes(db: &TestDb, n: usize) -> Vec<String> {
    eventually(WAIT, "receipts", || async {
        let rows = db
            .db
            .query_all(feepay_runtime::sql::raw(
                "SELECT lookup_code FROM receipts WHERE status = 'issued' AND replaces IS NULL ORDER BY number",
            ))
            .await
            .ok()?;
        let codes: Vec<String> = rows.iter().map(|r| r.try_get("", "lookup_code").expect("code")).collect();
        (codes.len() >= n).then_some(codes)
    })
    .await
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_looks_up_and_verifies_a_receipt_and_an_operator_corrects_one() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let lookup = spawn_lookup(lookup_settings(db)).await;
    let p = producer();
    let today = wall_clock();
    for i in 0..3 {
        let id = format!("PG-{}-{i}", unique());
        let mut pay = gplx_payment(&id, today);
        pay.payer.as_mut().unwrap().full_name = "Trần Thị Ngọc Ánh".into();
        pay.payer.as_mut().unwrap().email = "ngoc.anh@example.vn".into();
        produce(&p, &topics.payments_succeeded, &id, &pay, BodyFormat::Protobuf).await;
    }
    let codes = codes(db, 3).await;
    let base = &lookup.base;

    // JSON by code, typed the way people type it; no email in the public view.
    let (status, j) = get_json(&format!("{base}/api/v1/receipts/{}", codes[0])).await;
    assert_eq!(status, 200, "{j}");
    assert_eq!(j["status"], "issued");
    assert_eq!(j["receipt"]["total"], "135000");
    assert_eq!(j["receipt"]["totalInWords"], "Một trăm ba mươi lăm nghìn đồng");
    assert_eq!(j["receipt"]["payer"]["fullName"], "Trần Thị Ngọc Ánh");
    assert!(j["receipt"]["payer"].get("email").is_none(), "no email in public: {j}");
    assert!(!j.to_string().contains("ngoc.anh@"), "{j}");
    let sloppy = codes[0].to_lowercase().replace('-', " ");
    let (status, j2) = get_json(&format!("{base}/api/v1/receipts/{}", sloppy.replace(' ', "%20"))).await;
    assert_eq!(status, 200);
    assert_eq!(j2["receipt"]["receiptId"], j["receipt"]["receiptId"]);

    // A wrong code and a missing one: the same answer, both held to the floor.
    let mut answers = Vec::new();
    for code in ["ZZZZ-ZZZZ-ZZZZ-ZZZZ", "not-a-code", "0000-0000-0000-000"] {
        let t = Instant::now();
        let r = reqwest::get(format!("{base}/api/v1/receipts/{code}")).await.expect("request");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        assert!(t.elapsed() >= Duration::from_millis(150), "{code}: answered before the floor");
        answers.push((status, body));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 404);
    let t = Instant::now();
    let _ = reqwest::get(format!("{base}/api/v1/receipts/{}", codes[1])).await.expect("request");
    assert!(t.elapsed() >= Duration::from_millis(150), "a found receipt is held to the same floor");

    // The signed document, byte for byte, and its verification.
    let stored: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT document FROM receipts WHERE lookup_code = $1",
            vec![codes[0].clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "document")
        .unwrap();
    let dossier: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT dossier_code FROM payments p JOIN receipts r USING (payment_id) WHERE r.lookup_code = $1",
            vec![codes[0].clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "dossier_code")
        .unwrap();
    let r = reqwest::get(format!("{base}/api/v1/receipts/{}/document?xac_minh={dossier}", codes[0])).await.unwrap();
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment; filename=\"bien-lai-EBL01-"), "{disposition}");
    let doc = r.text().await.unwrap();
    assert_eq!(doc, stored);
    let client = reqwest::Client::new();
    let verify = |body: String, ct: &'static str| {
        let client = client.clone();
        let url = format!("{base}/api/v1/verify");
        async move {
            let r = client.post(url).header("content-type", ct).body(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let v = verify(doc.clone(), "application/xml").await;
    assert_eq!(v["authentic"], true, "{v}");
    assert_eq!(v["status"], "issued");
    assert_eq!(v["chain"]["previousMatches"], true, "{v}");
    assert_eq!(v["chain"]["nextMatches"], true, "receipt 1 is followed by 2: {v}");
    let tampered = doc.replace("<TgTien>135000</TgTien>", "<TgTien>13500</TgTien>");
    assert_ne!(tampered, doc);
    let v = verify(tampered, "application/xml").await;
    assert_eq!(v["authentic"], false);
    assert_eq!(v["signatureValid"], false, "{v}");
    let v = verify(serde_json::json!({"lookupCode": codes[2]}).to_string(), "application/json").await;
    assert_eq!(v["authentic"], true, "{v}");
    assert!(v.get("nextMatches").is_none() && v["chain"].get("nextMatches").is_none(), "the last one: {v}");

    // The citizens' form: the document uploaded as a file, the verdict in Vietnamese.
    let boundary = "----feepay-test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"bien-lai.xml\"\r\nContent-Type: application/xml\r\n\r\n{doc}\r\n--{boundary}--\r\n"
    );
    let r = client
        .post(format!("{base}/xac-thuc"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("data-authentic=\"true\""), "{page}");
    assert!(page.contains("Biên lai hợp lệ: chữ ký đúng"), "{page}");

    // The verdict names the certificate that signed, in Vietnamese on the page.
    let v = verify(doc.clone(), "application/xml").await;
    let signer = &v["signer"];
    assert_eq!(signer["taxCode"], "2300290832", "the centre's tax code: {v}");
    assert!(
        signer["subject"].as_str().unwrap().contains("Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"),
        "{v}"
    );
    assert!(signer["issuer"].as_str().unwrap().contains("feepay tests CA"), "{v}");
    assert_eq!(v["layoutVersion"], "2.0.0");
    assert!(page.contains("Chứng thư số của người ký"), "{page}");
    assert!(page.contains("Mã số thuế trong chứng thư</dt><dd>2300290832"), "{page}");
    // Published: the certificate that signed, registered for its agency, and the CA.
    let (status, k) = get_json(&format!("{base}/api/v1/keys")).await;
    assert_eq!(status, 200);
    let cert = k["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fingerprint"] == v["keyId"])
        .unwrap_or_else(|| panic!("the signing certificate is published: {k}"));
    assert_eq!(cert["agencyCode"], "BN.TTPVHCC");
    assert!(cert["certificatePem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(k["trustAnchors"].as_array().unwrap().len(), 1, "{k}");

    // Every documented API path answers with a documented status.
    let doc_api: serde_json::Value = reqwest::get(format!("{base}/openapi.json")).await.unwrap().json().await.unwrap();
    for (path, item) in doc_api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let url = format!("{base}{}", path.replace("{code}", &codes[1]));
            let r = match method.as_str() {
                "get" => client.get(&url).send().await.unwrap(),
                _ => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(serde_json::json!({"lookupCode": codes[1]}).to_string())
                    .send()
                    .await
                    .unwrap(),
            };
            let status = r.status().as_u16().to_string();
            assert!(op["responses"].get(&status).is_some(), "{method} {path} answered {status}, not documented");
        }
    }

    // The page in a real browser: Vietnamese intact, the QR image decoded by the browser.
    let page_url = format!("{base}/tra-cuu/{}", codes[0]);
    let dom = chromium_dom(&page_url).await;
    assert!(dom.contains("BIÊN LAI THU"), "{dom}");
    assert!(dom.contains("Trần Thị Ngọc Ánh"));
    assert!(dom.contains("Một trăm ba mươi lăm nghìn đồng"));
    assert!(dom.contains("135.000"));
    let qr_width: u32 = dom
        .split("data-qr-width=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the browser did not load the QR image: {dom}"));
    assert!(qr_width > 100, "QR image {qr_width}px wide");
    let png = chromium_screenshot(&page_url).await;
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot of {} bytes", png.len());
    let dom = chromium_dom(&format!("{base}/tra-cuu/ZZZZ-ZZZZ-ZZZZ-ZZZZ")).await;
    assert!(dom.contains("Không tìm thấy biên lai"), "{dom}");

    // No receipt is cancelled any more (Circular 91/2026/TT-BTC Art. 20).
    let run =
        receiptctl(db, topics, None, &["receipts", "cancel", &codes[0], "--reason", "Thu nhầm hồ sơ", "--yes"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("Circular 91/2026/TT-BTC Art. 20"), "{run:?}");
    // Receipt 1: a wrong name, the right tax code and amount: notified, not reissued.
    let run = receiptctl(
        db,
        topics,
        None,
        &[
            "receipts",
            "correct",
            &codes[0],
            "--reason",
            "Sai họ tên người nộp",
            "--payer-name",
            "Trần Thị Ngọc Anh",
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("notified"), "{run:?}");
    // A wrong personal identification number (the tax code of an individual) cannot be
    // notified: it needs a replacement.
    let refused = receiptctl(
        db,
        topics,
        None,
        &["receipts", "notify", &codes[1], "--reason", "Sai số định danh", "--payer-id", "027190001235", "--yes"],
    )
    .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("replace the receipt"), "{refused:?}");
    // Receipt 2: replaced with the right number.
    let run = receiptctl(
        db,
        topics,
        None,
        &[
            "receipts",
            "correct",
            &codes[1],
            "--reason",
            "Sai số định danh người nộp",
            "--payer-id",
            "027190001235",
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let new_code = run.stdout.split("lookup code ").nth(1).unwrap().split([' ', ';']).next().unwrap().to_string();
    let again = receiptctl(
        db,
        topics,
        None,
        &["receipts", "replace", &codes[1], "--reason", "lần nữa", "--payer-name", "X Y", "--yes"],
    )
    .await;
    assert_eq!(again.code, 2, "a replaced receipt is corrected through its replacement: {again:?}");
    assert!(again.stderr.contains("no longer valid"), "{again:?}");

    let (_, j) = get_json(&format!("{base}/api/v1/receipts/{}", codes[0])).await;
    assert_eq!(j["status"], "issued", "the notified receipt stands");
    assert_eq!(j["notices"][0]["reason"], "Sai họ tên người nộp", "{j}");
    assert_eq!(j["notices"][0]["payerName"], "Trần Thị Ngọc Anh", "{j}");
    let dom = chromium_dom(&format!("{base}/tra-cuu/{}", codes[0])).await;
    assert!(dom.contains("Thông báo sai sót") && dom.contains("Trần Thị Ngọc Anh"), "{dom}");
    assert!(!dom.contains("ĐÃ BỊ HỦY"), "no cancelled banner for a receipt that cannot be cancelled: {dom}");
    let (_, j) = get_json(&format!("{base}/api/v1/receipts/{}", codes[1])).await;
    assert_eq!(j["status"], "replaced");
    assert!(j["replacedAt"].is_string(), "{j}");
    assert_eq!(j["replacedBy"]["url"], format!("/tra-cuu/{new_code}"));
    let dom = chromium_dom(&format!("{base}/tra-cuu/{}", codes[1])).await;
    assert!(dom.contains("BIÊN LAI ĐÃ ĐƯỢC THAY THẾ"), "{dom}");
    let (_, n) = get_json(&format!("{base}/api/v1/receipts/{new_code}")).await;
    assert_eq!(n["receipt"]["payer"]["personalId"], "027******235", "masked in public: {n}");
    assert_eq!(n["receipt"]["number"], "0000004", "the replacement takes the next number");
    let v = verify(serde_json::json!({"lookupCode": codes[1]}).to_string(), "application/json").await;
    assert_eq!(v["authentic"], true);
    assert_eq!(v["status"], "replaced");
    assert_eq!(v["replacedBy"]["number"], "0000004", "{v}");
    assert!(v["summary"].as_str().unwrap().contains("ĐÃ ĐƯỢC THAY THẾ"), "{v}");
    let html = reqwest::get(format!("{base}/tra-cuu/{new_code}")).await.unwrap().text().await.unwrap();
    assert!(html.contains("Thay thế cho biên lai số 0000002"), "{html}");

    // The notice reaches Kafka through the running issuer's outbox relay; nothing is cancelled.
    let notified: Vec<v1::ReceiptErrorNotified> = read_topic(&topics.receipts_updated, 1, WAIT, decode_event).await;
    assert_eq!(notified[0].reason, "Sai họ tên người nộp");
    assert_eq!(notified[0].corrected_payer.as_ref().unwrap().full_name, "Trần Thị Ngọc Anh");
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts WHERE status = 'cancelled'").await, 0);

    // An auditor proves the series complete and untouched, trusting the published CA.
    let symbol = j["receipt"]["receiptSymbol"].as_str().unwrap().to_string();
    assert_eq!(symbol.len(), 5, "Circular 91's symbol: {symbol}");
    let anchors_file = std::env::temp_dir().join(format!("anchors-{}.pem", unique()));
    std::fs::write(&anchors_file, k["trustAnchors"][0].as_str().unwrap()).unwrap();
    let audit = receiptctl(
        db,
        topics,
        None,
        &[
            "audit",
            "--agency",
            "BN.TTPVHCC",
            "--template",
            "EBL01",
            "--symbol",
            &symbol,
            "--trust-anchors",
            anchors_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(audit.code, 0, "{audit:?}");
    assert!(audit.stdout.contains("OK: BN.TTPVHCC EBL01"), "{audit:?}");
    assert!(audit.stdout.contains("4 receipt(s)"), "{audit:?}");
    assert!(
        audit.stdout.contains("signed by C=VN, O=Trung tâm Phục vụ hành chính công thành phố Bắc Ninh"),
        "{audit:?}"
    );

    // The day's reconciliation.
    let day = feepay_domain::numbering::date_gmt7(today).to_string();
    let recon =
        receiptctl(db, topics, None, &["reconcile", "--date", &day, "--agency", "BN.TTPVHCC", "--format", "csv"]).await;
    assert_eq!(recon.code, 0, "{recon:?}");
    let lines: Vec<&str> = recon.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "agency,provider,payments,paid_vnd,issued,waived_fully,rejected,receipts,superseded,collected_vnd,refunded_vnd,waived_vnd"
    );
    // 3 payments of 135 000; 4 receipts (one replacement), 1 replaced; 3 valid receipts.
    assert_eq!(lines[1], "BN.TTPVHCC,VNPAY,3,405000,3,0,0,4,1,405000,0,0", "{recon:?}");
    let unmatched = receiptctl(
        db,
        topics,
        None,
        &["reconcile", "--date", &day, "--agency", "BN.TTPVHCC", "--format", "csv", "--unmatched"],
    )
    .await;
    assert_eq!(unmatched.stdout.lines().skip(1).count(), 0, "{unmatched:?}");

    // The notice sent the tax authority its signed 04/SS-CTĐT, a fee receipt of type 3.
    let notices = receiptctl(db, topics, None, &["tax", "list", "--kind", "error-notice"]).await;
    assert_eq!(notices.code, 0, "{notices:?}");
    assert!(notices.stdout.contains("1 document(s)"), "{notices:?}");
    let id = notices.stdout.lines().find(|l| l.contains("04/SS-CTĐT")).unwrap().split_whitespace().next().unwrap();
    let shown = receiptctl(db, topics, None, &["tax", "show", id]).await;
    assert!(shown.stdout.contains("<MSo>04/SS-CTĐT</MSo>"), "{shown:?}");
    assert!(
        shown.stdout.contains("<MST>2300290832</MST>") && shown.stdout.contains("<KHMSCTu>EBL01</KHMSCTu>"),
        "{shown:?}"
    );
    assert!(shown.stdout.contains("<LCTDT>3</LCTDT>"), "a fee receipt without face value: {shown:?}");
    assert!(shown.stdout.contains("<LDo>Sai họ tên người nộp</LDo>"), "{shown:?}");
    feepay_tests::pki::xmlsec_verify_document(&shown.stdout, "DLTBao")
        .unwrap_or_else(|e| panic!("xmlsec1 refuses the notice: {e}"));
    let out_dir = std::env::temp_dir().join(format!("tax-{}", unique()));
    let export = receiptctl(db, topics, None, &["tax", "export", "--dir", out_dir.to_str().unwrap()]).await;
    assert!(export.stdout.contains("document(s) written"), "{export:?}");
    assert!(std::fs::read_dir(&out_dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("04-SS-CTDT-BN.TTPVHCC-")));
    // The registration draft: the centre's form and symbol, the transmission on 01/TH-BLĐT,
    // the certificate that signs, and the delegation it receives from the police.
    let draft = receiptctl(db, topics, None, &["tax", "registration", "--agency", "BN.TTPVHCC"]).await;
    assert_eq!(draft.code, 0, "{draft:?}");
    assert!(
        draft.stdout.contains("<MSo>01/ĐKTĐ-CTĐT</MSo>") && draft.stdout.contains("<KHMCTu>EBL01</KHMCTu>"),
        "{draft:?}"
    );
    assert!(draft.stdout.contains(&format!("<KHCTu>{symbol}</KHCTu>")), "{draft:?}");
    assert!(draft.stdout.contains("<CDLBTHop>1</CDLBTHop>"), "the summary 01/TH-BLĐT chosen: {draft:?}");
    assert!(draft.stdout.contains(&format!("<Seri>{}</Seri>", cert["serial"].as_str().unwrap())), "{draft:?}");
    assert!(draft.stdout.contains("<LDKUNhiem>2</LDKUNhiem>"), "the centre receives a delegation: {draft:?}");
    let police = receiptctl(db, topics, None, &["tax", "registration", "--agency", "BN.CA"]).await;
    assert!(
        police.stdout.contains("<LDKUNhiem>1</LDKUNhiem>") && police.stdout.contains("<MST>2300290832</MST>"),
        "the police delegate to the centre: {police:?}"
    );
    assert!(police.stdout.contains("số từ 0500000 đến 0999999"), "{police:?}");

    // The audit log says who did what and why.
    let log = db
        .db
        .query_all(feepay_runtime::sql::raw(
            "SELECT actor, action, reason FROM audit_log WHERE action LIKE 'receipt.%' ORDER BY id",
        ))
        .await
        .unwrap();
    let log: Vec<(String, String, Option<String>)> = log
        .iter()
        .map(|r| (r.try_get("", "actor").unwrap(), r.try_get("", "action").unwrap(), r.try_get("", "reason").unwrap()))
        .collect();
    assert_eq!(
        log,
        [
            ("test-operator".into(), "receipt.notify".into(), Some("Sai họ tên người nộp".into())),
            ("test-operator".into(), "receipt.replace".into(), Some("Sai số định danh người nộp".into())),
        ]
    );

    // Rate limit: a client that asks too often is told to wait.
    let mut tight = lookup_settings(db);
    tight.rate_per_minute = 6;
    tight.burst = 3;
    let limited = spawn_lookup(tight).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = reqwest::get(format!("{}/api/v1/keys", limited.base)).await.unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string())));
    }
    assert_eq!(statuses[..3], [(200, None), (200, None), (200, None)]);
    assert_eq!(statuses[3].0, 429);
    assert!(statuses[3].1.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "{statuses:?}");
    let m = limited.running.metrics().await;
    assert_eq!(metric_value(&m, "feepay_lookup_requests_total", &[("route", "keys"), ("outcome", "limited")]), 2.0);

    limited.running.stop().await;
    lookup.running.stop().await;
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_fixed_dead_letter_within_their_scope() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, .. } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    // A payment whose personal id has a wrong check: invalid, dead-lettered.
    let id = format!("PG-{}", unique());
    let mut bad = gplx_payment(&id, wall_clock());
    bad.payer.as_mut().unwrap().personal_id = "12345".into();
    produce(&p, &topics.payments_succeeded, &id, &bad, BodyFormat::Json).await;
    let dlq = feepay_runtime::settings::dlq_topic(&topics.payments_succeeded);
    let _: Vec<v1::DeadLetter> =
        read_topic(&dlq, 1, WAIT, |m| prost::Message::decode(rdkafka::Message::payload(m).unwrap()).unwrap()).await;

    let list = receiptctl(db, topics, None, &["dead-letters", "list"]).await;
    assert_eq!(list.code, 0, "{list:?}");
    assert!(list.stdout.contains("1 dead letter(s)"), "{list:?}");
    let reference = list.stdout.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(reference.parse::<i64>().is_ok(), "dead letters are named by their id on record: {list:?}");
    assert!(list.stdout.contains(&format!("payment:{id}")), "{list:?}");
    let show = receiptctl(db, topics, None, &["dead-letters", "show", &reference]).await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("reason code:   invalid"), "{show:?}");
    assert!(show.stdout.contains("personal"), "{show:?}");
    assert!(show.stdout.contains("what an edit must keep:") && show.stdout.contains("total_paid="), "{show:?}");

    // Replaying as it is would only dead-letter again: refused.
    let same =
        receiptctl(db, topics, None, &["dead-letters", "replay", &reference, "--reason", "thử lại", "--yes"]).await;
    assert_eq!(same.code, 2, "{same:?}");
    assert!(same.stderr.contains("still does not decode"), "{same:?}");

    // Scopes: once operators exist, a token is needed, and Hải Dương sees nothing of Bắc Ninh.
    let admin =
        receiptctl(db, topics, None, &["operators", "add", "quan-tri", "--role", "admin", "--scope", "*"]).await;
    assert_eq!(admin.code, 0, "{admin:?}");
    let admin_token = admin.stdout.lines().last().unwrap().trim().to_string();
    assert!(admin_token.starts_with("fp_"), "{admin:?}");
    let no_token = receiptctl(db, topics, None, &["dead-letters", "list"]).await;
    assert_eq!(no_token.code, 4, "{no_token:?}");
    let hd = receiptctl(
        db,
        topics,
        Some(&admin_token),
        &["operators", "add", "hd-op", "--role", "operator", "--scope", "HP"],
    )
    .await;
    let hd_token = hd.stdout.lines().last().unwrap().trim().to_string();
    let bn = receiptctl(
        db,
        topics,
        Some(&admin_token),
        &["operators", "add", "bn-op", "--role", "operator", "--scope", "BN"],
    )
    .await;
    let bn_token = bn.stdout.lines().last().unwrap().trim().to_string();
    let bn_auditor = receiptctl(
        db,
        topics,
        Some(&admin_token),
        &["operators", "add", "bn-audit", "--role", "auditor", "--scope", "BN"],
    )
    .await;
    let auditor_token = bn_auditor.stdout.lines().last().unwrap().trim().to_string();
    let whoami = receiptctl(db, topics, Some(&bn_token), &["operators", "whoami"]).await;
    assert!(whoami.stdout.contains("bn-op (operator), scope: BN, BN.CA, BN.KINHBAC"), "{whoami:?}");

    let hd_list = receiptctl(db, topics, Some(&hd_token), &["dead-letters", "list"]).await;
    assert!(hd_list.stdout.contains("0 dead letter(s)"), "{hd_list:?}");
    let hd_show = receiptctl(db, topics, Some(&hd_token), &["dead-letters", "show", &reference]).await;
    assert_eq!(hd_show.code, 4, "{hd_show:?}");

    // The fix: the correct personal id, sent as an edited body by the Bắc Ninh operator.
    let mut fixed = bad.clone();
    fixed.payer.as_mut().unwrap().personal_id = feepay_tests::fixtures::payer("x").personal_id;
    let file = std::env::temp_dir().join(format!("fixed-{}.json", unique()));
    std::fs::write(&file, serde_json::to_string(&fixed).unwrap()).unwrap();
    let denied = receiptctl(
        db,
        topics,
        Some(&auditor_token),
        &[
            "dead-letters",
            "replay",
            &reference,
            "--edited",
            file.to_str().unwrap(),
            "--reason",
            "sửa số định danh",
            "--yes",
        ],
    )
    .await;
    assert_eq!(denied.code, 4, "an auditor does not act: {denied:?}");
    let replay = receiptctl(
        db,
        topics,
        Some(&bn_token),
        &[
            "dead-letters",
            "replay",
            &reference,
            "--edited",
            file.to_str().unwrap(),
            "--reason",
            "sửa số định danh",
            "--yes",
        ],
    )
    .await;
    assert_eq!(replay.code, 0, "{replay:?}");
    // The audit row says exactly what was sent: the hash of the edited body.
    let sent = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&file).unwrap()))
    };
    let audited = count(
        &db.db,
        &format!(
            "SELECT count(*)::BIGINT AS n FROM audit_log WHERE action = 'dead_letters.replay' AND details->>'body_sha256' = '{sent}' AND (details->>'edited')::BOOLEAN"
        ),
    )
    .await;
    assert_eq!(audited, 1, "the replay is audited with the hash of the body sent");
    let receipts = eventually(WAIT, "the replayed payment's receipt", || async {
        let n = count(&db.db, &format!("SELECT count(*) AS n FROM receipts WHERE payment_id = '{id}'")).await;
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(receipts, 1);
    let twice = receiptctl(
        db,
        topics,
        Some(&bn_token),
        &["dead-letters", "replay", &reference, "--edited", file.to_str().unwrap(), "--reason", "lần nữa", "--yes"],
    )
    .await;
    assert_eq!(twice.code, 2, "{twice:?}");
    assert!(twice.stderr.contains("already replayed"), "{twice:?}");

    // Receipts of Bắc Ninh: visible to its operator, invisible and untouchable for Hải Dương.
    let bn_list = receiptctl(db, topics, Some(&bn_token), &["receipts", "list"]).await;
    assert!(bn_list.stdout.contains("1 receipt(s)"), "{bn_list:?}");
    let hd_list = receiptctl(db, topics, Some(&hd_token), &["receipts", "list"]).await;
    assert!(hd_list.stdout.contains("0 receipt(s)"), "{hd_list:?}");
    let hd_cancel =
        receiptctl(db, topics, Some(&hd_token), &["receipts", "cancel", &id, "--reason", "không được phép", "--yes"])
            .await;
    assert_ne!(hd_cancel.code, 0, "{hd_cancel:?}");
    let code: String = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT lookup_code FROM receipts WHERE payment_id = $1",
            vec![id.clone().into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "lookup_code")
        .unwrap();
    let hd_cancel =
        receiptctl(db, topics, Some(&hd_token), &["receipts", "cancel", &code, "--reason", "không được phép", "--yes"])
            .await;
    assert_eq!(hd_cancel.code, 2, "out of scope looks like not found: {hd_cancel:?}");
    let hd_audit = receiptctl(
        db,
        topics,
        Some(&hd_token),
        &["audit", "--agency", "BN.TTPVHCC", "--template", "EBL01", "--symbol", "X"],
    )
    .await;
    assert_eq!(hd_audit.code, 4, "{hd_audit:?}");
    let revoke =
        receiptctl(db, topics, Some(&admin_token), &["operators", "revoke", "hd-op", "--reason", "chuyển công tác"])
            .await;
    assert_eq!(revoke.code, 0, "{revoke:?}");
    let revoked = receiptctl(db, topics, Some(&hd_token), &["receipts", "list"]).await;
    assert_eq!(revoked.code, 4, "{revoked:?}");

    let actions = db
        .db
        .query_all(feepay_runtime::sql::raw("SELECT actor || ' ' || action AS a FROM audit_log ORDER BY id"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "a").unwrap())
        .collect::<Vec<_>>();
    for expected in
        ["test-operator operator.add", "quan-tri operator.add", "bn-op dead_letters.replay", "quan-tri operator.revoke"]
    {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing from {actions:?}");
    }
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_signed_with_a_trusted_but_unregistered_certificate_is_not_valid() {
    let db = TestDb::new().await;
    let lookup = spawn_lookup(lookup_settings(&db)).await;
    // A certificate of the test CA naming Bắc Ninh's tax code, never loaded by the issuer,
    // so never registered: a valid signature by itself proves nothing here.
    let dir = std::env::temp_dir().join(format!("unregistered-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let p12 = feepay_tests::pki::issue_pkcs12(
        &dir,
        "BN.TTPVHCC",
        None,
        feepay_runtime::pki::provision::KeyType::Rsa,
        feepay_tests::pki::years_ago(1),
        feepay_tests::pki::years_ahead(1),
    );
    let password = std::fs::read_to_string(format!("{}.password", p12.display())).unwrap();
    let signer =
        feepay_runtime::pki::signers::SoftSigner::from_pkcs12(&std::fs::read(&p12).unwrap(), password.trim()).unwrap();
    let sealed = feepay_tests::pki::sample_content().seal(&signer).expect("sealed");
    feepay_tests::pki::xmlsec_verify(&sealed.document).expect("the signature itself is valid");
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/verify", lookup.base))
        .header("content-type", "application/xml")
        .body(sealed.document)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["authentic"], false, "{v}");
    assert_eq!(v["signatureValid"], false, "{v}");
    assert!(v["signatureError"].as_str().unwrap_or_default().contains("not registered"), "{v}");
    lookup.running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
