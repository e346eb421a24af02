//! The assessment round trip over the real broker: the portal asks, pays what it was told,
//! and the issuer agrees.

use chrono::{TimeZone, Utc};
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::payment;
use feepay_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// (agency, channel, payer categories, fee lines with quantities, assessment time)
type Case = (&'static str, v1::Channel, Vec<v1::BeneficiaryCategory>, Vec<(&'static str, u32)>, chrono::DateTime<Utc>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_assessor_answers_is_what_the_issuer_accepts() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let assessor = spawn_assessor(db, topics, &format!("assessor-{}", unique())).await;
    let issuer = spawn_default_issuer(db, topics, keys).await;
    let p = producer();
    let gmt7 = feepay_domain::numbering::gmt7();
    let u = unique();
    // Cases: (agency, channel, categories, lines, time)
    let cases: Vec<Case> = vec![
        (
            "BN.TTPVHCC",
            v1::Channel::FullyOnline,
            vec![],
            vec![("LP-HOCHIEU-CAPMOI", 1), ("LP-GPLX", 1)],
            gmt7.with_ymd_and_hms(2025, 12, 31, 23, 59, 59).unwrap().into(),
        ),
        (
            "BN.TTPVHCC",
            v1::Channel::FullyOnline,
            vec![],
            vec![("LP-HOCHIEU-CAPMOI", 1), ("LP-GPLX", 1)],
            gmt7.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().into(),
        ),
        (
            "HP.HAIDUONG",
            v1::Channel::PartlyOnline,
            vec![],
            vec![("HP-LP-GPXD", 1), ("P-CHUNGTHUC", 3)],
            gmt7.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap().into(),
        ),
        (
            "BN.TTPVHCC",
            v1::Channel::Counter,
            vec![],
            vec![("LP-CANCUOC-DOI", 1), ("P-LLTP", 1)],
            gmt7.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap().into(),
        ),
        (
            "BN.KINHBAC",
            v1::Channel::Counter,
            vec![v1::BeneficiaryCategory::MeritoriousService],
            vec![("BN-LP-HOTICH-CAICHINH", 1), ("P-CHUNGTHUC", 3)],
            wall_clock(),
        ),
    ];
    for (i, (agency, channel, cats, lines, at)) in cases.iter().enumerate() {
        let req = v1::FeeAssessmentRequested {
            assessment_id: format!("AS-{u}-{i}"),
            agency_code: agency.to_string(),
            procedure_code: "1.000001".into(),
            dossier_code: String::new(),
            channel: *channel as i32,
            paid_online: true,
            categories: cats.iter().map(|c| *c as i32).collect(),
            lines: lines.iter().map(|(f, q)| v1::RequestedLine { fee_code: f.to_string(), quantity: *q }).collect(),
            at: Some(ts(*at)),
            identity_level: 0,
            foreign_payer: false,
        };
        produce(
            &p,
            &topics.assessment_requested,
            &req.assessment_id,
            &req,
            if i % 2 == 0 { BodyFormat::Json } else { BodyFormat::Protobuf },
        )
        .await;
    }
    let mut bad = v1::FeeAssessmentRequested {
        assessment_id: format!("AS-{u}-bad"),
        agency_code: "BN.TTPVHCC".into(),
        ..Default::default()
    };
    bad.channel = 0;
    produce(&p, &topics.assessment_requested, &bad.assessment_id, &bad, BodyFormat::Protobuf).await;

    let answers: Vec<v1::FeeAssessed> = read_topic(&topics.assessed, cases.len(), WAIT, decode_event).await;
    assert_eq!(answers.len(), cases.len());
    let answer = |i: usize| answers.iter().find(|a| a.assessment_id == format!("AS-{u}-{i}")).unwrap();
    assert_eq!(
        answer(0).total_due,
        "215000",
        "passport halved by Circular 64/2025 (below Circular 63's 180 000) + 115 000 under Circular 63 on its last day"
    );
    assert_eq!(
        answer(1).total_due,
        "235000",
        "Circular 63 over: the passport still halved + the licence's full 135 000"
    );
    assert_eq!(
        answer(2).total_due,
        "5000",
        "former Hải Dương: 0 đồng online (Resolution 07/2025) + certified pages 2 000 + 2 000 + 1 000"
    );
    assert_eq!(answer(3).total_due, "225000", "half the identity-card renewal (Circular 64/2025) + 200 000");
    assert_eq!(answer(4).lines[0].amount_due, "0");
    assert_eq!(answer(4).lines[0].waiver.as_ref().unwrap().document_number, "60/2014/QH13");
    let dead: Vec<v1::DeadLetter> =
        read_topic(&format!("{}.dlq", topics.assessment_requested), 1, WAIT, decode_event).await;
    assert!(dead[0].reason.contains("channel: must be"), "{}", dead[0].reason);

    // Pay each answer as assessed: the issuer accepts every one.
    for (i, (agency, channel, cats, _, _)) in cases.iter().enumerate() {
        let a = answer(i);
        let lines = a
            .lines
            .iter()
            .map(|l| v1::PaidLine {
                fee_code: l.fee_code.clone(),
                kind: l.kind,
                quantity: l.quantity,
                amount: l.amount_due.clone(),
            })
            .collect();
        let mut pay = payment(&format!("PG-{u}-{i}"), agency, *channel, lines, wall_clock());
        pay.assessment_id = a.assessment_id.clone();
        pay.assessed_at = a.assessed_at;
        pay.payer.as_mut().unwrap().categories = cats.iter().map(|c| *c as i32).collect();
        produce(&p, &topics.payments_succeeded, &pay.payment_id, &pay, BodyFormat::Protobuf).await;
    }
    eventually(WAIT, "every payment processed", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments").await == cases.len() as i64).then_some(())
    })
    .await;
    assert_eq!(
        count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments WHERE status = 'rejected'").await,
        0,
        "issuer and assessor agree"
    );
    assessor.stop().await;
    issuer.stop().await;
}
