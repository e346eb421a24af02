//! The sender: claims due deliveries under a lease, composes them on blocking threads (one
//! share per core), sends them concurrently over the SMTP pool, and records the outcomes
//! as they come ([`crate::outcomes`]); transient failures wait on the retry schedule kept in the database.

use crate::compose::{compose, AgencySender, Branding, ComposeError, Event, Kind, Templates};
use crate::deliveries::entity::{self, Column as C};
use crate::deliveries::Notifier;
use crate::lease::Lease;
use chrono::Utc;
use feepay_domain::ids::mask_emails_in;
use feepay_runtime::sql::equals_constant;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Result of one sending pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendPass {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl Notifier {
    /// Senders of every agency, refreshed when the reference data changed. Called once per
    /// sending pass, not once per email.
    async fn agency_senders(&self) -> BTreeMap<String, AgencySender> {
        // Without reference data (or while it cannot be read) the default sender is used.
        let Ok(current) = self.reference.current(&self.db).await else {
            return BTreeMap::new();
        };
        current
            .reference
            .reference
            .agencies
            .values()
            .map(|a| (a.code.clone(), AgencySender { from: a.email_from.clone(), reply_to: a.reply_to.clone() }))
            .collect()
    }

    /// Claims due deliveries under a lease ([`Lease`]: renewed while the pass works, so a
    /// crash makes them due again and no other replica takes them meanwhile), sends them,
    /// and records each outcome with its event.
    pub async fn send_due(&self, limit: i64) -> Result<SendPass, DbErr> {
        let length = self.settings.lease;
        let token = uuid::Uuid::new_v4();
        let claimed_at = std::time::Instant::now();
        let now = self.clock.now();
        // Claiming is one statement: the due rows are picked `FOR UPDATE SKIP LOCKED`, so
        // two senders never claim the same row, and pushed on by the lease.
        let due = entity::Entity::find()
            .select_only()
            .column(C::NotificationId)
            // The constant lets PostgreSQL use the partial index `deliveries_due`.
            .filter(equals_constant(C::Status, "queued"))
            .filter(C::NextAttemptAt.lte(now))
            .order_by_asc(C::NextAttemptAt)
            .limit(limit.max(0) as u64)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .into_query();
        let claimed = entity::Entity::update_many()
            .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
            .col_expr(C::NextAttemptAt, Expr::value(now + length))
            .col_expr(C::ClaimToken, Expr::value(token))
            .filter(C::NotificationId.in_subquery(due))
            .exec_with_returning(&self.db)
            .await?;
        let mut pass = SendPass::default();
        if claimed.is_empty() {
            return Ok(pass);
        }
        let lease = Lease::hold(
            self.db.clone(),
            self.clock.clone(),
            token,
            claimed.len(),
            length,
            claimed_at,
            self.metrics.lease_renewals.clone(),
        );
        let lease = &lease;
        let mut jobs = Vec::new();
        for r in claimed {
            let kind = Kind::from_code(&r.kind).unwrap_or(Kind::ReceiptIssued);
            jobs.push((r.notification_id, kind, r.attempts as u32, r.event_pb, r.agency_code));
        }
        use futures::StreamExt;
        // Compose on blocking threads, one share per core (templates and the QR code are
        // CPU work), then send concurrently over the SMTP pool.
        let senders = Arc::new(self.agency_senders().await);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let share = jobs.len().div_ceil(cores).max(1);
        let mut composing = Vec::new();
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let part: Vec<_> = jobs.by_ref().take(share).collect();
            let (templates, branding, senders) = (self.templates.clone(), self.branding.clone(), senders.clone());
            composing.push(tokio::task::spawn_blocking(move || {
                part.into_iter()
                    .map(|(id, kind, attempts, bytes, agency): (String, Kind, u32, Vec<u8>, String)| {
                        let (event, prepared) = match Event::decode(kind, &bytes) {
                            Ok(e) => {
                                let sender = senders.get(&agency).cloned().unwrap_or_default();
                                let prepared = prepare(&e, &templates, &branding, &sender);
                                (Some(e), prepared)
                            }
                            Err(e) => (None, Err(Outcome::Permanent(format!("stored event undecodable: {e}")))),
                        };
                        (id, kind, attempts, event, prepared)
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut prepared = Vec::new();
        for part in futures::future::join_all(composing).await {
            prepared.extend(part.map_err(|e| DbErr::Custom(format!("composing emails: {e}")))?);
        }
        // Sending and recording run side by side: outcomes are committed a few at a time
        // as they come (see `lease`), while the next emails are on their way.
        let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let sending = async move {
            futures::stream::iter(prepared)
                .map(|(id, kind, attempts, event, prepared)| async move {
                    let outcome = match prepared {
                        Ok(_) if !lease.allows_send(self.settings.smtp.timeout) => Outcome::LeaseLost,
                        Ok(msg) => self.transmit(&msg, event.as_ref().and_then(Event::issued_at)).await,
                        Err(outcome) => outcome,
                    };
                    Sent { id, kind, attempts, event, outcome }
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .for_each(|r| {
                    let _ = done.send(r);
                    futures::future::ready(())
                })
                .await;
        };
        let recording = async {
            let mut failed = None;
            let mut batch = Vec::new();
            while let Some(first) = outcomes.recv().await {
                batch.push(first);
                // Those that come within RECORD_WINDOW join the same transaction: fewer
                // commits for PostgreSQL, which the issuer needs too, at the cost of a
                // window that short between an email's acceptance and its record.
                let until = tokio::time::Instant::now() + RECORD_WINDOW;
                while batch.len() < RECORD_BATCH {
                    match tokio::time::timeout_at(until, outcomes.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                if let Err(e) = self.record_outcomes(lease, std::mem::take(&mut batch), &mut pass).await {
                    // Nothing more is handed to the SMTP server; what was sent and not
                    // recorded is sent again once the lease runs out.
                    lease.revoke();
                    tracing::error!(error = %e, "recording email outcomes failed; the pass stops sending");
                    failed.get_or_insert(e);
                }
            }
            failed
        };
        let ((), failed) = futures::join!(sending, recording);
        lease.finish().await;
        match failed {
            Some(e) => Err(e),
            None => Ok(pass),
        }
    }
}

/// Outcomes committed per transaction at most.
const RECORD_BATCH: usize = 1000;
/// How long the first outcome of a transaction waits for others.
const RECORD_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// One email of a pass and what became of it.
pub(crate) struct Sent {
    pub id: String,
    pub kind: Kind,
    pub attempts: u32,
    pub event: Option<Event>,
    pub outcome: Outcome,
}

pub(crate) enum Outcome {
    Sent,
    /// Not handed to the SMTP server: the lease could run out first.
    LeaseLost,
    Skipped,
    Transient(String),
    Permanent(String),
}

/// Composes one email, or says why there is none to send.
fn prepare(
    event: &Event,
    templates: &Templates,
    branding: &Branding,
    sender: &AgencySender,
) -> Result<lettre::Message, Outcome> {
    match compose(event, templates, branding, sender) {
        Err(ComposeError::InvalidMailbox(m)) => {
            Err(Outcome::Permanent(mask_emails_in(&format!("invalid mailbox: {m}"))))
        }
        Err(e) => Err(Outcome::Permanent(mask_emails_in(&e.to_string()))),
        Ok(None) => Err(Outcome::Skipped),
        Ok(Some((msg, _))) => Ok(msg),
    }
}

impl Notifier {
    /// Sends one composed email; classifies the result. `issued_at` feeds the
    /// receipt-to-email latency.
    async fn transmit(&self, msg: &lettre::Message, issued_at: Option<chrono::DateTime<Utc>>) -> Outcome {
        let started = std::time::Instant::now();
        let r = self.mailer.send(msg).await;
        let elapsed = started.elapsed().as_secs_f64();
        match r {
            Ok(_) => {
                self.metrics.smtp_latency.with_label_values(&["accepted"]).observe(elapsed);
                if let Some(at) = issued_at {
                    self.metrics
                        .receipt_to_email
                        .observe(((self.clock.now() - at).num_milliseconds().max(0) as f64) / 1000.0);
                }
                Outcome::Sent
            }
            Err(e) => {
                self.metrics.smtp_latency.with_label_values(&["refused"]).observe(elapsed);
                // A server's refusal names the recipient: masked before it goes to the log,
                // the delivery log and notifications.failed.
                if e.is_permanent() {
                    Outcome::Permanent(mask_emails_in(&format!("SMTP refused: {e}")))
                } else {
                    Outcome::Transient(mask_emails_in(&format!("SMTP unavailable: {e}")))
                }
            }
        }
    }
}
