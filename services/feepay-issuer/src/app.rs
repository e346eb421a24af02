//! The issuer process: settings, wiring, the Kafka loop and shutdown.

use crate::clock::{Clock, SystemClock};
use crate::issue::{Incoming, Issuer};
use crate::keys::Keyring;
use crate::metrics::{IssuerMetrics, SERVICE};
use anyhow::Context;
use feepay_proto::v1;
use feepay_runtime::convert::{parse_payment, parse_refund};
use feepay_runtime::envelope::{self, DecodeError};
use feepay_runtime::http::{self, Readiness};
use feepay_runtime::kafka;
use feepay_runtime::lifecycle;
use feepay_runtime::outbox::Relay;
use feepay_runtime::settings::{self, BatchSettings, DatabaseSettings, KafkaSettings, Topics};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything the issuer reads from the environment.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub database: DatabaseSettings,
    pub batch: BatchSettings,
    /// `FEEPAY_ISSUER_HTTP_ADDR` (default `127.0.0.1:9101`): metrics and health.
    pub http_addr: SocketAddr,
    /// `FEEPAY_KEYS_DIR` (default `.local/keys`): agency signing keys.
    pub keys_dir: PathBuf,
    /// `FEEPAY_ISSUER_SOURCE` (default `/feepay/issuer`): CloudEvents source.
    pub source: String,
    /// `FEEPAY_ISSUER_RELAY` (default true): run the outbox relay in this process.
    pub relay: bool,
    /// `FEEPAY_SHUTDOWN_DEADLINE_SECS`.
    pub shutdown_deadline: Duration,
    /// `FEEPAY_ISSUER_SELF_CHECK_SECS` (default 60): numbering self-check period.
    pub self_check_every: Duration,
    /// `FEEPAY_ISSUER_WORKERS` (default 4): concurrent transactions per batch, payments
    /// split by agency. Each takes a database connection.
    pub workers: usize,
}

impl IssuerSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let s = IssuerSettings {
            kafka: KafkaSettings::from_env("feepay-issuer")?,
            topics: Topics::from_env(),
            database: DatabaseSettings::from_env()?,
            batch: BatchSettings::from_env()?,
            http_addr: settings::env_parse("FEEPAY_ISSUER_HTTP_ADDR", "127.0.0.1:9101".parse().expect("valid"))?,
            keys_dir: PathBuf::from(settings::env_or("FEEPAY_KEYS_DIR", ".local/keys")),
            source: settings::env_or("FEEPAY_ISSUER_SOURCE", "/feepay/issuer"),
            relay: settings::env_parse("FEEPAY_ISSUER_RELAY", true)?,
            shutdown_deadline: settings::shutdown_deadline()?,
            self_check_every: Duration::from_secs(settings::env_parse("FEEPAY_ISSUER_SELF_CHECK_SECS", 60)?),
            workers: settings::env_parse("FEEPAY_ISSUER_WORKERS", 4)?,
        };
        let connections = s.database.max_connections as usize;
        if s.workers == 0 || s.workers + 2 > connections {
            anyhow::bail!(
                "FEEPAY_ISSUER_WORKERS is {} but must be between 1 and FEEPAY_DATABASE_MAX_CONNECTIONS - 2 ({}): \
                 each worker holds a connection, and the relay and health checks need theirs",
                s.workers,
                connections.saturating_sub(2)
            );
        }
        Ok(s)
    }
}

/// A built issuer, ready to run.
pub struct App {
    pub settings: IssuerSettings,
    pub issuer: Arc<Issuer>,
    pub consumer: Arc<StreamConsumer>,
    pub producer: rdkafka::producer::FutureProducer,
    pub readiness: Arc<Readiness>,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    http: tokio::task::JoinHandle<()>,
}

