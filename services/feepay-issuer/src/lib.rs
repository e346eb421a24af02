//! The receipt issuer: consumes payment-succeeded and payment-refunded events, applies the
//! waivers in force, and issues (or cancels) signed, gapless e-receipts exactly once per
//! payment, publishing receipt events through a transactional outbox.
//!
//! [`issue::Issuer::process`] is one batch and can be driven directly by tests;
//! [`handler::PaymentsHandler`] is its part of the shared consumer driver; [`app::App`]
//! wires it to Kafka.

pub mod app;
pub mod handler;
pub mod issue;
pub mod metrics;
pub mod signing;
pub mod store;
