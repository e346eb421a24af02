//! Notifier metrics. Labels are bounded: notification kind, outcome.

use feepay_runtime::metrics::{
    counter_vec, gauge, histogram, histogram_vec, ConsumerMetrics, OutboxMetrics, LATENCY_BUCKETS,
};
use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGauge, Registry};

/// Metric name prefix and outbox producer name.
pub const SERVICE: &str = feepay_runtime::service::NOTIFIER;

#[derive(Clone)]
pub struct NotifierMetrics {
    pub registry: Registry,
    pub consumer: ConsumerMetrics,
    pub outbox: OutboxMetrics,
    pub emails: IntCounterVec,
    pub smtp_latency: HistogramVec,
    pub queued: IntGauge,
    pub oldest_queued: IntGauge,
    pub receipt_to_email: Histogram,
    pub lease_renewals: IntCounterVec,
}

impl NotifierMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let m = NotifierMetrics {
            consumer: ConsumerMetrics::new(&r, SERVICE),
            outbox: OutboxMetrics::new(&r, SERVICE),
            emails: counter_vec(
                &r,
                "feepay_notifier_emails_total",
                "Email outcomes: sent, retrying, failed, skipped (no address)",
                &["kind", "outcome"],
            ),
            smtp_latency: histogram_vec(
                &r,
                "feepay_notifier_smtp_duration_seconds",
                "Time for the SMTP server to accept or refuse a message",
                &["outcome"],
                LATENCY_BUCKETS,
            ),
            queued: gauge(&r, "feepay_notifier_deliveries_queued", "Deliveries waiting to be sent or retried"),
            oldest_queued: gauge(
                &r,
                "feepay_notifier_deliveries_oldest_queued_seconds",
                "Age of the oldest queued delivery",
            ),
            receipt_to_email: histogram(
                &r,
                "feepay_notifier_receipt_to_email_seconds",
                "Time from receipt issue to the SMTP server accepting its email",
                LATENCY_BUCKETS,
            ),
            lease_renewals: counter_vec(
                &r,
                "feepay_notifier_lease_renewals_total",
                "Renewals of the lease on claimed deliveries: renewed, failed (sending stops before it runs out), lost (emails left unsent for the next claim), taken_over (rows of a lapsed lease held by another pass)",
                &["outcome"],
            ),
            registry: r,
        };
        for outcome in ["renewed", "failed", "lost", "taken_over"] {
            m.lease_renewals.with_label_values(&[outcome]);
        }
        m
    }
}

impl Default for NotifierMetrics {
    fn default() -> Self {
        Self::new()
    }
}