impl App {
    /// Connects, migrates, creates topics, binds the HTTP port.
    pub async fn build(
        settings: IssuerSettings,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<App> {
        let db = feepay_runtime::db::connect(&settings.database).await.context("connecting to PostgreSQL")?;
        feepay_runtime::db::migrate(&db).await.context("applying migrations")?;
        let keys = Keyring::load_dir(&settings.keys_dir)
            .with_context(|| format!("loading signing keys from {}", settings.keys_dir.display()))?;
        feepay_runtime::signing_keys::register(&db, &keys.public_keys(), SERVICE)
            .await
            .context("registering the public signing keys")?;
        kafka::ensure_topics(&settings.kafka, &settings.topics.all(), settings.kafka.partitions)
            .await
            .context("creating topics")?;
        let producer = kafka::producer(&settings.kafka).context("creating the Kafka producer")?;
        let consumer = Arc::new(
            kafka::consumer(
                &settings.kafka,
                &[&settings.topics.payments_succeeded, &settings.topics.payments_refunded],
            )
            .context("creating the Kafka consumer")?,
        );
        let metrics = IssuerMetrics::new();
        metrics.consumer.init(
            &[&settings.topics.payments_succeeded, &settings.topics.payments_refunded],
            &[
                "issued",
                "waived",
                "rejected",
                "duplicate",
                "conflict",
                "dead_lettered",
                "refund_applied",
                "refund_pending",
                "refund_rejected",
            ],
        );
        for r in [
            "unknown_agency",
            "unknown_fee",
            "no_series",
            "amount_mismatch",
            "conflicting_duplicate",
            "invalid_refund",
            "kind_mismatch",
        ] {
            metrics.payments_rejected.with_label_values(&[r]).inc_by(0);
        }
        for k in ["payment", "refund"] {
            metrics.conflicts.with_label_values(&[k]).inc_by(0);
        }
        let readiness = Arc::new(Readiness::default());
        let issuer = Arc::new(
            Issuer::new(
                db.clone(),
                keys,
                clock,
                metrics.clone(),
                settings.topics.clone(),
                settings.kafka.body_format,
                settings.source.clone(),
            )
            .with_workers(settings.workers),
        );
        let (http_addr, http) = http::serve(
            settings.http_addr,
            http::ops_router(metrics.registry.clone(), readiness.clone()),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("binding {}", settings.http_addr))?;
        lifecycle::spawn_database_check(db, readiness.clone(), shutdown.clone());
        lifecycle::spawn_consumer_check(
            consumer.clone(),
            readiness.clone(),
            metrics.consumer.clone(),
            shutdown.clone(),
        );
        Ok(App { settings, issuer, consumer, producer, readiness, http_addr, shutdown, http })
    }

    /// Runs until the shutdown token is cancelled, then drains within the deadline.
    pub async fn run(self) -> anyhow::Result<()> {
        let App { settings, issuer, consumer, producer, shutdown, http, .. } = self;
        let relay_stop = CancellationToken::new();
        let relay = settings.relay.then(|| {
            let relay = Relay {
                db: issuer.db.clone(),
                producer: producer.clone(),
                name: SERVICE.to_string(),
                batch: 1000,
                metrics: issuer.metrics.outbox.clone(),
            };
            tokio::spawn(relay.run(relay_stop.clone()))
        });
        let checker = {
            let issuer = issuer.clone();
            let stop = shutdown.clone();
            let every = settings.self_check_every;
            tokio::spawn(async move {
                loop {
                    let year = feepay_domain::numbering::year_gmt7(issuer.clock.now());
                    if let Err(e) = issuer.numbering_self_check(year).await {
                        tracing::warn!(error = %e, "numbering self-check failed");
                    }
                    tokio::select! { _ = tokio::time::sleep(every) => {}, _ = stop.cancelled() => break }
                }
            })
        };
        tracing::info!(topics = ?[&settings.topics.payments_succeeded, &settings.topics.payments_refunded], group = %settings.kafka.group_id, "issuer consuming");
        let result = consume(&issuer, &consumer, &producer, &settings, &shutdown).await;
        // Drain: the batch in flight is done and committed; give the relay the rest of the deadline.
        relay_stop.cancel();
        if let Some(r) = relay {
            if tokio::time::timeout(settings.shutdown_deadline, r).await.is_err() {
                tracing::warn!("outbox relay did not drain within the deadline; the rest is published at next start");
            }
        }
        let _ =
            tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, Duration::from_secs(5)))
                .await;
        checker.abort();
        let _ = http.await;
        tracing::info!("issuer stopped");
        result
    }
}

