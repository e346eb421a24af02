//! Issuer metrics. Labels are bounded: agency and series codes come from reference data.

use feepay_runtime::metrics::{
    counter_vec, gauge, gauge_vec, histogram, ConsumerMetrics, OutboxMetrics, LATENCY_BUCKETS,
};
use prometheus::{Histogram, IntCounterVec, IntGauge, IntGaugeVec, Registry};

/// Metric name prefix.
pub const SERVICE: &str = feepay_runtime::service::ISSUER;

#[derive(Clone)]
pub struct IssuerMetrics {
    pub registry: Registry,
    pub consumer: ConsumerMetrics,
    pub outbox: OutboxMetrics,
    pub receipts_issued: IntCounterVec,
    pub receipts_cancelled: IntCounterVec,
    pub receipts_replaced: IntCounterVec,
    pub errors_notified: IntCounterVec,
    pub amount_collected: IntCounterVec,
    pub amount_waived: IntCounterVec,
    pub payments_rejected: IntCounterVec,
    pub waivers_applied: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub tax_documents: IntCounterVec,
    pub numbering_gaps: IntGauge,
    pub payment_to_receipt: Histogram,
    pub reference_version: IntGauge,
    pub certificate_expiry: IntGaugeVec,
    /// Receipts issued on a past day that no summary 01/TH-BLĐT has listed yet.
    pub summary_overdue: IntGauge,
    /// Refunds received whose payment has not arrived yet, and how long the oldest waits.
    pub refunds_waiting: IntGauge,
    pub refunds_waiting_oldest: IntGauge,
}

impl IssuerMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let m = IssuerMetrics {
            consumer: ConsumerMetrics::new(&r, SERVICE),
            outbox: OutboxMetrics::new(&r, SERVICE),
            receipts_issued: counter_vec(
                &r,
                "feepay_issuer_receipts_issued_total",
                "Receipts issued",
                &["agency", "series"],
            ),
            receipts_cancelled: counter_vec(
                &r,
                "feepay_issuer_receipts_cancelled_total",
                "Receipts cancelled (the rules before 1 July 2026)",
                &["agency", "series"],
            ),
            receipts_replaced: counter_vec(
                &r,
                "feepay_issuer_receipts_replaced_total",
                "Receipts replaced by a correcting receipt (Circular 91/2026/TT-BTC Art. 20.2)",
                &["agency", "series"],
            ),
            errors_notified: counter_vec(
                &r,
                "feepay_issuer_receipt_errors_notified_total",
                "Errors on receipts notified without reissue (Circular 91/2026/TT-BTC Art. 20.1)",
                &["agency"],
            ),
            amount_collected: counter_vec(
                &r,
                "feepay_issuer_amount_collected_dong_total",
                "Amount on issued receipts, whole đồng",
                &["agency", "series"],
            ),
            amount_waived: counter_vec(
                &r,
                "feepay_issuer_amount_waived_dong_total",
                "Amount waived on issued payments, whole đồng",
                &["agency"],
            ),
            payments_rejected: counter_vec(
                &r,
                "feepay_issuer_payments_rejected_total",
                "Payments and refunds rejected, by reason",
                &["reason"],
            ),
            waivers_applied: counter_vec(
                &r,
                "feepay_issuer_waivers_applied_total",
                "Fee lines on which a waiver rule applied",
                &["rule"],
            ),
            conflicts: counter_vec(
                &r,
                "feepay_issuer_conflicting_duplicates_total",
                "Same id, different content",
                &["kind"],
            ),
            tax_documents: counter_vec(
                &r,
                "feepay_issuer_tax_documents_total",
                "Documents signed for the tax authority (daily summaries 01/TH-BLĐT, notices 04/SS-CTĐT, usage reports BC26/BLĐT)",
                &["kind"],
            ),
            numbering_gaps: gauge(
                &r,
                "feepay_issuer_numbering_gaps",
                "Numbers missing or repeated in any series, found by the periodic self-check (must be 0)",
            ),
            payment_to_receipt: histogram(
                &r,
                "feepay_issuer_payment_to_receipt_seconds",
                "Time from a payment's paid_at to its receipt being committed",
                LATENCY_BUCKETS,
            ),
            reference_version: gauge(&r, "feepay_issuer_reference_version", "Version of the reference data in use"),
            certificate_expiry: gauge_vec(
                &r,
                "feepay_issuer_certificate_expiry_seconds",
                "Seconds until each signing certificate in use expires (negative once expired)",
                &["agency", "serial"],
            ),
            summary_overdue: gauge(
                &r,
                "feepay_issuer_receipts_unsummarized_past_day",
                "Receipts issued on a day already over (GMT+7) that no signed summary 01/TH-BLĐT lists yet (must fall to 0)",
            ),
            refunds_waiting: gauge(
                &r,
                "feepay_issuer_refunds_waiting",
                "Refunds received whose payment has not arrived yet (applied when it does)",
            ),
            refunds_waiting_oldest: gauge(
                &r,
                "feepay_issuer_refunds_waiting_oldest_seconds",
                "How long the oldest refund has waited for its payment (0 when none waits)",
            ),
            registry: r,
        };
        for kind in ["usage_report", "error_notice", "daily_summary"] {
            m.tax_documents.with_label_values(&[kind]);
        }
        m
    }
}

impl Default for IssuerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
