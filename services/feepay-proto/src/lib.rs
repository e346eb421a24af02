//! The feepay.v1 event contract as Rust types.
//!
//! Types are generated at build time from `proto/feepay/v1/*.proto`. Every message
//! implements `prost::Message` (binary protobuf) and `serde` per the canonical proto3
//! JSON mapping, so consumers can accept both `application/protobuf` and
//! `application/json` bodies.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/feepay.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/feepay.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;
pub use prost::Message;

/// Fully qualified protobuf name of a message, used as the CloudEvents `ce_type`.
pub trait EventType {
    /// e.g. `feepay.v1.PaymentSucceeded`.
    const TYPE: &'static str;
}

macro_rules! event_type {
    ($($t:ident),* $(,)?) => {
        $(impl EventType for v1::$t { const TYPE: &'static str = concat!("feepay.v1.", stringify!($t)); })*
    };
}

event_type!(
    PaymentSucceeded,
    PaymentRefunded,
    PaymentRejected,
    FeeAssessmentRequested,
    FeeAssessed,
    ReceiptIssued,
    ReceiptCancelled,
    WaiverNotice,
    ReceiptErrorNotified,
    RefundRecorded,
    NotificationSent,
    NotificationFailed,
    TaxDocumentIssued,
    DeadLetter,
);

/// Converts a chrono-free `(seconds, nanos)` pair into a protobuf timestamp.
pub fn timestamp(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}
