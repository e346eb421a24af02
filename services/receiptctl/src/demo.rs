//! `receiptctl demo`: publishes a realistic day at two provinces' one-stop centres and
//! prints what became of it. Used by `make run`.

use crate::table;
use crate::tables::{deliveries, payments, receipts, refunds};
use chrono::{TimeZone, Utc};
use feepay_domain::numbering::gmt7;
use feepay_proto::{v1, EventType, Message};
use feepay_runtime::convert::ts;
use feepay_runtime::envelope::{self, BodyFormat};
use feepay_runtime::kafka::access::Role;
use feepay_runtime::settings::{KafkaSettings, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

struct Demo {
    producer: FutureProducer,
    topics: Topics,
    run: String,
}

fn payer(name: &str, id: &str, email: &str, address: &str, cats: Vec<v1::BeneficiaryCategory>) -> v1::Payer {
    v1::Payer {
        full_name: name.into(),
        personal_id: id.into(),
        tax_code: String::new(),
        email: email.into(),
        address: address.into(),
        categories: cats.into_iter().map(|c| c as i32).collect(),
        passport_number: String::new(),
        identity_level: 0,
    }
}

fn foreigner(name: &str, passport: &str, email: &str, address: &str) -> v1::Payer {
    v1::Payer { passport_number: passport.into(), ..payer(name, "", email, address, vec![]) }
}

fn line(fee: &str, kind: v1::FeeKind, qty: u32, amount: i64) -> v1::PaidLine {
    v1::PaidLine { fee_code: fee.into(), kind: kind as i32, quantity: qty, amount: amount.to_string() }
}

impl Demo {
    async fn send<T: Message + Serialize + EventType>(
        &self,
        topic: &str,
        key: &str,
        msg: &T,
        format: BodyFormat,
    ) -> anyhow::Result<()> {
        let id = format!("demo-{}-{key}", self.run);
        let headers = envelope::headers_for::<T>(&id, "/feepay/demo", crate::session::now(), format);
        let body = envelope::encode_body(msg, format);
        self.producer
            .send(FutureRecord::to(topic).key(key).payload(&body).headers(headers), Duration::from_secs(15))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("publishing to {topic}: {e}"))?;
        Ok(())
    }

    fn payment(
        &self,
        n: u32,
        agency: &str,
        procedure: &str,
        channel: v1::Channel,
        payer: v1::Payer,
        lines: Vec<v1::PaidLine>,
    ) -> v1::PaymentSucceeded {
        let total: i64 = lines.iter().map(|l| l.amount.parse::<i64>().unwrap_or(0)).sum();
        let now = crate::session::now();
        v1::PaymentSucceeded {
            payment_id: format!("PG{}{n:03}", self.run),
            dossier_code: format!(
                "{}-{}-{n:04}",
                agency.replace('.', "-"),
                now.with_timezone(&gmt7()).format("%y%m%d")
            ),
            procedure_code: procedure.into(),
            agency_code: agency.into(),
            channel: channel as i32,
            payer: Some(payer),
            lines,
            total_paid: total.to_string(),
            currency: "VND".into(),
            paid_at: Some(ts(now)),
            provider: ["VNPAY", "NAPAS", "MOMO", "VIETTELMONEY"][n as usize % 4].into(),
            provider_reference: format!("FT{}{n:04}", self.run),
            paid_online: channel != v1::Channel::Counter,
            assessment_id: String::new(),
            assessed_at: None,
            payment_method: if channel == v1::Channel::Counter {
                v1::PaymentMethod::Card
            } else {
                v1::PaymentMethod::NationalPlatform
            } as i32,
        }
    }
}

