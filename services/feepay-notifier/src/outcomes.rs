//! Recording what became of the emails of a sending pass: one transaction per few outcomes,
//! each row updated only while it still carries the pass's token (another pass that took a
//! row over keeps it), with the `notifications.sent`/`.failed` events in the same
//! transaction. Metrics and logs follow the commit.

use crate::deliveries::entity::{self, Column as C, Status};
use crate::deliveries::Notifier;
use crate::lease::Lease;
use crate::metrics::SERVICE;
use crate::sender::{Outcome, SendPass, Sent};
use chrono::{DateTime, Utc};
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::outbox::{self, OutboxEvent};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait};

impl Notifier {
    /// Commits the outcomes of `batch` and releases their rows from the lease; adds them to
    /// `pass` once committed.
    pub(crate) async fn record_outcomes(
        &self,
        lease: &Lease,
        batch: Vec<Sent>,
        pass: &mut SendPass,
    ) -> Result<(), DbErr> {
        let token = lease.token;
        let mut rows = lease.rows().await;
        let txn = self.db.begin().await?;
        let mut events = Vec::new();
        let sent_ids: Vec<String> =
            batch.iter().filter(|r| matches!(r.outcome, Outcome::Sent)).map(|r| r.id.clone()).collect();
        let mut taken_over = 0;
        if !sent_ids.is_empty() {
            let marked = entity::Entity::update_many()
                .col_expr(C::Status, Expr::value(Status::Sent))
                .col_expr(C::SentAt, Expr::value(self.clock.now()))
                .col_expr(C::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(C::LastError, Expr::value(Option::<String>::None))
                .filter(feepay_runtime::sql::any_of(C::NotificationId, sent_ids.clone()))
                .filter(C::ClaimToken.eq(token))
                .exec(&txn)
                .await?;
            taken_over = sent_ids.len() as u64 - marked.rows_affected.min(sent_ids.len() as u64);
        }
        for r in &batch {
            let update = entity::Entity::update_many()
                .filter(C::NotificationId.eq(r.id.as_str()))
                .filter(C::ClaimToken.eq(token));
            match &r.outcome {
                Outcome::Sent => {
                    if let Some(event) = &r.event {
                        events.push(self.sent_event(r, event));
                    }
                }
                // Released at once for the next claim: it was not sent.
                Outcome::LeaseLost => {
                    update
                        .col_expr(C::NextAttemptAt, Expr::value(self.clock.now()))
                        .col_expr(C::ClaimToken, Expr::value(Option::<uuid::Uuid>::None))
                        .exec(&txn)
                        .await?;
                }
                Outcome::Skipped => {
                    update
                        .col_expr(C::Status, Expr::value(Status::Skipped))
                        .col_expr(C::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
                        .exec(&txn)
                        .await?;
                }
                Outcome::Transient(err) if self.retries_left(r.attempts) => {
                    let wait = self.settings.retry_schedule[r.attempts as usize - 1];
                    update
                        .col_expr(C::NextAttemptAt, Expr::value(self.clock.now() + wait))
                        .col_expr(C::LastError, Expr::value(err.clone()))
                        .col_expr(C::ClaimToken, Expr::value(Option::<uuid::Uuid>::None))
                        .exec(&txn)
                        .await?;
                }
                Outcome::Transient(err) | Outcome::Permanent(err) => {
                    update
                        .col_expr(C::Status, Expr::value(Status::Failed))
                        .col_expr(C::NextAttemptAt, Expr::value(Option::<DateTime<Utc>>::None))
                        .col_expr(C::LastError, Expr::value(err.clone()))
                        .exec(&txn)
                        .await?;
                    if let Some(event) = &r.event {
                        events.push(self.failed_event(event, err, r.attempts));
                    }
                }
            }
        }
        outbox::insert(&txn, SERVICE, events).await?;
        txn.commit().await?;
        rows.released(batch.len());
        drop(rows);
        if taken_over > 0 {
            self.metrics.lease_renewals.with_label_values(&["taken_over"]).inc_by(taken_over);
            tracing::error!(
                emails = taken_over,
                "emails accepted by the SMTP server after another pass took their rows over: they may be sent twice"
            );
        }
        for r in batch {
            self.count(r, pass);
        }
        Ok(())
    }

    fn retries_left(&self, attempts: u32) -> bool {
        attempts >= 1 && (attempts as usize) <= self.settings.retry_schedule.len()
    }

    fn sent_event(&self, r: &Sent, event: &crate::compose::Event) -> OutboxEvent {
        let msg = v1::NotificationSent {
            notification_id: r.id.clone(),
            kind: r.kind.pb() as i32,
            payment_id: event.payment_id(),
            receipt_id: event.receipt_id().unwrap_or_default(),
            message_id: crate::compose::message_id(&r.id, &self.branding.message_id_domain),
            attempts: r.attempts,
            sent_at: Some(ts(self.clock.now())),
        };
        OutboxEvent::new(
            &self.settings.topics.notifications_sent,
            &event.payment_id(),
            &feepay_runtime::ids::event::notification_sent(&r.id),
            &self.settings.source,
            &msg,
            self.settings.kafka.body_format,
        )
    }

    /// Metrics and logs of one committed outcome.
    fn count(&self, r: Sent, pass: &mut SendPass) {
        let (k, id, attempts) = (r.kind.code(), r.id, r.attempts);
        match r.outcome {
            Outcome::Sent => {
                self.metrics.emails.with_label_values(&[k, "sent"]).inc();
                pass.sent += 1;
                if let Some(event) = r.event {
                    tracing::info!(payment_id = %event.payment_id(), notification = %id, attempts, "email accepted by the SMTP server");
                }
            }
            Outcome::LeaseLost => {
                self.metrics.lease_renewals.with_label_values(&["lost"]).inc();
                tracing::warn!(notification = %id, "lease on the delivery ran short; left unsent for the next claim");
            }
            Outcome::Skipped => {}
            Outcome::Transient(err) if self.retries_left(attempts) => {
                let wait = self.settings.retry_schedule[attempts as usize - 1];
                self.metrics.emails.with_label_values(&[k, "retrying"]).inc();
                tracing::warn!(notification = %id, attempts, retry_in_secs = wait.as_secs(), error = %err, "email not sent, will retry");
                pass.retrying += 1;
            }
            Outcome::Transient(err) | Outcome::Permanent(err) => {
                self.metrics.emails.with_label_values(&[k, "failed"]).inc();
                tracing::error!(notification = %id, attempts, error = %err, "email failed for good");
                pass.failed += 1;
            }
        }
    }
}
