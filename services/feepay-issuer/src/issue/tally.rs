//! What committed work reports: metrics and "receipt issued" log lines are collected while a
//! transaction runs and emitted only after it commits, so an attempt that rolled back and
//! is retried is never counted.

use super::{BatchOutcome, Issuer};
use feepay_domain::waiver::LineAssessment;

/// One thing that happened in a transaction, reported once it committed.
#[derive(Debug, Clone)]
pub(super) enum Fact {
    Issued { agency: String, series: String, payment_id: String, number: String, total: i64, latency: Option<f64> },
    Cancelled { agency: String, series: String, payment_id: String, number: String },
    Replaced { agency: String, series: String, payment_id: String, number: String },
    Notified { agency: String, payment_id: String, number: String },
    Waiver { rule: String, agency: String, reduction: i64 },
    Rejected { reason: &'static str, payment_id: String, detail: String },
    Conflict { kind: &'static str },
    TaxDocument { kind: &'static str, agency: String },
}

/// The facts of one transaction.
#[derive(Debug, Default)]
pub(super) struct Tally(Vec<Fact>);

impl Tally {
    pub fn push(&mut self, fact: Fact) {
        self.0.push(fact);
    }

    /// The waivers applied on these lines.
    pub fn waivers(&mut self, agency: &str, lines: &[LineAssessment]) {
        for l in lines {
            if let Some(a) = &l.applied {
                self.0.push(Fact::Waiver {
                    rule: a.rule_id.clone(),
                    agency: agency.to_string(),
                    reduction: a.reduction.dong(),
                });
            }
        }
    }

    /// Emits the metrics and logs. Call only after the transaction committed.
    pub fn emit(self, issuer: &Issuer, outcome: &BatchOutcome) {
        let m = &issuer.metrics;
        for fact in self.0 {
            match fact {
                Fact::Issued { agency, series, payment_id, number, total, latency } => {
                    m.receipts_issued.with_label_values(&[&agency, &series]).inc();
                    m.amount_collected.with_label_values(&[&agency, &series]).inc_by(total as u64);
                    if let Some(l) = latency {
                        m.payment_to_receipt.observe(l);
                    }
                    tracing::info!(%payment_id, receipt_number = %number, %series, %agency, total, "receipt issued");
                }
                Fact::Cancelled { agency, series, payment_id, number } => {
                    m.receipts_cancelled.with_label_values(&[&agency, &series]).inc();
                    tracing::info!(%payment_id, receipt_number = %number, %series, "receipt cancelled");
                }
                Fact::Replaced { agency, series, payment_id, number } => {
                    m.receipts_replaced.with_label_values(&[&agency, &series]).inc();
                    tracing::info!(%payment_id, receipt_number = %number, %series, "receipt replaced");
                }
                Fact::Notified { agency, payment_id, number } => {
                    m.errors_notified.with_label_values(&[&agency]).inc();
                    tracing::info!(%payment_id, receipt_number = %number, %agency, "error on a receipt notified");
                }
                Fact::Waiver { rule, agency, reduction } => {
                    m.waivers_applied.with_label_values(&[&rule]).inc();
                    m.amount_waived.with_label_values(&[&agency]).inc_by(reduction as u64);
                }
                Fact::Rejected { reason, payment_id, detail } => {
                    m.payments_rejected.with_label_values(&[reason]).inc();
                    tracing::info!(%payment_id, reason, %detail, "payment rejected");
                }
                Fact::Conflict { kind } => m.conflicts.with_label_values(&[kind]).inc(),
                Fact::TaxDocument { kind, agency } => {
                    m.tax_documents.with_label_values(&[kind]).inc();
                    tracing::info!(kind, %agency, "document for the tax authority signed");
                }
            }
        }
        let (pay, refund) = (&issuer.topics.payments_succeeded, &issuer.topics.payments_refunded);
        for (topic, label, n) in [
            (pay, "issued", outcome.payments_issued),
            (pay, "waived", outcome.payments_waived),
            (pay, "rejected", outcome.payments_rejected),
            (pay, "duplicate", outcome.duplicates),
            (pay, "conflict", outcome.conflicts),
            (refund, "refund_applied", outcome.refunds_applied),
            (refund, "refund_pending", outcome.refunds_pending),
            (refund, "refund_rejected", outcome.refunds_rejected),
        ] {
            if n > 0 {
                m.consumer.processed.with_label_values(&[topic, label]).inc_by(n as u64);
            }
        }
    }
}
