//! The notifier process: consume receipt events into the delivery log, then send from the
//! log with retries that survive restarts.

use crate::compose::{compose, recipient, AgencySender, Branding, ComposeError, Event, Kind, Templates};
use crate::smtp::{parse_schedule, SmtpSettings};
use anyhow::Context;
use chrono::Utc;
use feepay_proto::v1;
use feepay_runtime::convert::ts;
use feepay_runtime::envelope::{self, DecodeError};
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::metrics::{
    counter_vec, gauge, histogram, histogram_vec, ConsumerMetrics, OutboxMetrics, LATENCY_BUCKETS,
};
use feepay_runtime::outbox::{self, OutboxEvent, Relay};
use feepay_runtime::refdata;
use feepay_runtime::settings::{self, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use feepay_runtime::sql::{placeholders, rows_per_statement, stmt};
use lettre::message::Mailbox;
use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGauge, Registry};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "feepay_notifier";

#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    pub smtp: SmtpSettings,
    /// `FEEPAY_NOTIFIER_HTTP_ADDR` (default 127.0.0.1:9103).
    pub http_addr: SocketAddr,
    /// `FEEPAY_NOTIFIER_RETRY_SCHEDULE` (default `1m,5m,30m,2h,12h`): waits between attempts.
    pub retry_schedule: Vec<Duration>,
    /// `FEEPAY_SMTP_FROM` (default `Biên lai điện tử <bienlai@feepay.local>`).
    pub from: String,
    /// `FEEPAY_SMTP_REPLY_TO` (optional).
    pub reply_to: Option<String>,
    /// `FEEPAY_LOOKUP_BASE_URL` (default `http://127.0.0.1:8080/tra-cuu/`).
    pub lookup_base_url: String,
    /// `FEEPAY_MESSAGE_ID_DOMAIN` (default `feepay.local`).
    pub message_id_domain: String,
    /// `FEEPAY_TEMPLATES_DIR` (default `deploy/templates/email` when it exists).
    pub templates_dir: Option<PathBuf>,
    /// `FEEPAY_NOTIFIER_CONCURRENCY` (default 8): emails in flight.
    pub concurrency: usize,
    /// `FEEPAY_NOTIFIER_SOURCE` (default `/feepay/notifier`).
    pub source: String,
    pub shutdown_deadline: Duration,
}

impl NotifierSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(NotifierSettings {
            kafka: KafkaSettings::from_env("feepay-notifier")?,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            smtp: SmtpSettings::from_env()?,
            http_addr: settings::env_parse("FEEPAY_NOTIFIER_HTTP_ADDR", "127.0.0.1:9103".parse().expect("valid"))?,
            retry_schedule: parse_schedule(&settings::env_or("FEEPAY_NOTIFIER_RETRY_SCHEDULE", "1m,5m,30m,2h,12h"))
                .map_err(|e| anyhow::anyhow!("FEEPAY_NOTIFIER_RETRY_SCHEDULE: {e}"))?,
            from: settings::env_or("FEEPAY_SMTP_FROM", "Biên lai điện tử <bienlai@feepay.local>"),
            reply_to: settings::env_opt("FEEPAY_SMTP_REPLY_TO"),
            lookup_base_url: settings::env_or("FEEPAY_LOOKUP_BASE_URL", "http://127.0.0.1:8080/tra-cuu/"),
            message_id_domain: settings::env_or("FEEPAY_MESSAGE_ID_DOMAIN", "feepay.local"),
            templates_dir: crate::compose::templates_dir(&settings::env_or(
                "FEEPAY_TEMPLATES_DIR",
                "deploy/templates/email",
            )),
            concurrency: settings::env_parse("FEEPAY_NOTIFIER_CONCURRENCY", 8)?,
            source: settings::env_or("FEEPAY_NOTIFIER_SOURCE", "/feepay/notifier"),
            shutdown_deadline: settings::shutdown_deadline()?,
        })
    }
}

#[derive(Clone)]
pub struct NotifierMetrics {
    pub registry: Registry,
    pub consumer: ConsumerMetrics,
    pub outbox: OutboxMetrics,
    pub emails: IntCounterVec,
    pub smtp_latency: HistogramVec,
    pub queued: IntGauge,
    pub oldest_queued: IntGauge,
    pub receipt_to_email: Histogram,
}

