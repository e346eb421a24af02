//! The notifier's part of consuming: receipt and waiver events into the delivery log.

use crate::compose::Event;
use crate::deliveries::Notifier;
use feepay_proto::v1;
use feepay_runtime::consumer::{Applied, Failure, Handler, Record};
use feepay_runtime::envelope::{self, DecodeError};
use feepay_runtime::settings::Topics;
use std::sync::Arc;

/// Decodes a consumed record into a notification event.
pub fn decode(topics: &Topics, m: &Record<'_>) -> Result<Event, DecodeError> {
    let t = m.topic;
    if t == topics.receipts_issued {
        let e: v1::ReceiptIssued = envelope::decode_record(m)?;
        e.receipt
            .as_ref()
            .filter(|r| !r.receipt_id.is_empty())
            .ok_or_else(|| DecodeError::new("invalid", "receipt: is required"))?;
        Ok(Event::Issued(e))
    } else if t == topics.receipts_cancelled {
        let e: v1::ReceiptCancelled = envelope::decode_record(m)?;
        e.receipt
            .as_ref()
            .filter(|r| !r.receipt_id.is_empty())
            .ok_or_else(|| DecodeError::new("invalid", "receipt: is required"))?;
        Ok(Event::Cancelled(e))
    } else if t == topics.receipts_updated {
        // Two event types share the topic; the CloudEvents type says which.
        match m.ce_type {
            Some(<v1::RefundRecorded as feepay_proto::EventType>::TYPE) => {
                let e: v1::RefundRecorded = envelope::decode_record(m)?;
                if e.refund_id.is_empty() || e.payment_id.is_empty() {
                    return Err(DecodeError::new("invalid", "refund_id and payment_id: are required"));
                }
                Ok(Event::Refund(e))
            }
            _ => {
                let e: v1::ReceiptErrorNotified = envelope::decode_record(m)?;
                e.receipt
                    .as_ref()
                    .filter(|r| !r.receipt_id.is_empty() && !e.notice_id.is_empty())
                    .ok_or_else(|| DecodeError::new("invalid", "receipt and notice_id: are required"))?;
                Ok(Event::Notice(e))
            }
        }
    } else {
        let e: v1::WaiverNotice = envelope::decode_record(m)?;
        if e.payment_id.is_empty() {
            return Err(DecodeError::new("invalid", "payment_id: is required"));
        }
        Ok(Event::Waiver(e))
    }
}

/// Consumes `receipts.issued`, `receipts.cancelled`, `receipts.updated` and `payments.waived`.
pub struct NotificationsHandler {
    pub notifier: Arc<Notifier>,
    pub topics: Topics,
}

#[async_trait::async_trait]
impl Handler for NotificationsHandler {
    type Item = Event;

    fn decode(&self, record: &Record<'_>) -> Result<Event, DecodeError> {
        decode(&self.topics, record)
    }

    fn subject(&self, item: &Event) -> String {
        feepay_runtime::ids::subject::notification(&item.notification_id())
    }

    fn agency(&self, item: &Event) -> Option<String> {
        item.agency().map(|a| a.code.clone())
    }

    /// The notifier's events are written by the issuer: one that does not decode is fixed
    /// in the code and replayed as recorded. Its content decides what an official email
    /// says and to whom, so an edited body is never applied (no identity to check it by),
    /// and its dead letters are read by all-agency operators only.
    fn identity(&self, record: &Record<'_>) -> Option<feepay_runtime::dead_letter::Identity> {
        let _ = record;
        None
    }

    async fn apply(&self, items: &[Event]) -> Result<Applied, Failure> {
        let recorded = self.notifier.record(items).await.map_err(|e| Failure::from_db(&e))?;
        let mut applied = Applied::default();
        applied.count("all", "queued", recorded.queued);
        applied.count("all", "skipped", recorded.skipped);
        applied.count("all", "refused", recorded.refused);
        applied.count("all", "duplicate", recorded.duplicates);
        Ok(applied)
    }
}
