//! Identifiers that cross process boundaries, in one place.
//!
//! [`event`]: the CloudEvents ids of the events the services emit. They are derived from
//! what caused the event, so a retried transaction writes the same id and consumers
//! deduplicate; the notifier keys a notification by the id of the event it answers.
//!
//! [`subject`]: what a parked event is filed under. The owning service parks and resolves
//! by it, and receiptctl files a dead-letter replay under it, so all must agree.

use std::fmt::Display;

/// CloudEvents ids.
pub mod event {
    use super::Display;

    pub fn receipt_issued(receipt_id: impl Display) -> String {
        format!("receipt-issued:{receipt_id}")
    }
    pub fn receipt_cancelled(receipt_id: impl Display) -> String {
        format!("receipt-cancelled:{receipt_id}")
    }
    /// An error notified on a receipt without reissue (one per notice).
    pub fn receipt_error_notified(notice_id: impl Display) -> String {
        format!("receipt-error-notified:{notice_id}")
    }
    pub fn refund_recorded(refund_id: &str) -> String {
        format!("refund-recorded:{refund_id}")
    }
    /// A rejection of a payment (`suffix`: the refund or conflict it concerns, or empty).
    pub fn payment_rejected(payment_id: &str, suffix: &str) -> String {
        format!("payment-rejected:{payment_id}:{suffix}")
    }
    pub fn waiver_notice(payment_id: &str) -> String {
        format!("waiver-notice:{payment_id}")
    }
    pub fn fee_assessed(assessment_id: &str) -> String {
        format!("fee-assessed:{assessment_id}")
    }
    pub fn notification_sent(notification_id: &str) -> String {
        format!("notification-sent:{notification_id}")
    }
    pub fn notification_failed(notification_id: &str) -> String {
        format!("notification-failed:{notification_id}")
    }
    /// A dead letter: where the original record was.
    pub fn dead_letter(topic: &str, partition: i32, offset: i64) -> String {
        format!("dlq:{topic}:{partition}:{offset}")
    }
}

/// Subjects of parked events.
pub mod subject {
    pub fn payment(payment_id: &str) -> String {
        format!("payment:{payment_id}")
    }
    pub fn refund(refund_id: &str) -> String {
        format!("refund:{refund_id}")
    }
    pub fn assessment(assessment_id: &str) -> String {
        format!("assessment:{assessment_id}")
    }
    pub fn notification(notification_id: &str) -> String {
        format!("notification:{notification_id}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_keep_their_published_form() {
        // Consumers deduplicate by these; changing a format re-delivers everything once.
        let id = uuid::Uuid::nil();
        assert_eq!(super::event::receipt_issued(id), "receipt-issued:00000000-0000-0000-0000-000000000000");
        assert_eq!(super::event::payment_rejected("PG-1", ""), "payment-rejected:PG-1:");
        assert_eq!(super::event::dead_letter("payments.succeeded", 2, 7), "dlq:payments.succeeded:2:7");
        assert_eq!(super::subject::refund("RF-1"), "refund:RF-1");
    }
}