impl NotifierMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        NotifierMetrics {
            consumer: ConsumerMetrics::new(&r, SERVICE),
            outbox: OutboxMetrics::new(&r, SERVICE),
            emails: counter_vec(
                &r,
                "feepay_notifier_emails_total",
                "Email outcomes: sent, retrying, failed, skipped (no address)",
                &["kind", "outcome"],
            ),
            smtp_latency: histogram_vec(
                &r,
                "feepay_notifier_smtp_duration_seconds",
                "Time for the SMTP server to accept or refuse a message",
                &["outcome"],
                LATENCY_BUCKETS,
            ),
            queued: gauge(&r, "feepay_notifier_deliveries_queued", "Deliveries waiting to be sent or retried"),
            oldest_queued: gauge(
                &r,
                "feepay_notifier_deliveries_oldest_queued_seconds",
                "Age of the oldest queued delivery",
            ),
            receipt_to_email: histogram(
                &r,
                "feepay_notifier_receipt_to_email_seconds",
                "Time from receipt issue to the SMTP server accepting its email",
                LATENCY_BUCKETS,
            ),
            registry: r,
        }
    }
}

impl Default for NotifierMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything but Kafka: the delivery log and the sender.
pub struct Notifier {
    pub db: DatabaseConnection,
    pub settings: NotifierSettings,
    pub metrics: NotifierMetrics,
    templates: Arc<Templates>,
    branding: Arc<Branding>,
    mailer: crate::smtp::Mailer,
    senders: tokio::sync::RwLock<(i64, BTreeMap<String, AgencySender>)>,
}

/// Result of recording a batch of events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub queued: usize,
    pub skipped: usize,
    pub refused: usize,
    pub duplicates: usize,
}

