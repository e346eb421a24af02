//! The delivery log (`deliveries`): one row per notification, keyed by a stable id derived
//! from the event it answers, recorded before the event's offset moves, so a redelivered
//! event sends nothing twice.

use crate::compose::{recipient, Branding, Event, Templates};
use crate::metrics::{NotifierMetrics, SERVICE};
use crate::settings::NotifierSettings;
use anyhow::Context;
use entity::Status;
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::outbox::{self, OutboxEvent};
use feepay_runtime::sql::rows_per_statement;
use lettre::message::Mailbox;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
    TryInsertResult,
};
use std::sync::Arc;

/// The `deliveries` table, which the notifier owns.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// Where a notification stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "Text")]
    pub enum Status {
        /// Due at `next_attempt_at` (claimed senders push it on by their lease).
        #[sea_orm(string_value = "queued")]
        Queued,
        #[sea_orm(string_value = "sent")]
        Sent,
        /// For good: refused, or out of retries (a `NotificationFailed` event says why).
        #[sea_orm(string_value = "failed")]
        Failed,
        /// The payer gave no email address.
        #[sea_orm(string_value = "skipped")]
        Skipped,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: String,
        /// `receipt_issued`, `receipt_cancelled` or `waiver_notice` (`compose::Kind`).
        pub kind: String,
        pub payment_id: String,
        pub receipt_id: Option<String>,
        pub agency_code: String,
        pub recipient: Option<String>,
        pub status: Status,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub message_id: String,
        /// The event the notification answers, as received.
        pub event_pb: Vec<u8>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        /// Payment time of the event, for end-to-end latency figures.
        pub paid_at: Option<DateTimeUtc>,
        /// The sending pass that claimed the row last (see `lease`).
        pub claim_token: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Everything but Kafka: the delivery log and the sender.
pub struct Notifier {
    pub db: DatabaseConnection,
    pub settings: NotifierSettings,
    pub metrics: NotifierMetrics,
    pub(crate) templates: Arc<Templates>,
    pub(crate) branding: Arc<Branding>,
    pub(crate) mailer: crate::smtp::Mailer,
    /// Agencies' senders come from the reference data.
    pub(crate) reference: feepay_runtime::refdata::Cache,
    pub clock: Arc<dyn feepay_runtime::clock::Clock>,
}

/// Result of recording a batch of events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub queued: usize,
    pub skipped: usize,
    pub refused: usize,
    pub duplicates: usize,
}

impl Notifier {
    pub fn new(db: DatabaseConnection, settings: NotifierSettings, metrics: NotifierMetrics) -> anyhow::Result<Self> {
        let from: Mailbox =
            settings.from.parse().with_context(|| format!("FEEPAY_SMTP_FROM {:?} is not a mailbox", settings.from))?;
        let reply_to = match &settings.reply_to {
            Some(r) => Some(r.parse().with_context(|| format!("FEEPAY_SMTP_REPLY_TO {r:?} is not a mailbox"))?),
            None => None,
        };
        let branding = Branding {
            from,
            reply_to,
            lookup_base_url: settings.lookup_base_url.clone(),
            message_id_domain: settings.message_id_domain.clone(),
        };
        let mailer = crate::smtp::Mailer::new(settings.smtp.clone()).context("preparing the SMTP client")?;
        Ok(Notifier {
            db,
            templates: Arc::new(Templates::new(settings.templates_dir.clone())),
            branding: Arc::new(branding),
            mailer,
            metrics,
            settings,
            reference: feepay_runtime::refdata::Cache::new(),
            clock: feepay_runtime::clock::system(),
        })
    }

