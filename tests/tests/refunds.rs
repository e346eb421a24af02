//! Refunds against the real broker and PostgreSQL: recorded against their receipts under the
//! law in force, cancelling and replacing them under the rules that ended on 30 June 2026.

use chrono::{TimeZone, Utc};
use feepay_proto::v1;
use feepay_runtime::clock::FixedClock;
use feepay_runtime::envelope::BodyFormat;
use feepay_tests::fixtures::{gplx_payment, line, payment, refund};
use feepay_tests::*;
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Since 1 July 2026 a refund of a fee rightly collected leaves its receipts as they are (no
/// receipt is cancelled, Circular 91/2026/TT-BTC Art. 20): it is recorded against them and
/// told to the centre and the payer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_are_recorded_against_receipts_that_stay_as_issued() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    let issuer = stack.issuer().await;
    let p = producer();
    let now = wall_clock();
    let u = unique();
    let full = format!("PG-{u}-full");
    produce(&p, &topics.payments_succeeded, &full, &gplx_payment(&full, now), BodyFormat::Protobuf).await;
    let partial = format!("PG-{u}-partial");
    let two_lines = payment(
        &partial,
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![
            line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 28_000),
            line("P-CHUNGTHUC", v1::FeeKind::Phi, 5, 7_000),
        ],
        now,
    );
    produce(&p, &topics.payments_succeeded, &partial, &two_lines, BodyFormat::Protobuf).await;
    // A refund that arrives before its payment waits for it.
    let early = format!("PG-{u}-early");
    produce(
        &p,
        &topics.payments_refunded,
        &early,
        &refund(&format!("RF-{u}-early"), &early, vec![], now),
        BodyFormat::Json,
    )
    .await;
    eventually(WAIT, "the early refund to be recorded", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM refunds WHERE status = 'pending'").await == 1).then_some(())
    })
    .await;
    produce(&p, &topics.payments_succeeded, &early, &gplx_payment(&early, now), BodyFormat::Protobuf).await;
    eventually(WAIT, "three payments", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments").await == 3).then_some(())
    })
    .await;
    produce(
        &p,
        &topics.payments_refunded,
        &full,
        &refund(&format!("RF-{u}-full"), &full, vec![], now),
        BodyFormat::Protobuf,
    )
    .await;
    let part = refund(&format!("RF-{u}-partial"), &partial, vec![("P-CHUNGTHUC", 4_000)], now);
    produce(&p, &topics.payments_refunded, &partial, &part, BodyFormat::Protobuf).await;
    let too_much = refund(&format!("RF-{u}-toomuch"), &partial, vec![("BN-LP-HOTICH-CAICHINH", 99_000)], now);
    produce(&p, &topics.payments_refunded, &partial, &too_much, BodyFormat::Protobuf).await;

    let recorded: Vec<v1::RefundRecorded> = read_topic(&topics.receipts_updated, 3, WAIT, decode_event).await;
    assert_eq!(recorded.len(), 3);
    let by_refund = |id: &str| recorded.iter().find(|r| r.refund_id == id).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(by_refund(&format!("RF-{u}-full")).total, "135000");
    assert_eq!(by_refund(&format!("RF-{u}-early")).total, "135000", "pending refund recorded when its payment came");
    let p4 = by_refund(&format!("RF-{u}-partial"));
    assert_eq!(p4.total, "4000");
    assert_eq!(p4.receipts.len(), 1, "only the phí receipt is touched");
    assert_eq!(p4.receipts[0].lines, vec![v1::RefundedLine { fee_code: "P-CHUNGTHUC".into(), amount: "4000".into() }]);
    assert!(p4.payer.as_ref().is_some_and(|p| !p.email.is_empty()), "the payer is told");
    // Every receipt stands as issued: nothing cancelled, nothing replaced.
    for id in [&full, &early, &partial] {
        assert!(receipts_of(db, id).await.iter().all(|r| r.3 == "issued"), "{id}");
    }
    assert_eq!(receipts_of(db, &partial).await.len(), 2);
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 4);
    let allocation: serde_json::Value = db
        .db
        .query_one(feepay_runtime::sql::stmt(
            "SELECT allocation FROM refunds WHERE refund_id = $1",
            vec![format!("RF-{u}-partial").into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "allocation")
        .unwrap();
    assert_eq!(allocation[0]["fee_code"], "P-CHUNGTHUC");
    assert_eq!(allocation[0]["amount"], 4000);
    let rejected: Vec<v1::PaymentRejected> = read_topic(&topics.payments_rejected, 1, WAIT, decode_event).await;
    assert_eq!(rejected[0].reason, v1::RejectionReason::InvalidRefund as i32);
    assert!(rejected[0].detail.contains("exceeds what was collected"), "{}", rejected[0].detail);
    // Receipts are never deleted, even by hand.
    db.db.execute_unprepared("DELETE FROM receipts").await.unwrap();
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 4);
    assert_eq!(verify_all_series(db, keys).await, 4);
    issuer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_1_july_2026_refunds_cancelled_their_receipts_and_replaced_the_rest() {
    let stack = TestStack::new().await;
    let TestStack { db, topics, keys } = &stack;
    // The rules of Decree 123/2020 and Circular 32/2025, while they applied.
    let now = feepay_domain::numbering::gmt7().with_ymd_and_hms(2026, 6, 15, 10, 0, 0).unwrap().with_timezone(&Utc);
    let clock = Arc::new(FixedClock::new(now));
    let issuer = spawn_issuer(issuer_settings(db, topics, keys, &format!("issuer-{}", unique())), clock).await;
    let p = producer();
    let u = unique();
    let full = format!("PG-{u}-full");
    produce(&p, &topics.payments_succeeded, &full, &gplx_payment(&full, now), BodyFormat::Protobuf).await;
    let partial = format!("PG-{u}-partial");
    let two_lines = payment(
        &partial,
        "BN.KINHBAC",
        v1::Channel::Counter,
        vec![
            line("BN-LP-HOTICH-CAICHINH", v1::FeeKind::LePhi, 1, 28_000),
            line("P-CHUNGTHUC", v1::FeeKind::Phi, 5, 7_000),
        ],
        now,
    );
    produce(&p, &topics.payments_succeeded, &partial, &two_lines, BodyFormat::Protobuf).await;
    // A refund that arrives before its payment waits for it.
    let early = format!("PG-{u}-early");
    produce(
        &p,
        &topics.payments_refunded,
        &early,
        &refund(&format!("RF-{u}-early"), &early, vec![], now),
        BodyFormat::Json,
    )
    .await;
    eventually(WAIT, "the early refund to be recorded", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM refunds WHERE status = 'pending'").await == 1).then_some(())
    })
    .await;
    produce(&p, &topics.payments_succeeded, &early, &gplx_payment(&early, now), BodyFormat::Protobuf).await;
    eventually(WAIT, "three payments", || async {
        (count(&db.db, "SELECT count(*)::BIGINT AS n FROM payments").await == 3).then_some(())
    })
    .await;

    produce(
        &p,
        &topics.payments_refunded,
        &full,
        &refund(&format!("RF-{u}-full"), &full, vec![], now),
        BodyFormat::Protobuf,
    )
    .await;
    produce(
        &p,
        &topics.payments_refunded,
        &partial,
        &refund(&format!("RF-{u}-partial"), &partial, vec![("P-CHUNGTHUC", 4_000)], now),
        BodyFormat::Protobuf,
    )
    .await;
    let too_much = refund(&format!("RF-{u}-toomuch"), &partial, vec![("BN-LP-HOTICH-CAICHINH", 99_000)], now);
    produce(&p, &topics.payments_refunded, &partial, &too_much, BodyFormat::Protobuf).await;

    let cancelled: Vec<v1::ReceiptCancelled> = read_topic(&topics.receipts_cancelled, 3, WAIT, decode_event).await;
    assert_eq!(cancelled.len(), 3);
    let full_receipts = receipts_of(db, &full).await;
    assert_eq!(full_receipts.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["cancelled"]);
    let early_receipts = receipts_of(db, &early).await;
    assert_eq!(
        early_receipts.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        ["cancelled"],
        "pending refund applied when its payment came"
    );
    // Lệ phí and phí on two receipts; the refund of certified pages replaces the phí one.
    let partial_receipts = receipts_of(db, &partial).await;
    assert_eq!(partial_receipts.len(), 3, "{partial_receipts:?}");
    let statuses: Vec<&str> = partial_receipts.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "cancelled").count(), 1, "{partial_receipts:?}");
    let last = partial_receipts.iter().map(|r| r.2).max().unwrap();
    assert_eq!(last, partial_receipts.iter().map(|r| r.2).min().unwrap() + 2, "the replacement takes the next number");
    let c = cancelled.iter().find(|c| c.receipt.as_ref().unwrap().payment_id == partial).unwrap();
    assert!(!c.replaced_by_receipt_id.is_empty());
    let issued: Vec<v1::ReceiptIssued> = read_topic(&topics.receipts_issued, 5, WAIT, decode_event).await;
    let replacement =
        issued.iter().filter_map(|e| e.receipt.as_ref()).find(|r| r.receipt_id == c.replaced_by_receipt_id).unwrap();
    assert_eq!(replacement.total, "3000", "7 000 collected for certified pages, 4 000 refunded");
    assert_eq!(replacement.replaces_receipt_id, c.receipt.as_ref().unwrap().receipt_id);
    assert!(issued.iter().any(|e| e.signed_document.contains("<TTruong>BLThayThe.SCTu</TTruong>")));
    assert!(issued.iter().all(|e| e.receipt.as_ref().unwrap().receipt_symbol == "26T"), "Circular 32's symbol");
    let rejected: Vec<v1::PaymentRejected> = read_topic(&topics.payments_rejected, 1, WAIT, decode_event).await;
    assert_eq!(rejected[0].reason, v1::RejectionReason::InvalidRefund as i32);
    assert!(rejected[0].detail.contains("exceeds what was collected"), "{}", rejected[0].detail);
    // Receipts are never deleted, even by hand.
    db.db.execute_unprepared("DELETE FROM receipts").await.unwrap();
    assert_eq!(count(&db.db, "SELECT count(*)::BIGINT AS n FROM receipts").await, 5);
    assert_eq!(verify_all_series(db, keys).await, 5);
    // A cancelled receipt of those days and its replacement stand before xmlsec1 too.
    for e in issued.iter().filter(|e| e.signed_document.contains("BLThayThe.SCTu")) {
        xmlsec_verify(&e.signed_document).unwrap_or_else(|err| panic!("xmlsec1 refuses a replacement: {err}"));
    }
    for c in &cancelled {
        let id = &c.receipt.as_ref().unwrap().receipt_id;
        let doc: String = db
            .db
            .query_one(feepay_runtime::sql::stmt(
                "SELECT document FROM receipts WHERE receipt_id::TEXT = $1",
                vec![id.clone().into()],
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get("", "document")
            .unwrap();
        xmlsec_verify(&doc).unwrap_or_else(|err| panic!("xmlsec1 refuses a cancelled receipt: {err}"));
    }
    issuer.stop().await;
}
