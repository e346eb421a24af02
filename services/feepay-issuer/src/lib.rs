//! The receipt issuer: consumes payment-succeeded and payment-refunded events, applies the
//! waivers in force, and issues (or cancels) signed, gapless e-receipts exactly once per
//! payment, publishing receipt events through a transactional outbox.
//!
//! [`issue::Issuer::process`] is one batch in one transaction and can be driven directly by
//! tests; [`app::App`] wires it to Kafka.

pub mod app;
pub mod clock;
pub mod issue;
pub mod keys;
pub mod metrics;
