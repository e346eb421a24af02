//! The issuer's part of consuming: payment and refund records into [`Incoming`] events
//! (the edge: wire types are parsed into domain types here and only here), and a batch
//! into [`Issuer::process`], with its failures classified for the consumer driver.

use crate::issue::{Incoming, IssueError, Issuer};
use feepay_proto::v1;
use feepay_runtime::consumer::{Applied, Failure, Handler, Record};
use feepay_runtime::convert::{parse_payment, parse_refund, ParsedPayment, ParsedRefund};
use feepay_runtime::dead_letter::Identity;
use feepay_runtime::envelope::{self, DecodeError};
use feepay_runtime::ids::subject;
use feepay_runtime::settings::Topics;
use std::sync::Arc;

/// Consumes `payments.succeeded` and `payments.refunded`.
pub struct PaymentsHandler {
    pub issuer: Arc<Issuer>,
    pub topics: Topics,
}

/// Decodes a payment or refund record.
pub fn decode(topics: &Topics, record: &Record<'_>) -> Result<Incoming, DecodeError> {
    let invalid = |e: feepay_runtime::convert::Invalid| DecodeError::new("invalid", e.to_string());
    if record.topic == topics.payments_refunded {
        let raw: v1::PaymentRefunded = envelope::decode_record(record)?;
        Ok(match parse_refund(&raw).map_err(invalid)? {
            ParsedRefund::Valid(refund) => Incoming::refund(refund, raw),
            ParsedRefund::OverLimit { refund_id, payment_id, detail } => {
                Incoming::refund_over_limit(refund_id, payment_id, detail, raw)
            }
        })
    } else {
        let raw: v1::PaymentSucceeded = envelope::decode_record(record)?;
        Ok(match parse_payment(&raw).map_err(invalid)? {
            ParsedPayment::Valid(payment) => Incoming::payment(payment, &raw),
            ParsedPayment::OverLimit(breach) => Incoming::over_limit(breach, &raw),
        })
    }
}

/// What a payment or refund record is, read without validating it: the facts an
/// operator's edit of its dead letter must keep (see `dead_letter::Identity`).
pub fn identity(topics: &Topics, record: &Record<'_>) -> Option<Identity> {
    let lines = |l: &mut dyn Iterator<Item = String>| l.collect::<Vec<_>>().join(";");
    if record.topic == topics.payments_refunded {
        let raw: v1::PaymentRefunded = envelope::decode_record(record).ok()?;
        Some(
            Identity::new(subject::refund(&raw.refund_id), None)
                .fact("refund_id", raw.refund_id.clone())
                .fact("payment_id", raw.payment_id.clone())
                .fact("lines", lines(&mut raw.lines.iter().map(|l| format!("{}={}", l.fee_code, l.amount.trim())))),
        )
    } else {
        let raw: v1::PaymentSucceeded = envelope::decode_record(record).ok()?;
        Some(
            Identity::new(subject::payment(&raw.payment_id), Some(raw.agency_code.clone()))
                .fact("payment_id", raw.payment_id.clone())
                .fact("total_paid", raw.total_paid.trim())
                .fact("currency", raw.currency.clone())
                .fact(
                    "lines",
                    lines(&mut raw.lines.iter().map(|l| format!("{}={}x{}", l.fee_code, l.quantity, l.amount.trim()))),
                ),
        )
    }
}

/// How the consumer driver treats a failed batch.
pub fn classify(e: IssueError) -> Failure {
    match e {
        IssueError::Db(db) => Failure::from_db(&db),
        // Not any event's fault: wait for the data (visible as a stalled consumer).
        IssueError::NoReference | IssueError::Reference(_) => Failure::Transient(e.to_string()),
        other => Failure::Poison(other.to_string()),
    }
}

#[async_trait::async_trait]
impl Handler for PaymentsHandler {
    type Item = Incoming;

    fn decode(&self, record: &Record<'_>) -> Result<Incoming, DecodeError> {
        decode(&self.topics, record)
    }

    fn subject(&self, item: &Incoming) -> String {
        item.subject()
    }

    fn agency(&self, item: &Incoming) -> Option<String> {
        item.agency().map(str::to_string)
    }

    fn identity(&self, record: &Record<'_>) -> Option<Identity> {
        identity(&self.topics, record)
    }

    async fn apply(&self, items: &[Incoming]) -> Result<Applied, Failure> {
        // The issuer counts its outcomes itself, transaction by transaction, after each
        // commit; what it left out is parked by the driver.
        let processed = self.issuer.process(items).await.map_err(classify)?;
        Ok(Applied { outcomes: Vec::new(), park: processed.parked })
    }
}