/// Decodes one record of a batch into an item, or a reason to dead-letter it.
pub fn decode(topics: &Topics, m: &BorrowedMessage<'_>) -> Result<Incoming, DecodeError> {
    if m.topic() == topics.payments_refunded {
        let raw: v1::PaymentRefunded = envelope::decode(m.headers(), m.payload())?;
        let refund = parse_refund(&raw).map_err(|e| DecodeError::new("invalid", e.to_string()))?;
        Ok(Incoming::refund(refund, raw))
    } else {
        let raw: v1::PaymentSucceeded = envelope::decode(m.headers(), m.payload())?;
        let payment = parse_payment(&raw).map_err(|e| DecodeError::new("invalid", e.to_string()))?;
        Ok(Incoming::payment(payment, &raw))
    }
}

async fn consume(
    issuer: &Arc<Issuer>,
    consumer: &StreamConsumer,
    producer: &rdkafka::producer::FutureProducer,
    settings: &IssuerSettings,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let m = &issuer.metrics.consumer;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let batch = match kafka::recv_batch(consumer, settings.batch.max_events, settings.batch.linger, shutdown).await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let mut items = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for msg in &batch {
            m.consumed.with_label_values(&[msg.topic()]).inc();
            match decode(&settings.topics, msg) {
                Ok(item) => items.push(item),
                Err(e) => {
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason = %e, "event dead-lettered");
                    dead.push(kafka::dead_letter_of(msg, &e, SERVICE));
                }
            }
        }
        // 1. Effects, durably. Retried until they commit (or the process is stopped, in
        //    which case nothing is committed and the batch is redelivered).
        let mut backoff = Duration::from_millis(100);
        let outcome = loop {
            match issuer.process(&items).await {
                Ok(o) => break o,
                Err(e) => {
                    m.batch_failures.inc();
                    tracing::error!(error = %e, events = items.len(), "batch failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        // 2. Dead letters, acknowledged by the broker.
        for dl in &dead {
            if !kafka::dead_letter_durably(producer, dl, shutdown).await {
                return Ok(());
            }
            m.count_dead_letter(dl);
        }
        // 3. Only now the offsets.
        if let Err(e) = kafka::commit_batch(consumer, &batch) {
            // Not fatal: the events are redelivered and acknowledged without effect.
            tracing::warn!(error = %e, "offset commit failed; the batch will be redelivered and deduplicated");
        }
        let topic = settings.topics.payments_succeeded.as_str();
        let rt = settings.topics.payments_refunded.as_str();
        for (outcome_label, n, t) in [
            ("issued", outcome.payments_issued, topic),
            ("waived", outcome.payments_waived, topic),
            ("rejected", outcome.payments_rejected, topic),
            ("duplicate", outcome.duplicates, topic),
            ("conflict", outcome.conflicts, topic),
            ("refund_applied", outcome.refunds_applied, rt),
            ("refund_pending", outcome.refunds_pending, rt),
            ("refund_rejected", outcome.refunds_rejected, rt),
        ] {
            if n > 0 {
                m.processed.with_label_values(&[t, outcome_label]).inc_by(n as u64);
            }
        }
        m.batch_size.observe(batch.len() as f64);
        m.batch_duration.observe(started.elapsed().as_secs_f64());
    }
}

/// Default clock for production.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