/// Result of one sending pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendPass {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
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
            senders: tokio::sync::RwLock::new((-1, BTreeMap::new())),
        })
    }

    /// Records events in the delivery log, idempotently: a redelivered event finds its row
    /// and does nothing.
    pub async fn record(&self, events: &[Event]) -> Result<Recorded, DbErr> {
        let mut out = Recorded::default();
        if events.is_empty() {
            return Ok(out);
        }
        let now = Utc::now();
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

    fn failed_event(&self, e: &Event, error: &str, attempts: u32) -> OutboxEvent {
        let id = e.notification_id();
        let msg = v1::NotificationFailed {
            notification_id: id.clone(),
            kind: e.kind().pb() as i32,
            payment_id: e.payment_id(),
            receipt_id: e.receipt_id().unwrap_or_default(),
            error: error.to_string(),
            attempts,
            failed_at: Some(ts(Utc::now())),
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

    /// Senders of every agency, refreshed when the reference data changed. Called once per
    /// sending pass, not once per email.
    async fn agency_senders(&self) -> BTreeMap<String, AgencySender> {
        let latest = refdata::latest_version(&self.db).await.ok().flatten().unwrap_or(-1);
        {
            let cache = self.senders.read().await;
            if cache.0 == latest {
                return cache.1.clone();
            }
        }
        let mut map = BTreeMap::new();
        if let Ok(Some(loaded)) = refdata::load_latest(&self.db).await {
            for a in loaded.reference.agencies.values() {
                map.insert(a.code.clone(), AgencySender { from: a.email_from.clone(), reply_to: a.reply_to.clone() });
            }
        }
        let mut cache = self.senders.write().await;
        *cache = (latest, map);
        cache.1.clone()
    }

    /// Claims due deliveries (a lease so a crash makes them due again), sends them, and
    /// records each outcome with its event.
    pub async fn send_due(&self, limit: i64) -> Result<SendPass, DbErr> {
        let lease = self.settings.smtp.timeout * 3 + Duration::from_secs(30);
        let claimed = self
            .db
            .query_all(stmt(
                "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $1) \
                 WHERE notification_id IN (SELECT notification_id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= now() \
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING notification_id, kind, attempts, event_pb, agency_code",
                vec![lease.as_secs_f64().into(), limit.into()],
            ))
            .await?;
        let mut pass = SendPass::default();
        if claimed.is_empty() {
            return Ok(pass);
        }
        let mut jobs = Vec::new();
        for r in claimed {
            let id: String = r.try_get("", "notification_id")?;
            let kind = Kind::from_code(&r.try_get::<String>("", "kind")?).unwrap_or(Kind::ReceiptIssued);
            let attempts: i32 = r.try_get("", "attempts")?;
            let bytes: Vec<u8> = r.try_get("", "event_pb")?;
            let agency: String = r.try_get("", "agency_code")?;
            jobs.push((id, kind, attempts as u32, bytes, agency));
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
        let results: Vec<(String, Kind, u32, Option<Event>, Outcome)> = futures::stream::iter(prepared)
            .map(|(id, kind, attempts, event, prepared)| async move {
                let outcome = match prepared {
                    Ok(msg) => self.transmit(&msg, event.as_ref().and_then(Event::issued_at)).await,
                    Err(outcome) => outcome,
                };
                (id, kind, attempts, event, outcome)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let txn = self.db.begin().await?;
        let mut events = Vec::new();
        let sent_ids: Vec<String> =
            results.iter().filter(|r| matches!(r.4, Outcome::Sent)).map(|r| r.0.clone()).collect();
        if !sent_ids.is_empty() {
            txn.execute(stmt(
                "UPDATE deliveries SET status = 'sent', sent_at = now(), next_attempt_at = NULL, last_error = NULL WHERE notification_id = ANY($1)",
                vec![sent_ids.into()],
            ))
            .await?;
        }
        for (id, kind, attempts, event, outcome) in results {
            let k = kind.code();
            match outcome {
                Outcome::Sent => {
                    self.metrics.emails.with_label_values(&[k, "sent"]).inc();
                    pass.sent += 1;
                    if let Some(event) = event {
                        tracing::info!(payment_id = %event.payment_id(), notification = %id, attempts, "email accepted by the SMTP server");
                        let msg = v1::NotificationSent {
                            notification_id: id.clone(),
                            kind: kind.pb() as i32,
                            payment_id: event.payment_id(),
                            receipt_id: event.receipt_id().unwrap_or_default(),
                            message_id: crate::compose::message_id(&id, &self.branding.message_id_domain),
                            attempts,
                            sent_at: Some(ts(Utc::now())),
                        };
                        let ce_id = format!("notification-sent:{id}");
                        events.push(OutboxEvent::new(
                            &self.settings.topics.notifications_sent,
                            &event.payment_id(),
                            &ce_id,
                            &self.settings.source,
                            &msg,
                            self.settings.kafka.body_format,
                        ));
                    }
                }
                Outcome::Skipped => {
                    txn.execute(stmt(
                        "UPDATE deliveries SET status = 'skipped', next_attempt_at = NULL WHERE notification_id = $1",
                        vec![id.into()],
                    ))
                    .await?;
                }
                Outcome::Transient(err) if (attempts as usize) <= self.settings.retry_schedule.len() => {
                    let wait = self.settings.retry_schedule[attempts as usize - 1];
                    txn.execute(stmt(
                        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1), last_error = $2 WHERE notification_id = $3",
                        vec![wait.as_secs_f64().into(), err.clone().into(), id.clone().into()],
                    ))
                    .await?;
                    self.metrics.emails.with_label_values(&[k, "retrying"]).inc();
                    tracing::warn!(notification = %id, attempts, retry_in_secs = wait.as_secs(), error = %err, "email not sent, will retry");
                    pass.retrying += 1;
                }
                Outcome::Transient(err) | Outcome::Permanent(err) => {
                    txn.execute(stmt(
                        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, last_error = $1 WHERE notification_id = $2",
                        vec![err.clone().into(), id.clone().into()],
                    ))
                    .await?;
                    self.metrics.emails.with_label_values(&[k, "failed"]).inc();
                    tracing::error!(notification = %id, attempts, error = %err, "email failed for good");
                    if let Some(event) = event {
                        events.push(self.failed_event(&event, &err, attempts));
                    }
                    pass.failed += 1;
                }
            }
        }
        outbox::insert(&txn, SERVICE, events).await?;
        txn.commit().await?;
        Ok(pass)
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

enum Outcome {
    Sent,
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
        Err(ComposeError::InvalidMailbox(m)) => Err(Outcome::Permanent(format!("invalid mailbox: {m}"))),
        Err(e) => Err(Outcome::Permanent(e.to_string())),
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
                        .observe(((Utc::now() - at).num_milliseconds().max(0) as f64) / 1000.0);
                }
                Outcome::Sent
            }
            Err(e) => {
                self.metrics.smtp_latency.with_label_values(&["refused"]).observe(elapsed);
                if e.is_permanent() {
                    Outcome::Permanent(format!("SMTP refused: {e}"))
                } else {
                    Outcome::Transient(format!("SMTP unavailable: {e}"))
                }
            }
        }
    }
}

/// Decodes a consumed record into a notification event.
pub fn decode(topics: &Topics, m: &BorrowedMessage<'_>) -> Result<Event, DecodeError> {
    let t = m.topic();
    if t == topics.receipts_issued {
        let e: v1::ReceiptIssued = envelope::decode(m.headers(), m.payload())?;
        e.receipt
            .as_ref()
            .filter(|r| !r.receipt_id.is_empty())
            .ok_or_else(|| DecodeError::new("invalid", "receipt: is required"))?;
        Ok(Event::Issued(e))
    } else if t == topics.receipts_cancelled {
        let e: v1::ReceiptCancelled = envelope::decode(m.headers(), m.payload())?;
        e.receipt
            .as_ref()
            .filter(|r| !r.receipt_id.is_empty())
            .ok_or_else(|| DecodeError::new("invalid", "receipt: is required"))?;
        Ok(Event::Cancelled(e))
    } else {
        let e: v1::WaiverNotice = envelope::decode(m.headers(), m.payload())?;
        if e.payment_id.is_empty() {
            return Err(DecodeError::new("invalid", "payment_id: is required"));
        }
        Ok(Event::Waiver(e))
    }
}

pub struct App {
    pub notifier: Arc<Notifier>,
    consumer: Arc<StreamConsumer>,
    producer: rdkafka::producer::FutureProducer,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl App {
    pub async fn build(settings: NotifierSettings, shutdown: CancellationToken) -> anyhow::Result<App> {
        let db = feepay_runtime::db::connect(&settings.database).await.context("connecting to PostgreSQL")?;
        feepay_runtime::db::migrate(&db).await.context("applying migrations")?;
        kafka::ensure_topics(&settings.kafka, &settings.topics.all(), settings.kafka.partitions)
            .await
            .context("creating topics")?;
        let producer = kafka::producer(&settings.kafka)?;
        let t = &settings.topics;
        let consumer = Arc::new(kafka::consumer(
            &settings.kafka,
            &[&t.receipts_issued, &t.receipts_cancelled, &t.payments_waived],
        )?);
        let metrics = NotifierMetrics::new();
        metrics.consumer.init(&["all"], &["queued", "skipped", "refused", "duplicate", "dead_lettered"]);
        for t in [&t.receipts_issued, &t.receipts_cancelled, &t.payments_waived] {
            metrics.consumer.consumed.with_label_values(&[t]).inc_by(0);
            for r in feepay_runtime::metrics::DEAD_LETTER_REASONS {
                metrics.consumer.dead_lettered.with_label_values(&[t.as_str(), r]).inc_by(0);
            }
        }
        for k in ["receipt_issued", "receipt_cancelled", "waiver_notice"] {
            for o in ["sent", "retrying", "failed", "skipped"] {
                metrics.emails.with_label_values(&[k, o]).inc_by(0);
            }
        }
        for o in ["accepted", "refused"] {
            let _ = metrics.smtp_latency.with_label_values(&[o]);
        }
        let readiness = Arc::new(Readiness::default());
        let (http_addr, http) = http::serve(
            settings.http_addr,
            http::ops_router(metrics.registry.clone(), readiness.clone()),
            shutdown.clone(),
        )
        .await?;
        lifecycle::spawn_database_check(db.clone(), readiness.clone(), shutdown.clone());
        lifecycle::spawn_consumer_check(consumer.clone(), readiness, metrics.consumer.clone(), shutdown.clone());
        let notifier = Arc::new(Notifier::new(db, settings, metrics)?);
        Ok(App { notifier, consumer, producer, http_addr, shutdown, http })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let App { notifier, consumer, producer, shutdown, http, .. } = self;
        let relay_stop = CancellationToken::new();
        let relay = Relay {
            db: notifier.db.clone(),
            producer: producer.clone(),
            name: SERVICE.into(),
            batch: 1000,
            metrics: notifier.metrics.outbox.clone(),
        };
        let relay = tokio::spawn(relay.run(relay_stop.clone()));
        let sender = {
            let n = notifier.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut last_gauge = std::time::Instant::now() - Duration::from_secs(10);
                loop {
                    if last_gauge.elapsed() > Duration::from_secs(2) {
                        let _ = n.observe_queue().await;
                        last_gauge = std::time::Instant::now();
                    }
                    let busy = match n.send_due(500).await {
                        Ok(p) => p.sent + p.retrying + p.failed > 0,
                        Err(e) => {
                            tracing::warn!(error = %e, "delivery pass failed");
                            false
                        }
                    };
                    if stop.is_cancelled() {
                        break;
                    }
                    if !busy {
                        tokio::select! { _ = tokio::time::sleep(Duration::from_millis(100)) => {}, _ = stop.cancelled() => break }
                    }
                }
            })
        };
        let s = &notifier.settings;
        let m = &notifier.metrics.consumer;
        tracing::info!("notifier consuming");
        while !shutdown.is_cancelled() {
            let batch = match kafka::recv_batch(&consumer, s.batch.max_events, s.batch.linger, &shutdown).await {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let started = std::time::Instant::now();
            let mut events = Vec::new();
            let mut dead = Vec::new();
            for msg in &batch {
                m.consumed.with_label_values(&[msg.topic()]).inc();
                match decode(&s.topics, msg) {
                    Ok(e) => events.push(e),
                    Err(e) => {
                        tracing::warn!(topic = msg.topic(), offset = msg.offset(), reason = %e, "event dead-lettered");
                        dead.push(kafka::dead_letter_of(msg, &e, SERVICE));
                    }
                }
            }
            let mut backoff = Duration::from_millis(100);
            let recorded = loop {
                match notifier.record(&events).await {
                    Ok(r) => break r,
                    Err(e) => {
                        m.batch_failures.inc();
                        tracing::error!(error = %e, "recording deliveries failed, retrying");
                        tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => return finish(relay_stop, relay, sender, producer, http, s.shutdown_deadline).await }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            };
            for dl in &dead {
                if !kafka::dead_letter_durably(&producer, dl, &shutdown).await {
                    return finish(relay_stop, relay, sender, producer, http, s.shutdown_deadline).await;
                }
                m.count_dead_letter(dl);
            }
            if let Err(e) = kafka::commit_batch(&consumer, &batch) {
                tracing::warn!(error = %e, "offset commit failed; events will be redelivered and deduplicated");
            }
            for (label, n) in [
                ("queued", recorded.queued),
                ("skipped", recorded.skipped),
                ("refused", recorded.refused),
                ("duplicate", recorded.duplicates),
            ] {
                if n > 0 {
                    m.processed.with_label_values(&["all", label]).inc_by(n as u64);
                }
            }
            m.batch_size.observe(batch.len() as f64);
            m.batch_duration.observe(started.elapsed().as_secs_f64());
        }
        finish(relay_stop, relay, sender, producer, http, s.shutdown_deadline).await
    }
}

async fn finish(
    relay_stop: CancellationToken,
    relay: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
    producer: rdkafka::producer::FutureProducer,
    http: tokio::task::JoinHandle<()>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let _ = tokio::time::timeout(deadline, sender).await;
    relay_stop.cancel();
    let _ = tokio::time::timeout(deadline, relay).await;
    let _ = tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
        .await;
    let _ = http.await;
    tracing::info!("notifier stopped");
    Ok(())
}
