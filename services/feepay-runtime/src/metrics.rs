//! Prometheus metrics shared by every service. Names follow
//! `<service>_<noun>_<unit>[_total]`; labels are bounded (topic, outcome, reason, agency,
//! series), never a payment id, a person or an email.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Latency buckets in seconds, from 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Batch size buckets.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0];

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone())).expect("metric names are unique per registry");
    c
}

/// Builds an `IntCounterVec` and registers it.
pub fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// Builds an `IntCounter` and registers it.
pub fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("valid metric"))
}

/// Builds an `IntGauge` and registers it.
pub fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::new(name, help).expect("valid metric"))
}

/// Builds an `IntGaugeVec` and registers it.
pub fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(r, IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

/// Builds a float `Gauge` and registers it.
pub fn fgauge(r: &Registry, name: &str, help: &str) -> Gauge {
    reg(r, Gauge::new(name, help).expect("valid metric"))
}

/// Builds a `Histogram` and registers it.
pub fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    reg(r, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid metric"))
}

/// Builds a `HistogramVec` and registers it.
pub fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    reg(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid metric"))
}

/// Metrics of a consuming service.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub consumed: IntCounterVec,
    pub processed: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub batch_duration: Histogram,
    pub batch_size: Histogram,
    pub lag: IntGaugeVec,
    pub batch_failures: IntCounter,
    pub parked: IntCounterVec,
    pub parked_open: IntGaugeVec,
    pub stalled: IntGauge,
}

impl ConsumerMetrics {
    pub fn new(r: &Registry, service: &str) -> Self {
        ConsumerMetrics {
            consumed: counter_vec(r, &format!("{service}_events_consumed_total"), "Events read from Kafka", &["topic"]),
            processed: counter_vec(
                r,
                &format!("{service}_events_processed_total"),
                "Events processed, by outcome (issued, waived, rejected, duplicate, conflict, cancelled, dead_lettered, ...)",
                &["topic", "outcome"],
            ),
            dead_lettered: counter_vec(r, &format!("{service}_events_dead_lettered_total"), "Events sent to a dead-letter topic", &["topic", "reason"]),
            batch_duration: histogram(r, &format!("{service}_batch_duration_seconds"), "Time to process one batch, commit included", LATENCY_BUCKETS),
            batch_size: histogram(r, &format!("{service}_batch_size_events"), "Events per processed batch", BATCH_BUCKETS),
            lag: gauge_vec(r, &format!("{service}_consumer_lag_messages"), "Messages behind the end of each assigned partition", &["topic", "partition"]),
            batch_failures: counter(r, &format!("{service}_batch_failures_total"), "Attempts to apply a batch (or part of one) that failed"),
            parked: counter_vec(r, &format!("{service}_events_parked_total"), "Events parked because they failed on their own", &["topic", "reason"]),
            parked_open: gauge_vec(r, &format!("{service}_parked_events"), "Parked events waiting for a fix and a retry, by reason", &["reason"]),
            stalled: gauge(r, &format!("{service}_consumer_stalled"), "1 when the consumer holds a batch or has events waiting without committing for FEEPAY_CONSUMER_STALL_SECS"),
        }
    }
}

/// Dead-letter reason codes (see `envelope::DecodeError`).
pub const DEAD_LETTER_REASONS: &[&str] =
    &["undecodable", "unsupported_content_type", "wrong_type", "too_large", "invalid"];

impl ConsumerMetrics {
    /// Creates the series of every known label value at zero, so dashboards and alert
    /// expressions see 0 rather than nothing before the first event.
    pub fn init(&self, topics: &[&str], outcomes: &[&str]) {
        for t in topics {
            self.consumed.with_label_values(&[t]).inc_by(0);
            for o in outcomes {
                self.processed.with_label_values(&[t, o]).inc_by(0);
            }
            for r in DEAD_LETTER_REASONS {
                self.dead_lettered.with_label_values(&[t, r]).inc_by(0);
            }
            for r in crate::parking::REASONS {
                self.parked.with_label_values(&[t, r]).inc_by(0);
            }
        }
        for r in crate::parking::REASONS {
            self.parked_open.with_label_values(&[r]).set(0);
        }
    }

    /// Counts a dead letter the broker acknowledged.
    pub fn count_dead_letter(&self, dl: &feepay_proto::v1::DeadLetter) {
        self.dead_lettered.with_label_values(&[&dl.original_topic, &dl.reason_code]).inc();
        self.processed.with_label_values(&[&dl.original_topic, "dead_lettered"]).inc();
    }
}

/// Metrics of an outbox relay.
#[derive(Clone)]
pub struct OutboxMetrics {
    pub backlog: IntGauge,
    pub oldest_age: Gauge,
    pub published: IntCounter,
    pub publish_delay: Histogram,
}

impl OutboxMetrics {
    pub fn new(r: &Registry, service: &str) -> Self {
        OutboxMetrics {
            backlog: gauge(r, &format!("{service}_outbox_backlog_events"), "Events waiting in the outbox"),
            oldest_age: fgauge(
                r,
                &format!("{service}_outbox_oldest_age_seconds"),
                "Age of the oldest event waiting in the outbox",
            ),
            published: counter(r, &format!("{service}_outbox_published_total"), "Events published from the outbox"),
            publish_delay: histogram(
                r,
                &format!("{service}_outbox_publish_delay_seconds"),
                "Time from outbox insert to broker acknowledgement",
                LATENCY_BUCKETS,
            ),
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(r: &Registry) -> String {
    let enc = prometheus::TextEncoder::new();
    enc.encode_to_string(&r.gather()).unwrap_or_default()
}
