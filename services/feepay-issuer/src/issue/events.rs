//! The events the issuer emits, through the outbox of the transaction that causes them.
//! Their CloudEvents ids are stable (derived from what caused them), so consumers
//! deduplicate a redelivery.

use super::{Issuer, Work};
use chrono::{DateTime, Utc};
use feepay_domain::payment::{Payment, Rejection};
use feepay_domain::receipt::AgencyInfo;
use feepay_domain::waiver::LineAssessment;
use feepay_proto::v1;
use feepay_runtime::convert::{assessed_line_pb, payer_pb, ts};
use feepay_runtime::outbox::OutboxEvent;
use uuid::Uuid;

use feepay_runtime::ids::event as ids;

pub(super) fn agency_pb(a: &AgencyInfo) -> v1::Agency {
    v1::Agency { code: a.code.clone(), name: a.name.clone(), tax_code: a.tax_code.clone(), address: a.address.clone() }
}

fn rejection_pb(reason: Rejection) -> v1::RejectionReason {
    match reason {
        Rejection::UnknownAgency => v1::RejectionReason::UnknownAgency,
        Rejection::UnknownFee => v1::RejectionReason::UnknownFee,
        Rejection::NoSeries => v1::RejectionReason::NoSeries,
        Rejection::AmountMismatch => v1::RejectionReason::AmountMismatch,
        Rejection::ConflictingDuplicate => v1::RejectionReason::ConflictingDuplicate,
        Rejection::InvalidRefund => v1::RejectionReason::InvalidRefund,
        Rejection::KindMismatch => v1::RejectionReason::KindMismatch,
        Rejection::LimitExceeded => v1::RejectionReason::LimitExceeded,
        Rejection::NotCollector => v1::RejectionReason::NotCollector,
    }
}

impl Issuer {
    /// A `PaymentRejected` event (for a payment, or for a refund when `refund_id` is set).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reject_event(
        &self,
        work: &mut Work,
        payment_id: &str,
        refund_id: &str,
        agency: &str,
        dossier: &str,
        reason: Rejection,
        detail: &str,
        id_suffix: &str,
        now: DateTime<Utc>,
    ) {
        let msg = v1::PaymentRejected {
            payment_id: payment_id.to_string(),
            refund_id: refund_id.to_string(),
            agency_code: agency.to_string(),
            dossier_code: dossier.to_string(),
            reason: rejection_pb(reason) as i32,
            detail: detail.to_string(),
            rejected_at: Some(ts(now)),
        };
        work.outbox.push(OutboxEvent::new(
            &self.topics.payments_rejected,
            payment_id,
            &ids::payment_rejected(payment_id, id_suffix),
            &self.source,
            &msg,
            self.format,
        ));
    }

    /// A `WaiverNotice`: lines waived to 0 đ, on no receipt, told to the payer.
    pub(super) fn waiver_notice(
        &self,
        work: &mut Work,
        p: &Payment,
        agency: &AgencyInfo,
        waived: &[LineAssessment],
        now: DateTime<Utc>,
    ) {
        let msg = v1::WaiverNotice {
            payment_id: p.payment_id.clone(),
            agency: Some(agency_pb(agency)),
            payer: Some(payer_pb(&p.payer)),
            dossier_code: p.dossier_code.clone(),
            procedure_code: p.procedure_code.clone(),
            lines: waived.iter().map(assessed_line_pb).collect(),
            noticed_at: Some(ts(now)),
        };
        work.outbox.push(OutboxEvent::new(
            &self.topics.payments_waived,
            &p.payment_id,
            &ids::waiver_notice(&p.payment_id),
            &self.source,
            &msg,
            self.format,
        ));
    }

    /// A `ReceiptIssued` event for a receipt inserted in the same transaction: the outbox
    /// row points at the receipt, whose stored protobuf and document make the event.
    pub(super) fn receipt_issued_event(&self, work: &mut Work, payment_id: &str, receipt_id: Uuid) {
        work.outbox.push(OutboxEvent::receipt_issued(
            &self.topics.receipts_issued,
            payment_id,
            &ids::receipt_issued(receipt_id),
            &self.source,
            receipt_id,
            self.format,
        ));
    }

    /// A `ReceiptErrorNotified` event (Circular 91/2026/TT-BTC Art. 20.1).
    pub(super) fn receipt_error_notified_event(&self, work: &mut Work, event: v1::ReceiptErrorNotified) {
        let payment_id = event.receipt.as_ref().map(|r| r.payment_id.clone()).unwrap_or_default();
        work.outbox.push(OutboxEvent::new(
            &self.topics.receipts_updated,
            &payment_id,
            &ids::receipt_error_notified(&event.notice_id),
            &self.source,
            &event,
            self.format,
        ));
    }

    /// A `RefundRecorded` event.
    pub(super) fn refund_recorded_event(&self, work: &mut Work, event: v1::RefundRecorded) {
        work.outbox.push(OutboxEvent::new(
            &self.topics.receipts_updated,
            &event.payment_id,
            &ids::refund_recorded(&event.refund_id),
            &self.source,
            &event,
            self.format,
        ));
    }

    /// A `ReceiptCancelled` event.
    pub(super) fn receipt_cancelled_event(&self, work: &mut Work, receipt_id: Uuid, event: v1::ReceiptCancelled) {
        let payment_id = event.receipt.as_ref().map(|r| r.payment_id.clone()).unwrap_or_default();
        work.outbox.push(OutboxEvent::new(
            &self.topics.receipts_cancelled,
            &payment_id,
            &ids::receipt_cancelled(receipt_id),
            &self.source,
            &event,
            self.format,
        ));
    }
}

/// The bodies of `ReceiptIssued` events, which the outbox stores by reference: the event is
/// the receipt row itself (its protobuf as issued and its signed document), so each
/// receipt's kilobytes are written once.
pub struct ReceiptIssuedBodies;

#[async_trait::async_trait]
impl feepay_runtime::outbox::ReferencedBodies for ReceiptIssuedBodies {
    async fn bodies(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        refs: &[(Uuid, feepay_runtime::envelope::BodyFormat)],
    ) -> Result<std::collections::HashMap<Uuid, Vec<u8>>, sea_orm::DbErr> {
        use crate::store::receipts;
        use feepay_proto::Message as _;
        use sea_orm::{EntityTrait, QueryFilter, QuerySelect};
        let ids: Vec<Uuid> = refs.iter().map(|(id, _)| *id).collect();
        let rows: Vec<(Uuid, Vec<u8>, String)> = receipts::Entity::find()
            .select_only()
            .columns([receipts::Column::ReceiptId, receipts::Column::ReceiptPb, receipts::Column::Document])
            .filter(feepay_runtime::sql::any_of(receipts::Column::ReceiptId, ids))
            .into_tuple()
            .all(txn)
            .await?;
        let formats: std::collections::HashMap<Uuid, _> = refs.iter().copied().collect();
        let mut bodies = std::collections::HashMap::with_capacity(rows.len());
        for (id, pb, document) in rows {
            let mut receipt = v1::Receipt::decode(pb.as_slice())
                .map_err(|e| sea_orm::DbErr::Custom(format!("stored receipt {id} does not decode: {e}")))?;
            // The event tells of the issue; a later cancellation or replacement is told by
            // its own event.
            receipt.status = v1::ReceiptStatus::Issued as i32;
            receipt.replaced_at = None;
            receipt.replaced_by_receipt_id.clear();
            let event = v1::ReceiptIssued { receipt: Some(receipt), signed_document: document };
            bodies.insert(id, feepay_runtime::envelope::encode_body(&event, formats[&id]));
        }
        Ok(bodies)
    }
}