/// Publishes the scenario, waits for the pipeline, prints the summary.
pub async fn run(out: &mut impl Write, db: &DatabaseConnection, smtp_web: &str) -> anyhow::Result<()> {
    // The demo plays a centre's system: its consumer groups carry the centre's prefix,
    // which is all the centre's broker user may join.
    let kafka = KafkaSettings::from_env(Role::Centre.default_user())?;
    let demo = Demo {
        producer: feepay_runtime::kafka::producer(&kafka)?,
        topics: Topics::from_env(),
        run: crate::session::now().with_timezone(&gmt7()).format("%H%M%S").to_string(),
    };
    let t = demo.topics.clone();
    use v1::BeneficiaryCategory as B;
    use v1::Channel::*;
    use v1::FeeKind::*;
    let bn = "phường Kinh Bắc, thành phố Bắc Ninh";
    let hp = "phường Hải Dương, thành phố Hải Phòng";
    let mut payments = [
        // 1. A driving licence at the city's centre, in its own series 26TAA.
        demo.payment(
            1,
            "BN.TTPVHCC",
            "1.002809",
            Counter,
            payer("Nguyễn Văn An", "027090001234", "nguyenvanan@example.vn", bn, vec![]),
            vec![line("LP-GPLX", LePhi, 1, 135_000)],
        ),
        // 2. A land certificate: phí and lệ phí, two receipts of the centre's series.
        demo.payment(
            2,
            "BN.TTPVHCC",
            "1.003003",
            PartlyOnline,
            payer(
                "Trần Thị Bình",
                "027185004321",
                "tranthibinh@example.vn",
                "phường Tiên Du, thành phố Bắc Ninh",
                vec![],
            ),
            vec![line("BN-P-THAMDINH-GCN", Phi, 1, 500_000), line("BN-LP-GCN", LePhi, 1, 100_000)],
        ),
        // 3. A civil-status correction for a poor household: exempt, no receipt number used.
        demo.payment(
            3,
            "BN.KINHBAC",
            "2.000635",
            Counter,
            payer("Lê Hoàng Cường", "027079002468", "lehoangcuong@example.vn", bn, vec![B::PoorHousehold]),
            vec![line("BN-LP-HOTICH-CAICHINH", LePhi, 1, 0)],
        ),
        // 4. Hải Phòng: a building permit filed online, 0 đồng under the city's Resolution
        //    23/2026/NQ-HĐND, and 5 certified pages (2 000 + 2 000 + 3 × 1 000).
        demo.payment(
            4,
            "HP.HAIDUONG",
            "1.009994",
            FullyOnline,
            payer("Phạm Thu Dung", "030192007531", "phamthudung@example.vn", hp, vec![]),
            vec![line("HP-LP-GPXD", LePhi, 1, 0), line("P-CHUNGTHUC", Phi, 5, 7_000)],
        ),
        // 5. A passport assessed on 15 Dec 2025: Circular 63/2023/TT-BTC (90% online) and
        //    Circular 64/2025/TT-BTC (50%) both applied, the lower amount stands (waivers are
        //    evaluated at the assessment time). The police's fee: the centre's desk issues it
        //    in the police's series 26TCA, numbers from 500 000, under their delegation.
        demo.payment(
            5,
            "BN.TTPVHCC",
            "2.002175",
            FullyOnline,
            payer("Hoàng Minh Đức", "027201009876", "hoangminhduc@example.vn", bn, vec![]),
            vec![line("LP-HOCHIEU-CAPMOI", LePhi, 1, 100_000)],
        ),
        // 6. A household business registration, refunded later: the refund is recorded and
        //    the receipt stays as issued (no receipt is cancelled since 1 July 2026).
        demo.payment(
            6,
            "BN.TUSON",
            "2.000720",
            Counter,
            payer("Vũ Thị Hoa", "027188003579", "vuthihoa@example.vn", "phường Từ Sơn, thành phố Bắc Ninh", vec![]),
            vec![line("BN-LP-DKKD-HKD", LePhi, 1, 100_000)],
        ),
        // 7. Sent to the former Hải Dương centre, which ceased on 30 June 2025: rejected.
        demo.payment(
            7,
            "HD.TTPVHCC",
            "1.000459",
            FullyOnline,
            payer("Đặng Quốc Huy", "030087006543", "dangquochuy@example.vn", hp, vec![]),
            vec![line("HD-LP-GPXD", LePhi, 1, 75_000)],
        ),
        // 8. Three certified pages at a commune, no email given.
        demo.payment(
            8,
            "BN.TIENDU",
            "2.000815",
            PartlyOnline,
            payer("Ngô Thanh Lan", "027195001122", "", "phường Tiên Du, thành phố Bắc Ninh", vec![]),
            vec![line("P-CHUNGTHUC", Phi, 3, 5_000)],
        ),
        // 9. A work permit for a foreign worker, identified by passport only.
        demo.payment(
            9,
            "HP.TTPVHCC",
            "1.000105",
            Counter,
            foreigner("Kim Min-jun", "M12345678", "kim.minjun@example.kr", hp),
            vec![line("HP-LP-GPLD", LePhi, 1, 600_000)],
        ),
        // 10. An identity-card renewal at half rate (Circular 64/2025/TT-BTC, until 31 Dec
        //     2026) and a criminal-record extract: both the police's, issued by the desk
        //     under their delegation, a lệ phí and a phí receipt.
        demo.payment(
            10,
            "BN.TTPVHCC",
            "2.001195",
            Counter,
            payer("Bùi Thị Giang", "027302004455", "buithigiang@example.vn", bn, vec![]),
            vec![line("LP-CANCUOC-DOI", LePhi, 1, 25_000), line("P-LLTP", Phi, 1, 200_000)],
        ),
        // 11. The same renewal for a citizen with a level-2 VNeID account: waived by Circular
        //     117/2026/TT-BTC (15 Aug 2026 – 28 Feb 2027), no receipt, a notice.
        demo.payment(
            11,
            "BN.TTPVHCC",
            "2.001195",
            FullyOnline,
            v1::Payer {
                identity_level: 2, ..payer("Đỗ Văn Khải", "027096001357", "dovankhai@example.vn", bn, vec![])
            },
            vec![line("LP-CANCUOC-DOI", LePhi, 1, 0)],
        ),
    ];
    payments[4].assessed_at =
        Some(ts(gmt7().with_ymd_and_hms(2025, 12, 15, 9, 30, 0).single().expect("valid").with_timezone(&Utc)));
    payments[4].assessment_id = format!("AS{}005", demo.run);

    writeln!(out, "publishing {} payments (run {})", payments.len(), demo.run)?;
    for (i, p) in payments.iter().enumerate() {
        let format = if i % 2 == 1 { BodyFormat::Json } else { BodyFormat::Protobuf };
        demo.send(&t.payments_succeeded, &p.payment_id, p, format).await?;
    }
    let refunded = payments[5].payment_id.clone();
    let refund = v1::PaymentRefunded {
        refund_id: format!("RF{}006", demo.run),
        payment_id: refunded.clone(),
        lines: vec![],
        reason: "Hồ sơ đăng ký hộ kinh doanh bị trả lại do trùng tên, hoàn trả lệ phí".into(),
        refunded_at: Some(ts(crate::session::now())),
    };
    demo.send(&t.payments_refunded, &refunded, &refund, BodyFormat::Protobuf).await?;
    let bad = format!("PG{}999", demo.run);
    demo.producer
        .send(
            FutureRecord::to(&t.payments_succeeded)
                .key(&bad)
                .payload(b"{\"paymentId\": \"PG-broken\", \"totalPaid\": \"-1\"")
                .headers(
                    rdkafka::message::OwnedHeaders::new()
                        .insert(rdkafka::message::Header { key: "content-type", value: Some("application/json") })
                        .insert(rdkafka::message::Header { key: "ce_type", value: Some("feepay.v1.PaymentSucceeded") }),
                ),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing: {e}"))?;
    let assessment = v1::FeeAssessmentRequested {
        assessment_id: format!("AS{}100", demo.run),
        agency_code: "BN.KINHBAC".into(),
        procedure_code: "2.000635".into(),
        dossier_code: String::new(),
        channel: FullyOnline as i32,
        paid_online: true,
        categories: vec![B::PersonWithDisabilities as i32],
        lines: vec![
            v1::RequestedLine { fee_code: "BN-LP-HOTICH-CAICHINH".into(), quantity: 1 },
            v1::RequestedLine { fee_code: "P-HOTICH-TRICHLUC".into(), quantity: 3 },
            v1::RequestedLine { fee_code: "P-CHUNGTHUC".into(), quantity: 4 },
        ],
        at: None,
        identity_level: 2,
        foreign_payer: false,
    };
    demo.send(&t.assessment_requested, &assessment.assessment_id, &assessment, BodyFormat::Json).await?;
    writeln!(out, "published: {} payments, 1 refund, 1 malformed event, 1 fee-assessment request", payments.len())?;

    // Wait for the pipeline: 8 payments recorded, the refund applied, emails settled.
    let ids: Vec<String> = payments.iter().map(|p| p.payment_id.clone()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    loop {
        let ours = || ids.iter().cloned();
        let p = payments::Entity::find().filter(payments::Column::PaymentId.is_in(ours())).count(db).await? as i64;
        let r = refunds::Entity::find()
            .filter(refunds::Column::RefundId.eq(refund.refund_id.as_str()))
            .filter(refunds::Column::Status.eq("applied"))
            .count(db)
            .await? as i64;
        let d = deliveries::Entity::find().filter(deliveries::Column::PaymentId.is_in(ours())).count(db).await? as i64;
        let q = deliveries::Entity::find()
            .filter(deliveries::Column::PaymentId.is_in(ours()))
            .filter(deliveries::Column::Status.eq("queued"))
            .count(db)
            .await? as i64;
        let rc = receipts::Entity::find().filter(receipts::Column::PaymentId.is_in(ours())).count(db).await? as i64;
        // Expected deliveries: one per receipt, the refund's confirmation, one per waiver
        // notice (payments 3, 4 and 11).
        let expected_deliveries = rc + 1 + 3;
        let status = format!(
            "  … payments recorded {p}/{}, refund applied {r}/1, emails recorded {d}/{expected_deliveries}, queued {q}",
            payments.len()
        );
        if status != last {
            writeln!(out, "{status}")?;
            last = status;
        }
        if p == payments.len() as i64 && r == 1 && q == 0 && d >= expected_deliveries {
            break;
        }
        if std::time::Instant::now() > deadline {
            writeln!(out, "the pipeline did not settle within 90 s; see .local/logs/*.log")?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    writeln!(out, "\n== Receipts (biên lai điện tử) ==")?;
    let rows = receipts::Entity::find()
        .filter(receipts::Column::PaymentId.is_in(ids.iter().cloned()))
        .order_by_asc(receipts::Column::IssuedAt)
        .order_by_asc(receipts::Column::Number)
        .all(db)
        .await?;
    let mut t_rows = Vec::new();
    for r in rows {
        let receipt = v1::Receipt::decode(r.receipt_pb.as_slice())?;
        let waiver = receipt
            .lines
            .iter()
            .filter_map(|l| l.waiver.as_ref())
            .map(|w| {
                format!(
                    "-{} đ {}",
                    feepay_domain::Vnd::parse(&w.reduction).map(|v| v.grouped()).unwrap_or_default(),
                    w.document_number
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        t_rows.push(vec![
            r.agency_code,
            format!("{} {}", r.template, r.symbol),
            format!("{:07}", r.number),
            receipt.payer.as_ref().map(|p| p.full_name.clone()).unwrap_or_default(),
            feepay_domain::Vnd::new(r.total).map(|v| v.grouped()).unwrap_or_default(),
            receipt.total_in_words.clone(),
            if waiver.is_empty() { "—".into() } else { waiver },
            r.status,
            r.lookup_code,
        ]);
    }
    table::print(
        out,
        &["AGENCY", "SERIES", "NUMBER", "PAYER", "TOTAL (đ)", "IN WORDS", "WAIVER", "STATUS", "LOOKUP CODE"],
        &t_rows,
    )?;

    writeln!(out, "\n== Payments without a receipt ==")?;
    let rows = payments::Entity::find()
        .filter(payments::Column::PaymentId.is_in(ids.iter().cloned()))
        .filter(payments::Column::Status.ne("issued"))
        .order_by_asc(payments::Column::PaymentId)
        .all(db)
        .await?;
    let mut t_rows = Vec::new();
    for r in rows {
        let status = r.status;
        let why = if status == "waived" {
            let lines = r.waived_lines;
            let docs: Vec<String> = lines
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|l| l["waiver"]["documentNumber"].as_str().map(|s| format!("miễn theo {s}")))
                .collect();
            format!("0 đ due, no receipt number used; waiver notice sent ({})", docs.join(", "))
        } else {
            format!("{}: {}", r.reason.unwrap_or_default(), r.detail.unwrap_or_default())
        };
        t_rows.push(vec![r.payment_id, r.agency_code, status, why]);
    }
    table::print(out, &["PAYMENT", "AGENCY", "OUTCOME", "WHY"], &t_rows)?;

    writeln!(out, "\n== Emails ==")?;
    let rows: Vec<(String, String, i64)> = deliveries::Entity::find()
        .select_only()
        .columns([deliveries::Column::Kind, deliveries::Column::Status])
        .column_as(deliveries::Column::NotificationId.count(), "n")
        .filter(deliveries::Column::PaymentId.is_in(ids.iter().cloned()))
        .group_by(deliveries::Column::Kind)
        .group_by(deliveries::Column::Status)
        .order_by_asc(deliveries::Column::Kind)
        .order_by_asc(deliveries::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut t_rows = Vec::new();
    for (kind, status, n) in rows {
        t_rows.push(vec![kind, status, n.to_string()]);
    }
    table::print(out, &["KIND", "STATUS", "COUNT"], &t_rows)?;
    match reqwest::get(format!("{smtp_web}/api/email")).await {
        Ok(r) => {
            let all: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
            writeln!(out, "the SMTP sink holds {} email(s) in all; read them at {smtp_web}", all.len())?;
        }
        Err(_) => writeln!(out, "the SMTP sink web UI at {smtp_web} is not reachable")?,
    }

    writeln!(out, "\n== Fee assessment answered by the assessor ==")?;
    match read_answer(&kafka, &t.assessed, &assessment.assessment_id).await {
        Ok(Some(a)) => {
            let rows: Vec<Vec<String>> = a
                .lines
                .iter()
                .map(|l| {
                    vec![
                        l.fee_code.clone(),
                        l.quantity.to_string(),
                        l.base_amount.clone(),
                        l.waiver.as_ref().map_or("—".into(), |w| w.document_number.clone()),
                        l.amount_due.clone(),
                    ]
                })
                .collect();
            table::print(out, &["FEE", "QTY", "BASE (đ)", "WAIVER", "DUE (đ)"], &rows)?;
            writeln!(out, "total due: {} đ", a.total_due)?;
        }
        Ok(None) => writeln!(out, "(no answer within 60 s; see .local/logs/assessor.log)")?,
        Err(e) => writeln!(out, "(could not read {}: {e})", t.assessed)?,
    }
    writeln!(out, "\nThe malformed event went to {}.dlq with its reason.", t.payments_succeeded)?;

    writeln!(out, "\n== A correction (Circular 91/2026/TT-BTC Art. 20) ==")?;
    correction(out, db, &payments[1].payment_id).await?;

    writeln!(out, "\n== Documents for the tax authority (signed by the issuer) ==")?;
    let docs = feepay_runtime::tax_documents::list(db, None, None, 200).await?;
    let ours: Vec<uuid::Uuid> = receipts::Entity::find()
        .select_only()
        .column(receipts::Column::ReceiptId)
        .filter(receipts::Column::PaymentId.is_in(ids.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    let notices =
        docs.iter().filter(|d| d.kind == "error_notice" && d.receipt_id.is_some_and(|r| ours.contains(&r))).count();
    writeln!(out, "04/SS-CTĐT notices of errors on this run's receipts: {notices}")?;
    let today = feepay_domain::numbering::date_gmt7(crate::session::now()).to_string();
    let summaries =
        docs.iter().filter(|d| d.kind == "daily_summary" && d.period.as_deref() == Some(today.as_str())).count();
    let cutoff = feepay_runtime::settings::get(&feepay_runtime::settings::catalog::TAX_SUMMARY_CUTOFF);
    writeln!(
        out,
        "01/TH-BLĐT summaries of today signed so far: {summaries}; today's receipts go out, signed by each collector (or delegate), from {cutoff} (FEEPAY_TAX_SUMMARY_CUTOFF, GMT+7)"
    )?;
    writeln!(out, "list them with `receiptctl tax list`, write them out with `receiptctl tax export --dir DIR`")?;

    writeln!(out, "\n== Looking receipts up as a citizen would ==")?;
    let lookup = feepay_runtime::settings::get(&feepay_runtime::settings::catalog::LOOKUP_PUBLIC_URL);
    let rows: Vec<(String, String)> = receipts::Entity::find()
        .select_only()
        .columns([receipts::Column::LookupCode, receipts::Column::Status])
        .filter(receipts::Column::PaymentId.is_in(ids))
        .order_by_desc(receipts::Column::Status)
        .order_by_asc(receipts::Column::IssuedAt)
        .limit(20)
        .into_tuple()
        .all(db)
        .await?;
    let mut shown = std::collections::BTreeSet::new();
    for (code, status) in rows {
        if !shown.insert(status.clone()) {
            continue;
        }
        writeln!(out, "{status:>9}: {lookup}/tra-cuu/{code}")?;
        let verdict = reqwest::Client::new()
            .post(format!("{lookup}/api/v1/verify"))
            .json(&serde_json::json!({ "lookupCode": code }))
            .send()
            .await;
        match verdict {
            Ok(v) => match v.json::<serde_json::Value>().await {
                Ok(v) => writeln!(out, "           {}", v["summary"].as_str().unwrap_or_default())?,
                Err(e) => writeln!(out, "           (the lookup service answered something unexpected: {e})")?,
            },
            Err(_) => writeln!(out, "           (the lookup service at {lookup} is not reachable)")?,
        }
    }
    Ok(())
}

/// Asks the issuer to notify an error on the first receipt of a payment (a wrong address:
/// Art. 20.1, no reissue) and prints what it did.
async fn correction(out: &mut impl Write, db: &DatabaseConnection, payment_id: &str) -> anyhow::Result<()> {
    let Some(r) = receipts::Entity::find()
        .filter(receipts::Column::PaymentId.eq(payment_id))
        .order_by_asc(receipts::Column::Number)
        .one(db)
        .await?
    else {
        writeln!(out, "(no receipt to correct)")?;
        return Ok(());
    };
    let fix = feepay_domain::correction::PayerCorrection {
        address: Some("Số 12 đường Ngô Gia Tự, phường Tiên Du, thành phố Bắc Ninh".into()),
        ..Default::default()
    };
    let id = feepay_runtime::correction_requests::request(
        db,
        &r.lookup_code,
        "notify",
        "Sai địa chỉ người nộp",
        Some(serde_json::to_value(&fix)?),
        "demo",
        crate::session::now(),
    )
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let req = feepay_runtime::correction_requests::get(db, id).await?;
        match req.as_ref().map(|q| q.status.as_str()) {
            Some("done") => {
                writeln!(
                    out,
                    "receipt {} {} {:07}: wrong address notified, the receipt stands; 04/SS-CTĐT signed, the payer emailed",
                    r.template, r.symbol, r.number
                )?;
                break;
            }
            Some("refused") => {
                writeln!(out, "the correction was refused: {}", req.and_then(|q| q.outcome).unwrap_or_default())?;
                break;
            }
            _ if std::time::Instant::now() > deadline => {
                writeln!(out, "the issuer has not carried the correction out within 30 s")?;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    Ok(())
}

/// The assessor's answer to one request, read as the centre reads it: a fresh group of the
/// centre's own prefix from the start of the topic.
async fn read_answer(kafka: &KafkaSettings, topic: &str, id: &str) -> anyhow::Result<Option<v1::FeeAssessed>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message as _;
    let c: StreamConsumer = feepay_runtime::kafka::client_config(kafka)
        .set("group.id", format!("{}-demo-{}", kafka.group_id, uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()?;
    c.subscribe(&[topic])?;
    // The assessor may still be joining its own group when the request goes out; the answer
    // comes once it has, so wait for the answer (bounded), not for a set time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(m) = tokio::time::timeout_at(deadline, c.recv()).await {
        let m = m?;
        if m.key() == Some(id.as_bytes()) {
            return Ok(Some(envelope::decode::<v1::FeeAssessed>(m.headers(), m.payload())?));
        }
    }
    Ok(None)
}
