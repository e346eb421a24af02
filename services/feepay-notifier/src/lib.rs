//! The notifier: emails payers their receipts, cancellations and waiver notices, in
//! Vietnamese, exactly once per receipt event as far as SMTP allows.
//!
//! Events are first recorded in the delivery log (`deliveries`), keyed by a stable
//! notification id, so a redelivered event sends nothing. A sender loop claims due
//! deliveries under a renewed lease, sends them over a pooled SMTP transport, and records the outcome; transient
//! failures are retried on a schedule kept in the database, so retries survive restarts.
//!
//! Rooms: [`settings`], [`metrics`], [`deliveries`] (the delivery log), [`sender`], [`lease`],
//! [`outcomes`] (recording what each email became),
//! [`compose`] (templates, attachments, QR code), [`smtp`] (the connection pool),
//! [`handler`] (its part of the consumer driver), [`app`] (wiring).

pub mod app;
pub mod compose;
pub mod deliveries;
pub mod handler;
pub mod lease;
pub mod metrics;
pub mod outcomes;
pub mod sender;
pub mod settings;
pub mod smtp;