    /// Records events in the delivery log, idempotently: a redelivered event finds its row
    /// and does nothing.
    pub async fn record(&self, events: &[Event]) -> Result<Recorded, DbErr> {
        let mut out = Recorded::default();
        if events.is_empty() {
            return Ok(out);
        }
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        const COLS: usize = 12;
        let mut rows: Vec<PendingRow> = Vec::new();
        for e in events {
            let id = e.notification_id();
            let (recipient_addr, status, error) = match e.payer().map(recipient) {
                None => (None, Status::Failed, Some("event has no payer".to_string())),
                Some(Ok(Some(m))) => (Some(m.email.to_string()), Status::Queued, None),
                Some(Ok(None)) => (None, Status::Skipped, None),
                Some(Err(err)) => (None, Status::Failed, Some(err.to_string())),
            };
            let message_id = crate::compose::message_id(&id, &self.branding.message_id_domain);
            rows.push((
                entity::ActiveModel {
                    notification_id: Set(id),
                    kind: Set(e.kind().code().to_string()),
                    payment_id: Set(e.payment_id()),
                    receipt_id: Set(e.receipt_id()),
                    agency_code: Set(e.agency().map(|a| a.code.clone()).unwrap_or_default()),
                    recipient: Set(recipient_addr),
                    status: Set(status),
                    next_attempt_at: Set((status == Status::Queued).then_some(now)),
                    last_error: Set(error.clone()),
                    message_id: Set(message_id),
                    event_pb: Set(e.encode()),
                    paid_at: Set(e.issued_at()),
                    ..Default::default()
                },
                status,
                error.map(|err| (e.clone(), err)),
            ));
        }
        let mut inserted = std::collections::BTreeSet::new();
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            // A notification recorded already is a redelivery: left alone.
            let new = entity::Entity::insert_many(chunk.iter().map(|(row, _, _)| row.clone()))
                .on_conflict(OnConflict::column(entity::Column::NotificationId).do_nothing().to_owned())
                .do_nothing()
                .exec_with_returning_keys(&txn)
                .await?;
            if let TryInsertResult::Inserted(ids) = new {
                inserted.extend(ids);
            }
        }
        let mut failures = Vec::new();
        for (e, (_, status, refused)) in events.iter().zip(rows) {
            if !inserted.contains(&e.notification_id()) {
                out.duplicates += 1;
                continue;
            }
            let kind = e.kind().code();
            match status {
                Status::Queued => out.queued += 1,
                Status::Skipped => {
                    out.skipped += 1;
                    self.metrics.emails.with_label_values(&[kind, "skipped"]).inc();
                    tracing::info!(payment_id = %e.payment_id(), "payer gave no email address; nothing to send");
                }
                _ => {
                    out.refused += 1;
                    self.metrics.emails.with_label_values(&[kind, "failed"]).inc();
                    if let Some((ev, err)) = refused {
                        tracing::warn!(payment_id = %ev.payment_id(), reason = %err, "email refused");
                        failures.push(self.failed_event(&ev, &err, 0));
                    }
                }
            }
        }
        outbox::insert(&txn, SERVICE, failures).await?;
        txn.commit().await?;
        Ok(out)
    }

    pub(crate) fn failed_event(&self, e: &Event, error: &str, attempts: u32) -> OutboxEvent {
        let id = e.notification_id();
        let msg = v1::NotificationFailed {
            notification_id: id.clone(),
            kind: e.kind().pb() as i32,
            payment_id: e.payment_id(),
            receipt_id: e.receipt_id().unwrap_or_default(),
            error: error.to_string(),
            attempts,
            failed_at: Some(ts(self.clock.now())),
        };
        OutboxEvent::new(
            &self.settings.topics.notifications_failed,
            &e.payment_id(),
            &feepay_runtime::ids::event::notification_failed(&id),
            &self.settings.source,
            &msg,
            self.settings.kafka.body_format,
        )
    }

    /// Updates the queue gauges.
    pub async fn observe_queue(&self) -> Result<(), DbErr> {
        use entity::Column as C;
        let (n, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = entity::Entity::find()
            .select_only()
            .column_as(C::NotificationId.count(), "n")
            .column_as(C::CreatedAt.min(), "oldest")
            .filter(feepay_runtime::sql::equals_constant(C::Status, "queued"))
            .into_tuple()
            .one(&self.db)
            .await?
            .unwrap_or((0, None));
        self.metrics.queued.set(n);
        self.metrics.oldest_queued.set(oldest.map_or(0, |t| (self.clock.now() - t).num_seconds().max(0)));
        Ok(())
    }
}

/// A delivery row to insert: its values, its status, and the refusal to report if any.
type PendingRow = (entity::ActiveModel, Status, Option<(Event, String)>);
