//! Shared plumbing of the feepay services: typed settings, the CloudEvents envelope,
//! Kafka clients, PostgreSQL with migrations, the outbox relay, reference data storage,
//! metrics and the operations HTTP endpoint, shutdown and telemetry.
//!
//! Services stay thin: they wire these pieces around the rules of `feepay-domain`.

pub mod audit;
pub mod clock;
pub mod consumer;
pub mod convert;
pub mod correction_requests;
pub mod db;
pub mod dead_letter;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod kafka;
pub mod lifecycle;
pub mod metrics;
pub mod operators;
pub mod outbox;
pub mod parking;
pub mod pki;
pub mod qr;
pub mod refdata;
pub mod retry;
pub mod series_registrations;
pub mod settings;
pub mod signing_keys;
pub mod sql;
pub mod startup;
pub mod tax_documents;

/// The services' names: metric prefixes, the owners of parked events, log fields.
pub mod service {
    pub const ISSUER: &str = "feepay_issuer";
    pub const ASSESSOR: &str = "feepay_assessor";
    pub const NOTIFIER: &str = "feepay_notifier";
    pub const LOOKUP: &str = "feepay_lookup";
}
