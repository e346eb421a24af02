//! The delivery log (`deliveries`): one row per notification, keyed by a stable id derived
//! from the event it answers, recorded before the event's offset moves, so a redelivered
//! event sends nothing twice.

use crate::compose::{recipient, Branding, Event, Templates};
use crate::metrics::{NotifierMetrics, SERVICE};
use crate::settings::NotifierSettings;
use anyhow::Context;
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::outbox::{self, OutboxEvent};
use feepay_runtime::sql::{placeholders, rows_per_statement, stmt};
use lettre::message::Mailbox;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use std::sync::Arc;

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
                None => (None, "failed", Some("event has no payer".to_string())),
                Some(Ok(Some(m))) => (Some(m.email.to_string()), "queued", None),
                Some(Ok(None)) => (None, "skipped", None),
                Some(Err(err)) => (None, "failed", Some(err.to_string())),
            };
            let mid = crate::compose::message_id(&id, &self.branding.message_id_domain);
            rows.push((
                vec![
                    id.clone().into(),
                    e.kind().code().into(),
                    e.payment_id().into(),
                    e.receipt_id().into(),
                    e.agency().map(|a| a.code.clone()).unwrap_or_default().into(),
                    recipient_addr.into(),
                    status.into(),
                    (if status == "queued" { Some(now) } else { None }).into(),
                    error.clone().into(),
                    mid.into(),
                    e.encode().into(),
                    e.issued_at().into(),
                ],
                status,
                error.map(|err| (e.clone(), err)),
            ));
        }
        let mut inserted = std::collections::BTreeSet::new();
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            let values: Vec<Value> = chunk.iter().flat_map(|(v, _, _)| v.clone()).collect();
            let sql = format!(
                "INSERT INTO deliveries (notification_id, kind, payment_id, receipt_id, agency_code, recipient, status, next_attempt_at, last_error, message_id, event_pb, paid_at) \
                 VALUES {} ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id",
                placeholders(chunk.len(), COLS)
            );
            for r in txn.query_all(stmt(sql, values)).await? {
                inserted.insert(r.try_get::<String>("", "notification_id")?);
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
                "queued" => out.queued += 1,
                "skipped" => {
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
            &format!("notification-failed:{id}"),
            &self.settings.source,
            &msg,
            self.settings.kafka.body_format,
        )
    }

    /// Updates the queue gauges.
    pub async fn observe_queue(&self) -> Result<(), DbErr> {
        if let Some(r) = self
            .db
            .query_one(stmt(
                "SELECT count(*)::BIGINT AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::BIGINT AS age FROM deliveries WHERE status = 'queued'",
                vec![],
            ))
            .await?
        {
            self.metrics.queued.set(r.try_get("", "n")?);
            self.metrics.oldest_queued.set(r.try_get("", "age")?);
        }
        Ok(())
    }
}

/// A delivery row to insert: its values, its status, and the refusal to report if any.
type PendingRow = (Vec<Value>, &'static str, Option<(Event, String)>);
